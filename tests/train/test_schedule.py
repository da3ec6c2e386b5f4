"""The DAPO loop's decisions on hand-made trajectories in a real lake."""

from __future__ import annotations

import pytest

from swerl.lake import Lake
from swerl.train.schedule import DapoStage, DapoStages, draw_tasks, pool_ids, refilter_pool, signal


def _traj(
    lake: Lake,
    outcomes: dict[str, list[bool]],
    iteration: int = 0,
    rewards: dict[str, list[float]] | None = None,
) -> str:
    rows = []
    for task, resolved in outcomes.items():
        for s, ok in enumerate(resolved):
            reward = (rewards or {}).get(task, [1.0 if r else 0.0 for r in resolved])[s]
            rows.append(
                {
                    "trajectory_id": f"{task}/{iteration}/{s}",
                    "instance_id": task,
                    "repo": "toy/x",
                    "stage": "dapo",
                    "iteration": iteration,
                    "group_id": f"dapo/{iteration}/{task}",
                    "sample": s,
                    "resolved": ok,
                    "reward": reward,
                }
            )
    return lake.write("trajectories", rows, stage="test", parameters={"n": len(rows)}, force=True)


def _pool(lake: Lake, kept: list[str], dropped: list[str]) -> str:
    rows = [{"instance_id": t, "repo": "toy/x", "kept": True, "reasons": []} for t in kept]
    rows += [
        {"instance_id": t, "repo": "toy/x", "kept": False, "reasons": ["static"]} for t in dropped
    ]
    return lake.write("task_pool", rows, stage="test")


def test_signal_counts_only_groups_with_a_spread(tmp_path):
    lake = Lake(tmp_path)
    v1 = _traj(lake, {"a": [True, False, False], "b": [False, False, False]}, iteration=1)
    v2 = _traj(lake, {"c": [True, True, True], "d": [True, False, True]}, iteration=1)
    assert signal(lake, [v1], 1) == (3, 6)
    assert signal(lake, [v1, v2], 1) == (6, 12)
    assert signal(lake, [v1, v2], 0) == (0, 0)  # another iteration: nothing
    assert signal(lake, [], 1) == (0, 0)


def test_signal_with_drop_unsolved_counts_only_groups_with_a_success(tmp_path):
    lake = Lake(tmp_path)
    # group b has no success, but the turn penalty gives it a spread
    v = _traj(lake, {"a": [True, False], "b": [False, False]}, 1, rewards={"b": [0.0, -1.0]})
    assert signal(lake, [v], 1) == (4, 4)
    assert signal(lake, [v], 1, drop_unsolved=True) == (2, 4)


def test_refilter_drops_easy_and_never_solved_tasks_and_keeps_untried(tmp_path):
    lake = Lake(tmp_path)
    pool = _pool(lake, ["easy", "hard", "mid", "untried"], ["static"])
    v = _traj(
        lake,
        {"easy": [True, True, False], "hard": [False, False, False], "mid": [True, False, False]},
    )
    new = refilter_pool(lake, pool, [v], name="stage2-pool")
    rows = {r["instance_id"]: r for r in lake.read("task_pool", new).to_pylist()}
    assert pool_ids(lake, new) == ["mid", "untried"]
    assert rows["easy"]["reasons"] == ["solved in 2/3 attempts (>= 0.667)"]
    assert rows["hard"]["reasons"] == ["never solved in 3 attempts"]
    assert rows["static"]["reasons"] == ["static"]
    assert refilter_pool(lake, pool, [v], name="stage2-pool") == new  # a re-run reuses it
    assert lake.manifest("task_pool", new)["inputs"] == {"task_pool": pool, "trajectories": v}


def test_draws_are_deterministic_disjoint_and_bounded():
    ids = [f"t{i}" for i in range(10)]
    a = draw_tasks(ids, 4, seed=0, iteration=3, draw=0)
    assert a == draw_tasks(ids, 4, seed=0, iteration=3, draw=0)
    assert len(a) == 4 and set(a) <= set(ids)
    b = draw_tasks(ids, 4, seed=0, iteration=3, draw=1, exclude=a)
    assert not set(a) & set(b)
    assert len(draw_tasks(ids, 4, seed=0, iteration=3, draw=2, exclude=a + b)) == 2


def test_stage_switch_and_contradictions():
    s1, s2 = DapoStage(40, 65_536, 0.3, 128, 300), DapoStage(80, 131_072, 0.26, 256, 100)
    stages = DapoStages(s1, s2, stage2_from=2)
    assert [stages.at(i)[0] for i in range(4)] == [1, 1, 2, 2]
    with pytest.raises(ValueError, match="stage 2 context .* smaller than stage 1"):
        DapoStages(s1, DapoStage(80, 32_768, 0.26, 256, 100), stage2_from=2)
    with pytest.raises(ValueError, match="go together"):
        DapoStages(s1, s2)
