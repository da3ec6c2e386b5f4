"""Grading a patch for real: `run_tests(task, patch, backend=...)` and `grade_patch`.

    grade = grade_patch(task, model_patch, backend="docker")    # -> Grade
    run = run_tests(task, "", backend="local")                  # -> TestRun(grade, log, duration_s)

What swebench 5.0.2's `run_instance` does, in a fresh sandbox at `base_commit`:
1. apply the patch with the harness's commands in its order (`APPLY_COMMANDS`, swebench's
   `GIT_APPLY_CMDS`: `git apply`, `--3way`, `--reject`, `patch --fuzz=5`), resetting the tree
   between attempts (`git checkout -- . ; git clean -fd`); when every attempt fails, a patch that
   `git apply --check --reverse` finds already applied counts as applied. An empty patch is not
   applied at all (the harness's `--no-patch` mode: the no-patch run of validation).
2. run the eval script with bash, as a file (not in the sandbox's session shell), from the
   repository root:
   - a task with its own `eval_script` (swebench 5.x rows, kept in `task.extra`): that script,
     with swebench's own edits (`parse_eval_script`, `record_test_exit_code`). It checks the test
     files out at `base_commit` and applies `test_patch` itself;
   - otherwise `install_config.test_cmd` (SWE-rebench rows, toy-SWE): we first reset every file
     the test patch touches to `base_commit` (deleting the ones it creates), so a patch cannot
     have changed the tests, and apply `test_patch`, as SWE-rebench's eval script does; the
     script then runs `test_cmd` followed by the test files of the test patch (swebench's
     `get_test_directives` rule: non-test extensions left out) between the
     `>>>>> Start Test Output` / `>>>>> End Test Output` markers, and records the exit status
     after the end marker the way swebench does;
3. grade the log with `grade_log` (the official parsers and rules).

Outcomes: "patch_failed" (the patch, or the test patch, does not apply), "timeout" (the tests
ran past `timeout`; the partial log is kept), "image_missing" (docker: no image for the task),
"error" (no test command, a sandbox that cannot start, a task the rules cannot grade), else
"resolved" / "unresolved". None of them raises.

Where we deviate from the harness: the harness writes its log files and report to disk and
grades from there; we keep the log in memory (`TestRun.log`, capped at `LOG_CAP` bytes).
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from swebench.harness.constants import (
    END_TEST_OUTPUT,
    NON_TEST_EXTS,
    START_TEST_OUTPUT,
    TEST_EXIT_CODE,
    TEST_EXIT_CODE_VAR,
)
from swebench.harness.utils import parse_eval_script, record_test_exit_code

from swerl.grading.grade import Grade
from swerl.grading.log import grade_log
from swerl.sandbox import Sandbox, SandboxError, open_sandbox
from swerl.swe.task import Task

APPLY_COMMANDS = (
    "git apply --verbose",
    "git apply --verbose --3way",
    "git apply --verbose --reject",
    "patch --batch --forward --fuzz=5 -p1 -i",
)
"""swebench 5.0.2's `run_evaluation.GIT_APPLY_CMDS` (copied: importing that module pulls in the
whole harness; a test checks they agree)."""
RESET_BETWEEN_ATTEMPTS = "git checkout -- . ; git clean -fd"
DIFF_FILE = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)
LOG_CAP = 20_000_000
"""Bytes of test log kept (logs are graded whole; the cap only guards memory)."""
SETUP_TIMEOUT_S = 120.0
"""Seconds for each setup command (writing files, applying patches)."""


class NoTestCommand(ValueError):
    """The task says nothing about how to run its tests."""


@dataclass(frozen=True)
class TestRun:
    """One graded run: the grade, the whole log of the eval script, the wall time (sandbox start
    to grade, seconds)."""

    __test__ = False  # not a pytest test class

    grade: Grade
    log: str
    duration_s: float


def patch_files(patch: str) -> list[str]:
    """Paths a unified git diff touches (the new path of renames)."""
    return [m.group(2) for m in DIFF_FILE.finditer(patch)]


def test_files(task: Task) -> list[str]:
    """The test files handed to `test_cmd`: the test patch's files without non-test extensions
    (swebench's `get_test_directives` for pytest-style runners)."""
    return [
        f
        for f in patch_files(task.test_patch or "")
        if not any(f.endswith(e) for e in NON_TEST_EXTS)
    ]


def test_script(task: Task) -> str:
    """The bash script that runs the task's tests and prints the output markers (see the module
    docstring); NoTestCommand if the task has neither an eval script nor a test command."""
    if task.extra.get("eval_script"):
        lines = record_test_exit_code(parse_eval_script(task.extra["eval_script"]))
        return "\n".join(["#!/bin/bash", "set -uxo pipefail", *lines]) + "\n"
    config = task.install_config or {}
    if config.get("test_cmd"):
        files = " ".join(shlex.quote(f) for f in test_files(task))
        return (
            "\n".join(
                [
                    "#!/bin/bash",
                    f"echo {shlex.quote(START_TEST_OUTPUT)}",
                    f"{config['test_cmd']} {files}".strip(),
                    f"{TEST_EXIT_CODE_VAR}=$?",
                    f"echo {shlex.quote(END_TEST_OUTPUT)}",
                    f'echo "{TEST_EXIT_CODE}: ${TEST_EXIT_CODE_VAR}"',
                ]
            )
            + "\n"
        )
    raise NoTestCommand(
        f"task {task.instance_id} has no test command: it needs install_config.test_cmd "
        "(SWE-rebench, toy-SWE) or an eval_script (swebench 5.x rows)"
    )


def run_tests(
    task: Task, patch: str, *, backend: str = "docker", timeout: float = 1800.0
) -> TestRun:
    """Apply `patch` (nothing when it is empty) in a fresh sandbox, run the task's tests with the
    test patch, grade the log. Every failure is a recorded outcome (see the module docstring)."""
    started = time.monotonic()

    def ungraded(outcome: str, detail: str, log: str = "") -> TestRun:
        return TestRun(Grade.ungraded(outcome, detail), log, time.monotonic() - started)

    try:
        script = test_script(task)
    except NoTestCommand as e:
        return ungraded("error", str(e))
    try:
        with open_sandbox(task, backend=backend, max_output=LOG_CAP) as sb:
            scratch = sb.run("mktemp -d", timeout=SETUP_TIMEOUT_S).output.strip()
            if patch.strip():
                failure = _apply(sb, patch, f"{scratch}/patch.diff")
                if failure is not None:
                    return ungraded("patch_failed", failure)
            if not task.extra.get("eval_script"):
                failure = _restore_tests(sb, task, f"{scratch}/test.diff")
                if failure is not None:
                    return ungraded("patch_failed", failure)
            sb.write_file(f"{scratch}/eval.sh", script)
            result = sb.run(f"bash {scratch}/eval.sh", timeout=timeout)
    except SandboxError as e:
        # The sandbox reports a missing image in its message (`swerl.sandbox.images.task_image`,
        # `swerl.sandbox.docker.DockerHost._missing_image`); anything else stopping it is an error.
        message = str(e)
        missing = re.search(r"\bimage\b.*\bnot found\b", message, re.IGNORECASE | re.DOTALL)
        return ungraded("image_missing" if missing else "error", message)
    if result.timed_out:
        return ungraded("timeout", f"the tests ran past {timeout:g} s", result.output)
    try:
        grade = grade_log(task, result.output)
    except ValueError as e:  # a task the official rules cannot grade (no FAIL_TO_PASS, ...)
        return ungraded("error", str(e), result.output)
    return TestRun(grade, result.output, time.monotonic() - started)


def grade_patch(
    task: Task, patch: str, *, backend: str = "docker", timeout: float = 1800.0
) -> Grade:
    """The grade of `patch` for `task` (see `run_tests`)."""
    return run_tests(task, patch, backend=backend, timeout=timeout).grade


def _apply(sb: Sandbox, patch: str, path: str) -> str | None:
    """Apply `patch` the harness's way; None on success, else every attempt's complaint."""
    sb.write_file(path, patch if patch.endswith("\n") else patch + "\n")
    errors = []
    for attempt, command in enumerate(APPLY_COMMANDS):
        if attempt:  # a failed attempt (--reject, --3way) can leave partial state behind
            sb.run(RESET_BETWEEN_ATTEMPTS, timeout=SETUP_TIMEOUT_S)
        r = sb.run(f"{command} {shlex.quote(path)}", timeout=SETUP_TIMEOUT_S)
        if r.exit_code == 0:
            return None
        errors.append(f"$ {command}\n{r.output.strip()[-400:]}")
    # the chain can leave the patch fully applied while each command still exited non-zero
    if sb.run(f"git apply --check --reverse {shlex.quote(path)}", timeout=60).exit_code == 0:
        return None
    return "patch does not apply:\n" + "\n".join(errors)


def _restore_tests(sb: Sandbox, task: Task, path: str) -> str | None:
    """Reset the test patch's files to base_commit and apply the test patch; None on success."""
    if not task.test_patch:
        return None
    base = shlex.quote(task.base_commit)
    resets = [
        f"if git cat-file -e {base}:{q} 2>/dev/null; then git checkout -q {base} -- {q}; "
        f"else rm -f {q}; fi"
        for q in map(shlex.quote, patch_files(task.test_patch))
    ]
    r = sb.run(" && ".join(resets) or "true", timeout=SETUP_TIMEOUT_S)
    if r.exit_code != 0:
        return f"resetting the test files to {task.base_commit} failed: {r.output.strip()[-500:]}"
    sb.write_file(path, task.test_patch)
    r = sb.run(f"git apply --verbose {shlex.quote(path)}", timeout=SETUP_TIMEOUT_S)
    if r.exit_code != 0:
        return f"the test patch does not apply: {r.output.strip()[-500:]}"
    return None
