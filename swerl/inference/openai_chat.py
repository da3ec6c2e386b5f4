"""`openai-chat`: any chat-completions endpoint, for evaluating API models with the same scaffold.

Text in, text out: there are no token ids or log-probs, so its trajectories cannot train a policy;
`require_logprobs` refuses it with a clear error wherever training data is made.
"""

from __future__ import annotations

import time

import httpx

from swerl.inference.base import Generator, SamplingParams


class LogprobsRequired(ValueError):
    """A generator without token ids and log-probs was used where training needs them."""


def require_logprobs(generator: Generator | OpenAIChatGenerator, purpose: str) -> None:
    if not generator.has_logprobs:
        raise LogprobsRequired(
            f"{purpose} needs sampled token ids and log-probs; the {generator.name!r} generator "
            "has none "
            "(use hf, vllm or vllm-server)"
        )


class OpenAIChatGenerator:
    name = "openai-chat"
    has_logprobs = False

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        retries: int = 5,
        timeout_s: float = 600.0,
    ):
        self.url = base_url.rstrip("/") + "/v1/chat/completions"
        self.model = model
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers)

    def chat(self, messages: list[dict[str, str]], p: SamplingParams) -> tuple[str, str]:
        """(assistant text, finish reason) for a conversation."""
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
        }
        delay, error = 0.5, ""
        for attempt in range(self.retries + 1):
            try:
                r = self.client.post(self.url, json=body)
            except (httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError) as e:
                error = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    choice = r.json()["choices"][0]
                    finish = "stop" if choice.get("finish_reason") == "stop" else "length"
                    return choice["message"]["content"] or "", finish
                if r.status_code < 500 and r.status_code != 429:
                    raise RuntimeError(f"{self.url}: HTTP {r.status_code}: {r.text[:300]}")
                error = f"HTTP {r.status_code}"
            if attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, 20.0)
        raise RuntimeError(f"{self.url}: gave up after {self.retries + 1} attempts ({error})")
