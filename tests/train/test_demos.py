"""Scripted demonstrations: played in a real local sandbox, they resolve their toy task, the loss
mask covers exactly the assistant turns, and the token ids are the rendered conversation."""

from __future__ import annotations

import dataclasses
import random

import pytest

from swerl.agent.chat import ChatFormat
from swerl.agent.episode import EpisodeConfig
from swerl.agent.rollout import RolloutConfig
from swerl.models.tiny import default_corpus, train_tokenizer
from swerl.swe.task import Task
from swerl.swe.toy import generate_task
from swerl.swe.toy.build import task_row
from swerl.train.demos import (
    DITHER,
    GIVE_UP,
    DemoConfig,
    DemoError,
    build_demos,
    demo_messages,
    dithers,
    gives_up,
    minimal_replacement,
    patch_edits,
)
from swerl.train.rft import assistant_turn_spans


@pytest.fixture(scope="module")
def chat() -> ChatFormat:
    return ChatFormat(train_tokenizer(default_corpus(), 1024))


@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    # index 0: difficulty 1 (the issue names the file); 14: difficulty 3 (a helper in another
    # module holds the bug); 3: a missing branch (the fix only inserts lines)
    return [Task.from_row(task_row(generate_task(0, "train", i), 0)) for i in (0, 3, 14)]


def test_patch_edits_reproduce_the_gold_fix(tasks):
    for task in tasks:
        files = dict(task.repo_files)
        for e in patch_edits(task.patch, files):
            lines = files[e.path].splitlines(keepends=True)
            files[e.path] = "".join(lines[: e.start - 1] + [e.text] + lines[e.end :])
        changed = task.meta["bug_file"]
        added = [x[1:] for x in task.patch.splitlines() if x.startswith("+") and x[1:2] != "+"]
        assert all(line in files[changed] for line in added), task.instance_id
        assert files[changed] != task.repo_files[changed]


def test_demos_resolve_and_tokens_match_messages(chat, tasks):
    config = DemoConfig(samples=2, detour_rate=0.5, wide_rate=0.5, seed=1)
    rollout = RolloutConfig(
        stage="rft", samples=2, backend="local", episode=EpisodeConfig(max_turns=12)
    )
    episodes = build_demos(tasks, chat, rollout, config, policy_version="tiny")
    assert len(episodes) == 2 * len(tasks)
    for ep in episodes:
        t = ep.trajectory
        assert t["resolved"] and t["termination"] == "submitted", t["trajectory_id"]
        assert t["reward"] == 1.0 and t["generator"] == "replay"
        assert t["fidelity_mismatches"] == 0
        ids, mask = t["token_ids"], t["loss_mask"]
        assert len(ids) == len(mask) == t["total_tokens"]
        # the ids are the conversation as the chat template renders it (the episode ends at the
        # last end-of-turn token; the template adds a newline after it)
        rendered, decoded = chat.render(t["messages"]), chat.decode(ids)
        assert rendered.startswith(decoded) and not rendered[len(decoded) :].strip()
        # each loss-mask span is exactly one assistant message plus its end-of-turn token
        spans = assistant_turn_spans(mask)
        said = [m["content"] for m in t["messages"] if m["role"] == "assistant"]
        assert len(spans) == len(said) == t["turns"]
        for (a, b), text in zip(spans, said, strict=True):
            assert ids[b - 1] == chat.end_of_turn_id
            assert chat.decode(ids[a : b - 1]) == text
        assert said[-1].endswith("```command\nsubmit\n```")
        assert any("\nedit " in m for m in said)
    # the two samples of a task differ only by their seeded imperfections; the seed reproduces
    again = [
        demo_messages(tasks[2], random.Random(f"demo:1:{tasks[2].instance_id}:{s}"), config)
        for s in range(2)
    ]
    assert again == [
        [m["content"] for m in ep.trajectory["messages"] if m["role"] == "assistant"]
        for ep in episodes
        if ep.key[0] == tasks[2].instance_id
    ]


def test_minimal_replacement_is_short_unique_and_exact():
    text = "def f(a, b):\n    if a in b:\n        return a\n    return b in a\n"
    at = text.index("    if a in b")
    search, repl = minimal_replacement(text, "    if a in b:\n", "    if a not in b:\n", at)
    assert (search, repl) == ("a in", "a not in")  # `in` alone occurs twice
    assert text.replace(search, repl, 1) == text.replace("if a in b", "if a not in b")
    # an insertion (nothing removed) takes the nearest unique context
    at = text.index("    return b")
    search, repl = minimal_replacement(text, "", "    b = b or []\n", at)
    assert text.count(search) == 1 and search == search.strip()
    assert text.replace(search, repl, 1) == text[:at] + "    b = b or []\n" + text[at:]


def test_replace_demos_resolve_every_family(chat):
    # one task of each bug family (the first train tasks cycle through them)
    tasks = [Task.from_row(task_row(generate_task(0, "train", i), 0)) for i in range(7)]
    assert len({t.meta["family"] for t in tasks}) == 7
    config = DemoConfig(fix="replace", detour_rate=0.0)
    rollout = RolloutConfig(stage="rft", samples=1, backend="local", episode=EpisodeConfig())
    for ep in build_demos(tasks, chat, rollout, config, policy_version="tiny"):
        t = ep.trajectory
        assert t["resolved"] and t["tool_errors"] == 0, t["messages"]
        said = [m["content"] for m in t["messages"] if m["role"] == "assistant"]
        assert any("```command\nreplace " in m for m in said)
        assert not any("\nedit " in m for m in said)


def test_give_up_demos_open_the_file_submit_it_unchanged_and_are_stored_unresolved(chat, tasks):
    rollout = RolloutConfig(stage="rft", samples=1, backend="local", episode=EpisodeConfig())
    config = DemoConfig(fix="replace", detour_rate=0.0, give_up_rate=1.0)
    episodes = build_demos(tasks, chat, rollout, config, policy_version="t")
    for task, ep in zip(tasks, episodes, strict=True):
        t = ep.trajectory
        said = [m["content"] for m in t["messages"] if m["role"] == "assistant"]
        fixed = demo_messages(task, random.Random(0), DemoConfig(fix="replace", detour_rate=0.0))
        # the same steps up to the buggy file's `open`, then a submit instead of the fix
        assert said[:-1] == fixed[: len(said) - 1] and said[-2].endswith(
            f"open {task.meta['bug_file']}\n```"
        )
        assert gives_up(said) and said[-1] == f"{GIVE_UP}\n```command\nsubmit\n```"
        assert not t["resolved"] and t["reward"] == 0.0 and t["termination"] == "submitted"
        assert not gives_up(fixed)
    # the rate is a probability per demo, seeded: about half of 40 draws give up at 0.5
    half = DemoConfig(fix="replace", give_up_rate=0.5)
    share = sum(
        gives_up(demo_messages(tasks[0], random.Random(f"demo:0:x:{s}"), half)) for s in range(40)
    )
    assert 10 <= share <= 30
    with pytest.raises(ValueError, match="must be probabilities"):
        DemoConfig(give_up_rate=1.5)
    with pytest.raises(ValueError, match=r"give_up_rate \+ dither_rate at most 1"):
        DemoConfig(give_up_rate=0.6, dither_rate=0.6)


def test_dithering_demos_look_around_until_the_turns_run_out(chat, tasks):
    episode = EpisodeConfig(max_turns=8)
    rollout = RolloutConfig(
        stage="rft", samples=1, backend="local", episode=episode, turn_penalty_threshold=7
    )
    config = DemoConfig(fix="replace", detour_rate=0.0, dither_rate=1.0)
    episodes = build_demos(tasks, chat, rollout, config, policy_version="t")
    for task, ep in zip(tasks, episodes, strict=True):
        t = ep.trajectory
        said = [m["content"] for m in t["messages"] if m["role"] == "assistant"]
        assert len(said) == t["turns"] == 8 and dithers(said) and not gives_up(said)
        located = next(i for i, m in enumerate(said) if m.startswith(DITHER))
        assert said[located - 1].endswith(f"open {task.meta['bug_file']}\n```")
        assert all(m.startswith(DITHER) for m in said[located:])
        assert t["termination"] == "max_turns" and not t["resolved"]
        assert t["reward"] == -1.0 and t["tool_errors"] == 0  # the turn penalty's floor
    # one draw picks at most one habit: the shares add up, seeded
    both = DemoConfig(fix="replace", give_up_rate=0.3, dither_rate=0.3)
    drawn = [demo_messages(tasks[0], random.Random(f"d:{s}"), both, 8) for s in range(60)]
    assert not any(gives_up(m) and dithers(m) for m in drawn)
    assert 8 <= sum(map(gives_up, drawn)) <= 30 and 8 <= sum(map(dithers, drawn)) <= 30
    with pytest.raises(DemoError, match="dithering demo needs max_turns"):
        demo_messages(tasks[0], random.Random(0), DemoConfig(dither_rate=1.0))


def test_dithering_demos_that_stop_fix_the_bug_late(chat, tasks):
    plain = DemoConfig(fix="replace", detour_rate=0.0, dither_rate=1.0)
    # dither_stop = 0 draws nothing more: the same demos as before the option
    assert demo_messages(tasks[0], random.Random(5), plain, 8) == demo_messages(
        tasks[0], random.Random(5), dataclasses.replace(plain, dither_stop=0.0), 8
    )
    stop = dataclasses.replace(plain, dither_stop=1.0)  # stops after its first look
    said = demo_messages(tasks[0], random.Random(5), stop, 8)
    looks = [i for i, m in enumerate(said) if m.startswith(DITHER)]
    assert len(looks) == 1 and said[-1].endswith("submit\n```") and not dithers(said)
    assert said[looks[0] + 1].split("```command\n")[1].startswith("replace ")
    # played for real: resolved and submitted, with the look's turn spent
    episode = EpisodeConfig(max_turns=8)
    rollout = RolloutConfig(
        stage="rft", samples=1, backend="local", episode=episode, turn_penalty_threshold=4
    )
    (ep,) = build_demos(tasks[:1], chat, rollout, stop, policy_version="t")
    assert ep.trajectory["resolved"] and ep.trajectory["termination"] == "submitted"
    assert ep.trajectory["turns"] == len(said)
    # with no room for the fix, a stop is not taken: it looks until the turns run out
    tight = demo_messages(tasks[0], random.Random(5), stop, len(said) - 1)
    assert dithers(tight) and len(tight) == len(said) - 1
    # some stop, some run out, seeded
    half = dataclasses.replace(plain, dither_stop=0.25)
    drawn = [demo_messages(tasks[0], random.Random(f"s:{s}"), half, 8) for s in range(40)]
    assert 5 <= sum(map(dithers, drawn)) <= 35
    with pytest.raises(ValueError, match="must be"):
        DemoConfig(dither_stop=1.5)


def test_a_task_without_toy_meta_is_refused(tasks):
    task = Task.from_row({**task_row(generate_task(0, "train", 0), 0), "meta": "{}"})
    with pytest.raises(DemoError, match="meta has no"):
        demo_messages(task, random.Random(0), DemoConfig())
