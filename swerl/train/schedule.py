"""The DAPO loop's decisions, as pure functions over the lake: which tasks an iteration draws,
whether it holds enough signal to train (dynamic sampling), and how the pool is re-filtered
between stage 1 and stage 2 (PAPER.md section 6). The `dapo` flow strings these together with the
`rollout` and `update_policy` stages; nothing here samples or trains.

    stages = DapoStages(stage1=DapoStage(...), stage2=DapoStage(...), stage2_from=3)
    ids = draw_tasks(pool_ids, 8, seed=0, iteration=2, draw=0)
    kept, total = signal(lake, ["<trajectories version>", ...], iteration=2)
    new_pool = refilter_pool(lake, pool="<task_pool version>", trajectories=[...])
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from swerl.lake import Lake
from swerl.train.dapo import keep_mask

REFILTER_STAGE = "refilter_pool"


@dataclass(frozen=True)
class DapoStage:
    """Settings that change between stage 1 and stage 2 (the paper's table in section 6)."""

    max_turns: int = 40
    max_context_tokens: int = 65_536
    eps_high: float = 0.3
    batch_size: int = 128
    """Trajectories per optimizer step, and the kept samples an iteration wants."""
    tasks_per_batch: int = 300
    """Tasks drawn per rollout batch (the paper's tasks per iteration)."""

    def __post_init__(self) -> None:
        if min(self.max_turns, self.max_context_tokens, self.batch_size, self.tasks_per_batch) < 1:
            raise ValueError(f"every DAPO stage setting must be >= 1: {self}")


@dataclass(frozen=True)
class DapoStages:
    stage1: DapoStage
    stage2: DapoStage | None = None
    stage2_from: int | None = None
    """First iteration of stage 2 (None: stage 1 throughout)."""

    def __post_init__(self) -> None:
        if (self.stage2 is None) != (self.stage2_from is None):
            raise ValueError("stage2 settings and stage2_from go together")
        if self.stage2 is not None and self.stage2_from is not None:
            if self.stage2_from < 1:
                raise ValueError(
                    f"stage2_from must be >= 1 (stage 1 runs first), got {self.stage2_from}"
                )
            if self.stage2.max_context_tokens < self.stage1.max_context_tokens:
                raise ValueError(
                    f"stage 2 context ({self.stage2.max_context_tokens}) is smaller than stage 1 "
                    f"({self.stage1.max_context_tokens}); stage 2 extends the context"
                )

    def at(self, iteration: int) -> tuple[int, DapoStage]:
        """(stage number, settings) of `iteration` (0-based)."""
        if (
            self.stage2 is not None
            and self.stage2_from is not None
            and iteration >= self.stage2_from
        ):
            return 2, self.stage2
        return 1, self.stage1


def draw_tasks(
    pool_ids: Sequence[str], n: int, *, seed: int, iteration: int, draw: int, exclude=()
) -> list[str]:
    """`n` task ids drawn without replacement from `pool_ids` minus `exclude` (tasks already drawn
    this iteration); deterministic in (seed, iteration, draw). Fewer when the pool runs out."""
    left = sorted(set(pool_ids) - set(exclude))
    rng = random.Random(f"dapo:{seed}:{iteration}:{draw}")
    rng.shuffle(left)
    return sorted(left[:n])


def signal(
    lake: Lake,
    versions: Sequence[str],
    iteration: int,
    *,
    scale_by_std: bool = True,
    drop_unsolved: bool = False,
    tol=1e-6,
) -> tuple[int, int]:
    """(samples with non-zero advantage, all samples) of `iteration` over `versions`: what the
    update would keep (with `drop_unsolved`, also only groups with a resolved sample). Dynamic
    sampling draws more tasks while the first is below batch size."""
    if not versions:
        return 0, 0
    table = pa.concat_tables(
        [
            lake.read("trajectories", v, columns=["group_id", "reward", "resolved", "iteration"])
            for v in versions
        ],
        promote_options="default",
    )
    table = table.filter(pc.equal(table["iteration"], iteration))
    if table.num_rows == 0:
        return 0, 0
    table = table.filter(pc.is_valid(table["reward"]))  # episodes that never started: no sample
    if table.num_rows == 0:
        return 0, 0
    _, keep = keep_mask(
        table["reward"].to_pylist(),
        table["group_id"].to_pylist(),
        table["resolved"].to_pylist() if drop_unsolved else None,
        scale_by_std=scale_by_std,
        tol=tol,
    )
    return int(keep.sum()), table.num_rows


def refilter_pool(
    lake: Lake,
    pool: str,
    trajectories: Sequence[str],
    *,
    max_solve_rate: float = 2 / 3,
    name: str | None = None,
    info: dict | None = None,
) -> str:
    """A new `task_pool` version for stage 2: the kept tasks of `pool` minus those solved in
    >= `max_solve_rate` of their attempts in `trajectories` and those never solved. Tasks with no
    attempt stay (nothing is known about them). Returns the version id (reused on a re-run)."""
    if not 0 < max_solve_rate <= 1:
        raise ValueError(f"max_solve_rate must be in (0, 1], got {max_solve_rate}")
    pool_v = lake.resolve("task_pool", pool)
    versions = sorted({lake.resolve("trajectories", v).version for v in trajectories})
    attempts: dict[str, list[bool]] = defaultdict(list)
    for v in versions:
        for row in lake.read("trajectories", v, columns=["instance_id", "resolved"]).to_pylist():
            attempts[row["instance_id"]].append(bool(row["resolved"]))
    rows = []
    for row in lake.read("task_pool", pool_v.version).to_pylist():
        reasons = list(row["reasons"])
        tries = attempts.get(row["instance_id"])
        if row["kept"] and tries:
            rate = sum(tries) / len(tries)
            if rate >= max_solve_rate:
                reasons.append(
                    f"solved in {sum(tries)}/{len(tries)} attempts (>= {max_solve_rate:.3g})"
                )
            elif rate == 0:
                reasons.append(f"never solved in {len(tries)} attempts")
        rows.append({**row, "kept": not reasons, "reasons": reasons})
    return lake.write(
        "task_pool",
        rows,
        stage=REFILTER_STAGE,
        parameters={"max_solve_rate": max_solve_rate},
        inputs={"task_pool": pool_v.version, "trajectories": ",".join(versions)},
        name=name,
        info=info,
    )


def pool_ids(lake: Lake, pool: str) -> list[str]:
    """Kept task ids of a `task_pool` version."""
    table = lake.read("task_pool", pool, columns=["instance_id", "kept"])
    return [r["instance_id"] for r in table.to_pylist() if r["kept"]]


def pool_tasks(lake: Lake, pool: str) -> str:
    """The `tasks` version a `task_pool` version was filtered from (through re-filters)."""
    v = lake.resolve("task_pool", pool)
    for _ in range(100):
        inputs = v.manifest.get("inputs", {})
        if "tasks" in inputs:
            return inputs["tasks"]
        if "task_pool" not in inputs:
            break
        v = lake.resolve("task_pool", inputs["task_pool"])
    raise ValueError(f"task_pool {pool}: its manifest names no tasks version it came from")
