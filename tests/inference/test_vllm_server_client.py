"""The vllm-server client over real HTTP. vLLM itself needs a GPU, so here the endpoint is a
small server speaking the same `/v1/completions` subset, backed by the real hf generator on the
tiny model; the `gpu` test in test_vllm.py runs the client against `vllm serve`."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from transformers import AutoModelForCausalLM

from swerl.inference import SamplingParams
from swerl.inference.hf import HFGenerator
from swerl.inference.openai_chat import LogprobsRequired, OpenAIChatGenerator, require_logprobs
from swerl.inference.vllm_server import ServerError, VLLMServerGenerator
from swerl.models.tiny import TinySpec, build_tiny_model

CORPUS = ["def add(a, b):\n    return a + b\n"] * 40


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", TinySpec(vocab_size=400), CORPUS)


@pytest.fixture(scope="module")
def server(model_dir):
    gen = HFGenerator(model_dir, seed=0)
    lock = threading.Lock()
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            p = SamplingParams(
                temperature=body["temperature"],
                top_p=body["top_p"],
                top_k=max(0, body["top_k"]),
                min_p=body["min_p"],
                repetition_penalty=body["repetition_penalty"],
                max_tokens=body["max_tokens"],
                stop_token_ids=tuple(body["stop_token_ids"]),
                seed=body.get("seed"),
            )
            with lock:
                out = gen.generate([body["prompt"]], [p])[0]
            answer = {
                "choices": [
                    {
                        "token_ids": out.token_ids,
                        "logprobs": {
                            "tokens": [f"token_id:{t}" for t in out.token_ids],
                            "token_logprobs": out.logprobs,
                        },
                        "finish_reason": "stop" if out.finish_reason == "stop" else "length",
                    }
                ]
            }
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()


def test_token_ids_and_logprobs_round_trip_and_match_the_model(server, model_dir):
    url, seen = server
    client = VLLMServerGenerator(url, model="tiny", max_concurrency=4)
    prompts = [[5, 6, 7], [8, 9], [10]]
    outs = client.generate(prompts, [SamplingParams(max_tokens=8)] * 3)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    for prompt, out in zip(prompts, outs, strict=True):
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([prompt + out.token_ids])).logits[0], -1)
        expected = [float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(out.token_ids)]
        assert max(abs(a - b) for a, b in zip(out.logprobs, expected, strict=True)) < 1e-4
    body = seen[-1]  # every knob is sent explicitly, top_k off as -1
    assert body["top_k"] == -1 and body["min_p"] == 0.0 and body["repetition_penalty"] == 1.0
    assert body["return_token_ids"] and body["logprobs"] == 1 and isinstance(body["prompt"], list)
    assert "seed" not in body  # unseeded: the server's own stream
    seeded = [SamplingParams(max_tokens=8, seed=5)] * 2
    first, again = client.generate([[5, 6, 7], [5, 6, 7]], seeded)
    assert seen[-1]["seed"] == 5 and first.token_ids == again.token_ids


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = VLLMServerGenerator(f"http://127.0.0.1:{port}", model="m", retries=1)
    with pytest.raises(ServerError, match="gave up after 2 attempts"):
        client.complete([1, 2], SamplingParams(max_tokens=2))


def test_api_chat_models_are_refused_where_logprobs_are_needed():
    chat = OpenAIChatGenerator("http://127.0.0.1:9", model="some-api-model")
    with pytest.raises(LogprobsRequired, match="'openai-chat' generator has none"):
        require_logprobs(chat, "DAPO rollouts")
