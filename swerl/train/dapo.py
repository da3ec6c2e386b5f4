"""The math of one DAPO update (PAPER.md section 6), as plain functions on tensors.

    adv = group_advantages(rewards, task_ids)              # one float per trajectory
    keep = nonzero_advantage_mask(adv)                     # drop groups with no signal
    loss, metrics = policy_loss(logprobs, old_logprobs, adv, loss_mask)
    loss.backward()

Read it top to bottom: the `ALGO` blocks are the paper's equations, the rest is input checking
and metrics. The update loop (minibatches, optimizer, checkpoints) lives elsewhere and calls these.

Where we deviate from, or add to, the paper:
- Advantages divide by the *sample* standard deviation of the group (Bessel's correction,
  `torch.std`'s default), as GRPO/DAPO reference code does (TRL's GRPOTrainer, verl), so our
  advantages match theirs for the same rewards. The population std would scale every advantage of
  a G-sample group by sqrt(G / (G - 1)) (1.054 for G = 10); Adam is nearly invariant to that.
  A group of one sample has no sample std: its advantage is 0.
- A group whose rewards all lie within `tol` of each other carries no signal: its advantages are
  exactly 0 (float noise such as 0.1 + 0.2 != 0.3 must not become a +-1 advantage through the
  division by a tiny std), and `nonzero_advantage_mask` drops it (PAPER.md section 9).
- Optional truncated importance sampling (TIS) against the sampler's log-probs, for when the
  inference engine and the trainer disagree on pi_old (Yao et al. 2025, "Your efficient RL
  framework secretly brings you off-policy RL training"): each token's surrogate is multiplied by
  the constant weight min(pi_old / pi_sampler, tis_cap). Off by default: the paper has no such term.
- `sampler_gap` measures that disagreement; the update loop logs it every update.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor


def group_advantages(
    rewards: Tensor | Sequence[float],
    group_ids: Sequence[Hashable] | Tensor,
    scale_by_std: bool = True,
    eps: float = 1e-6,
    tol: float = 1e-6,
) -> Tensor:
    """Group-normalised advantages A_i = (R_i - mean_g) / (std_g + eps), float64, shape [n].

    `group_ids[i]` names trajectory i's group (any hashable, e.g. a task id string; or an integer
    tensor). std_g is the sample std (n - 1 in the denominator, see the module docstring).
    `scale_by_std=False` returns R_i - mean_g. Groups whose rewards span at most `tol`
    (max - min) get A = 0 exactly, and so does a group of one sample.
    """
    r = torch.as_tensor(rewards, dtype=torch.float64).detach().cpu()
    if r.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {tuple(r.shape)}")
    if len(group_ids) != r.numel():
        raise ValueError(f"{r.numel()} rewards but {len(group_ids)} group ids")
    if not torch.isfinite(r).all():
        raise ValueError(f"rewards must be finite, got {r.tolist()}")
    if isinstance(group_ids, Tensor):  # tensor elements hash by identity, their values do not
        group_ids = group_ids.tolist()
    index: dict[Hashable, int] = {}
    g = torch.tensor([index.setdefault(gid, len(index)) for gid in group_ids], dtype=torch.long)
    n_groups = len(index)

    def per_group(values: Tensor, reduce: str) -> Tensor:
        out = torch.zeros(n_groups, dtype=torch.float64)
        return out.scatter_reduce(0, g, values, reduce=reduce, include_self=False)

    # ALGO: A_i = (R_i - mean) / (std + eps), std with Bessel's correction
    count = torch.bincount(g, minlength=n_groups).to(torch.float64)
    mean = per_group(r, "sum") / count
    centered = r - mean[g]
    if scale_by_std:
        var = per_group(centered**2, "sum") / (count - 1).clamp(min=1)
        advantages = centered / (var.sqrt()[g] + eps)
    else:
        advantages = centered
    # ALGO: no signal in a group of (numerically) equal rewards, or of a single sample
    spread = per_group(r, "amax") - per_group(r, "amin")
    flat = (spread <= tol) | (count < 2)
    return torch.where(flat[g], torch.zeros_like(advantages), advantages)


def solved_group_mask(
    resolved: Sequence[bool | None], group_ids: Sequence[Hashable] | Tensor
) -> Tensor:
    """Bool mask of the samples whose group holds at least one resolved sample (None counts as
    unresolved). An option, not the paper's: with the turn penalty, a group with no success still
    has spread (quick failures above slow ones), and its advantages teach how to fail, not how to
    resolve; `UpdateConfig.drop_unsolved` drops such groups."""
    if len(group_ids) != len(resolved):
        raise ValueError(f"{len(resolved)} resolved flags but {len(group_ids)} group ids")
    if isinstance(group_ids, Tensor):
        group_ids = group_ids.tolist()
    solved = {gid for gid, r in zip(group_ids, resolved, strict=True) if r}
    return torch.tensor([gid in solved for gid in group_ids], dtype=torch.bool)


def nonzero_advantage_mask(advantages: Tensor, tol: float = 1e-6) -> Tensor:
    """Bool mask of the samples to train on: |A| > tol (the paper's "drop samples with A = 0")."""
    return advantages.abs() > tol


def keep_mask(
    rewards: Tensor | Sequence[float],
    group_ids: Sequence[Hashable] | Tensor,
    resolved: Sequence[bool | None] | None = None,
    *,
    scale_by_std: bool = True,
    eps: float = 1e-6,
    tol: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """(advantages, keep): the update's sample filter in one place, for the update itself and
    for dynamic sampling's count. `resolved` given: also drop groups with no resolved sample
    (`drop_unsolved`)."""
    adv = group_advantages(rewards, group_ids, scale_by_std=scale_by_std, eps=eps, tol=tol)
    keep = nonzero_advantage_mask(adv, tol)
    if resolved is not None:
        keep &= solved_group_mask(resolved, group_ids)
    return adv, keep


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    sampler_logprobs: Tensor | None = None,
    tis_cap: float | None = None,
    num_tokens: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Negated DAPO clipped surrogate, token-level mean; returns (loss, metrics).

    logprobs, old_logprobs, mask (and sampler_logprobs): [batch, tokens]; advantages: [batch].
    Only `logprobs` receives gradient; the others are treated as constants. Masked-out tokens
    (mask 0: prompts, observations, padding) may hold any value, inf included.

    `num_tokens`: the divisor of the token-level mean, default mask.sum(). When a minibatch is
    split into micro-batches for gradient accumulation, pass the action-token count of the whole
    minibatch, so that the summed gradients equal the minibatch's token-level mean.

    `sampler_logprobs` and `tis_cap` go together: truncated importance sampling (module docstring).

    metrics: clip_frac_low / clip_frac_high (fraction of action tokens where the clipped term is
    the one min() picks and it differs from the unclipped term, on the 1 - eps_low / 1 + eps_high
    side), ratio_mean / ratio_max over action tokens, tokens; with TIS also tis_weight_mean and
    tis_capped_frac.
    """
    # plumbing: shapes, constants, masked positions made harmless before exp()
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape or logprobs.ndim != 2:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} and "
            f"mask {tuple(mask.shape)} must share one [batch, tokens] shape"
        )
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(
            f"advantages {tuple(advantages.shape)} must be [batch={logprobs.shape[0]}]"
        )
    if (sampler_logprobs is None) != (tis_cap is None):
        raise ValueError("truncated importance sampling needs both sampler_logprobs and tis_cap")
    mask = mask.bool()
    n_masked = int(mask.sum())
    if n_masked == 0:
        raise ValueError("mask selects no token: nothing to train on")
    denominator = n_masked if num_tokens is None else num_tokens
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    old = old_logprobs.detach().to(logprobs.dtype)
    adv = advantages.detach().to(device=logprobs.device, dtype=logprobs.dtype)[:, None]

    # ALGO: rho = pi_theta / pi_old; J = min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)
    ratio = torch.exp(torch.where(mask, logprobs - old, zero))
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * adv
    surrogate = torch.minimum(unclipped, clipped)

    # ALGO (optional, not in the paper): TIS weight min(pi_old / pi_sampler, cap), a constant
    if sampler_logprobs is not None:
        sampler_log_ratio = old - sampler_logprobs.detach().to(logprobs.dtype)
        tis_weight = torch.exp(torch.where(mask, sampler_log_ratio, zero)).clamp(max=tis_cap)
        surrogate = surrogate * tis_weight

    # ALGO: token-level mean over every action token of the batch (not a mean of sequence means)
    loss = -torch.where(mask, surrogate, zero).sum() / denominator

    # plumbing: metrics over action tokens
    with torch.no_grad():
        active = clipped < unclipped
        ratio_m = ratio[mask]
        metrics = {
            "clip_frac_low": float((active & (ratio < 1 - eps_low))[mask].float().mean()),
            "clip_frac_high": float((active & (ratio > 1 + eps_high))[mask].float().mean()),
            "ratio_mean": float(ratio_m.mean()),
            "ratio_max": float(ratio_m.max()),
            "tokens": float(n_masked),
        }
        if sampler_logprobs is not None:
            raw = torch.exp(sampler_log_ratio[mask])
            metrics["tis_weight_mean"] = float(raw.clamp(max=tis_cap).mean())
            metrics["tis_capped_frac"] = float((raw > tis_cap).float().mean())
    return loss, metrics


def sampler_gap(
    trainer_logprobs: Tensor, sampler_logprobs: Tensor, mask: Tensor
) -> dict[str, float]:
    """How far the sampler's log-probs are from the trainer's, over action tokens.

    logprob_abs_diff: mean |log pi_trainer - log pi_sampler|.
    kl_k3: Schulman's k3 estimate of KL(pi_sampler || pi_trainer) from tokens sampled by the
    sampler, mean of (r - 1) - log r with r = pi_trainer / pi_sampler; unbiased, always >= 0.
    Both are 0 when the two engines agree exactly (PAPER.md section 8, lesson 2).
    """
    if trainer_logprobs.shape != sampler_logprobs.shape or trainer_logprobs.shape != mask.shape:
        raise ValueError(
            f"trainer_logprobs {tuple(trainer_logprobs.shape)}, sampler_logprobs "
            f"{tuple(sampler_logprobs.shape)} and mask {tuple(mask.shape)} must share one shape"
        )
    mask = mask.bool()
    if not mask.any():
        raise ValueError("mask selects no token")
    with torch.no_grad():
        log_r = (trainer_logprobs.double() - sampler_logprobs.double())[mask]
        return {
            "logprob_abs_diff": float(log_r.abs().mean()),
            "kl_k3": float((torch.expm1(log_r) - log_r).mean()),
        }
