"""The transformers generator: batched, its log-probs equal a fresh forward pass."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from swerl.inference import SamplingParams
from swerl.inference.hf import HFGenerator
from swerl.models.tiny import TinySpec, build_tiny_model

CORPUS = ["def add(a, b):\n    return a + b\n", "```command\nopen src/core.py\n```\n"] * 30


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", TinySpec(vocab_size=400), CORPUS)


def forward_logprobs(model, prompt: list[int], completion: list[int]) -> list[float]:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    return [float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(completion)]


def test_batched_logprobs_equal_a_fresh_forward_pass(model_dir):
    gen = HFGenerator(model_dir, seed=1)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]  # different lengths: padding
    outs = gen.generate(prompts, [SamplingParams(max_tokens=24)] * 3)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    for prompt, out in zip(prompts, outs, strict=True):
        assert len(out.token_ids) == len(out.logprobs) == 24 and out.finish_reason == "length"
        expected = forward_logprobs(model, prompt, out.token_ids)
        assert max(abs(a - b) for a, b in zip(out.logprobs, expected, strict=True)) < 1e-4


def test_stop_tokens_and_per_request_limits(model_dir):
    gen = HFGenerator(model_dir, seed=0)
    # top_k=1 is greedy: find the greedy first token, then stop on it
    first = gen.generate([[5, 6]], [SamplingParams(top_k=1, max_tokens=1)])[0].token_ids[0]
    outs = gen.generate(
        [[5, 6], [5, 6]],
        [
            SamplingParams(top_k=1, max_tokens=5, stop_token_ids=(first,)),
            SamplingParams(max_tokens=3),
        ],
    )
    assert outs[0].token_ids == [first] and outs[0].finish_reason == "stop"
    assert len(outs[1].token_ids) == 3 and outs[1].finish_reason == "length"


def test_greedy_matches_argmax_and_truncation_renormalises(model_dir):
    gen = HFGenerator(model_dir)
    out = gen.generate([[5, 6, 7]], [SamplingParams(top_k=1, max_tokens=6)])[0]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = [5, 6, 7]
    for t in out.token_ids:
        with torch.no_grad():
            assert int(model(torch.tensor([ids])).logits[0, -1].argmax()) == t
        ids.append(t)
    assert all(abs(lp) < 1e-6 for lp in out.logprobs)  # one token kept: probability 1


def test_same_seed_same_samples(model_dir):
    a = HFGenerator(model_dir, seed=7).generate([[5, 6]], [SamplingParams(max_tokens=10)])
    b = HFGenerator(model_dir, seed=7).generate([[5, 6]], [SamplingParams(max_tokens=10)])
    assert a[0].token_ids == b[0].token_ids


def test_a_seeded_request_draws_the_same_tokens_in_any_batch(model_dir):
    """A request's own seed makes its sample independent of the batch it lands in (other rows,
    its position, the generator's seed, a cached prefix) - what makes rollouts reproducible."""
    p = SamplingParams(max_tokens=12, seed=42)
    alone = HFGenerator(model_dir, seed=0).generate([[5, 6, 7]], [p])[0]
    gen = HFGenerator(model_dir, seed=9)
    prompts = [[8, 9], [10, 11, 12, 13], [5, 6, 7]]
    others = [SamplingParams(max_tokens=20), SamplingParams(max_tokens=5, seed=1)]
    for _ in range(2):  # the second time its prompt's keys and values come from the cache
        batched = gen.generate(prompts, [*others, p])[2]
        assert batched.token_ids == alone.token_ids
        assert batched.logprobs == pytest.approx(alone.logprobs, abs=1e-5)
    # a shorter cap draws a prefix of the same stream; another seed, other tokens
    short = gen.generate([[5, 6, 7]], [SamplingParams(max_tokens=5, seed=42)])[0]
    assert short.token_ids == alone.token_ids[:5]
    other = gen.generate([[5, 6, 7]], [SamplingParams(max_tokens=12, seed=43)])[0]
    assert other.token_ids != alone.token_ids
    with pytest.raises(ValueError, match="seed must be in"):
        SamplingParams(seed=-1)


def test_bad_inputs(model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model directory"):
        HFGenerator(tmp_path)
    gen = HFGenerator(model_dir)
    with pytest.raises(ValueError, match="2 prompts but 1 sampling"):
        gen.generate([[1], [2]], [SamplingParams()])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SamplingParams(temperature=0)
    assert SamplingParams().is_unmodified and not SamplingParams(top_k=20).is_unmodified


def test_prefix_cache_continues_episodes_with_exact_logprobs(model_dir):
    """Turn after turn (prompt + sampled ids + an observation), of different lengths in one
    batch, the cached keys and values give the log-probs of a fresh forward pass, and only the
    new tokens run through the model."""
    gen = HFGenerator(model_dir, seed=2)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompts = [[5, 6, 7, 8, 9, 10, 11] * 6, [12, 13] * 9, [14, 15, 16] * 5]
    for turn in range(3):
        before = gen.prefill_tokens
        outs = gen.generate(prompts, [SamplingParams(max_tokens=9 + turn)] * 3)
        for prompt, out in zip(prompts, outs, strict=True):
            expected = forward_logprobs(model, prompt, out.token_ids)
            assert max(abs(a - b) for a, b in zip(out.logprobs, expected, strict=True)) < 1e-4
        if turn:  # only the last sampled token and the observation were new
            assert gen.prefill_tokens - before == 3 * (1 + 4)
        prompts = [p + o.token_ids + [20 + turn] * 4 for p, o in zip(prompts, outs, strict=True)]
    assert gen.prefix_cache.tokens == sum(len(p) - 4 - 1 for p in prompts)  # one entry each


def test_prefix_cache_does_not_change_what_is_sampled(model_dir):
    greedy = SamplingParams(top_k=1, max_tokens=12)
    runs = []
    for capacity in (0, 65536):
        gen = HFGenerator(model_dir, prefix_cache_tokens=capacity)
        prompts, seen = [[5, 6, 7, 8] * 10, [9, 10] * 12], []
        for _ in range(3):
            outs = gen.generate(prompts, [greedy] * 2)
            seen.append([o.token_ids for o in outs])
            prompts = [p + o.token_ids + [30] for p, o in zip(prompts, outs, strict=True)]
        runs.append(seen)
        assert (gen.prefix_cache.tokens > 0) == (capacity > 0)
    assert runs[0] == runs[1]


def test_a_shared_prefix_runs_once_and_the_cache_stays_in_budget(model_dir):
    gen = HFGenerator(model_dir, seed=0)
    system = [5, 6, 7, 8, 9] * 20  # 100 tokens every prompt starts with
    group = system + [40, 41, 42] * 4  # a group's samples share the whole prompt
    prompts = [group, group, group, system + [50] * 9]
    gen.generate(prompts, [SamplingParams(max_tokens=3)] * 4)
    # the shared group prompt (all but its last token) once, then per row what is left
    assert gen.prefill_tokens == (len(group) - 1) + 3 * 1 + (9 + 0)
    small = HFGenerator(model_dir, seed=0, prefix_cache_tokens=150)
    for i in range(5):
        small.generate([[60 + i] * 40], [SamplingParams(max_tokens=4)])
        assert small.prefix_cache.tokens <= 150
    with pytest.raises(ValueError, match="prefix_cache_tokens must be >= 0"):
        HFGenerator(model_dir, prefix_cache_tokens=-1)


def test_sampling_draws_from_the_distribution_and_never_a_token_without_mass():
    from swerl.inference.hf import _sample

    probs = torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0])
    logp = probs.log().expand(20000, -1).contiguous()
    drawn = _sample(logp, torch.rand((20000, 1), generator=torch.Generator().manual_seed(0)))[:, 0]
    counts = torch.bincount(drawn, minlength=5).float() / len(drawn)
    assert counts[1] == counts[4] == 0
    assert torch.allclose(counts, probs, atol=0.015)
    edge = torch.tensor([[0.0], [0.5], [0.8], [1.0 - 1e-9]])  # CDF bounds: a token with mass
    assert _sample(probs.log().expand(4, -1).contiguous(), edge)[:, 0].tolist() == [0, 2, 3, 3]
