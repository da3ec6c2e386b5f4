"""Token fidelity with our ChatML template and the real Qwen2.5-Instruct template."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from swerl.agent.chat import ChatFormat, TemplateError, Transcript
from swerl.models.tiny import TinySpec, build_tiny_model

QWEN = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "fixtures"
    / "chat_templates"
    / "qwen2.5-instruct.jinja"
)
CORPUS = ["def add(a, b):\n    return a + b\n", "```command\nopen src/core.py\n```\n"] * 30


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", TinySpec(vocab_size=400), CORPUS)


def tokenizer(model_dir, template: str | None = None):
    tok = AutoTokenizer.from_pretrained(model_dir)
    if template is not None:
        tok.chat_template = template
    return tok


TEMPLATES = {"chatml": None, "qwen2.5": QWEN.read_text()}


def play(chat: ChatFormat, turns: list[list[int]], observations: list[str]) -> Transcript:
    t = Transcript.start(chat, "You are a careful engineer.", "Issue: add() subtracts.\nFix it.")
    for i, ids in enumerate(turns):
        t.add_assistant(ids, [-1.0] * len(ids))
        if i < len(observations):
            t.add_observation(observations[i])
    return t


@pytest.mark.parametrize("template", TEMPLATES)
def test_deltas_match_a_full_rendering(model_dir, template):
    chat = ChatFormat(tokenizer(model_dir, TEMPLATES[template]))
    eot = chat.end_of_turn_id
    turns = [
        chat.encode("I will look.\n```command\nopen src/core.py\n```") + [eot],
        chat.encode("```command\nsubmit\n```") + [eot],
    ]
    t = play(
        chat,
        turns,
        ["  1 def add(a, b):\n  2     return a - b\n(Current directory: /testbed) bash-$"],
    )
    assert t.fidelity_mismatches() == 0
    # the ids decode to exactly the conversation the template renders
    assert chat.decode(t.token_ids) == chat.render(t.messages)[: len(chat.decode(t.token_ids))]
    assert chat.decode(t.token_ids) + "\n" == chat.render(t.messages)
    # the loss mask covers exactly the sampled ids
    sampled = [i for i, m in zip(t.token_ids, t.loss_mask, strict=True) if m]
    assert sampled == turns[0] + turns[1]


@pytest.mark.parametrize("template", TEMPLATES)
def test_non_canonical_sampled_tokenizations_are_kept(model_dir, template):
    """A random policy samples token sequences that a tokenizer would never produce for their
    text; they must stay as sampled, and the check must still find 0 mismatches."""
    chat = ChatFormat(tokenizer(model_dir, TEMPLATES[template]))
    tok = chat.tokenizer
    normal = [i for i in range(len(tok)) if i not in tok.all_special_ids]
    rng = random.Random(0)
    turns = [[rng.choice(normal) for _ in range(n)] + [chat.end_of_turn_id] for n in (5, 17, 9)]
    t = play(chat, turns, ["obs one", "obs\ntwo"])
    assert t.fidelity_mismatches() == 0
    assert [t.token_ids[i] for i, m in enumerate(t.loss_mask) if m] == [
        x for turn in turns for x in turn
    ]


def test_qwen_template_injects_its_default_system_prompt_only_without_ours(model_dir):
    chat = ChatFormat(tokenizer(model_dir, TEMPLATES["qwen2.5"]))
    t = Transcript.start(chat, "Our system prompt.", "Issue text")
    text = chat.decode(t.token_ids)
    assert text.startswith("<|im_start|>system\nOur system prompt.<|im_end|>")
    assert "You are Qwen" not in text and text.endswith("<|im_start|>assistant\n")


def test_a_template_that_rewrites_content_is_reported_not_hidden(model_dir):
    trimming = TEMPLATES["qwen2.5"].replace(
        "message.content + '<|im_end|>'", "message.content | trim + '<|im_end|>'"
    )
    chat = ChatFormat(tokenizer(model_dir, trimming))
    t = play(chat, [chat.encode("ok") + [chat.end_of_turn_id]], ["  indented observation  "])
    assert t.fidelity_mismatches() > 0


def test_templates_that_cannot_be_used_are_refused(model_dir):
    rerender = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and loop.last %}[last]{% endif %}{{ m.content }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(TemplateError, match="renders earlier turns differently"):
        ChatFormat(tokenizer(model_dir, rerender))
    with pytest.raises(TemplateError, match="does not end an assistant turn"):
        ChatFormat(tokenizer(model_dir, TEMPLATES["qwen2.5"]), end_of_turn="<|endoftext|>")


def test_observation_only_after_a_finished_turn(model_dir):
    chat = ChatFormat(tokenizer(model_dir))
    t = Transcript.start(chat, "s", "u")
    ids = chat.encode("cut off")  # a turn that hit its token limit: no end-of-turn token
    t.add_assistant(ids, [0.0] * len(ids))
    with pytest.raises(ValueError, match="only follow an assistant turn that ended"):
        t.add_observation("x")
