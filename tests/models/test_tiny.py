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
