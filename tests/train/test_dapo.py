"""DAPO math against hand-computed values (PAPER.md section 6)."""

import math

import pytest
import torch

from swerl.train.dapo import (
    group_advantages,
    nonzero_advantage_mask,
    policy_loss,
    sampler_gap,
    solved_group_mask,
)

# --- advantages -----------------------------------------------------------------------------

# group "a": [1, 0, 0, 0] -> mean 0.25, sample std sqrt(0.75 / 3) = 0.5
# group "b": [0.5, -0.5]  -> mean 0, sample std sqrt(0.5)
# group "c": [1, 1, 1]    -> no signal
IDS = ["a", "b", "a", "c", "a", "b", "a", "c", "c"]
REWARDS = [1.0, 0.5, 0.0, 1.0, 0.0, -0.5, 0.0, 1.0, 1.0]


def test_group_advantages_use_the_sample_std():
    adv = group_advantages(REWARDS, IDS, eps=0.0)
    s = 1 / math.sqrt(0.5)  # 0.5 / sqrt(0.5)
    expected = [1.5, s * 0.5, -0.5, 0.0, -0.5, -s * 0.5, -0.5, 0.0, 0.0]
    assert adv.dtype == torch.float64
    torch.testing.assert_close(adv, torch.tensor(expected, dtype=torch.float64))
    # the same as torch.std's default (unbiased) on each group
    a = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(adv[[0, 2, 4, 6]], (a - a.mean()) / a.std())


def test_group_advantages_eps_and_no_scaling():
    adv = group_advantages(torch.tensor(REWARDS), IDS, eps=0.5)
    assert adv[0].item() == pytest.approx(0.75 / (0.5 + 0.5))
    centered = group_advantages(REWARDS, IDS, scale_by_std=False)
    expected = [0.75, 0.5, -0.25, 0.0, -0.25, -0.5, -0.25, 0.0, 0.0]
    torch.testing.assert_close(centered, torch.tensor(expected, dtype=torch.float64))


def test_equal_rewards_with_float_noise_are_dropped():
    rewards = [0.1 + 0.2, 0.3, 0.30000000000000004, 1.0, 0.0]
    ids = ["noisy", "noisy", "noisy", 7, 7]
    # the trap: the naive formula turns float noise into +-1 advantages
    noisy = torch.tensor(rewards[:3], dtype=torch.float64)
    assert 0 < noisy.std() < 1e-15
    assert ((noisy - noisy.mean()) / noisy.std()).abs().max() > 0.5
    for eps in (0.0, 1e-6):
        adv = group_advantages(rewards, ids, eps=eps)
        assert adv[:3].tolist() == [0.0, 0.0, 0.0]
        assert nonzero_advantage_mask(adv).tolist() == [False, False, False, True, True]


def test_group_ids_may_be_ints_or_a_tensor():
    by_name = group_advantages(REWARDS, IDS)
    codes = [ord(name) for name in IDS]
    torch.testing.assert_close(group_advantages(REWARDS, codes), by_name)
    torch.testing.assert_close(group_advantages(REWARDS, torch.tensor(codes)), by_name)


def test_single_sample_group_has_no_advantage():
    adv = group_advantages([1.0, 0.0, 1.0], ["x", "y", "y"])
    assert adv[0].item() == 0.0
    assert adv[1].item() < 0 < adv[2].item()


def test_nonzero_advantage_mask_uses_a_tolerance():
    adv = torch.tensor([1.5, 0.0, 1e-9, -0.5, -1e-7])
    assert nonzero_advantage_mask(adv).tolist() == [True, False, False, True, False]


def test_group_advantages_reject_bad_input():
    with pytest.raises(ValueError, match="2 rewards but 3 group ids"):
        group_advantages([1.0, 0.0], ["a", "a", "b"])
    with pytest.raises(ValueError, match="finite"):
        group_advantages([1.0, float("nan")], ["a", "a"])


# --- policy loss ----------------------------------------------------------------------------


def lp(*ratios: float) -> torch.Tensor:
    """log-probs of one-token sequences with old log-prob 0, so rho = the given ratio."""
    return torch.tensor([[math.log(r)] for r in ratios], requires_grad=True)


def test_both_clip_sides_by_hand():
    # eps_low 0.2, eps_high 0.28; per token J = min(rho A, clip(rho, 0.8, 1.28) A):
    #   A=+1 rho=1.5 -> min(1.5, 1.28) = 1.28    clipped (high side)
    #   A=-1 rho=0.5 -> min(-0.5, -0.8) = -0.8   clipped (low side)
    #   A=+1 rho=0.5 -> min(0.5, 0.8) = 0.5      not clipped: min keeps the unclipped term
    #   A=-1 rho=1.5 -> min(-1.5, -1.28) = -1.5  not clipped
    logprobs = lp(1.5, 0.5, 0.5, 1.5)
    old = torch.zeros(4, 1)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss, m = policy_loss(logprobs, old, adv, torch.ones(4, 1), eps_low=0.2, eps_high=0.28)
    assert loss.item() == pytest.approx(-(1.28 - 0.8 + 0.5 - 1.5) / 4)
    assert m["clip_frac_high"] == 0.25
    assert m["clip_frac_low"] == 0.25
    assert m["ratio_mean"] == pytest.approx(1.0)
    assert m["ratio_max"] == pytest.approx(1.5)
    assert m["tokens"] == 4
    loss.backward()
    # d(-J/4)/d logp = -rho A / 4 where unclipped, 0 where clipped
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0], [0.0], [-0.125], [0.375]]))


def test_masked_tokens_are_ignored_even_when_huge():
    logprobs = torch.tensor([[math.log(1.1), 0.0, 1e4], [math.log(0.9), 1e4, -1e4]])
    logprobs.requires_grad_(True)
    old = torch.tensor([[0.0, 0.0, -1e4], [0.0, -1e4, 1e4]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv = torch.tensor([2.0, -1.0])
    loss, m = policy_loss(logprobs, old, adv, mask)
    # tokens: 1.1 * 2, 1.0 * 2, 0.9 * -1
    assert loss.item() == pytest.approx(-(2.2 + 2.0 - 0.9) / 3)
    assert m["ratio_max"] == pytest.approx(1.1)
    loss.backward()
    assert torch.isfinite(logprobs.grad).all()
    assert logprobs.grad[mask == 0].abs().max() == 0


def test_token_level_mean_is_not_a_mean_of_sequence_means():
    # sequence 0: 3 action tokens, rho 1.1, A = +1 -> J = 1.1 per token
    # sequence 1: 1 action token,  rho 1.0, A = -1 -> J = -1
    logprobs = torch.tensor([[math.log(1.1)] * 3, [0.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv = torch.tensor([1.0, -1.0])
    loss, _ = policy_loss(logprobs, torch.zeros(2, 3), adv, mask)
    token_mean = (3 * 1.1 - 1.0) / 4  # 0.575
    sequence_mean = (1.1 + -1.0) / 2  # 0.05
    assert loss.item() == pytest.approx(-token_mean)
    assert loss.item() != pytest.approx(-sequence_mean)


def test_num_tokens_makes_micro_batches_add_up_to_the_batch():
    torch.manual_seed(0)
    logprobs = (torch.randn(4, 6) * 0.1).requires_grad_(True)
    old = torch.zeros(4, 6)
    adv = torch.tensor([1.0, -0.5, 2.0, -1.0])
    mask = torch.tensor([[1] * 6, [1] * 2 + [0] * 4, [0] * 3 + [1] * 3, [1] * 5 + [0]])
    full, _ = policy_loss(logprobs, old, adv, mask)
    full.backward()
    expected = logprobs.grad.clone()
    logprobs.grad = None
    total = float(mask.sum())
    for rows in (slice(0, 1), slice(1, 4)):
        part, _ = policy_loss(logprobs[rows], old[rows], adv[rows], mask[rows], num_tokens=total)
        part.backward()
    torch.testing.assert_close(logprobs.grad, expected)


def test_gradient_flows_only_into_logprobs():
    logprobs = torch.full((2, 2), -1.0, requires_grad=True)
    old = torch.full((2, 2), -1.1, requires_grad=True)
    sampler = torch.full((2, 2), -1.2, requires_grad=True)
    adv = torch.tensor([1.0, -1.0], requires_grad=True)
    loss, _ = policy_loss(logprobs, old, adv, torch.ones(2, 2), sampler_logprobs=sampler, tis_cap=2)
    loss.backward()
    assert logprobs.grad is not None and logprobs.grad.abs().sum() > 0
    assert old.grad is None and adv.grad is None and sampler.grad is None


def test_truncated_importance_sampling_by_hand():
    # rho = 1 everywhere (logprobs == old), A = 1, so J = TIS weight:
    #   old 0, sampler log 0.5 -> pi_old / pi_sampler = 2, capped at 1.5
    #   old 0, sampler log 2   -> 0.5
    logprobs = torch.zeros(1, 2, requires_grad=True)
    sampler = torch.tensor([[math.log(0.5), math.log(2.0)]])
    loss, m = policy_loss(
        logprobs, torch.zeros(1, 2), torch.ones(1), torch.ones(1, 2),
        sampler_logprobs=sampler, tis_cap=1.5,
    )  # fmt: skip
    assert loss.item() == pytest.approx(-(1.5 + 0.5) / 2)
    assert m["tis_weight_mean"] == pytest.approx(1.0)
    assert m["tis_capped_frac"] == 0.5
    with pytest.raises(ValueError, match="both sampler_logprobs and tis_cap"):
        policy_loss(logprobs, torch.zeros(1, 2), torch.ones(1), torch.ones(1, 2), tis_cap=1.5)


def test_policy_loss_rejects_bad_shapes_and_empty_masks():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="one \\[batch, tokens\\] shape"):
        policy_loss(x, torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(x, x, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="no token"):
        policy_loss(x, x, torch.zeros(2), torch.zeros(2, 3))


# --- sampler gap ----------------------------------------------------------------------------


def test_sampler_gap_by_hand():
    trainer = torch.tensor([[math.log(0.5), math.log(0.25), 5.0]])
    sampler = torch.tensor([[math.log(0.25), math.log(0.25), -5.0]])
    gap = sampler_gap(trainer, sampler, torch.tensor([[1, 1, 0]]))
    # log r = [log 2, 0]: |.| mean = log 2 / 2; k3 = mean((r - 1) - log r) = (1 - log 2) / 2
    assert gap["logprob_abs_diff"] == pytest.approx(math.log(2) / 2)
    assert gap["kl_k3"] == pytest.approx((1 - math.log(2)) / 2)
    same = sampler_gap(trainer, trainer, torch.ones(1, 3))
    assert same == {"logprob_abs_diff": 0.0, "kl_k3": 0.0}


def test_k3_averages_to_the_exact_kl():
    # tokens drawn from q in exact proportions (q = [1/2, 1/4, 1/4]) make the k3 mean exact
    q = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    p = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    tokens = torch.tensor([0, 0, 1, 2])
    gap = sampler_gap(p.log()[tokens][None], q.log()[tokens][None], torch.ones(1, 4))
    assert gap["kl_k3"] == pytest.approx(float((q * (q / p).log()).sum()))


def test_solved_group_mask_keeps_groups_with_a_success():
    groups = ["a", "a", "b", "b", "c", 7, 7]
    resolved = [False, True, False, None, True, False, False]
    expected = [True, True, False, False, True, False, False]
    assert solved_group_mask(resolved, groups).tolist() == expected
    assert solved_group_mask([True, False], torch.tensor([3, 3])).tolist() == [True, True]
    with pytest.raises(ValueError, match="2 resolved flags but 1 group ids"):
        solved_group_mask([True, False], ["a"])
