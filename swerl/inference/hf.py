"""`hf` generator: transformers models on CPU or GPU, batched, with exact sampler log-probs.

Our own sampling loop over the model's forward pass (left padding, explicit position ids, a KV
cache) instead of `model.generate`: `generate` applies the model's `generation_config` (top_k=50
and friends) unless every knob is overridden, which is exactly the silent sampling change the
paper's lesson 2 warns about. Here only `SamplingParams` decides how a token is drawn, and the
log-prob returned for a token is taken from the same distribution it was drawn from.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from swerl.inference.base import Completion, SamplingParams

_LOADING = threading.Lock()


class HFGenerator:
    """Generates with a transformers causal LM. Not thread-safe: wrap it in a
    `BatchingGenerator` to serve concurrent episodes."""

    name = "hf"
    has_logprobs = True

    def __init__(
        self,
        model: str | Path | PreTrainedModel,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        pad_token_id: int | None = None,
        cpu_threads: int | None = 1,
    ):
        """`cpu_threads`: on the CPU, torch's intra-op threads for this process (process-wide;
        None leaves torch's setting). One by default: a small model's ops are too small to split,
        and OpenMP threads spin badly when sandboxes and other processes share the cores (a batch
        of 4 x 1,500-token prompts + 48 tokens took 12-26 s at 2 threads and 1.1-1.4 s at 1 on the
        loaded 2-core dev machine: benchmarks/hf_threads.py)."""
        if torch.device(device).type == "cpu" and cpu_threads is not None:
            torch.set_num_threads(cpu_threads)
        if isinstance(model, str | Path):
            path = Path(model)
            if not (path / "config.json").is_file():
                raise FileNotFoundError(
                    f"{path} is not a Hugging Face model directory (no config.json)"
                )
            with _LOADING:  # transformers' meta-device loading is not safe in parallel threads
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.pad_token_id = (
            pad_token_id if pad_token_id is not None else (model.config.pad_token_id or 0)
        )
        self.rng = torch.Generator(device=self.device).manual_seed(seed)

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        if len(prompts) != len(params):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling settings")
        if not prompts:
            return []
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        batch = len(prompts)
        width = max(map(len, prompts))
        ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every row's next token is at the end
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,  # the prompt's other positions need no logits
        )
        cache, logits = out.cache, out.logits[:, -1, :].float()
        next_pos = positions[:, -1] + 1

        tokens: list[list[int]] = [[] for _ in range(batch)]
        logprobs: list[list[float]] = [[] for _ in range(batch)]
        finish: list[str | None] = [None] * batch
        history = [list(p) for p in prompts]
        for _ in range(max(p.max_tokens for p in params)):
            dist = _distributions(logits, params, history)
            chosen = torch.multinomial(dist.exp(), 1, generator=self.rng)  # [batch, 1]
            chosen_lp = dist.gather(-1, chosen)[:, 0].tolist()
            for i, token in enumerate(chosen[:, 0].tolist()):
                if finish[i] is not None:  # a finished row's sample is discarded
                    continue
                tokens[i].append(token)
                logprobs[i].append(chosen_lp[i])
                history[i].append(token)
                if token in params[i].stop_token_ids:
                    finish[i] = "stop"
                elif len(tokens[i]) >= params[i].max_tokens:
                    finish[i] = "length"
            if all(f is not None for f in finish):
                break
            mask = torch.cat(
                [mask, torch.ones((batch, 1), dtype=mask.dtype, device=self.device)], 1
            )
            out = self.model(
                input_ids=chosen.to(self.device),
                attention_mask=mask,
                position_ids=next_pos[:, None],
                cache=cache,
                use_cache=True,
            )
            cache, logits = out.cache, out.logits[:, -1, :].float()
            next_pos = next_pos + 1
        return [Completion(tokens[i], logprobs[i], finish[i] or "length") for i in range(batch)]


def _distributions(
    logits: torch.Tensor, params: list[SamplingParams], histories: list[list[int]]
) -> torch.Tensor:
    """[batch, vocab] log-probabilities each row samples from: one batched computation when the
    rows share their settings (the rollout case), row by row otherwise."""
    first = params[0]
    same = all(
        (p.temperature, p.top_p, p.top_k, p.min_p, p.repetition_penalty)
        == (first.temperature, first.top_p, first.top_k, first.min_p, first.repetition_penalty)
        for p in params
    )
    if same and first.repetition_penalty == 1.0:
        return _distribution(logits, first, [])
    return torch.stack([_distribution(logits[i], p, histories[i]) for i, p in enumerate(params)])


def _distribution(logits: torch.Tensor, p: SamplingParams, history: list[int]) -> torch.Tensor:
    """Log-probabilities of the distribution `p` samples from, given raw next-token logits
    (over the last dimension; `history` is used for the repetition penalty of a 1-D row)."""
    if p.repetition_penalty != 1.0:
        assert logits.dim() == 1, "the repetition penalty is applied row by row"
        seen = torch.tensor(sorted(set(history)), dtype=torch.long, device=logits.device)
        values = logits[seen]
        logits = logits.clone()
        logits[seen] = torch.where(
            values > 0, values / p.repetition_penalty, values * p.repetition_penalty
        )
    logp = torch.log_softmax(logits / p.temperature, dim=-1)
    if p.top_k == 0 and p.min_p == 0.0 and p.top_p == 1.0:
        return logp
    keep = torch.ones_like(logp, dtype=torch.bool)
    if p.top_k:
        kth = torch.topk(logp, min(p.top_k, logp.shape[-1]), dim=-1).values[..., -1:]
        keep &= logp >= kth
    if p.min_p:
        keep &= logp >= logp.max(dim=-1, keepdim=True).values + torch.log(torch.tensor(p.min_p))
    if p.top_p < 1.0:
        sorted_lp, order = torch.sort(logp, dim=-1, descending=True)
        before = torch.cumsum(sorted_lp.exp(), -1) - sorted_lp.exp()  # mass before each token
        keep &= torch.zeros_like(keep).scatter(-1, order, before < p.top_p)
    return torch.log_softmax(logp.masked_fill(~keep, float("-inf")), dim=-1)
