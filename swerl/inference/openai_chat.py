"""`openai-chat`: any chat-completions endpoint, for evaluating API models with the same scaffold.

    gen = OpenAIChatGenerator("https://api.example.com", model="some-model", api_key=key)
    reply = gen.chat([{"role": "system", ...}, {"role": "user", ...}], SamplingParams())
    reply.text, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens

Text in, text out: there are no token ids or log-probs, so its trajectories cannot train a policy.
An episode drives it through the text path of `swerl.agent.episode.run_text_episode`, which
counts tokens with the endpoint's reported `usage`. Where training data is made, it is refused
with a clear error (`require_logprobs`; the rollout stage refuses the kind by name, and
`update_policy` / `train_rft` refuse rows without token ids).

Sampling: `temperature`, `top_p` and `max_tokens` are sent; top_k, min_p and the repetition
penalty are not part of the chat-completions API, so settings that use them are refused rather
than silently dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from swerl.inference.base import Generator, SamplingParams

API_KEY_ENV = "OPENAI_API_KEY"
"""Environment variable the API key is read from (`make_generator`); never stored anywhere."""


@dataclass(frozen=True)
class ChatReply:
    """One assistant reply of a chat-completions endpoint, with the endpoint's token counts."""

    text: str
    finish_reason: str
    """stop (the reply ended) or length (cut at max_tokens)."""
    prompt_tokens: int
    """The request's conversation in tokens, as the endpoint counted it (`usage`)."""
    completion_tokens: int
    """The reply's tokens, as the endpoint counted it (`usage`)."""


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
    """Client of `<base_url>/v1/chat/completions` for one model. Thread-safe: concurrent episodes
    share it (the endpoint does the batching)."""

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

    def close(self) -> None:
        self.client.close()

    def chat(self, messages: list[dict[str, str]], p: SamplingParams) -> ChatReply:
        """The assistant's reply to a conversation. Retries connection errors, 429 and 5xx with
        backoff; other HTTP errors, and a response without `usage`, raise at once."""
        if p.top_k or p.min_p or p.repetition_penalty != 1.0:
            raise ValueError(
                f"{self.url}: top_k, min_p and repetition_penalty are not chat-completions "
                f"parameters; got top_k={p.top_k}, min_p={p.min_p}, "
                f"repetition_penalty={p.repetition_penalty}"
            )
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
                    return self._reply(r.json())
                if r.status_code < 500 and r.status_code != 429:
                    raise RuntimeError(f"{self.url}: HTTP {r.status_code}: {r.text[:300]}")
                error = f"HTTP {r.status_code}"
            if attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, 20.0)
        raise RuntimeError(f"{self.url}: gave up after {self.retries + 1} attempts ({error})")

    def _reply(self, data: dict) -> ChatReply:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        if "prompt_tokens" not in usage or "completion_tokens" not in usage:
            raise RuntimeError(
                f"{self.url}: the response has no usage.prompt_tokens / completion_tokens; the "
                "episode's context limit is counted with them"
            )
        return ChatReply(
            choice["message"]["content"] or "",
            "stop" if choice.get("finish_reason") == "stop" else "length",
            int(usage["prompt_tokens"]),
            int(usage["completion_tokens"]),
        )
