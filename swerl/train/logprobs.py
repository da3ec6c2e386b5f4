"""Per-token log-probs (and entropy) through the LM head, in chunks of tokens, so that the
[tokens x vocab] float32 logits of a long sequence never exist at once.

    logp = token_logprobs(hidden, model.lm_head.weight, targets)   # hidden [B, T, H] or [N, H]
    logp = sequence_logprobs(model, input_ids, attention_mask)     # a HF causal LM, [B, T]
    logp = LogprobModel(model)(input_ids, attention_mask)          # the same as a module (FSDP)

How: `_ChunkedTokenLogprobs` (a torch.autograd.Function) computes each chunk's logits, reduces
them to one log-prob (and one entropy) per token, and keeps only the inputs and a per-token
log-sum-exp. Backward recomputes each chunk's logits and turns them into the gradients for the
hidden states and the head weight. Peak extra memory is O(chunk_size x vocab) instead of
O(tokens x vocab), for one extra head matmul in backward. A 65k-token trajectory with Qwen2.5's
152k vocabulary has 40 GB of float32 logits; a chunk of 1,024 tokens has 0.6 GB, and at most a
few chunk-sized buffers live at once (benchmarks/logprob_memory.py measures it).

Numerics follow Hugging Face's path: the head matmul runs in the inputs' dtype (in autocast's
dtype under `torch.autocast`, as `nn.Linear` would; backward recomputes in the same one), the
softmax and the returned log-probs in float32. Not covered: heads with a bias, logit soft-capping or logit scaling (Gemma, Cohere):
`sequence_logprobs` refuses a biased head; the others would give wrong numbers.

Sharded models (FSDP2): the chunked head reads `head.weight` directly instead of calling the
head module, so it must run where FSDP has that weight gathered. `LogprobModel` is the module to
shard as the FSDP root: FSDP all-gathers the root's own parameters (embeddings, final norm, LM
head: everything outside the decoder layers, which are their own units) in the root's
pre-forward hook and swaps the gathered tensors into the modules, so inside `forward`
`head.weight` is the full [vocab, hidden] weight; the head's gradient goes to that gathered
weight and FSDP reduce-scatters it after backward like any other. `swerl/train/update.py` shards
this way. Calling `sequence_logprobs` on a sharded model without the wrapper would read a
DTensor shard: unsupported.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _ChunkedTokenLogprobs(torch.autograd.Function):
    """log p(target) and entropy per token from hidden [N, H] and head weight [V, H]."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size, temperature, with_entropy):
        dtype = _compute_dtype(hidden)
        n = hidden.shape[0]
        logp = torch.empty(n, dtype=_softmax_dtype(dtype), device=hidden.device)
        lse = torch.empty_like(logp)
        entropy = torch.empty_like(logp) if with_entropy else None
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            for s in range(0, n, chunk_size):
                logits = _chunk_logits(hidden[s : s + chunk_size].to(dtype), w, temperature)
                lse[s : s + chunk_size] = torch.logsumexp(logits, dim=-1)
                tgt = logits.gather(-1, targets[s : s + chunk_size, None]).squeeze(-1)
                logp[s : s + chunk_size] = tgt - lse[s : s + chunk_size]
                if with_entropy:
                    # H = lse - sum_j p_j z_j
                    probs = torch.exp(logits - lse[s : s + chunk_size, None])
                    entropy[s : s + chunk_size] = lse[s : s + chunk_size] - (probs * logits).sum(-1)
                del logits
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.chunk_size, ctx.temperature, ctx.dtype = chunk_size, temperature, dtype
        ctx.set_materialize_grads(False)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        if grad_logp is None and grad_entropy is None:
            return None, None, None, None, None, None
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if need_h else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=lse.dtype, device=weight.device) if need_w else None
        )
        # the forward's precision, whatever autocast state backward runs under
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(ctx.dtype)
            for s in range(0, hidden.shape[0], ctx.chunk_size):
                rows = slice(s, s + ctx.chunk_size)
                h = hidden[rows].to(ctx.dtype)
                # Two [chunk, vocab] buffers at most: log p (reused for the entropy term) and grad_z.
                log_p = _chunk_logits(h, w, ctx.temperature).sub_(lse[rows, None])
                grad_z = log_p.exp()
                # d logp / d z = onehot(target) - p;  d H / d z = -p * (log p + H)
                # so grad_z = onehot * g_logp - p * (g_logp + g_H * (log p + H))
                g_logp = None if grad_logp is None else grad_logp[rows, None].to(lse.dtype)
                if grad_entropy is None:
                    coef = g_logp
                else:
                    coef = log_p.add_(entropy[rows, None]).mul_(
                        grad_entropy[rows, None].to(lse.dtype)
                    )
                    if g_logp is not None:
                        coef.add_(g_logp)
                grad_z.mul_(coef).neg_()
                if g_logp is not None:
                    grad_z.scatter_add_(-1, targets[rows, None], g_logp)
                del log_p, coef
                # z = h W^T / temperature
                grad_z = grad_z.div_(ctx.temperature).to(ctx.dtype)
                if need_h:
                    grad_hidden[rows] = (grad_z @ w).to(hidden.dtype)
                if need_w:
                    grad_weight += (grad_z.T @ h).to(lse.dtype)
                del grad_z
        if need_w:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


def _chunk_logits(hidden: Tensor, weight: Tensor, temperature: float) -> Tensor:
    return (hidden @ weight.T).to(_softmax_dtype(hidden.dtype)).div_(temperature)


def _compute_dtype(hidden: Tensor) -> torch.dtype:
    """The head matmul's dtype: autocast's (bf16 under `torch.autocast(..., torch.bfloat16)`)
    when autocast is on, as `nn.Linear` would run, else the hidden states' (float64 stays)."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device) and hidden.dtype != torch.float64:
        return torch.get_autocast_dtype(device)
    return hidden.dtype


def _softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    # float32 for bf16 / fp16 / fp32 logits (as Hugging Face upcasts logits), float64 stays
    return torch.promote_types(dtype, torch.float32)


def token_logprobs(
    hidden: Tensor,
    lm_head_weight: Tensor,
    targets: Tensor,
    chunk_size: int = 1024,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """log softmax(hidden @ W^T / temperature)[target] per token, in chunks of tokens.

    hidden [B, T, H] with targets [B, T], or [N, H] with [N]; lm_head_weight [V, H]. Returns
    log-probs shaped like `targets` (float32; float64 for float64 inputs), and with
    `return_entropy` also the entropy of each token's distribution (same shape). Differentiable
    w.r.t. hidden and the weight; equal to the full-logits `log_softmax(...).gather(...)` to
    float rounding.
    """
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} must be targets {tuple(targets.shape)} + [hidden_size]"
        )
    if lm_head_weight.ndim != 2 or lm_head_weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"lm_head_weight {tuple(lm_head_weight.shape)} must be [vocab, {hidden.shape[-1]}]"
        )
    if chunk_size < 1 or temperature <= 0:
        raise ValueError(
            f"need chunk_size >= 1 and temperature > 0, got {chunk_size}, {temperature}"
        )
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_targets = targets.reshape(-1).long()
    logp, entropy = _ChunkedTokenLogprobs.apply(
        flat_hidden, lm_head_weight, flat_targets, chunk_size, temperature, return_entropy
    )
    if return_entropy:
        return logp.view(targets.shape), entropy.view(targets.shape)
    return logp.view(targets.shape)


def sequence_logprobs(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    chunk_size: int = 1024,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Log-prob of each token of `input_ids` [B, T] under a Hugging Face causal LM, [B, T].

    Alignment: out[:, t] = log p(input_ids[:, t] | input_ids[:, :t]) for t >= 1, and out[:, 0] = 0
    (the first token has no prediction). So the result lines up with the trajectory's token ids,
    loss mask and sampler log-probs column for column. With `return_entropy`, entropy[:, t] is the
    entropy of the distribution that token t was drawn from (entropy[:, 0] = 0).

    Runs the decoder (`model.get_decoder()`) for hidden states and applies the chunked head
    (`model.get_output_embeddings()`), so the full logits never exist. Batches must be
    right-padded (position ids are not derived from `attention_mask`); padded positions hold
    meaningless values for the caller to mask. Sharded models: call it through `LogprobModel`.
    """
    head = model.get_output_embeddings()
    if head.bias is not None:
        raise ValueError(f"{type(model).__name__}: an LM head with a bias is not supported")
    hidden = model.get_decoder()(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False
    ).last_hidden_state
    out = token_logprobs(
        hidden[:, :-1], head.weight, input_ids[:, 1:], chunk_size, temperature, return_entropy
    )
    if return_entropy:
        logp, entropy = out
        return _prepend_zero(logp), _prepend_zero(entropy)
    return _prepend_zero(out)


class LogprobModel(nn.Module):
    """`sequence_logprobs` of a causal LM as a module: the unit to shard as the FSDP root (see the
    module docstring). Unsharded (one process, DDP) it is the same as calling the function."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        chunk_size: int = 1024,
        temperature: float = 1.0,
        return_entropy: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        return sequence_logprobs(
            self.lm, input_ids, attention_mask, chunk_size, temperature, return_entropy
        )


def _prepend_zero(x: Tensor) -> Tensor:
    return torch.nn.functional.pad(x, (1, 0))
