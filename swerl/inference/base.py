"""The generator interface every backend implements."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one request. The defaults are the rollout settings of the paper:
    temperature 1 with every other transformation off, so that samples come from pi_old exactly
    (PAPER.md lesson 2)."""

    temperature: float = 1.0
    """Softmax temperature (> 0)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 is off."""
    top_k: int = 0
    """Keep the k most likely tokens; 0 is off."""
    min_p: float = 0.0
    """Drop tokens below min_p x the top probability; 0.0 is off."""
    repetition_penalty: float = 1.0
    """Penalty on tokens already in the sequence; 1.0 is off."""
    max_tokens: int = 512
    """Most tokens to generate for this request."""
    stop_token_ids: tuple[int, ...] = ()
    """Generation stops after any of these tokens (it is included in the output)."""
    seed: int | None = None
    """This request's own random stream (vLLM's per-request `seed`): the same seed, prompt and
    weights draw the same tokens whatever else shares the batch. None: the generator's stream,
    whose draws depend on the order requests arrive in. The rollout stage seeds every turn of
    every episode (`swerl.agent.rollout.episode_seed`)."""

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.min_p < 0 or self.repetition_penalty <= 0:
            raise ValueError("top_k and min_p must be >= 0, repetition_penalty > 0")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")

    @property
    def is_unmodified(self) -> bool:
        """True when the sampler draws from the model's distribution at temperature 1 exactly."""
        return (
            self.temperature == 1.0
            and self.top_p == 1.0
            and self.top_k == 0
            and self.min_p == 0.0
            and self.repetition_penalty == 1.0
        )

    def record(self) -> dict:
        """The settings as stored in manifests and trajectories."""
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    """One generated continuation. `logprobs[i]` is the sampler's log-probability of
    `token_ids[i]` under the distribution it sampled from (None for backends without them)."""

    token_ids: list[int]
    logprobs: list[float] | None
    finish_reason: str  # "stop" (a stop token) or "length" (max_tokens)


class Generator(Protocol):
    """Batched generation from token ids."""

    name: str
    has_logprobs: bool

    def generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        """One completion per prompt, in order."""
        ...
