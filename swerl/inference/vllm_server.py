"""`vllm-server`: a client of vLLM's OpenAI-compatible `/v1/completions` endpoint, token ids in
and token ids + log-probs out, so generation can run on other machines.

    vllm serve /models/policy --generation-config vllm --logprobs-mode processed_logprobs
    VLLMServerGenerator("http://gpu-box:8000", model="/models/policy")

Requests send the prompt as a list of token ids and every sampling knob explicitly, ask for the
sampled tokens' log-probs (`logprobs: 1`, read from `token_logprobs`) and for token ids back
(`return_token_ids`, with `return_tokens_as_token_ids` as the fallback for older servers). A concurrency limit
bounds requests in flight; connection errors and 5xx answers are retried with backoff.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from swerl.inference.base import Completion, SamplingParams

RETRYABLE = (httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.WriteError)


class ServerError(RuntimeError):
    """The server answered with an error or an answer we cannot use; the message says which."""


class VLLMServerGenerator:
    name = "vllm-server"
    has_logprobs = True

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        max_concurrency: int = 64,
        retries: int = 5,
        timeout_s: float = 600.0,
        api_key: str | None = None,
    ):
        self.url = base_url.rstrip("/") + "/v1/completions"
        self.model = model
        self.retries = retries
        self.slots = threading.Semaphore(max_concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers)
        self.pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="vllm-client")

    def request_body(self, prompt: list[int], p: SamplingParams) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": list(prompt),
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "top_k": p.top_k if p.top_k > 0 else -1,
            "min_p": p.min_p,
            "repetition_penalty": p.repetition_penalty,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "stop_token_ids": list(p.stop_token_ids),
            "logprobs": 1,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": False,
            "include_stop_str_in_output": True,
            "n": 1,
        }

    def complete(self, prompt: list[int], p: SamplingParams) -> Completion:
        body = self.request_body(prompt, p)
        delay = 0.5
        with self.slots:
            for attempt in range(self.retries + 1):
                try:
                    response = self.client.post(self.url, json=body)
                except RETRYABLE as e:
                    error: str = f"{type(e).__name__}: {e}"
                else:
                    if response.status_code < 500:
                        return parse_completion(response)
                    error = f"HTTP {response.status_code}: {response.text[:200]}"
                if attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 10.0)
        raise ServerError(f"{self.url}: gave up after {self.retries + 1} attempts ({error})")

    def generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        if len(prompts) != len(params):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling settings")
        return list(self.pool.map(self.complete, prompts, params))


def parse_completion(response: httpx.Response) -> Completion:
    if response.status_code != 200:
        raise ServerError(f"HTTP {response.status_code}: {response.text[:300]}")
    choice = response.json()["choices"][0]
    logprobs = choice.get("logprobs") or {}
    ids = choice.get("token_ids")
    if ids is None:  # older servers: tokens come back as "token_id:123"
        tokens = logprobs.get("tokens")
        if tokens is None:
            raise ServerError("the answer holds neither token_ids nor logprobs.tokens")
        ids = [int(t.split(":", 1)[1]) for t in tokens]
    values = logprobs.get("token_logprobs")
    if values is None or len(values) != len(ids):
        raise ServerError("the answer lacks one log-prob per generated token")
    finish = "stop" if choice.get("finish_reason") == "stop" else "length"
    return Completion([int(i) for i in ids], [float(v) for v in values], finish)
