"""Tiny local models: build in seconds, load with the Auto classes, template marks assistant turns."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from swerl.models.tiny import TinySpec, build_tiny_model

CORPUS = ["def add(a, b):\n    return a + b\n", "open src/pkg/core.py\nedit 3:4\nsubmit\n"] * 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", TinySpec(vocab_size=400), CORPUS)


def test_loads_and_runs_forward(tiny):
    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    ids = tok("def add(a, b): return a - b", return_tensors="pt").input_ids
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_any_text_round_trips_through_the_byte_level_tokenizer(tiny):
    tok = AutoTokenizer.from_pretrained(tiny)
    text = "naïve 𝔘nicode\ttabs\n  spaces ```command\nls -la\n```"
    assert tok.decode(tok(text).input_ids) == text


def test_chat_template_masks_exactly_the_assistant_turns(tiny):
    tok = AutoTokenizer.from_pretrained(tiny)
    messages = [
        {"role": "system", "content": "You fix bugs."},
        {"role": "user", "content": "Issue: add is wrong"},
        {"role": "assistant", "content": "Look first.\n```command\nopen core.py\n```"},
        {"role": "user", "content": "(Current directory: /testbed) bash-$"},
        {"role": "assistant", "content": "```command\nsubmit\n```"},
    ]
    out = tok.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert tok.decode(ids).startswith("<|im_start|>system\nYou fix bugs.<|im_end|>")
    masked = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert masked == (
        "Look first.\n```command\nopen core.py\n```<|im_end|>```command\nsubmit\n```<|im_end|>"
    )


def test_seeded_weights_are_reproducible(tmp_path):
    a = build_tiny_model(tmp_path / "a", TinySpec(vocab_size=400, seed=3), CORPUS)
    b = build_tiny_model(tmp_path / "b", TinySpec(vocab_size=400, seed=3), CORPUS)
    pa_, pb = (AutoModelForCausalLM.from_pretrained(p).state_dict() for p in (a, b))
    assert all(torch.equal(pa_[k], pb[k]) for k in pa_)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_bad_specs_and_existing_directory(tmp_path, tiny):
    with pytest.raises(ValueError, match="must divide by heads"):
        TinySpec(hidden_size=30, heads=4)
    with pytest.raises(ValueError, match="vocab_size"):
        TinySpec(vocab_size=100)
    with pytest.raises(ValueError, match="copy_steps must be >= 0"):
        TinySpec(copy_steps=-1)
    with pytest.raises(FileExistsError, match="not empty"):
        build_tiny_model(tiny, TinySpec(vocab_size=400), CORPUS)


def test_publish_tiny_model_is_a_models_version_reused_on_rerun(tmp_path):
    from swerl.lake import Lake
    from swerl.models.tiny import publish_tiny_model
    from swerl.train.checkpoint import resolve_model

    lake = Lake(tmp_path)
    spec = TinySpec(vocab_size=400, hidden_size=32, layers=1, intermediate_size=64)
    version = publish_tiny_model(lake, spec, name="tiny-base")
    assert publish_tiny_model(lake, spec, name="tiny-base") == version
    ref = resolve_model(lake, "tiny-base")
    assert ref.version == version and (ref.path / "config.json").is_file()
    assert lake.manifest("models", version)["parameters"]["hidden_size"] == 32


def test_copy_batches_repeat_a_span_at_varying_distances():
    from swerl.models.tiny import copy_batch

    ids, labels = copy_batch(torch.Generator().manual_seed(0), 64, 48, 400, first_id=3)
    assert ids.shape == labels.shape == (64, 48) and int(ids.min()) >= 3
    distances, lengths = set(), set()
    for row_ids, row_labels in zip(ids, labels, strict=True):
        where = (row_labels != -100).nonzero()[:, 0]
        assert len(where) >= 3  # a span of >= 4 tokens, labelled after its first token
        n, start = len(where) + 1, int(where[0]) - 1  # the repeat: ids[start : start + n]
        assert torch.equal(row_labels[where], row_ids[where])
        earlier = [
            d for d in range(n, start + 1) if torch.equal(row_ids[start - d : start - d + n],
                                                          row_ids[start : start + n])
        ]  # fmt: skip
        assert earlier  # the same span occurs before it
        distances.add(earlier[0])
        lengths.add(n)
    assert len(distances) > 10 and len(lengths) > 3  # no fixed offset to learn instead of copying
    with pytest.raises(ValueError, match="length >= 16"):
        copy_batch(torch.Generator(), 2, 8, 400)


def random_qwen2(vocab: int, hidden: int, layers: int):
    """A random-weight Qwen2 as the tiny models have it (4 heads, 2 key/value heads, tied)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=3 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=True,
    )  # fmt: skip
    return Qwen2ForCausalLM(config)


def test_copying_warm_up_trains_the_model():
    from swerl.models.tiny import warm_up_copying

    model = random_qwen2(vocab=400, hidden=32, layers=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = warm_up_copying(model, 3, first_id=3, batch_size=4, length=32)
    assert len(losses) == 3 and all(4 < x < 7 for x in losses)  # ~ln(400) = 6.0 untrained
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


@pytest.mark.slow
def test_copying_warm_up_teaches_a_random_model_to_repeat_a_span():
    """The sudden arrival of copying (~1,100 steps; a few minutes): afterwards a span seen once
    is continued from its first token on fresh random tokens."""
    from swerl.models.tiny import warm_up_copying

    torch.manual_seed(0)
    model = random_qwen2(vocab=1024, hidden=128, layers=2)
    losses = warm_up_copying(model, 1500, first_id=3)
    assert losses[0] > 6.5 and sum(losses[-50:]) / 50 < 0.5
    g = torch.Generator().manual_seed(99)
    span = torch.randint(3, 1024, (8, 12), generator=g)
    noise = [torch.randint(3, 1024, (8, k), generator=g) for k in (30, 7)]
    ids = torch.cat([noise[0], span, noise[1], span[:, :1]], 1)
    with torch.no_grad():
        for _ in range(11):  # continue the repeat greedily after its first token
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1:].argmax(-1)], 1)
    assert (ids[:, -11:] == span[:, 1:]).float().mean() > 0.8


def test_prompt_corpus_is_the_prompt_files_and_no_source():
    """The learning benchmark's tokenizer trains on `prompt_corpus()` so that its model does not
    change with swerl's source; `default_corpus()` is the source plus the same prompts."""
    from pathlib import Path

    from swerl.models.tiny import default_corpus, prompt_corpus

    prompts = Path(__file__).resolve().parents[2] / "configs" / "prompts"
    expected = [p.read_text() for p in sorted(prompts.rglob("*")) if p.is_file()]
    corpus = prompt_corpus()
    assert corpus == expected and (prompts / "tiny" / "system.md").read_text() in corpus
    assert not any("def prompt_corpus" in text for text in corpus)
    full = default_corpus()
    assert full[-len(corpus) :] == corpus
    assert any("def prompt_corpus" in text for text in full[: -len(corpus)])
