"""Rollouts of a tiny random-weight model on toy-SWE (local sandboxes, the hf generator): token
fidelity with our template and Qwen2.5's, sampler log-probs against a forward pass, and the
`rollout` stage publishing, reusing, forcing and resuming in a temporary lake."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from swerl.agent.chat import ChatFormat
from swerl.agent.episode import EpisodeConfig
from swerl.agent.rollout import RolloutConfig, rollout, run_batched, run_rollouts
from swerl.agent.tools import ToolConfig
from swerl.inference.base import SamplingParams
from swerl.inference.batching import BatchingGenerator
from swerl.inference.hf import HFGenerator
from swerl.lake import Lake
from swerl.models.tiny import build_tiny_model
from swerl.swe.task import load_tasks
from swerl.swe.toy import publish_toy_suite

QWEN = Path(__file__).resolve().parents[3] / "shared/fixtures/chat_templates/qwen2.5-instruct.jinja"
TEMPLATES = {"chatml": None, "qwen2.5": QWEN}
CONFIG = RolloutConfig(
    samples=2,
    stage="dapo",
    backend="local",
    max_live_sandboxes=4,
    turn_penalty_threshold=2,
    episode=EpisodeConfig(max_turns=3, max_turn_tokens=24, sampling=SamplingParams()),
)
# the same with nothing of the local sandbox's random root in the episode: the tiny prompts do
# not name the repository's directory, and paths are shown relative to it
STABLE = dataclasses.replace(
    CONFIG,
    prompts_dir="tiny",
    episode=dataclasses.replace(CONFIG.episode, tools=ToolConfig(relative_paths=True)),
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("lake"))
    publish_toy_suite(lake, seed=0, n_train=2, n_eval=0)
    return lake


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m")


@pytest.fixture(scope="module")
def model(model_dir):
    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


class Crash(RuntimeError):
    pass


def chat_format(model_dir: Path, template: str) -> ChatFormat:
    tok = AutoTokenizer.from_pretrained(model_dir)
    if TEMPLATES[template] is not None:
        tok.chat_template = TEMPLATES[template].read_text()
    return ChatFormat(tok)


def check_trajectory(row: dict, chat: ChatFormat, model) -> None:
    """token_ids decode to exactly the messages, fidelity 0, log-probs equal a forward pass."""
    ids, mask, logprobs = row["token_ids"], row["loss_mask"], row["sampler_logprobs"]
    assert len(ids) == len(mask) == len(logprobs) == row["total_tokens"]
    assert row["fidelity_mismatches"] == 0
    messages = row["messages"]
    last_is_user = messages[-1]["role"] == "user"
    rendered = chat.render(messages, add_generation_prompt=last_is_user)
    if not last_is_user:  # the trajectory stops at the last reply's end-of-turn token
        rendered = rendered[: rendered.rindex(chat.end_of_turn) + len(chat.end_of_turn)]
    assert chat.decode(ids) == rendered
    assert sum(mask) == row["completion_tokens"] > 0
    assert mask[: row["prompt_tokens"]] == [0] * row["prompt_tokens"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    sampled = [i for i, m in enumerate(mask) if m]
    expected = torch.stack([logp[i - 1, ids[i]] for i in sampled])
    actual = torch.tensor([logprobs[i] for i in sampled])
    assert torch.allclose(actual, expected, atol=1e-4), (actual - expected).abs().max()
    assert all(logprobs[i] == 0.0 for i, m in enumerate(mask) if not m)


@pytest.mark.parametrize("template", TEMPLATES)
def test_tiny_model_rollouts_are_token_faithful(lake, model_dir, model, template):
    chat = chat_format(model_dir, template)
    tasks = load_tasks("toy-swe", root=lake.root)
    batching = BatchingGenerator(HFGenerator(model_dir, seed=3), max_batch=8)
    try:
        episodes = run_rollouts(tasks, batching, chat, CONFIG, policy_version="tiny")
    finally:
        batching.close()
    assert [e.key for e in episodes] == [(t.instance_id, s) for t in tasks for s in range(2)]
    assert max(batching.batch_sizes) > 1  # concurrent episodes shared generation batches
    for e in episodes:
        row = e.trajectory
        assert row["termination"] in ("max_turns", "context_limit", "submitted")
        assert row["turns"] == len(e.turns) and row["error"] is None
        assert row["reward"] == row["turn_penalty"] + row["resolved"]
        check_trajectory(row, chat, model)
    assert sum(e.trajectory["format_errors"] for e in episodes) > 0  # random weights


def test_seeded_episodes_sample_the_same_tokens_however_they_are_batched(lake, model_dir):
    chat = chat_format(model_dir, "chatml")
    tasks = load_tasks("toy-swe", root=lake.root)
    runs = []
    for max_batch, generator_seed in ((8, 3), (1, 4)):  # other batches, other generator stream
        episodes = run_batched(
            tasks,
            HFGenerator(model_dir, seed=generator_seed),
            chat,
            STABLE,
            max_batch=max_batch,
            policy_version="tiny",
            seed=11,
        )
        runs.append([e.trajectory["token_ids"] for e in episodes])
    assert runs[0] == runs[1]
    assert len({tuple(ids) for ids in runs[0]}) == len(runs[0])  # episodes differ


def test_rollout_stage_publishes_reuses_forces_and_resumes(lake, model_dir, model):
    calls = []

    def crash_after_first(done: int, total: int) -> None:
        calls.append((done, total))
        raise Crash("stop after the first saved episode")

    kwargs = dict(model=str(model_dir), tasks="toy-swe", config=STABLE, max_batch=8)
    with pytest.raises(Crash):
        rollout(lake, progress=crash_after_first, **kwargs)
    assert calls == [(1, 4)] and "trajectories" not in lake.datasets()
    saved = {p.name for p in (lake.root / "_work" / "rollout").rglob("*.pkl")}
    assert len(saved) >= 1

    progress = []
    out = rollout(lake, progress=lambda d, t: progress.append((d, t)), **kwargs)
    assert not out.reused and out.resumed_episodes == len(saved)
    assert progress[-1] == (4, 4) and len(progress) == 4 - len(saved)
    assert not list((lake.root / "_work" / "rollout").rglob("*.pkl"))  # cleaned after publishing

    trajectories = lake.read("trajectories", out.trajectories).to_pylist()
    turns = lake.read("turns", out.turns).to_pylist()
    tasks = load_tasks("toy-swe", root=lake.root)
    assert sorted(r["trajectory_id"] for r in trajectories) == sorted(
        f"dapo/0/{t.instance_id}/{s}" for t in tasks for s in range(2)
    )
    assert len(turns) == sum(r["turns"] for r in trajectories)
    chat = chat_format(model_dir, "chatml")
    for row in trajectories:
        assert row["policy_version"] == f"path:{model_dir.resolve()}"
        assert row["generator"] == "hf" and row["stage"] == "dapo"
        check_trajectory(row, chat, model)
    assert_groups_are_not_repeats(trajectories)
    manifest = lake.manifest("trajectories", out.trajectories)
    assert manifest["parameters"]["config"]["episode"]["sampling"]["temperature"] == 1.0

    again = rollout(lake, **kwargs)
    assert again.reused and (again.trajectories, again.turns) == (out.trajectories, out.turns)
    forced = rollout(lake, force=True, **kwargs)
    assert not forced.reused and forced.trajectories != out.trajectories
    assert len(lake.versions("trajectories")) == 2
    # episodes sample with their own seeds: the crashed-and-resumed run drew what an
    # uninterrupted one draws, though its episodes shared other batches
    uninterrupted = lake.read("trajectories", forced.trajectories).to_pylist()
    assert [r["token_ids"] for r in uninterrupted] == [r["token_ids"] for r in trajectories]

    # shards run their share and publish nothing; a last call publishes every episode at once
    sharded = dict(kwargs, seed=1)
    for shard in (0, 1):
        part = rollout(lake, shard=shard, shards=2, **sharded)
        assert part.trajectories is None and part.turns is None
    final = rollout(lake, **sharded)
    assert final.resumed_episodes == 4 and final.trajectories not in (out.trajectories, None)
    rows = lake.read("trajectories", final.trajectories).to_pylist()
    assert len(rows) == 4 and all(r["fidelity_mismatches"] == 0 for r in rows)
    assert_groups_are_not_repeats(rows)
    assert [r["token_ids"] for r in rows] != [r["token_ids"] for r in trajectories]  # seed 1


def assert_groups_are_not_repeats(rows: list[dict]) -> None:
    """Samples of one task run in different calls (a resume, other shards) must not repeat each
    other's random draws."""
    by_group: dict[str, list[list[int]]] = {}
    for r in rows:
        by_group.setdefault(r["group_id"], []).append(r["token_ids"])
    for group, samples in by_group.items():
        assert len({tuple(ids) for ids in samples}) == len(samples), f"repeated samples in {group}"


@pytest.mark.docker
def test_a_missing_docker_image_fails_the_stage_before_any_episode(lake, model_dir, docker_client):

    from swerl.agent.rollout import check_images
    from swerl.sandbox import SandboxError

    task = load_tasks("toy-swe", root=lake.root)[0]
    unbuilt = dataclasses.replace(task, instance_id="toy__never-built-0")
    with pytest.raises(SandboxError, match="1 of 1 tasks have no docker image"):
        check_images([unbuilt])


def test_episode_store_saves_whole_files_and_finds_them_again(tmp_path):
    from swerl.agent.store import EpisodeStore

    store = EpisodeStore(tmp_path / "work")
    (tmp_path / "work").mkdir()
    assert store.keys() == set() and store.load_all() == {}
    store.save(("owner__repo.v2-7", 0), {"reward": 1.0})  # a dot in the id: still one key
    store.save(("owner__repo.v2-7", 11), {"reward": 0.0})
    store.save(("other-1", 3), [1, 2])
    store.save(("other-1", 3), [3])  # saved again: replaced
    # a writer killed between write and rename leaves only a temporary file: not an episode
    (tmp_path / "work" / "other-2.0.pkl.123.tmp").write_bytes(b"half")
    assert store.keys() == {("owner__repo.v2-7", 0), ("owner__repo.v2-7", 11), ("other-1", 3)}
    assert store.load_all() == {
        ("other-1", 3): [3],
        ("owner__repo.v2-7", 0): {"reward": 1.0},
        ("owner__repo.v2-7", 11): {"reward": 0.0},
    }
    assert EpisodeStore(tmp_path / "work").keys() == store.keys()  # a new process sees them
    with pytest.raises(ValueError, match="'a/b' cannot name a file"):
        store.save(("a/b", 0), 1)
    store.clear()
    assert not (tmp_path / "work").exists()


RACE = """
import json, sys, time
from pathlib import Path
from swerl.agent.rollout import rollout
from swerl.lake import Lake
from tests.agent.test_rollout import CONFIG
release = Path(sys.argv[3])
def hold(done, total):  # the first caller keeps the work until the test releases it
    deadline = time.monotonic() + 300
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
out = rollout(Lake(sys.argv[1]), model=sys.argv[2], tasks="toy-swe", config=CONFIG, max_batch=8,
              seed=7, progress=hold)
print(json.dumps([out.trajectories, out.reused]))
"""


def test_two_processes_running_one_rollout_publish_it_once(lake, model_dir):
    """The second caller of a rollout already running (same fingerprint, same lake) waits for
    the first and returns its version instead of racing it for the shared work folder."""
    root = Path(__file__).resolve().parents[2]
    before = len(lake.versions("trajectories"))
    release = lake.root.parent / "release-the-first"

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", RACE, str(lake.root), str(model_dir), str(release)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = start()
    work = lake.root / "_work" / "rollout"
    deadline = time.monotonic() + 120
    while not list(work.rglob("*.pkl")):  # the first has saved an episode: it holds the work
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    second = start()
    said: list[str] = []  # the second's stderr, read as it comes

    def read() -> None:
        for line in second.stderr:
            said.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # the first holds the work (its progress callback waits) until the second says it waits
    deadline = time.monotonic() + 240
    while not any("another process is running rollout" in line for line in said):
        assert second.poll() is None and time.monotonic() < deadline, "".join(said)[-2000:]
        time.sleep(0.1)
    release.touch()
    out1, err1 = first.communicate(timeout=300)
    second.wait(timeout=300)
    reader.join(timeout=10)
    out2, err2 = second.stdout.read(), "".join(said)
    assert first.returncode == 0 and second.returncode == 0, (err1[-2000:], err2[-2000:])
    (v1, reused1), (v2, reused2) = json.loads(out1), json.loads(out2)
    assert not reused1 and reused2 and v1 == v2
    assert len(lake.versions("trajectories")) == before + 1
