"""`replay`: emits given assistant messages in order, for re-running recorded trajectories,
demonstrations and tests of the episode loop. One instance per episode.

The rollout stage's `generator="replay"` (`swerl.agent.rollout.Replays`) gives each episode one of
these with the assistant messages of a recorded trajectory; `swerl.train.demos` plays scripted
demonstrations the same way. The messages are tokenized with the caller's `encode` (the policy's
own tokenizer), so the token ids are the policy's, and a policy can be trained on them; the
sampler's log-probs are unknown (None).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from swerl.inference.base import Completion, SamplingParams


class ReplayGenerator:
    """Answers each request with the next scripted message, tokenized, plus the end-of-turn token.
    Log-probs are not known (None). When the script runs out, the episode gets an error. A reply
    longer than the request's `max_tokens` is cut there (finish reason `length`), as a sampled one
    would be.

    It has the slice of `BatchingGenerator` an episode uses (`name`, `has_logprobs`, `complete`,
    `episode`), so `swerl.agent.rollout.one_episode` plays it directly."""

    name = "replay"
    has_logprobs = False

    def __init__(
        self, messages: list[str], encode: Callable[[str], list[int]], end_of_turn_id: int
    ):
        self.messages = list(messages)
        self.encode = encode
        self.end_of_turn_id = end_of_turn_id
        self.position = 0

    @contextlib.contextmanager
    def episode(self) -> Iterator[None]:
        """Nothing to announce: one script serves one episode."""
        yield

    def complete(self, prompt: list[int], params: SamplingParams) -> Completion:
        """One completion (the episode loop's `generate` callable)."""
        return self.generate([prompt], [params])[0]

    def generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        outs = []
        for p in params:
            if self.position >= len(self.messages):
                raise RuntimeError(f"replay script exhausted after {len(self.messages)} messages")
            ids = list(self.encode(self.messages[self.position])) + [self.end_of_turn_id]
            self.position += 1
            if len(ids) > p.max_tokens:
                outs.append(Completion(ids[: p.max_tokens], None, "length"))
            else:
                outs.append(Completion(ids, None, "stop"))
        return outs
