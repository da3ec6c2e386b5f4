"""Loading a new checkpoint into a running vLLM server (`VLLMServerGenerator.serve`), over real
HTTP. vLLM needs a GPU, so the server here is a small one that speaks the routes `serve` relies
on with vLLM's request and answer shapes (vLLM 0.10-0.12 with VLLM_SERVER_DEV_MODE=1:
`POST /collective_rpc` {"method", "args"} -> {"results": [one per worker]}, a worker's exception
-> HTTP 500 with an error body, `POST /reset_prefix_cache` -> 200 with no body, `GET /v1/models`
-> {"object": "list", "data": [{"id", "root", "parent", ...}]}, `/v1/completions` refusing a
model name it does not serve with 404). Its workers are real: `update_config` reads the new
directory's config with transformers (vLLM builds a ModelConfig from it), `reload_weights` loads
the checkpoint's weights with transformers, and completions come from the hf generator on
whatever was loaded, so a test can tell which weights answered."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from swerl.agent.episode import EpisodeConfig
from swerl.agent.rollout import RolloutConfig, make_generator, rollout
from swerl.inference import SamplingParams
from swerl.inference.hf import HFGenerator
from swerl.inference.vllm_server import ServerError, VLLMServerGenerator
from swerl.lake import Lake
from swerl.models.tiny import TinySpec, build_tiny_model
from swerl.swe.toy import publish_toy_suite

CORPUS = ["def add(a, b):\n    return a + b\n"] * 40
SERVED = "policy"  # vllm serve ... --served-model-name policy


class FakeVLLM:
    """One vLLM server: started on `start_dir` under the name SERVED; `dev_mode` registers the
    developer routes. `seen` holds (method, path, body) of every request, in order."""

    def __init__(self, start_dir: Path, dev_mode: bool = True):
        self.start_dir = str(start_dir)
        self.dev_mode = dev_mode
        self.config_model = self.start_dir  # ModelConfig.model of the workers
        self.gen = HFGenerator(start_dir, seed=0)
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, dict | None]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status: int, payload: dict | None = None) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if payload is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def error(self, status: int, kind: str, message: str) -> None:
                self.answer(status, {"error": {"message": message, "type": kind, "code": status}})

            def do_GET(self):
                server.seen.append(("GET", self.path, None))
                if self.path != "/v1/models":
                    return self.error(404, "NotFoundError", "Not Found")
                card = {"id": SERVED, "object": "model", "owned_by": "vllm"}
                card |= {"root": server.start_dir, "parent": None, "max_model_len": 512}
                self.answer(200, {"object": "list", "data": [card]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                server.seen.append(("POST", self.path, body))
                dev = {"/collective_rpc": self.collective_rpc, "/reset_prefix_cache": None}
                if self.path == "/v1/completions":
                    return self.completion(body)
                if self.path not in dev or not server.dev_mode:
                    return self.error(404, "NotFoundError", "Not Found")
                if self.path == "/reset_prefix_cache":
                    return self.answer(200)
                self.collective_rpc(body)

            def collective_rpc(self, body: dict) -> None:
                try:  # what each worker's method does, as in vLLM's GPU worker
                    if body["method"] == "update_config":
                        (overrides,) = body["args"]
                        assert set(overrides) <= {"load_config", "model_config"}, overrides
                        model = overrides["model_config"]["model"]
                        AutoConfig.from_pretrained(model)  # ModelConfig(...) reads config.json
                        server.config_model = model
                    elif body["method"] == "reload_weights":
                        assert body.get("args", []) == [], "reload_weights takes no arguments"
                        gen = HFGenerator(server.config_model, seed=0)
                        with server.lock:
                            server.gen = gen
                    else:
                        raise AttributeError(f"'Worker' object has no attribute {body['method']!r}")
                except Exception as e:  # vLLM's exception handler: HTTP 500
                    return self.error(500, "InternalServerError", f"{type(e).__name__}: {e}")
                self.answer(200, {"results": [None]})  # one worker, whose method returned None

            def completion(self, body: dict) -> None:
                if body["model"] != SERVED:
                    message = f"The model `{body['model']}` does not exist."
                    return self.error(404, "NotFoundError", message)
                p = SamplingParams(
                    temperature=body["temperature"],
                    top_p=body["top_p"],
                    top_k=max(0, body["top_k"]),
                    max_tokens=body["max_tokens"],
                    stop_token_ids=tuple(body["stop_token_ids"]),
                )
                with server.lock:
                    out = server.gen.generate([body["prompt"]], [p])[0]
                logprobs = {"tokens": [f"token_id:{t}" for t in out.token_ids]}
                logprobs["token_logprobs"] = out.logprobs
                finish = "stop" if out.finish_reason == "stop" else "length"
                choice = {"token_ids": out.token_ids, "logprobs": logprobs, "finish_reason": finish}
                self.answer(200, {"choices": [choice]})

        return Handler

    def paths(self) -> list[str]:
        return [p for _, p, _ in self.seen]

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny") / "base", TinySpec(vocab_size=400), CORPUS
    )


@pytest.fixture(scope="module")
def updated_dir(tmp_path_factory, base_dir) -> Path:
    """The same architecture and tokenizer, other weights: a policy after an update."""
    out = tmp_path_factory.mktemp("tiny") / "updated"
    shutil.copytree(base_dir, out)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.save_pretrained(out)
    return out


@pytest.fixture
def server(base_dir):
    s = FakeVLLM(base_dir)
    yield s
    s.close()


def sampler_logprobs(model_dir: Path, prompt: list[int], ids: list[int]) -> list[float]:
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([prompt + ids])).logits[0], -1)
    return [float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(ids)]


def test_serve_sends_vllms_reload_sequence_then_samples_from_the_new_weights(
    server, base_dir, updated_dir
):
    client = VLLMServerGenerator(server.url)
    assert client.serve(updated_dir) == SERVED
    assert server.seen == [
        (
            "POST",
            "/collective_rpc",
            {"method": "update_config", "args": [{"model_config": {"model": str(updated_dir)}}]},
        ),
        ("POST", "/collective_rpc", {"method": "reload_weights"}),
        ("POST", "/reset_prefix_cache", None),
        ("GET", "/v1/models", None),
    ]
    prompt = [5, 6, 7]
    out = client.generate([prompt], [SamplingParams(max_tokens=8)])[0]
    assert server.seen[-1][2]["model"] == SERVED  # the name the server reports, not a path
    new = sampler_logprobs(updated_dir, prompt, out.token_ids)
    old = sampler_logprobs(base_dir, prompt, out.token_ids)
    assert max(abs(a - b) for a, b in zip(out.logprobs, new, strict=True)) < 1e-4
    assert max(abs(a - b) for a, b in zip(out.logprobs, old, strict=True)) > 1e-2


def test_a_request_naming_a_directory_the_server_does_not_serve_is_refused(server, updated_dir):
    """The failure this module fixes: a request naming the new policy's directory."""
    client = VLLMServerGenerator(server.url, model=str(updated_dir), retries=0)
    with pytest.raises(ServerError, match="HTTP 404.*does not exist"):
        client.complete([5, 6], SamplingParams(max_tokens=2))


def test_a_failed_reload_names_the_server_the_directory_and_the_answer(server, tmp_path, base_dir):
    broken = tmp_path / "broken"
    shutil.copytree(base_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    client = VLLMServerGenerator(server.url)
    with pytest.raises(ServerError) as e:
        client.serve(broken)
    message = str(e.value)
    assert server.url in message and str(broken) in message
    assert "reload_weights: HTTP 500" in message
    assert "/reset_prefix_cache" not in server.paths() and client.model is None

    with pytest.raises(ServerError, match="no config.json"):  # caught here, nothing sent
        client.serve(tmp_path / "missing")
    assert server.paths().count("/collective_rpc") == 2


def test_a_server_without_dev_endpoints_serves_only_its_start_up_model(base_dir, updated_dir):
    s = FakeVLLM(base_dir, dev_mode=False)
    try:
        client = VLLMServerGenerator(s.url)
        assert client.serve(base_dir) == SERVED  # what it was started with: nothing to load
        with pytest.raises(ServerError, match="VLLM_SERVER_DEV_MODE=1") as e:
            client.serve(updated_dir)
        assert s.url in str(e.value) and str(updated_dir) in str(e.value)
        assert "/v1/completions" not in s.paths()
    finally:
        s.close()


def test_control_requests_retry_connection_errors_then_name_the_server(tmp_path, base_dir):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = VLLMServerGenerator(f"http://127.0.0.1:{port}", retries=1)
    with pytest.raises(ServerError, match=f"127.0.0.1:{port}/collective_rpc: gave up after 2"):
        client.serve(base_dir)


CONFIG = RolloutConfig(
    samples=2,
    stage="dapo",
    backend="local",
    max_live_sandboxes=4,
    turn_penalty_threshold=1,
    episode=EpisodeConfig(max_turns=2, max_turn_tokens=16, sampling=SamplingParams()),
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("lake"))
    publish_toy_suite(lake, seed=0, n_train=1, n_eval=0)
    return lake


def test_a_rollout_after_an_update_loads_the_new_policy_and_samples_from_it(
    lake, server, updated_dir
):
    out = rollout(
        lake, model=str(updated_dir), tasks="toy-swe", config=CONFIG,
        generator="vllm-server", server_url=server.url, limit=1,
    )  # fmt: skip
    first_completion = server.paths().index("/v1/completions")
    assert server.paths()[:first_completion] == [
        "/collective_rpc",
        "/collective_rpc",
        "/reset_prefix_cache",
        "/v1/models",
    ]
    assert server.seen[0][2]["args"] == [{"model_config": {"model": str(updated_dir)}}]
    bodies = [b for _, p, b in server.seen if p == "/v1/completions"]
    assert bodies and {b["model"] for b in bodies} == {SERVED}
    rows = lake.read("trajectories", out.trajectories).to_pylist()
    assert len(rows) == 2 and all(r["error"] is None for r in rows)
    assert {r["generator"] for r in rows} == {"vllm-server"}


def test_a_failed_reload_stops_the_rollout_before_any_episode(lake, server, tmp_path, base_dir):
    broken = tmp_path / "broken"
    shutil.copytree(base_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    before = lake.versions("trajectories")
    with pytest.raises(ServerError, match=re.escape(f"{server.url}: loading {broken}: reload_w")):
        rollout(
            lake, model=str(broken), tasks="toy-swe", config=CONFIG,
            generator="vllm-server", server_url=server.url, limit=1,
        )  # fmt: skip
    assert "/v1/completions" not in server.paths()
    assert lake.versions("trajectories") == before


def test_make_generator_returns_a_client_of_the_loaded_checkpoint(server, updated_dir):
    gen, chat = make_generator(
        updated_dir, "vllm-server", server_url=server.url, device="cpu", seed=0
    )
    assert isinstance(gen, VLLMServerGenerator) and gen.model == SERVED
    assert chat is not None and server.config_model == str(updated_dir)
