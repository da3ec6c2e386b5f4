"""The learning benchmark end to end at smoke size (`--quick`, about a minute): every stage runs
through the library on one lake, the stage table and the honesty checks are printed, and a
re-run on the same lake reuses every finished stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from swerl.lake import Lake

ROOT = Path(__file__).resolve().parents[1]


def run_quick(data: Path, *extra: str) -> str:
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "learning.py"),
        "--quick",
        "--data",
        str(data),
        *extra,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_learning_benchmark_quick_runs_every_stage_and_reuses_them(tmp_path):
    out = run_quick(tmp_path / "lake", "--plot", str(tmp_path / "table.png"))
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in table[1:]] == ["| base", "| rft", "| dapo", "| flipped"]
    for row in table[1:]:
        pass_at_1 = float(row.split(" | ")[1])
        assert 0.0 <= pass_at_1 <= 1.0
    assert "gap base -> rft:" in out and "gap rft -> dapo:" in out
    assert "DAPO samples dropped for zero advantage:" in out
    evaluated = [line for line in out.splitlines() if line.endswith("...") and "] eval " in line]
    assert len(evaluated) >= 3  # base, dapo, flipped (and rft when RFT had successes)
    assert out.count("resolved by bug family {") == len(evaluated)  # one line per evaluation
    assert "mean sampler-trainer gap" in out and "flipped-advantage control: Pass@1" in out
    # the control trains on DAPO's own batch (rewards negated): it samples nothing itself
    assert "flip 1 rollout: DAPO's iteration-1 batch" in out and "flip 1 rollout ..." not in out
    lake = Lake(tmp_path / "lake")
    flipped = [v for v in lake.versions("trajectories") if v.manifest["stage"] == "flip_rewards"]
    assert len(flipped) == 1
    source = lake.read("trajectories", flipped[0].manifest["inputs"]["trajectories"])
    negated = lake.read("trajectories", flipped[0].version)
    assert negated["reward"].to_pylist() == [-r for r in source["reward"].to_pylist()]
    published = {d: len(lake.versions(d)) for d in ("models", "trajectories", "evals")}
    # the plot and the results record
    assert (tmp_path / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "lake" / "learning.json").read_text())
    assert list(record["table"]) == ["base", "rft", "dapo", "flipped"]
    assert record["settings"]["drop_unsolved"] is True and len(record["dapo"]["dapo"]) == 1

    again = run_quick(tmp_path / "lake")  # every stage found by its fingerprint
    assert {d: len(lake.versions(d)) for d in published} == published
    assert [line for line in again.splitlines() if line.startswith("| ")] == table
