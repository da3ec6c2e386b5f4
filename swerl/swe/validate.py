"""Validation runs and the `filter_tasks` stage: tasks -> `task_runs` + `task_pool`.

    filter_tasks(lake, tasks="toy-swe", validation=ValidationConfig(runs=3, backend="local"))

Every task is run `runs` times with its gold patch (every FAIL_TO_PASS and PASS_TO_PASS test must
pass) and `runs` times with no patch (every FAIL_TO_PASS test must fail), each time in a fresh
sandbox with the test patch applied (PAPER.md section 3; the paper runs 50 times, our default is
3). Any variation between runs of the same kind marks the task flaky. Every run is recorded in
`task_runs`; `task_pool` keeps every task with all its reasons to be dropped (the static rules of
`swerl.swe.pool` and the execution rules here).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass

from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT

from swerl.grading.patch import TestRun, run_tests
from swerl.lake import Lake
from swerl.swe.pool import (
    PoolFilter,
    contamination_reasons,
    mentions_import_error,
    pool_rows,
    static_reasons,
)
from swerl.swe.task import Task, load_tasks

KINDS = ("gold", "empty")


@dataclass(frozen=True)
class ValidationConfig:
    """How tasks are validated by execution."""

    runs: int = 3
    """Runs per task and patch kind; any variation between them marks the task flaky."""
    backend: str = "docker"
    """Sandbox backend: docker or local."""
    timeout: float = 1800.0
    """Seconds one test run may take."""
    concurrency: int = 4
    """Test runs in flight at once."""

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise ValueError(f"runs must be >= 1, got {self.runs}")
        if self.backend not in ("docker", "local"):
            raise ValueError(f"backend must be docker or local, got {self.backend!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")


def validation_runs(
    tasks: list[Task],
    config: ValidationConfig,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """`task_runs` rows: every task x kind x run, executed `config.concurrency` at a time."""
    jobs = [(t, kind, r) for t in tasks for r in range(config.runs) for kind in KINDS]
    rows: list[dict] = []
    with ThreadPoolExecutor(config.concurrency, thread_name_prefix="validate") as pool:
        futures = [pool.submit(_one_run, t, kind, r, config) for t, kind, r in jobs]
        for done, future in enumerate(as_completed(futures), start=1):
            rows.append(future.result())
            if progress is not None:
                progress(done, len(jobs))
    rows.sort(key=lambda row: (row["instance_id"], row["patch_kind"], row["run"]))
    return rows


def _one_run(task: Task, kind: str, run: int, config: ValidationConfig) -> dict:
    patch = (task.patch or "") if kind == "gold" else ""
    result = run_tests(task, patch, backend=config.backend, timeout=config.timeout)
    return {
        "instance_id": task.instance_id,
        "patch_kind": kind,
        "run": run,
        "outcome": result.grade.outcome,
        "resolved": result.grade.resolved,
        "tests_status": json.dumps(result.grade.tests_status, sort_keys=True),
        "import_error": mentions_import_error(marked_output(result.log)),
        "duration_s": result.duration_s,
        "backend": config.backend,
        "detail": _detail(kind, result),
    }


def _detail(kind: str, result: TestRun) -> str:
    """The grade's detail, with the log's tail when the run did not go as validation expects."""
    expected = result.grade.resolved == (kind == "gold") and result.grade.outcome != "error"
    return result.grade.detail if expected else f"{result.grade.detail}\n{result.log[-2000:]}"


def marked_output(log: str) -> str:
    """The part of an eval-script log between the test-output markers (what grading reads); the
    whole log when the markers are missing."""
    if START_TEST_OUTPUT not in log:
        return log
    return log.split(START_TEST_OUTPUT, 1)[1].split(END_TEST_OUTPUT, 1)[0]


def execution_reasons(task: Task, runs: list[dict], drop_import_errors: bool = True) -> list[str]:
    """Reasons to drop `task` given its validation runs (empty: it behaves):
    - the gold patch does not resolve it in every run;
    - a no-patch run could not be graded (the test patch does not apply, the image is missing,
      ...; a timeout counts as failing, as SWE-bench counts it as not resolved);
    - a FAIL_TO_PASS test passes in a no-patch run;
    - results (outcome and per-test status) vary between runs with the same patch: flaky;
    - with `drop_import_errors`, the no-patch test output shows ImportError/AttributeError.
    """
    reasons = []
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_kind[r["patch_kind"]].append(r)
    gold, empty = by_kind["gold"], by_kind["empty"]
    failed = [r for r in gold if not r["resolved"]]
    if failed:
        r = failed[0]
        reasons.append(
            f"gold patch does not resolve the task in {len(failed)}/{len(gold)} runs "
            f"(run {r['run']}: {r['outcome']})"
        )
    broken = [r for r in empty if r["outcome"] not in ("resolved", "unresolved", "timeout")]
    if broken:
        r = broken[0]
        reasons.append(
            f"no-patch run could not be graded in {len(broken)}/{len(empty)} runs "
            f"(run {r['run']}: {r['outcome']})"
        )
    f2p = set(task.fail_to_pass or [])
    passing = sorted(
        {
            t
            for r in empty
            for t in json.loads(r["tests_status"]).get("FAIL_TO_PASS", {}).get("success", [])
        }
        & f2p
    )
    if passing:
        reasons.append(f"FAIL_TO_PASS test(s) pass without the fix: {', '.join(passing[:5])}")
    for kind, group in (("gold", gold), ("empty", empty)):
        if len({(r["outcome"], r["tests_status"]) for r in group}) > 1:
            reasons.append(
                f"flaky: results vary across the {len(group)} runs with the {kind} patch"
            )
    if drop_import_errors and any(r["import_error"] for r in empty):
        reasons.append("tests fail with ImportError/AttributeError before the fix")
    return reasons


def filter_tasks(
    lake: Lake,
    *,
    tasks: str = "latest",
    rules: PoolFilter = PoolFilter(),
    validation: ValidationConfig = ValidationConfig(),
    eval_sets: tuple[str, ...] = (),
    decontaminate_by: str = "instance",
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    info: dict | None = None,
) -> tuple[str, str]:
    """The `filter_tasks` stage: returns the (`task_runs`, `task_pool`) versions it published,
    or the existing ones when the same inputs, parameters and code ran before."""
    tasks_version = lake.resolve("tasks", tasks).version
    eval_versions = {name: lake.resolve("tasks", name).version for name in eval_sets}
    parameters = {
        "rules": asdict(rules),
        "validation": asdict(validation),
        "eval_sets": eval_versions,
        "decontaminate_by": decontaminate_by,
    }
    inputs = {"tasks": tasks_version}
    if not force:
        runs_v = lake.find(
            "task_runs",
            lake.fingerprint(
                "task_runs", stage="filter_tasks", parameters=parameters, inputs=inputs
            ),
        )
        pool_v = lake.find(
            "task_pool",
            lake.fingerprint(
                "task_pool", stage="filter_tasks", parameters=parameters, inputs=inputs
            ),
        )
        if runs_v is not None and pool_v is not None:
            return runs_v.version, pool_v.version

    task_list = load_tasks(tasks_version, root=lake.root)
    eval_tasks = {name: load_tasks(v, root=lake.root) for name, v in eval_versions.items()}
    reasons = {
        t.instance_id: static_reasons(t, rules)
        + contamination_reasons(t, eval_tasks, decontaminate_by)
        for t in task_list
    }
    # Tasks dropped by static rules are not worth running (they cannot come back).
    to_run = [t for t in task_list if not reasons[t.instance_id]]
    runs = validation_runs(to_run, validation, progress)
    runs_by_task: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        runs_by_task[r["instance_id"]].append(r)
    for t in to_run:
        reasons[t.instance_id] += execution_reasons(
            t, runs_by_task[t.instance_id], rules.drop_import_errors
        )

    with lake.writer(
        "task_runs", stage="filter_tasks", parameters=parameters, inputs=inputs, info=info
    ) as runs_w:
        runs_w.write(runs)
        with lake.writer(
            "task_pool", stage="filter_tasks", parameters=parameters, inputs=inputs, info=info
        ) as pool_w:
            pool_w.write(pool_rows(task_list, reasons))
    return runs_w.version, pool_w.version
