"""The openai-chat client against a real local HTTP server: replies with the endpoint's usage,
retries on 5xx, immediate errors on 4xx and on a response without usage, and refusal of
sampling knobs the chat-completions API does not have."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from swerl.inference.base import SamplingParams
from swerl.inference.openai_chat import OpenAIChatGenerator

MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "fix it"}]


@pytest.fixture
def server():
    """Answers each POST with the next (status, body) of `script`."""
    script: list[tuple[int, dict]] = []
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status, body = script.pop(0)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script, seen
    httpd.shutdown()


def answer(text: str, finish: str = "stop", usage: dict | None = None) -> dict:
    body = {
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish}]
    }
    if usage is not None:
        body["usage"] = usage
    return body


def test_a_reply_carries_the_endpoints_usage_after_a_retried_5xx(server):
    url, script, seen = server
    script += [
        (503, {"error": "busy"}),
        (200, answer("ok", "length", {"prompt_tokens": 7, "completion_tokens": 3})),
    ]
    gen = OpenAIChatGenerator(url, model="m", retries=2)
    reply = gen.chat(MESSAGES, SamplingParams(max_tokens=3, temperature=0.5))
    assert (reply.text, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens) == (
        "ok",
        "length",
        7,
        3,
    )
    assert len(seen) == 2 and seen[-1]["messages"] == MESSAGES
    assert seen[-1]["max_tokens"] == 3 and seen[-1]["temperature"] == 0.5


def test_client_errors_and_missing_usage_fail_at_once(server):
    url, script, seen = server
    gen = OpenAIChatGenerator(url, model="m", retries=3)
    script.append((400, {"error": "context too long"}))
    with pytest.raises(RuntimeError, match="HTTP 400: .*context too long"):
        gen.chat(MESSAGES, SamplingParams())
    script.append((200, answer("ok")))
    with pytest.raises(RuntimeError, match="no usage.prompt_tokens"):
        gen.chat(MESSAGES, SamplingParams())
    assert len(seen) == 2  # neither was retried


def test_sampling_knobs_outside_the_chat_api_are_refused():
    gen = OpenAIChatGenerator("http://127.0.0.1:9", model="m")
    with pytest.raises(ValueError, match="top_k=20"):
        gen.chat(MESSAGES, SamplingParams(top_k=20))
