"""Run each generated task's tests for real and turn it into a `tasks` row.

For every task, in a temporary checkout built by `commit_files` (so `base_commit` is the id any
machine rebuilds), pytest runs twice with the test patch applied: without the gold patch and with
it. The command is the one grading runs: `install_config.test_cmd` followed by the test patch's
files (`swerl.grading.patch.test_script`), parsed with swebench's `parse_log_pytest`.
FAIL_TO_PASS = tests failing without the gold patch and passing with it; PASS_TO_PASS = tests
passing both times. A task whose hidden tests do not all fail before and pass after, or whose
other tests do not all pass both times, is a generator bug and raises `ToyGenerationError`.

Tests run in subprocesses, two tasks at a time; a task takes about two pytest start-ups.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from swebench.harness.log_parsers.python import parse_log_pytest

from swerl.swe.repo import commit_files, git
from swerl.swe.toy.generate import ToyGenerationError, ToyTask

TEST_CMD = "python -m pytest -rA -p no:cacheprovider"
"""Without file arguments: grading appends the test patch's files (listing them here as well
would run them twice under pytest 7.2, which does not drop duplicate file arguments)."""
PYTEST_TIMEOUT_S = 120
WORKERS = 2


def run_pytest(repo: Path, files: list[str]) -> tuple[dict[str, str], str]:
    """Run `TEST_CMD files` in `repo` with this interpreter; ({test id: status}, log)."""
    # Plain pytest: third-party plugins of this environment stay out (their loading is most of
    # the start-up time, and the toy tests must not depend on them).
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, *TEST_CMD.split()[1:], *files]
    result = subprocess.run(
        command, cwd=repo, env=env, capture_output=True, text=True, timeout=PYTEST_TIMEOUT_S
    )
    log = result.stdout + result.stderr
    return parse_log_pytest(log, None), log  # type: ignore[arg-type] # the spec is unused


def _apply(repo: Path, patch: str, what: str, task: ToyTask) -> None:
    path = repo.parent / f"{what}.diff"
    path.write_text(patch)
    try:
        git(["apply", str(path)], repo)
    except Exception as e:
        raise ToyGenerationError(f"task {task.instance_id}: the {what} does not apply: {e}") from e


def find_tests(task: ToyTask) -> tuple[str, list[str], list[str]]:
    """(base_commit, FAIL_TO_PASS, PASS_TO_PASS) of `task`, by running its tests."""
    with tempfile.TemporaryDirectory(prefix="toy-swe-") as tmp:
        repo = Path(tmp) / "repo"
        commit = commit_files(task.files, repo)
        _apply(repo, task.test_patch, "test_patch", task)
        before, log_before = run_pytest(repo, [task.test_file])
        _apply(repo, task.patch, "patch", task)
        after, log_after = run_pytest(repo, [task.test_file])
    f2p = sorted(t for t, s in after.items() if s == "PASSED" and before.get(t) != "PASSED")
    p2p = sorted(t for t, s in after.items() if s == "PASSED" and before.get(t) == "PASSED")
    problems = []
    if not after or any(s != "PASSED" for s in after.values()):
        problems.append(f"with the gold patch not every test passes: {after}\n{log_after[-3000:]}")
    if set(f2p) != set(task.hidden_tests):
        problems.append(f"FAIL_TO_PASS {f2p} is not the hidden tests {task.hidden_tests}")
    broken = [t for t, s in before.items() if s != "PASSED" and t not in task.hidden_tests]
    if broken:
        problems.append(f"tests {broken} fail at base_commit\n{log_before[-3000:]}")
    if problems:
        raise ToyGenerationError(f"task {task.instance_id}: " + "; ".join(problems))
    return commit, f2p, p2p


def task_row(task: ToyTask, seed: int) -> dict[str, Any]:
    """The `tasks` row of `task`, tests run."""
    commit, f2p, p2p = find_tests(task)
    install = {"python": "3.11", "test_cmd": TEST_CMD, "log_parser": "parse_log_pytest"}
    return {
        "instance_id": task.instance_id,
        "repo": f"toy/{task.package}",
        "base_commit": commit,
        "problem_statement": task.problem_statement,
        "patch": task.patch,
        "test_patch": task.test_patch,
        "hints_text": "",
        "created_at": None,
        "version": "0.1",
        "FAIL_TO_PASS": f2p,
        "PASS_TO_PASS": p2p,
        "FAIL_TO_FAIL": [],
        "PASS_TO_FAIL": [],
        "environment_setup_commit": commit,
        "install_config": json.dumps(install, sort_keys=True),
        "meta": json.dumps(task.meta, sort_keys=True),
        "requirements": "pytest\n",
        "repo_files": json.dumps(task.files, sort_keys=True),
        "source": f"toy-swe:seed={seed}:{task.split}:{task.meta['index']}",
    }


def task_rows(tasks: list[ToyTask], seed: int, workers: int = WORKERS) -> list[dict[str, Any]]:
    """Rows of `tasks`, in order; tests of `workers` tasks run at a time."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda t: task_row(t, seed), tasks))
