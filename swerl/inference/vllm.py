"""`vllm`: the in-process vLLM engine, token ids in, token ids and sampler log-probs out.

Rollout sampling is pinned (PAPER.md lesson 2): the engine is created with
`generation_config="vllm"` so the model's `generation_config.json` (Qwen ships top_k=20,
top_p=0.8, repetition_penalty=1.05) never becomes the default, every request passes every sampling
knob explicitly, and `effective_sampling` reads the settings back from the request object vLLM
actually received and refuses a mismatch. Log-probs are requested as `processed_logprobs`: the
log-probability under the distribution the token was drawn from (equal to the raw model
log-probs when sampling is unmodified, as in rollouts).

Needs a GPU and `pip install -e '.[vllm]'`; tests are marked `gpu`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swerl.inference.base import Completion, SamplingParams

PINNED_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_tokens")


class SamplingMismatch(RuntimeError):
    """The engine would sample differently from what was asked."""


def to_vllm(p: SamplingParams) -> Any:
    from vllm import SamplingParams as VllmSamplingParams

    return VllmSamplingParams(
        n=1,
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k if p.top_k > 0 else -1,
        min_p=p.min_p,
        repetition_penalty=p.repetition_penalty,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        max_tokens=p.max_tokens,
        stop_token_ids=list(p.stop_token_ids),
        seed=p.seed,  # a per-request stream: the draws do not depend on the batch
        logprobs=0,  # only the sampled token's log-prob
        detokenize=False,
        skip_special_tokens=False,
    )


def effective_sampling(vp: Any) -> dict[str, Any]:
    """The settings a vLLM request object will sample with, in our terms."""
    top_k = vp.top_k if vp.top_k and vp.top_k > 0 else 0
    return {
        "temperature": vp.temperature,
        "top_p": vp.top_p,
        "top_k": top_k,
        "min_p": vp.min_p,
        "repetition_penalty": vp.repetition_penalty,
        "max_tokens": vp.max_tokens,
    }


def check_pinned(requested: SamplingParams, vp: Any) -> None:
    got = effective_sampling(vp)
    want = {k: getattr(requested, k) for k in PINNED_FIELDS}
    diff = {k: (want[k], got[k]) for k in PINNED_FIELDS if want[k] != got[k]}
    if diff:
        raise SamplingMismatch(f"vLLM would sample with different settings (asked, got): {diff}")


class VLLMGenerator:
    name = "vllm"
    has_logprobs = True

    def __init__(
        self,
        model: str | Path,
        *,
        seed: int = 0,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "auto",
        enforce_eager: bool = False,
    ):
        from vllm import LLM

        path = Path(model)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a Hugging Face model directory (no config.json)"
            )
        self.llm = LLM(
            model=str(path),
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype=dtype,
            enforce_eager=enforce_eager,
            generation_config="vllm",
            logprobs_mode="processed_logprobs",
        )

    def generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        from vllm.inputs import TokensPrompt

        if len(prompts) != len(params):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling settings")
        vparams = [to_vllm(p) for p in params]
        for p, vp in zip(params, vparams, strict=True):
            check_pinned(p, vp)
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts], vparams, use_tqdm=False
        )
        completions = []
        for out in outputs:
            c = out.outputs[0]
            ids = list(c.token_ids)
            logprobs = [float(c.logprobs[i][t].logprob) for i, t in enumerate(ids)]
            completions.append(
                Completion(ids, logprobs, "stop" if c.finish_reason == "stop" else "length")
            )
        return completions
