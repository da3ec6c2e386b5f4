"""`hf` generator: transformers models on CPU or GPU, batched, with exact sampler log-probs.

Our own sampling loop over the model's forward pass (left padding, explicit position ids, a KV
cache) instead of `model.generate`: `generate` applies the model's `generation_config` (top_k=50
and friends) unless every knob is overridden, which is exactly the silent sampling change the
paper's lesson 2 warns about. Here only `SamplingParams` decides how a token is drawn, and the
log-prob returned for a token is taken from the same distribution it was drawn from.

A prefix cache keeps the keys and values of recent sequences (each prompt with the tokens sampled
after it), so the next turn of an episode - the same ids plus an observation - only runs its new
tokens through the model, and a group's samples share their prompt's. Like vLLM's automatic prefix
caching it is keyed by token ids alone, so it needs no episode identity and never changes what is
sampled: the keys and values of a prefix are those a fresh pass computes (causal attention), to
float rounding.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.cache_utils import Cache, DynamicLayer

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
        prefix_cache_tokens: int = 65536,
    ):
        """`cpu_threads`: on the CPU, torch's intra-op threads for this process (process-wide;
        None leaves torch's setting). One by default: a small model's ops are too small to split,
        and OpenMP threads spin badly when sandboxes and other processes share the cores (a batch
        of 4 x 1,500-token prompts + 48 tokens took 12-26 s at 2 threads and 1.1-1.4 s at 1 on the
        loaded 2-core dev machine: benchmarks/hf_threads.py).

        `prefix_cache_tokens`: how many tokens of keys and values the prefix cache may hold
        (least recently used sequences go first; 0 turns it off). Call `clear_prefix_cache()`
        after changing the model's weights in place."""
        if prefix_cache_tokens < 0:
            raise ValueError(f"prefix_cache_tokens must be >= 0, got {prefix_cache_tokens}")
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
        text = model.config.get_text_config()
        self.layers = text.num_hidden_layers
        # our preallocated cache holds full-attention layers only; others keep transformers' own
        self.full_attention = not getattr(text, "use_sliding_window", False) and all(
            t == "full_attention" for t in getattr(text, "layer_types", None) or ["full_attention"]
        )
        self.prefix_cache = _PrefixCache(prefix_cache_tokens if self.full_attention else 0)
        self.prompt_tokens = 0  # prompt tokens asked for ...
        self.prefill_tokens = 0  # ... and those run through the model (the rest were cached)

    def clear_prefix_cache(self) -> None:
        self.prefix_cache.clear()

    def _cache(self, hits: list[tuple[int | None, int]], past: int, capacity: int) -> Cache | None:
        """The batch's keys and values: room for `capacity` positions, the first `past` holding
        each row's cached prefix right-aligned (writing into one buffer instead of transformers'
        concatenation per token, which copied the whole cache at every step)."""
        if not self.full_attention:
            return None
        prefix = self.prefix_cache.batch(hits, past) if past else [None] * self.layers
        return Cache(layers=[_Preallocated(capacity, p) for p in prefix])

    def _prefill(self, prompts: list[list[int]], room: int) -> _Prefill:
        """Run each prompt's uncached tokens through the model, with `room` more positions in
        the keys and values for decoding."""
        batch = len(prompts)
        hits = [self.prefix_cache.lookup(p) for p in prompts]
        cached = [n for _, n in hits]
        new = [len(p) - n for p, n in zip(prompts, cached, strict=True)]
        past, width = max(cached), max(new)
        self.prefill_tokens += sum(new)
        # row i: [pad | its cached prefix] [pad | its new tokens], each segment right-aligned
        ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((batch, past + width), dtype=torch.long)
        positions = torch.zeros((batch, width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - new[i] :] = torch.tensor(p[cached[i] :])
            mask[i, past - cached[i] : past] = 1
            mask[i, past + width - new[i] :] = 1
            positions[i, width - new[i] :] = torch.arange(cached[i], len(p))
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self._cache(hits, past, past + width + room),
            use_cache=True,
            logits_to_keep=1,  # the prompt's other positions need no logits
        )
        return _Prefill(
            out.cache, out.logits[:, -1, :].float(), mask, positions, hits, cached, new, past, width
        )

    def _share_prefixes(self, prompts: list[list[int]]) -> None:
        """Run once, and cache, each long prefix that several uncached prompts share (a group's
        samples share their whole prompt, tasks share the system prompt), so the batch's prefill
        does not compute it once per row."""
        if not self.prefix_cache.capacity or len(prompts) < 2:
            return
        cached = [self.prefix_cache.lookup(p)[1] for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: prompts[i])
        shared: dict[tuple[int, ...], None] = {}  # ordered set of prefixes worth running once
        for a, b in itertools.pairwise(order):
            n = _common_prefix(prompts[a], prompts[b])
            n = min(n, len(prompts[a]) - 1, len(prompts[b]) - 1)  # keep a token to run each
            if n - max(cached[a], cached[b]) >= _MIN_SHARED:
                shared[tuple(prompts[a][:n])] = None
        # of nested prefixes keep the longest: its keys and values serve the shorter ones
        keys = sorted(shared, key=len, reverse=True)
        keep = [k for i, k in enumerate(keys) if not any(o[: len(k)] == k for o in keys[:i])]
        if keep:
            prefixes = [list(k) for k in keep]
            run = self._prefill(prefixes, 0)
            for i, prefix in enumerate(prefixes):
                run.store(self.prefix_cache, i, prefix)

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        if len(prompts) != len(params):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling settings")
        if not prompts:
            return []
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        batch = len(prompts)
        self.prompt_tokens += sum(map(len, prompts))
        self._share_prefixes(prompts)
        run = self._prefill(prompts, max(p.max_tokens for p in params))
        cache, logits, mask = run.cache, run.logits, run.mask
        next_pos = run.positions[:, -1] + 1

        draws = _Draws(params, self.rng, self.device)
        tokens: list[list[int]] = [[] for _ in range(batch)]
        logprobs: list[list[float]] = [[] for _ in range(batch)]
        finish: list[str | None] = [None] * batch
        history = [list(p) for p in prompts]
        fed = 0  # decoding steps whose tokens went through the model (and so into `cache`)
        for step in range(max(p.max_tokens for p in params)):
            dist = _distributions(logits, params, history)
            chosen = _sample(dist, draws.uniform(step))  # [batch, 1]
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
            fed += 1
        for i, p in enumerate(prompts):
            keep = min(fed, len(tokens[i]))  # a finished row's later columns are discarded
            run.store(self.prefix_cache, i, p + tokens[i][:keep])
        return [Completion(tokens[i], logprobs[i], finish[i] or "length") for i in range(batch)]


_MIN_SHARED = 32  # tokens a shared prefix must save to be run on its own


def _common_prefix(a: list[int] | np.ndarray, b: list[int] | np.ndarray) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(differ[0]) if len(differ) else n


@dataclass
class _Prefill:
    """A prefill's output and the layout of its keys and values (see `HFGenerator._prefill`)."""

    cache: Cache
    logits: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    hits: list[tuple[int | None, int]]
    cached: list[int]
    new: list[int]
    past: int
    width: int

    def store(self, prefix_cache: _PrefixCache, row: int, ids: list[int]) -> None:
        """Keep row `row`'s keys and values for `ids`: its prompt and the first decoded ones."""
        if not prefix_cache.capacity:
            return
        decoded = len(ids) - self.cached[row] - self.new[row]
        columns = torch.cat(
            [
                torch.arange(self.past - self.cached[row], self.past),
                torch.arange(
                    self.past + self.width - self.new[row], self.past + self.width + decoded
                ),
            ]
        ).to(self.logits.device)
        prefix_cache.store(ids, self.cache, row, columns, self.hits[row])


@dataclass
class _Entry:
    ids: np.ndarray
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [1, heads, n, dim]


class _PrefixCache:
    """Keys and values of recent token sequences, least recently used evicted first."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.entries: OrderedDict[int, _Entry] = OrderedDict()
        self.tokens = 0
        self._next = 0

    def clear(self) -> None:
        self.entries.clear()
        self.tokens = 0

    def lookup(self, prompt: list[int]) -> tuple[int | None, int]:
        """The entry sharing the longest prefix with `prompt` and that length, which leaves at
        least one token to run (its logits are the next token's)."""
        if not self.entries:
            return None, 0
        ids = np.asarray(prompt)
        best, best_n = None, 0
        for key, entry in self.entries.items():
            if min(len(entry.ids), len(ids) - 1) <= best_n:
                continue
            n = _common_prefix(entry.ids, ids[:-1])  # leave the prompt's last token to run
            if n > best_n:
                best, best_n = key, n
        if best is not None:
            self.entries.move_to_end(best)
        return best, best_n

    def batch(
        self, hits: list[tuple[int | None, int]], width: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A batch's past, per layer: each row's cached prefix right-aligned in `width` columns."""
        first = next(self.entries[k] for k, _ in hits if k is not None)
        layers = []
        for layer, (k0, v0) in enumerate(first.layers):
            keys = k0.new_zeros((len(hits), k0.shape[1], width, k0.shape[3]))
            values = v0.new_zeros((len(hits), v0.shape[1], width, v0.shape[3]))
            for row, (key, n) in enumerate(hits):
                if key is not None and n:
                    k, v = self.entries[key].layers[layer]
                    keys[row, :, width - n :] = k[0, :, :n]
                    values[row, :, width - n :] = v[0, :, :n]
            layers.append((keys, values))
        return layers

    def store(
        self,
        ids: list[int],
        cache: Cache,
        row: int,
        columns: torch.Tensor,
        hit: tuple[int | None, int],
    ) -> None:
        """Keep row `row`'s keys and values at `columns` (those of `ids`, in order)."""
        key, n = hit
        if key is not None and key in self.entries and n == len(self.entries[key].ids):
            self.tokens -= len(self.entries.pop(key).ids)  # the new entry extends it
        entry = _Entry(
            np.asarray(ids),
            [
                (layer.keys[row : row + 1, :, columns], layer.values[row : row + 1, :, columns])
                for layer in cache.layers
            ],
        )
        self.entries[self._next] = entry
        self._next += 1
        self.tokens += len(ids)
        while self.tokens > self.capacity and self.entries:
            self.tokens -= len(self.entries.popitem(last=False)[1].ids)


class _Preallocated(DynamicLayer):
    """A full-attention layer's keys and values in one buffer of `capacity` positions."""

    def __init__(self, capacity: int, prefix: tuple[torch.Tensor, torch.Tensor] | None):
        super().__init__()
        self.capacity = capacity
        if prefix is not None:
            self._allocate(*prefix)
            self._buffers[0][:, :, : prefix[0].shape[2]] = prefix[0]
            self._buffers[1][:, :, : prefix[1].shape[2]] = prefix[1]
            self._length = prefix[0].shape[2]
            self.keys, self.values = prefix

    def _allocate(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.device, self.is_initialized = keys.device, True
        self._buffers = (
            keys.new_empty((*keys.shape[:2], self.capacity, keys.shape[3])),
            values.new_empty((*values.shape[:2], self.capacity, values.shape[3])),
        )
        self._length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self._allocate(key_states, value_states)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self._allocate(key_states, value_states)
        start, end = self._length, self._length + key_states.shape[2]
        if end > self.capacity:
            raise RuntimeError(f"key/value buffer of {self.capacity} positions overflowed")
        self._buffers[0][:, :, start:end] = key_states
        self._buffers[1][:, :, start:end] = value_states
        self._length = end
        self.keys, self.values = self._buffers[0][:, :, :end], self._buffers[1][:, :, :end]
        return self.keys, self.values


class _Draws:
    """The uniform numbers a batch's rows sample with, one per row and decoding step. A row whose
    request has a `seed` reads its own stream (`torch.Generator` seeded with it: step t of that
    request draws the same number in any batch, at any position); the other rows share the
    generator's stream, drawn step by step in row order."""

    def __init__(self, params: list[SamplingParams], rng: torch.Generator, device: torch.device):
        self.rng, self.device, self.batch = rng, device, len(params)
        self.seeded = [i for i, p in enumerate(params) if p.seed is not None]
        self.own = None
        if self.seeded:  # row j: the first max_tokens draws of its request's stream
            own = torch.zeros((len(self.seeded), max(p.max_tokens for p in params)))
            for j, i in enumerate(self.seeded):
                seed, n = params[i].seed, params[i].max_tokens
                own[j, :n] = torch.rand(n, generator=torch.Generator().manual_seed(seed))
            self.own = own.to(device)

    def uniform(self, step: int) -> torch.Tensor:
        """[batch, 1] draws in [0, 1) for decoding step `step` (a finished row's are ignored)."""
        if len(self.seeded) < self.batch:
            u = torch.rand((self.batch, 1), generator=self.rng, device=self.device)
        else:
            u = torch.zeros((self.batch, 1), device=self.device)
        if self.own is not None:
            u[self.seeded, 0] = self.own[:, step]
        return u


def _sample(logp: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One token per row drawn from log-probabilities [batch, vocab] by inverting the CDF at the
    row's `uniform` draw [batch, 1] (what `torch.multinomial` does, minus its exponential draw over
    the whole vocabulary)."""
    cdf = logp.exp().cumsum(-1)
    u = uniform * cdf[:, -1:]
    chosen = torch.searchsorted(cdf, u, right=True)  # first token whose CDF exceeds u
    over = chosen >= logp.shape[-1]  # u rounded up to the total: the last token with mass
    if over.any():
        chosen[over] = torch.searchsorted(cdf, cdf[:, -1:], right=False)[over]
    return chosen


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
