"""Chunked log-probs against the naive full-logits path: values and gradients."""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from swerl.train.logprobs import sequence_logprobs, token_logprobs


def naive(hidden, weight, targets, temperature=1.0):
    logits = (hidden @ weight.T).to(torch.promote_types(hidden.dtype, torch.float32))
    log_p = torch.log_softmax(logits / temperature, -1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return log_p.gather(-1, targets[..., None]).squeeze(-1), entropy


def inputs(dtype, shape=(2, 13), hidden_size=8, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*shape, hidden_size, generator=g, dtype=dtype).requires_grad_(True)
    weight = torch.randn(vocab, hidden_size, generator=g, dtype=dtype).requires_grad_(True)
    targets = torch.randint(0, vocab, shape, generator=g)
    return hidden, weight, targets


def grads(out, entropy, hidden, weight, seed=1):
    """Gradients of a random weighting of both outputs, w.r.t. hidden and weight."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(out.shape, generator=g, dtype=out.dtype)
    w2 = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return torch.autograd.grad((out * w1).sum() + (entropy * w2).sum(), (hidden, weight))


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("shape", [(2, 13), (26,)])
def test_chunked_equals_naive(dtype, tol, shape):
    hidden, weight, targets = inputs(dtype, shape)
    # chunk_size 5 does not divide 26 tokens; temperature as a sampler would apply it
    out, ent = token_logprobs(hidden, weight, targets, 5, temperature=0.7, return_entropy=True)
    ref, ref_ent = naive(hidden, weight, targets, temperature=0.7)
    assert out.shape == targets.shape and out.dtype == ref.dtype
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)
    torch.testing.assert_close(ent, ref_ent, atol=tol, rtol=tol)
    for mine, theirs in zip(
        grads(out, ent, hidden, weight), grads(ref, ref_ent, hidden, weight), strict=True
    ):
        torch.testing.assert_close(mine, theirs, atol=tol * 10, rtol=tol * 10)


def test_gradcheck_float64():
    hidden, weight, targets = inputs(torch.float64, shape=(9,), hidden_size=4, vocab=11)
    assert torch.autograd.gradcheck(
        lambda h, w: token_logprobs(h, w, targets, 4, 1.3, return_entropy=True), (hidden, weight)
    )


def test_bfloat16_matches_the_hugging_face_recipe():
    # HF: bf16 head matmul, then logits.float(); the chunked path must round the same way
    hidden, weight, targets = inputs(torch.bfloat16, shape=(20,), hidden_size=16, vocab=64)
    out = token_logprobs(hidden, weight, targets, chunk_size=6)
    ref, _ = naive(hidden, weight, targets)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    (g_h,) = torch.autograd.grad(out.sum(), hidden)
    (r_h,) = torch.autograd.grad(ref.sum(), hidden)
    assert g_h.dtype == torch.bfloat16
    torch.testing.assert_close(g_h, r_h, atol=2e-2, rtol=2e-2)


def test_autocast_bf16_matches_the_hugging_face_recipe():
    """float32 hidden states and head under CPU autocast (the update's `bf16`): the head matmul
    runs in bf16 as `nn.Linear` would, logits are upcast, and backward recomputes in bf16 too
    (autocast is off in backward), giving float32 gradients for float32 inputs."""
    hidden, weight, targets = inputs(torch.float32, shape=(20,), hidden_size=16, vocab=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, ent = token_logprobs(hidden, weight, targets, chunk_size=6, return_entropy=True)
        logits = torch.nn.functional.linear(hidden, weight)
    assert logits.dtype == torch.bfloat16 and out.dtype == torch.float32
    ref, ref_ent = naive(logits.float(), torch.eye(64), targets)  # the HF path, from its logits
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=1e-5)
    mine = grads(out, ent, hidden, weight)
    theirs = grads(ref, ref_ent, hidden, weight)
    for a, b in zip(mine, theirs, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)
    # and bf16 rounding is visible: the float32 path differs by more than float32 noise
    exact = token_logprobs(hidden, weight, targets)
    assert (out - exact).abs().max() > 1e-4


def test_no_tokens_x_vocab_tensor_is_kept_for_backward():
    hidden, weight, targets = inputs(torch.float32, shape=(64,), hidden_size=8, vocab=500)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(t.numel()) or t, lambda t: t
    ):
        out = token_logprobs(hidden, weight, targets, chunk_size=16)
    assert max(saved) == 500 * 8  # the head weight; the naive path keeps 64 x 500 logits
    out.sum().backward()


def test_bad_shapes_are_refused():
    hidden, weight, targets = inputs(torch.float32)
    with pytest.raises(ValueError, match="targets"):
        token_logprobs(hidden, weight, targets[:, :-1])
    with pytest.raises(ValueError, match="lm_head_weight"):
        token_logprobs(hidden, weight.T, targets)


@pytest.mark.parametrize("tie", [True, False])
def test_sequence_logprobs_on_a_tiny_qwen2(tie):
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tie
    input_ids = torch.randint(0, 300, (2, 11))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0  # right padding

    logp = sequence_logprobs(model, input_ids, attention_mask, chunk_size=4)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    ref = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    assert logp.shape == (2, 11)
    assert logp[:, 0].tolist() == [0.0, 0.0]
    torch.testing.assert_close(logp[:, 1:], ref, atol=1e-5, rtol=1e-5)

    weights = attention_mask[:, 1:].float() * torch.linspace(-1, 1, 10)
    mine = torch.autograd.grad((logp[:, 1:] * weights).sum(), list(model.parameters()))
    theirs = torch.autograd.grad((ref * weights).sum(), list(model.parameters()))
    for (name, _), a, b in zip(model.named_parameters(), mine, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    assert all(g.abs().sum() > 0 for g in mine)


def test_sequence_logprobs_entropy_alignment():
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    input_ids = torch.randint(0, 300, (1, 7))
    logp, entropy = sequence_logprobs(model, input_ids, return_entropy=True)
    log_p = torch.log_softmax(model(input_ids=input_ids).logits.float(), -1)
    ref = -(log_p.exp() * log_p).sum(-1)  # ref[:, t] is the distribution of token t + 1
    assert entropy[0, 0] == 0
    torch.testing.assert_close(entropy[:, 1:], ref[:, :-1], atol=1e-5, rtol=1e-5)
