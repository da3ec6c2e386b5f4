"""Validation by execution and the `filter_tasks` stage, on toy-SWE tasks in a temporary lake.

Good tasks (one per bug family and split) validate with none flaky and all kept, in the local
backend and, for a few, in docker. Deliberately broken tasks, made here from toy tasks, are each
dropped with the right reason: a gold patch that fixes nothing, a FAIL_TO_PASS test that passes
without the fix, a flaky test (it passes in exactly one run: a file created with O_EXCL outside
the sandbox), FAIL_TO_PASS tests failing with ImportError or with AttributeError before the fix.
`filter_tasks` records every run in `task_runs`, every task in `task_pool`, reuses its versions
for the same inputs, makes new ones with `force`, and drops tasks in a named eval set.
`-m slow` validates the whole default suite (64 tasks, 3 runs each).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from swerl.lake import Lake
from swerl.sandbox.images import build_images
from swerl.swe.pool import PoolFilter
from swerl.swe.task import Task
from swerl.swe.toy import publish_toy_suite
from swerl.swe.toy.build import task_rows
from swerl.swe.toy.families import FAMILIES
from swerl.swe.toy.generate import generate_task, unified_diff
from swerl.swe.validate import (
    ValidationConfig,
    execution_reasons,
    filter_tasks,
    validation_runs,
)

SEED = 0
LOCAL = ValidationConfig(runs=2, backend="local", timeout=120)


def representative_rows() -> list[dict]:
    """One task per family and split of the default suite, every difficulty (as in
    tests/grading/test_patch.py)."""
    n = len(FAMILIES)
    picks = [("train", f + n * (f % 3)) for f in range(n)]
    picks += [("eval", f + n * ((f + 1) % 2)) for f in range(n)]
    return task_rows([generate_task(SEED, split, i) for split, i in picks], SEED)


@pytest.fixture(scope="module")
def good() -> list[Task]:
    return [Task.from_row(r) for r in representative_rows()]


def new_file(path: str, text: str) -> str:
    lines = text.splitlines(keepends=True)
    body = "".join(f"+{line}" for line in lines)
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
        f"@@ -0,0 +1,{len(lines)} @@\n{body}"
    )


def package(task: Task) -> str:
    return task.repo.split("/", 1)[1]


def broken_tasks(good: list[Task], flag: Path) -> dict[str, Task]:
    """Broken variants of good tasks, by the reason they must be dropped for."""
    a, b, c, d, e = good[:5]
    bug = a.meta["bug_file"]
    no_fix = dataclasses.replace(
        a,
        instance_id="toy__broken-nofix",
        patch=unified_diff(bug, a.repo_files[bug], a.repo_files[bug] + "# not a fix\n"),
    )
    moved = b.pass_to_pass[0]
    passes_already = dataclasses.replace(
        b,
        instance_id="toy__broken-passes",
        fail_to_pass=b.fail_to_pass + [moved],
        pass_to_pass=b.pass_to_pass[1:],
    )
    once = (
        "import os\n\n\ndef test_once():\n"
        f"    os.close(os.open({str(flag)!r}, os.O_CREAT | os.O_EXCL))  # only the first run\n"
    )
    flaky = dataclasses.replace(
        c,
        instance_id="toy__broken-flaky",
        test_patch=c.test_patch + new_file("tests/test_once.py", once),
        pass_to_pass=c.pass_to_pass + ["tests/test_once.py::test_once"],
    )
    pkg = package(d)
    import_error = dataclasses.replace(
        d,
        instance_id="toy__broken-import",
        patch=d.patch + new_file(f"{pkg}/extra.py", "VALUE = 1\n"),
        test_patch=d.test_patch
        + new_file(
            "tests/test_extra.py",
            f"def test_extra_value():\n    from {pkg}.extra import VALUE\n\n    assert VALUE == 1\n",
        ),
        fail_to_pass=d.fail_to_pass + ["tests/test_extra.py::test_extra_value"],
    )
    pkg, init = package(e), f"{package(e)}/__init__.py"
    attribute_error = dataclasses.replace(
        e,
        instance_id="toy__broken-attribute",
        patch=e.patch
        + unified_diff(init, e.repo_files[init], e.repo_files[init] + "EXTRA_FLAG = True\n"),
        test_patch=e.test_patch
        + new_file(
            "tests/test_flag.py",
            f"import {pkg}\n\n\ndef test_flag():\n    assert {pkg}.EXTRA_FLAG is True\n",
        ),
        fail_to_pass=e.fail_to_pass + ["tests/test_flag.py::test_flag"],
    )
    assert init not in {p.split(" b/")[-1] for p in e.patch.splitlines() if p[:4] == "diff"}
    return {
        "gold": no_fix,
        "passes": passes_already,
        "flaky": flaky,
        "import": import_error,
        "attribute": attribute_error,
    }


def publish(lake: Lake, tasks: list[Task], name: str) -> str:
    return lake.write("tasks", [t.to_row() for t in tasks], stage="test", name=name)


def pool_of(lake: Lake, version: str) -> dict[str, dict]:
    return {r["instance_id"]: r for r in lake.read("task_pool", version).to_pylist()}


def test_good_tasks_validate_none_flaky_all_kept(good, tmp_path):
    lake = Lake(tmp_path / "lake")
    publish(lake, good, "toy-subset")
    calls = []
    runs_v, pool_v = filter_tasks(
        lake, tasks="toy-subset", validation=LOCAL, progress=lambda d, t: calls.append((d, t))
    )
    pool = pool_of(lake, pool_v)
    assert {i: r["reasons"] for i, r in pool.items() if not r["kept"]} == {}
    assert len(pool) == len(good)
    runs = lake.read("task_runs", runs_v).to_pylist()
    assert len(runs) == len(good) * 2 * LOCAL.runs  # every task x kind x run is recorded
    assert calls[-1] == (len(runs), len(runs))
    for r in runs:
        status = json.loads(r["tests_status"])
        task = next(t for t in good if t.instance_id == r["instance_id"])
        assert r["backend"] == "local" and r["duration_s"] > 0 and r["run"] in (0, 1)
        assert r["import_error"] is False
        if r["patch_kind"] == "gold":
            assert r["outcome"] == "resolved" and r["resolved"]
            assert sorted(status["FAIL_TO_PASS"]["success"]) == sorted(task.fail_to_pass)
        else:
            assert r["outcome"] == "unresolved" and not r["resolved"]
            assert sorted(status["FAIL_TO_PASS"]["failure"]) == sorted(task.fail_to_pass)
            assert sorted(status["PASS_TO_PASS"]["success"]) == sorted(task.pass_to_pass)


def test_broken_tasks_are_dropped_for_the_right_reason(good, tmp_path):
    lake = Lake(tmp_path / "lake")
    broken = broken_tasks(good, tmp_path / "once.flag")
    publish(lake, list(broken.values()), "broken")
    runs_v, pool_v = filter_tasks(lake, tasks="broken", validation=LOCAL)
    pool = pool_of(lake, pool_v)
    reasons = {kind: pool[t.instance_id]["reasons"] for kind, t in broken.items()}

    assert not any(pool[t.instance_id]["kept"] for t in broken.values())
    assert reasons["gold"] == [
        "gold patch does not resolve the task in 2/2 runs (run 0: unresolved)"
    ]
    moved = broken["passes"].fail_to_pass[-1]
    assert reasons["passes"] == [f"FAIL_TO_PASS test(s) pass without the fix: {moved}"]
    assert any(r.startswith("flaky: results vary across the 2 runs") for r in reasons["flaky"])
    import_reason = "tests fail with ImportError/AttributeError before the fix"
    assert reasons["import"] == [import_reason]
    assert reasons["attribute"] == [import_reason]

    runs = lake.read("task_runs", runs_v).to_pylist()
    by_task: dict[str, list[dict]] = {}
    for r in runs:
        by_task.setdefault(r["instance_id"], []).append(r)
    # the flaky test passed in exactly one of its four runs
    once = "tests/test_once.py::test_once"
    passed = [
        r
        for r in by_task["toy__broken-flaky"]
        if once in json.loads(r["tests_status"])["PASS_TO_PASS"]["success"]
    ]
    assert len(passed) == 1
    assert all(
        r["import_error"] for r in by_task["toy__broken-import"] if r["patch_kind"] == "empty"
    )
    # the rule is a parameter: without it, the import-error tasks are good tasks
    for kind in ("import", "attribute"):
        task = broken[kind]
        assert execution_reasons(task, by_task[task.instance_id], drop_import_errors=False) == []


@pytest.mark.docker
def test_a_few_tasks_validate_in_docker(good, docker_client, base_image):
    tasks = [good[0], good[8], good[13]]  # train and eval, three families
    for t in tasks:
        build_images([t], base_image, docker_client)
    config = ValidationConfig(runs=2, backend="docker", timeout=120, concurrency=3)
    runs = validation_runs(tasks, config)
    assert len(runs) == 3 * 2 * 2 and {r["backend"] for r in runs} == {"docker"}
    for t in tasks:
        mine = [r for r in runs if r["instance_id"] == t.instance_id]
        assert execution_reasons(t, mine) == [], [r["detail"] for r in mine]


def test_reuse_force_and_decontamination(good, tmp_path):
    lake = Lake(tmp_path / "lake")
    tasks = good[:3]
    publish(lake, tasks, "three")
    # the eval set: one of the tasks, and another task of the third one's repository
    other = dataclasses.replace(tasks[2], instance_id="toy__other-0")
    publish(lake, [tasks[0], other], "heldout")
    config = ValidationConfig(runs=1, backend="local", timeout=120)

    runs_v, pool_v = filter_tasks(lake, tasks="three", validation=config, eval_sets=("heldout",))
    pool = pool_of(lake, pool_v)
    assert pool[tasks[0].instance_id]["reasons"] == [
        f"contaminated: instance {tasks[0].instance_id} is in eval set 'heldout'"
    ]
    assert pool[tasks[1].instance_id]["kept"] and pool[tasks[2].instance_id]["kept"]
    # statically dropped tasks are not run
    ran = {r["instance_id"] for r in lake.read("task_runs", runs_v).to_pylist()}
    assert ran == {tasks[1].instance_id, tasks[2].instance_id}

    again = filter_tasks(lake, tasks="three", validation=config, eval_sets=("heldout",))
    assert again == (runs_v, pool_v)
    assert len(lake.versions("task_runs")) == len(lake.versions("task_pool")) == 1

    forced = filter_tasks(
        lake, tasks="three", validation=config, eval_sets=("heldout",), force=True
    )
    assert forced[0] != runs_v and forced[1] != pool_v
    assert len(lake.versions("task_pool")) == 2
    manifest = lake.manifest("task_pool", forced[1])
    assert manifest["inputs"] == {"tasks": lake.resolve("tasks", "three").version}
    assert manifest["parameters"]["eval_sets"] == {
        "heldout": lake.resolve("tasks", "heldout").version
    }

    # by repository: every task of a repository in the eval set goes
    by_repo = filter_tasks(
        lake,
        tasks="three",
        rules=PoolFilter(),
        validation=config,
        eval_sets=("heldout",),
        decontaminate_by="repo",
    )
    pool = pool_of(lake, by_repo[1])
    held_repos = {tasks[0].repo, tasks[2].repo}
    for t in tasks:
        assert pool[t.instance_id]["kept"] == (t.repo not in held_repos)
    assert (
        f"contaminated: repo {tasks[2].repo} is in eval set 'heldout'"
        in (pool[tasks[2].instance_id]["reasons"])
    )


@pytest.mark.slow
def test_the_whole_toy_suite_validates(tmp_path):
    lake = Lake(tmp_path / "lake")
    publish_toy_suite(lake)
    config = ValidationConfig(backend="local", timeout=120)  # 3 runs each, the default
    runs_v, pool_v = filter_tasks(lake, tasks="toy-swe", validation=config)
    pool = pool_of(lake, pool_v)
    assert len(pool) == 64
    assert {i: r["reasons"] for i, r in pool.items() if not r["kept"]} == {}
    assert lake.read("task_runs", runs_v).num_rows == 64 * 2 * 3
