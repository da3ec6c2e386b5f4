"""`run_tests` / `grade_patch` for real: toy-SWE tasks in fresh sandboxes of both backends.

Default run: one task per bug family in each split (14 tasks, every difficulty), gold patch ->
resolved and no patch -> not resolved, in the local and the docker backend; then the outcomes
that are not a grade (patch does not apply, timeout, missing image, no test command), the
harness's fallbacks (a patch only `patch --fuzz` applies), test files restored before the test
patch, and a swebench-style `eval_script`. `-m slow` adds every task of the default suite
(48 train + 16 eval) in both backends. Runs go through a thread pool, as validation runs them.
"""

from __future__ import annotations

import dataclasses
import shlex
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from swerl.grading import grade_patch, run_tests
from swerl.grading import patch as grading
from swerl.sandbox.images import build_images
from swerl.swe.repo import RepoError, git, materialize_repo
from swerl.swe.task import Task
from swerl.swe.toy import build_toy_suite
from swerl.swe.toy.build import task_rows
from swerl.swe.toy.families import FAMILIES
from swerl.swe.toy.generate import generate_task, unified_diff

SEED = 0
WORKERS = 4
BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]


def representative_indices() -> list[tuple[str, int]]:
    """(split, index) of one task per family and split, within the default suite (48 train,
    16 eval), spreading difficulties: index = family + 7 * (difficulty - 1)."""
    n = len(FAMILIES)
    train = [("train", f + n * (f % 3)) for f in range(n)]
    evals = [("eval", f + n * ((f + 1) % 2)) for f in range(n)]
    return train + evals


@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    toy = [generate_task(SEED, split, i) for split, i in representative_indices()]
    return [Task.from_row(row) for row in task_rows(toy, SEED)]


@pytest.fixture(scope="module")
def images(docker_client, base_image, tasks) -> None:
    build_all(tasks, base_image, docker_client)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    if request.param == "docker":
        request.getfixturevalue("images")
    return request.param


def build_all(tasks: list[Task], base_image: str, client) -> None:
    """Task images, a few builds at a time (cached by content after the first run)."""
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda t: build_images([t], base_image, client), tasks))


def sweep(tasks: list[Task], backend: str) -> list[str]:
    """Grade gold and empty patches of every task concurrently; the problems found."""
    jobs = [(t, kind) for t in tasks for kind in ("gold", "empty")]

    def one(job: tuple[Task, str]) -> str | None:
        task, kind = job
        run = run_tests(task, task.patch if kind == "gold" else "", backend=backend, timeout=120)
        grade = run.grade
        if kind == "gold" and not grade.resolved:
            return (
                f"{task.instance_id}: gold patch {grade.outcome}: {grade.detail}\n{run.log[-1500:]}"
            )
        if kind == "empty":
            status = grade.tests_status
            if grade.outcome != "unresolved" or status["FAIL_TO_PASS"]["success"]:
                return f"{task.instance_id}: no patch {grade.outcome}: {grade.detail}"
            if status["PASS_TO_PASS"]["failure"]:  # the bug breaks only the hidden tests
                return f"{task.instance_id}: no patch breaks PASS_TO_PASS {status}"
        return None

    with ThreadPoolExecutor(WORKERS) as pool:
        return [p for p in pool.map(one, jobs) if p is not None]


def test_the_subset_covers_every_family_split_and_difficulty(tasks):
    assert len(tasks) == 2 * len(FAMILIES)
    assert {(t.meta["family"], t.meta["split"]) for t in tasks} == {
        (f, s) for f in FAMILIES for s in ("train", "eval")
    }
    assert {t.meta["difficulty"] for t in tasks} == {1, 2, 3}


def test_apply_commands_are_the_harness_commands():
    from swebench.harness.run_evaluation import GIT_APPLY_CMDS

    assert tuple(GIT_APPLY_CMDS) == grading.APPLY_COMMANDS


def test_gold_resolves_and_no_patch_does_not(tasks, backend):
    assert sweep(tasks, backend) == []


def test_the_log_is_the_official_shape(tasks, backend):
    task = tasks[0]
    run = run_tests(task, "", backend=backend, timeout=120)
    assert run.log.index(">>>>> Start Test Output") < run.log.index(">>>>> End Test Output")
    assert run.log.rstrip().endswith(">>>>> Test Exit Code: 1")  # pytest: some test failed
    assert run.grade.tests_status["FAIL_TO_PASS"]["failure"] == task.fail_to_pass
    assert run.duration_s > 0
    report = run.grade.to_report(task.instance_id)[task.instance_id]
    assert report["patch_successfully_applied"] and not report["resolved"]


def test_a_patch_that_does_not_apply_is_patch_failed(tasks, backend):
    task = tasks[1]
    path = task.meta["bug_file"]
    wrong = unified_diff(path, "no such line\n", "a fix\n")
    run = run_tests(task, wrong, backend=backend, timeout=120)
    assert run.grade.outcome == "patch_failed" and not run.grade.resolved
    assert run.grade.tests_status == {}
    for command in grading.APPLY_COMMANDS:  # every fallback was tried, in the harness's order
        assert f"$ {command}" in run.grade.detail
    assert run.log == ""  # the tests never ran


def test_a_patch_only_fuzz_applies_is_applied(tasks, backend, tmp_path):
    """Context that no longer matches (an edited line next to the fix): `git apply` refuses,
    `patch --fuzz=5` applies it, as the harness would."""
    task = tasks[2]
    lines = task.patch.splitlines(keepends=True)
    context = next(
        i for i, line in enumerate(lines) if line.startswith(" ") and line.strip() and i > 3
    )
    lines[context] = " # a line that is not in the file\n"
    fuzzy = "".join(lines)
    repo = materialize_repo(task, tmp_path / "repo")
    (tmp_path / "fuzzy.diff").write_text(fuzzy)
    with pytest.raises(RepoError, match="patch does not apply"):
        git(["apply", "--check", str(tmp_path / "fuzzy.diff")], repo)
    run = run_tests(task, fuzzy, backend=backend, timeout=120)
    assert run.grade.resolved, (run.grade.detail, run.log[-2000:])


def test_test_files_are_restored_before_the_test_patch(tasks, backend):
    """A patch that also edits the test file (a test of its own that fails) does not change
    what is graded: the file is reset to base_commit and the test patch applied."""
    task = tasks[3]
    test_file = grading.test_files(task)[0]
    original = task.repo_files[test_file]
    edit = unified_diff(
        test_file, original, original + "\n\ndef test_planted():\n    assert False\n"
    )
    run = run_tests(task, task.patch + edit, backend=backend, timeout=120)
    assert run.grade.resolved, run.grade.detail
    assert "test_planted" not in run.log


def test_a_test_run_past_its_timeout_is_timeout(tasks, backend):
    task = tasks[4]
    slow = dataclasses.replace(
        task, install_config={**task.install_config, "test_cmd": "sleep 120; python -m pytest"}
    )
    started = time.monotonic()
    run = run_tests(slow, task.patch, backend=backend, timeout=3)
    assert run.grade.outcome == "timeout" and not run.grade.resolved
    assert "3 s" in run.grade.detail
    assert ">>>>> Start Test Output" in run.log and ">>>>> End Test Output" not in run.log
    assert time.monotonic() - started < 30  # killed, not waited for


def test_a_task_without_test_command_is_an_error_without_a_sandbox(tasks):
    bare = dataclasses.replace(tasks[0], install_config={"python": "3.11"})
    started = time.monotonic()
    grade = grade_patch(bare, bare.patch, backend="docker")  # no sandbox: no image needed
    assert grade.outcome == "error" and not grade.resolved
    assert "no test command" in grade.detail and bare.instance_id in grade.detail
    assert time.monotonic() - started < 1
    with pytest.raises(grading.NoTestCommand, match="test_cmd"):
        grading.test_script(bare)


@pytest.mark.docker
def test_a_missing_image_is_image_missing(tasks, docker_client):
    task = tasks[5]
    files = {**task.repo_files, "NOTES.txt": "no image was built for these files\n"}
    unbuilt = dataclasses.replace(task, instance_id="toy__unbuilt-0", repo_files=files)
    run = run_tests(unbuilt, unbuilt.patch, backend="docker", timeout=120)
    assert run.grade.outcome == "image_missing" and not run.grade.resolved
    assert "toy__unbuilt-0" in run.grade.detail and "swerl images build" in run.grade.detail


def test_a_task_the_rules_cannot_grade_is_an_error(tasks):
    """No FAIL_TO_PASS: the official rule would count any log as resolved."""
    empty_f2p = dataclasses.replace(tasks[6], fail_to_pass=[])
    run = run_tests(empty_f2p, empty_f2p.patch, backend="local", timeout=120)
    assert run.grade.outcome == "error" and "FAIL_TO_PASS is empty" in run.grade.detail
    assert ">>>>> End Test Output" in run.log  # the tests ran; the log is kept


def test_a_swebench_eval_script_is_run_with_its_exit_code(tasks):
    """swebench 5.x rows carry their own eval script, which checks the test files out and
    applies the test patch itself; it runs as the harness runs it."""
    task = tasks[7]
    files = " ".join(shlex.quote(f) for f in grading.test_files(task))
    script = "\n".join(
        [
            "#!/bin/bash",
            "set -uxo pipefail",
            f"git checkout {task.base_commit} {files}",
            "git apply -v - <<'EOF_114329324912'",
            task.test_patch.rstrip("\n"),
            "EOF_114329324912",
            ": '>>>>> Start Test Output'",
            f"python -m pytest -rA -p no:cacheprovider {files}",
            ": '>>>>> End Test Output'",
            f"git checkout {task.base_commit} {files}",
        ]
    )
    swebench_row = dataclasses.replace(task, install_config=None, extra={"eval_script": script})
    gold = run_tests(swebench_row, task.patch, backend="local", timeout=120)
    assert gold.grade.resolved, (gold.grade.detail, gold.log[-2000:])
    assert ">>>>> Test Exit Code: 0" in gold.log
    empty = run_tests(swebench_row, "", backend="local", timeout=120)
    assert empty.grade.outcome == "unresolved"
    assert ">>>>> Test Exit Code: 1" in empty.log


def test_test_files_leave_out_non_test_extensions():
    patch = "".join(
        f"diff --git a/{p} b/{p}\n--- a/{p}\n+++ b/{p}\n@@ -1 +1 @@\n-a\n+b\n"
        for p in ("tests/test_a.py", "tests/data.json", "tests/README.md", "tests/test_b.py")
    )
    task = Task("o__r-1", "o/r", "abc", "bug", test_patch=patch)
    assert grading.test_files(task) == ["tests/test_a.py", "tests/test_b.py"]


@pytest.fixture(scope="module")
def suite() -> list[Task]:
    return [Task.from_row(row) for row in build_toy_suite(SEED, 48, 16)]


@pytest.mark.slow
def test_every_toy_task_locally(suite):
    assert len(suite) == 64
    assert sweep(suite, "local") == []


@pytest.mark.slow
@pytest.mark.docker
def test_every_toy_task_in_docker(suite, docker_client, base_image):
    build_all(suite, base_image, docker_client)
    assert sweep(suite, "docker") == []
