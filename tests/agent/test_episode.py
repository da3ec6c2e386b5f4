"""The episode loop with scripted replies (the `replay` generator) on a real toy-SWE task:
terminations, format errors, cut turns, grading and the reward, in real sandboxes."""

from __future__ import annotations

import re

import pytest
from transformers import AutoTokenizer

from swerl.agent.chat import ChatFormat
from swerl.agent.episode import EpisodeConfig, run_episode, score_episode
from swerl.agent.rollout import Prompts
from swerl.inference.replay import ReplayGenerator
from swerl.models.tiny import TinySpec, build_tiny_model
from swerl.sandbox import open_sandbox
from swerl.swe.task import Task
from swerl.swe.toy import build_toy_suite

CORPUS = ["def add(a, b):\n    return a + b\n", "```command\nopen src/core.py\n```\n"] * 30
HUNK = re.compile(r"^@@ -(\d+),\d+ \+\d+,\d+ @@")


@pytest.fixture(scope="module")
def task() -> Task:
    return Task.from_row(build_toy_suite(seed=0, n_train=1, n_eval=0)[0])


@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> ChatFormat:
    model = build_tiny_model(
        tmp_path_factory.mktemp("tiny") / "m", TinySpec(vocab_size=400), CORPUS
    )
    return ChatFormat(AutoTokenizer.from_pretrained(model))


@pytest.fixture(scope="module")
def docker_image(docker_client, base_image, task) -> str:
    from swerl.sandbox.images import build_images

    return build_images([task], base_image, docker_client)[0].tag


def block(command: str, reasoning: str = "Next step.") -> str:
    return f"{reasoning}\n```command\n{command}\n```"


def gold_edit(patch: str) -> tuple[str, str]:
    """The gold patch (one file, one hunk of contiguous - and + lines) as open + edit commands."""
    lines = patch.splitlines()
    files = [x[len("+++ b/") :] for x in lines if x.startswith("+++ b/")]
    assert len(files) == 1, patch
    hunk = [i for i, x in enumerate(lines) if x.startswith("@@")]
    assert len(hunk) == 1, patch
    line = int(HUNK.match(lines[hunk[0]]).group(1))
    body = lines[hunk[0] + 1 :]
    first = next(i for i, x in enumerate(body) if x[:1] in "-+")
    removed = [x for x in body if x.startswith("-")]
    added = [x[1:] for x in body if x.startswith("+")]
    start = line + first
    end = start + len(removed) - 1
    text = "".join(x + "\n" for x in added)
    return f"open {files[0]}", f"edit {start}:{end} <<'EOF'\n{text}EOF"


def play(task, chat, messages, backend, config, generate=None, prompts=None):
    replay = ReplayGenerator(messages, chat.encode, chat.end_of_turn_id)
    with open_sandbox(task, backend) as sandbox:
        system, issue = (prompts or Prompts.load()).render(task, config, sandbox.workdir)
        gen = generate(sandbox, replay) if generate else replay.complete
        return run_episode(chat, gen, sandbox, system, issue, config)


def check_tokens(chat: ChatFormat, result) -> None:
    """The trajectory is the messages, token for token; sampled tokens and only they are masked."""
    t = result.transcript
    assert t.fidelity_mismatches() == 0
    assert chat.decode(t.token_ids) == chat.render(
        t.messages, add_generation_prompt=t.messages[-1]["role"] == "user"
    ).removesuffix("\n" if t.messages[-1]["role"] == "assistant" else "")
    assert sum(t.loss_mask) == sum(len(s) for s in t.sampled)
    assert len(t.token_ids) == len(t.loss_mask) == len(t.logprobs)


@pytest.mark.docker
def test_gold_replay_resolves_the_task_through_docker(task, chat, docker_image):
    open_cmd, edit_cmd = gold_edit(task.patch)
    messages = [
        block(open_cmd, "I will read the function the issue names."),
        block(edit_cmd, "The condition is inverted."),
        block("submit", "Done."),
    ]
    config = EpisodeConfig(max_turns=40)
    result = play(task, chat, messages, "docker", config)
    assert result.termination == "submitted" and result.error is None
    assert [t.command for t in result.turns] == [open_cmd, edit_cmd, "submit"]
    assert not any(t.format_error or t.tool_error for t in result.turns)
    assert result.turns[0].observation.startswith(f"[File: /testbed/{open_cmd[5:]} (")
    assert result.turns[1].observation.endswith(
        f"(Current directory: /testbed, current file: /testbed/{open_cmd[5:]}) bash-$"
    )

    def changes(patch: str) -> list[str]:
        return [x for x in patch.splitlines() if x[:1] in "+-" and x[:3] not in ("+++", "---")]

    assert changes(result.patch) == changes(task.patch)  # the gold change, nothing else
    check_tokens(chat, result)
    score = score_episode(task, result, backend="docker", max_turns=40)
    assert score.outcome == "resolved" and score.resolved
    assert score.turn_penalty == 0.0 and score.reward == 1.0  # 3 turns < L_thr = 10


def test_gold_replay_in_14_turns_pays_the_turn_penalty(task, chat):
    open_cmd, edit_cmd = gold_edit(task.patch)
    messages = [block("ls")] * 11 + [block(open_cmd), block(edit_cmd), block("submit")]
    result = play(task, chat, messages, "local", EpisodeConfig(max_turns=20))
    assert result.termination == "submitted" and len(result.turns) == 14
    score = score_episode(task, result, backend="local", max_turns=20)
    # PAPER.md section 4: R = 1 + (L_thr - |tau|) / (T_max - L_thr) = 1 + (10 - 14) / 10
    assert score.resolved and score.turn_penalty == pytest.approx(-0.4)
    assert score.reward == pytest.approx(0.6)


@pytest.mark.docker
def test_a_replay_that_never_submits_ends_at_max_turns(task, chat, docker_image):
    result = play(
        task,
        chat,
        [block("ls"), block("pwd"), block("git status")],
        "docker",
        EpisodeConfig(max_turns=3),
    )
    assert result.termination == "max_turns" and len(result.turns) == 3
    assert result.patch == ""
    check_tokens(chat, result)
    score = score_episode(task, result, backend="docker", max_turns=3, threshold=1)
    assert score.grade is None and score.outcome == "not_graded"  # empty diff: nothing to grade
    assert score.reward == pytest.approx(-1.0)  # a failure in max_turns turns scores -1


@pytest.mark.parametrize("grade_unsubmitted", [True, False])
def test_unsubmitted_episodes_are_graded_on_their_diff_unless_told_not_to(
    task, chat, grade_unsubmitted
):
    open_cmd, edit_cmd = gold_edit(task.patch)
    result = play(
        task, chat, [block(open_cmd), block(edit_cmd)], "local", EpisodeConfig(max_turns=2)
    )
    assert result.termination == "max_turns" and result.patch
    score = score_episode(
        task,
        result,
        backend="local",
        max_turns=2,
        threshold=1,
        grade_unsubmitted=grade_unsubmitted,
    )
    if grade_unsubmitted:
        assert score.resolved and score.outcome == "resolved"
        assert score.reward == pytest.approx(1.0 - 1.0)  # resolved, in max_turns turns
    else:
        assert not score.resolved and score.outcome == "not_graded" and score.grading_s == 0
        assert score.reward == pytest.approx(-1.0)


def test_format_errors_are_answered_flagged_and_the_episode_goes_on(task, chat):
    messages = [
        "I think the bug is in the loop.",  # no command block
        block("ls") + "\n" + block("pwd"),  # two blocks
        block("open no/such/file.py"),  # a tool error, not a format error
        block("submit"),
    ]
    result = play(task, chat, messages, "local", EpisodeConfig(max_turns=10))
    assert result.termination == "submitted" and len(result.turns) == 4
    assert [t.format_error for t in result.turns] == [True, True, False, False]
    assert [t.tool_error for t in result.turns] == [False, False, True, False]
    assert result.format_errors == 2 and result.tool_errors == 1
    assert result.turns[0].observation.startswith("Format error: cannot extract a command")
    assert result.turns[1].observation.startswith("Format error: your reply has 2 command blocks")
    assert result.turns[0].command is None and result.turns[2].command == "open no/such/file.py"
    for t in result.turns[:3]:
        assert t.observation.endswith("bash-$") and "(Current directory: " in t.observation
    assert result.transcript.messages[3]["content"] == result.turns[0].observation
    check_tokens(chat, result)


def test_a_reply_longer_than_the_context_ends_with_context_limit(task, chat):
    probe = play(task, chat, [block("submit")], "local", EpisodeConfig(max_turns=2))
    start = probe.transcript.prompt_tokens
    # room for about 200 tokens after the prompt: the first short turn fits, the long one not
    config = EpisodeConfig(max_turns=5, max_context_tokens=start + 200)
    result = play(task, chat, ["```command\nls\n```", "word " * 200], "local", config)
    assert result.termination == "context_limit"
    t = result.transcript
    assert len(t.token_ids) <= config.max_context_tokens
    last = result.turns[-1]
    assert last.command is None and last.completion_tokens == len(t.sampled[-1])
    assert t.messages[-1]["role"] == "assistant"
    assert t.fidelity_mismatches() == 0
    assert result.patch == ""  # still diffed, for grading


def test_an_observation_that_does_not_fit_ends_with_context_limit(task, chat):
    probe = play(task, chat, [block("submit")], "local", EpisodeConfig(max_turns=2))
    start = probe.transcript.prompt_tokens
    config = EpisodeConfig(max_turns=5, max_context_tokens=start + 300)
    result = play(task, chat, [block("seq 1 2000")], "local", config)
    assert result.termination == "context_limit" and len(result.turns) == 1
    assert result.turns[0].observation_tokens > 300
    assert result.transcript.messages[-1]["role"] == "assistant"  # the observation was not added
    assert result.transcript.fidelity_mismatches() == 0


def test_a_reply_cut_by_max_turn_tokens_is_closed_and_answered(task, chat):
    config = EpisodeConfig(max_turns=3, max_turn_tokens=20)
    result = play(task, chat, ["word " * 100, block("submit", "ok")], "local", config)
    assert result.termination == "submitted" and len(result.turns) == 2
    first = result.turns[0]
    assert first.format_error and first.completion_tokens == 20
    assert first.observation.startswith("Format error: your reply was cut at 20 tokens")
    t = result.transcript
    cut_end = t.prompt_tokens + 20  # the closing end-of-turn token: in the ids, not sampled
    assert t.token_ids[cut_end] == chat.end_of_turn_id and t.loss_mask[cut_end] == 0
    assert t.fidelity_mismatches() == 0


def test_a_failing_generator_ends_with_generation_error(task, chat):
    result = play(task, chat, [block("ls")], "local", EpisodeConfig(max_turns=5))
    assert result.termination == "generation_error" and len(result.turns) == 1
    assert result.error == "RuntimeError: replay script exhausted after 1 messages"
    assert result.patch == ""  # the sandbox is fine: the diff is still taken


def test_a_closed_sandbox_ends_with_sandbox_error(task, chat):
    def closing(sandbox, replay):
        def generate(ids, params):
            if replay.position == 1:
                sandbox.close()  # the sandbox goes away between two turns
            return replay.complete(ids, params)

        return generate

    result = play(
        task,
        chat,
        [block("ls"), block("ls")],
        "local",
        EpisodeConfig(max_turns=5),
        generate=closing,
    )
    assert result.termination == "sandbox_error" and len(result.turns) == 2
    assert "SandboxError" in result.error and "closed" in result.error
    assert result.patch is None
    score = score_episode(task, result, backend="local", max_turns=5, threshold=3)
    assert score.grade is None and score.reward == 0.0


@pytest.mark.docker
def test_a_killed_container_ends_with_sandbox_error(task, chat, docker_image):
    def killing(sandbox, replay):
        def generate(ids, params):
            if replay.position == 1:
                sandbox.host.container.kill()
            return replay.complete(ids, params)

        return generate

    result = play(
        task,
        chat,
        [block("ls"), block("ls")],
        "docker",
        EpisodeConfig(max_turns=5),
        generate=killing,
    )
    assert result.termination == "sandbox_error" and len(result.turns) == 2
    assert "SandboxError" in result.error and result.patch is None
