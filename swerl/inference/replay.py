"""`replay`: emits given assistant messages in order, for re-running a recorded trajectory,
demonstrations and tests of the episode loop. One instance per episode."""

from __future__ import annotations

from swerl.inference.base import Completion, SamplingParams


class ReplayGenerator:
    """Answers each request with the next scripted message, tokenized, plus the end-of-turn token.
    Log-probs are not known (None). When the script runs out, the episode gets an error."""

    name = "replay"
    has_logprobs = False

    def __init__(self, messages: list[str], encode, end_of_turn_id: int):
        self.messages = list(messages)
        self.encode = encode
        self.end_of_turn_id = end_of_turn_id
        self.position = 0

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
