"""Resume after SIGKILL: a rollout stage killed midway keeps the episodes it finished, the next
run with the same inputs does not recompute them, and the published version holds every
(task, sample) exactly once."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from swerl.agent.episode import EpisodeConfig
from swerl.agent.rollout import RolloutConfig
from swerl.lake import Lake
from swerl.models.tiny import TinySpec, publish_tiny_model
from swerl.swe.toy import publish_toy_suite

SAMPLES = 3
CONFIG = RolloutConfig(
    samples=SAMPLES,
    backend="local",
    max_live_sandboxes=1,
    turn_penalty_threshold=2,
    episode=EpisodeConfig(max_turns=3, max_context_tokens=4096, max_turn_tokens=24),
)

STAGE = """
import sys
from swerl.agent.rollout import rollout
from swerl.lake import Lake
from tests.flows.test_resume import CONFIG
out = rollout(Lake(sys.argv[1]), model="tiny", tasks="toy", config=CONFIG, seed=7)
print("RESULT", out.trajectories, out.resumed_episodes)
"""


def _run_stage(root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(STAGE), str(root)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_sigkilled_rollout_resumes_without_recomputing(tmp_path):
    lake = Lake(tmp_path)
    publish_toy_suite(lake, n_train=3, n_eval=1, name="toy")
    publish_tiny_model(lake, TinySpec(vocab_size=400, hidden_size=32, layers=1), name="tiny")
    total = 4 * SAMPLES

    proc = _run_stage(tmp_path)
    deadline = time.monotonic() + 300
    done: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        done = sorted(tmp_path.glob("_work/rollout/*/*.pkl"))
        if len(done) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the stage ended before it could be killed:\n{proc.stdout.read()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not lake.versions("trajectories"), "a killed stage must publish nothing"
    before = {p.name: pickle.loads(p.read_bytes()) for p in done}
    assert 2 <= len(before) < total

    proc = _run_stage(tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    version, resumed = out.split("RESULT ")[1].split()
    assert int(resumed) >= len(before)

    rows = lake.read("trajectories", version).to_pylist()
    keys = [(r["instance_id"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys)) == total
    by_key = {(r["instance_id"], r["sample"]): r for r in rows}
    for episode in before.values():  # finished before the kill: published as they were saved
        row = by_key[episode.key]
        assert row["token_ids"] == episode.trajectory["token_ids"]
        assert row["total_s"] == episode.trajectory["total_s"]
    assert not list(tmp_path.glob("_work/rollout/*/*.pkl")), "the work folder is cleaned up"
