"""The `replay` generator of the rollout stage: which recording each sample plays, the rows it
publishes (the policy's token ids, no sampler log-probs, the replayed versions as inputs), and
bad input (a task without a recording) failing before any episode."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from swerl.agent.chat import ChatFormat
from swerl.agent.episode import EpisodeConfig
from swerl.agent.rollout import Replays, RolloutConfig, load_recordings, rollout
from swerl.lake import Lake
from swerl.models.tiny import build_tiny_model
from swerl.swe.task import load_tasks
from swerl.swe.toy import publish_toy_suite

SUBMIT = "Done.\n```command\nsubmit\n```"
LS = "Let me look.\n```command\nls\n```"
CAT = "Let me read it.\n```command\ncat README.md\n```"
CONFIG = RolloutConfig(
    samples=4,
    backend="local",
    max_live_sandboxes=2,
    turn_penalty_threshold=2,
    episode=EpisodeConfig(max_turns=3, max_context_tokens=8192),
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("lake"))
    publish_toy_suite(lake, seed=0, n_train=2, n_eval=0)
    return lake


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m")


def recording(instance_id: str, sample: int, script: list[str]) -> dict:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    for text in script:
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "obs"}]
    return {
        "trajectory_id": f"dapo/0/{instance_id}/{sample}",
        "instance_id": instance_id,
        "stage": "dapo",
        "sample": sample,
        "messages": messages,
    }


@pytest.fixture(scope="module")
def recorded(lake) -> tuple[str, str, str, str]:
    """Two trajectories versions: the first holds task a's samples 1 and 0 (stored out of order)
    and a sandbox error (no messages); the second task a's sample 0. Task b has none."""
    a, b = (t.instance_id for t in load_tasks("toy-swe", root=lake.root))
    broken = {**recording(a, 2, []), "messages": None}
    first = lake.write(
        "trajectories",
        [recording(a, 1, [LS, SUBMIT]), recording(a, 0, [SUBMIT]), broken],
        stage="test",
    )
    second = lake.write("trajectories", [recording(a, 0, [CAT, SUBMIT])], stage="test", name="r2")
    return first, second, a, b


def test_recordings_are_ordered_by_version_then_sample_and_samples_cycle(lake, recorded, model_dir):
    first, second, a, b = recorded
    scripts = load_recordings(lake, [first, second], [a])
    assert scripts == {a: [[SUBMIT], [LS, SUBMIT], [CAT, SUBMIT]]}
    assert load_recordings(lake, [second, first], [a])[a][0] == [CAT, SUBMIT]

    chat = ChatFormat(AutoTokenizer.from_pretrained(model_dir))
    replays = Replays(scripts, chat)
    assert [replays.for_episode(a, s).messages for s in range(4)] == [
        [SUBMIT],
        [LS, SUBMIT],
        [CAT, SUBMIT],
        [SUBMIT],  # sample 3 -> recording 3 mod 3
    ]
    gen = replays.for_episode(a, 1)
    assert gen.name == "replay" and not gen.has_logprobs


def test_a_task_without_a_recording_fails_naming_it_and_the_versions(lake, recorded, model_dir):
    first, second, a, b = recorded
    with pytest.raises(ValueError, match=f"1 of 2 tasks .* trajectories {first}, {second}: {b}"):
        load_recordings(lake, [first, second], [a, b])
    before = [v.version for v in lake.versions("trajectories")]
    kwargs = dict(model=str(model_dir), tasks="toy-swe", config=CONFIG)
    with pytest.raises(ValueError, match=f"trajectories {first}: {b}$"):
        rollout(lake, generator="replay", replay=[first], **kwargs)
    with pytest.raises(ValueError, match="generator replay needs `replay`"):
        rollout(lake, generator="replay", **kwargs)
    with pytest.raises(ValueError, match="`replay` is for generator replay, not 'hf'"):
        rollout(lake, generator="hf", replay=[first], **kwargs)
    with pytest.raises(ValueError, match="unknown generator 'nope'"):
        rollout(lake, generator="nope", **kwargs)
    assert [v.version for v in lake.versions("trajectories")] == before
    assert not (lake.root / "_work").exists() or not any((lake.root / "_work").rglob("*.pkl"))


def test_the_rollout_stage_replays_recordings_with_the_policys_tokens(lake, recorded, model_dir):
    first, second, a, _ = recorded
    out = rollout(
        lake,
        model=str(model_dir),
        tasks="toy-swe",
        instances=[a],
        config=CONFIG,
        generator="replay",
        replay=[first, "r2"],  # a version id and a name
    )
    rows = lake.read("trajectories", out.trajectories).to_pylist()
    chat = ChatFormat(AutoTokenizer.from_pretrained(model_dir))
    expected = [[SUBMIT], [LS, SUBMIT], [CAT, SUBMIT], [SUBMIT]]
    assert [r["sample"] for r in rows] == [0, 1, 2, 3]
    for row, script in zip(rows, expected, strict=True):
        assert [m["content"] for m in row["messages"] if m["role"] == "assistant"] == script
        assert row["generator"] == "replay" and row["sampler_logprobs"] is None
        assert row["termination"] == "submitted" and row["turns"] == len(script)
        assert row["policy_version"] == f"path:{model_dir.resolve()}"
        assert row["fidelity_mismatches"] == 0 and len(row["loss_mask"]) == len(row["token_ids"])
        sampled = [t for t, m in zip(row["token_ids"], row["loss_mask"], strict=True) if m]
        assert sampled == [i for text in script for i in chat.encode(text) + [chat.end_of_turn_id]]
    manifest = lake.manifest("trajectories", out.trajectories)
    assert manifest["inputs"]["trajectories"] == f"{first},{second}"
    assert manifest["parameters"]["generator"] == "replay"
    again = rollout(
        lake,
        model=str(model_dir),
        tasks="toy-swe",
        instances=[a],
        config=CONFIG,
        generator="replay",
        replay=[first, second],
    )
    assert again.reused and again.trajectories == out.trajectories
