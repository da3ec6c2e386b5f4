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


def test_bad_inputs(model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model directory"):
        HFGenerator(tmp_path)
    gen = HFGenerator(model_dir)
    with pytest.raises(ValueError, match="2 prompts but 1 sampling"):
        gen.generate([[1], [2]], [SamplingParams()])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SamplingParams(temperature=0)
    assert SamplingParams().is_unmodified and not SamplingParams(top_k=20).is_unmodified
