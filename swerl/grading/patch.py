"""Grading a patch for real: `grade_patch(task, patch, backend=...)`.

The way the SWE-bench harness does it, in a fresh sandbox at `base_commit`:
1. apply the agent's patch, trying the harness's fallbacks in order (`git apply`, `--3way`,
   `--reject`, `patch --fuzz=5`);
2. restore every file the test patch touches to `base_commit` (deleting files it creates), so
   the agent cannot have changed the tests, then apply `test_patch`;
3. run the task's test command between the `>>>>> Start Test Output` / `>>>>> End Test Output`
   markers: SWE-rebench's `install_config.test_cmd` followed by the test files of the test patch,
   or the instance's own `eval_script` (SWE-bench 5 rows) run as is;
4. grade the log with `grade_log` (the official parsers and rules).

Patch-apply failures, timeouts and missing images are outcomes of their own, never crashes.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT

from swerl.grading.grade import Grade
from swerl.grading.log import grade_log
from swerl.sandbox import SandboxError, open_sandbox
from swerl.swe.task import Task

APPLY_COMMANDS = (
    "git apply --verbose",
    "git apply --verbose --3way",
    "git apply --verbose --reject",
    "patch --batch --forward --fuzz=5 -p1 -i",
)
DIFF_FILE = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)
LOG_CAP = 20_000_000  # test logs are graded whole; cap only what could exhaust memory


class NoTestCommand(ValueError):
    """The task says nothing about how to run its tests."""


@dataclass(frozen=True)
class TestRun:
    grade: Grade
    log: str
    duration_s: float


def patch_files(patch: str) -> list[str]:
    """Paths a unified git diff touches (the new path of renames)."""
    return [m.group(2) for m in DIFF_FILE.finditer(patch)]


def test_script(task: Task) -> str:
    """The shell script that runs the task's tests and prints the output markers."""
    config = task.install_config or {}
    if config.get("test_cmd"):
        files = " ".join(shlex.quote(f) for f in patch_files(task.test_patch or ""))
        command = f"{config['test_cmd']} {files}".strip()
        start, end = shlex.quote(START_TEST_OUTPUT), shlex.quote(END_TEST_OUTPUT)
        return f"echo {start}\n{command}\necho {end}"
    if task.extra.get("eval_script"):
        return task.extra["eval_script"]  # SWE-bench 5 rows: prints its own markers
    raise NoTestCommand(
        f"task {task.instance_id} has no test command: it needs install_config.test_cmd "
        "(SWE-rebench, toy-SWE) or an eval_script (SWE-bench 5 rows)"
    )


def run_tests(
    task: Task, patch: str, *, backend: str = "docker", timeout: float = 1800.0
) -> TestRun:
    """Apply `patch` and the test patch in a fresh sandbox, run the tests, grade the log."""
    started = time.monotonic()
    try:
        script = test_script(task)
    except NoTestCommand as e:
        return TestRun(Grade.ungraded("error", str(e)), "", 0.0)
    try:
        with open_sandbox(task, backend=backend, max_output=LOG_CAP) as sb:
            if patch.strip():
                applied = _apply(sb, patch)
                if applied is not None:
                    return TestRun(
                        Grade.ungraded("patch_failed", applied), "", time.monotonic() - started
                    )
            restored = _restore_tests(sb, task)
            if restored is not None:
                return TestRun(
                    Grade.ungraded("patch_failed", restored), "", time.monotonic() - started
                )
            result = sb.run(script, timeout=timeout)
    except SandboxError as e:
        outcome = (
            "image_missing"
            if "image" in str(e).lower() and "not found" in str(e).lower()
            else "error"
        )
        return TestRun(Grade.ungraded(outcome, str(e)), "", time.monotonic() - started)
    duration = time.monotonic() - started
    if result.timed_out:
        return TestRun(
            Grade.ungraded("timeout", f"tests ran past {timeout:g} s"), result.output, duration
        )
    try:
        grade = grade_log(task, result.output)
    except ValueError as e:  # a task the official rules cannot grade (e.g. no FAIL_TO_PASS)
        grade = Grade.ungraded("error", str(e))
    return TestRun(grade, result.output, duration)


def grade_patch(
    task: Task, patch: str, *, backend: str = "docker", timeout: float = 1800.0
) -> Grade:
    """The grade of `patch` for `task` (see the module docstring)."""
    return run_tests(task, patch, backend=backend, timeout=timeout).grade


def _apply(sb, patch: str) -> str | None:
    """Apply with the harness's fallbacks, as it does (no cleanup between attempts: a failed
    `git apply` changes nothing); None on success, else what went wrong."""
    path = sb.run("mktemp", timeout=30).output.strip()
    sb.write_file(path, patch if patch.endswith("\n") else patch + "\n")
    errors = []
    for cmd in APPLY_COMMANDS:
        r = sb.run(f"{cmd} {shlex.quote(path)}", timeout=120)
        if r.exit_code == 0:
            sb.run(
                f"rm -f {shlex.quote(path)}; find . -name '*.rej' -newer .git/HEAD -delete",
                timeout=60,
            )
            return None
        errors.append(f"{cmd}: {r.output.strip()[-300:]}")
        sb.run("git checkout -q -- . && git clean -fdq -e .git", timeout=120)  # undo partial work
    return "patch does not apply:\n" + "\n".join(errors)


def _restore_tests(sb, task: Task) -> str | None:
    """Reset the test patch's files to base_commit and apply it; None on success."""
    if not task.test_patch:
        return None
    for f in patch_files(task.test_patch):
        q = shlex.quote(f)
        sb.run(
            f"if git cat-file -e {task.base_commit}:{q} 2>/dev/null; then "
            f"git checkout -q {task.base_commit} -- {q}; else rm -f {q}; fi",
            timeout=60,
        )
    path = sb.run("mktemp", timeout=30).output.strip()
    sb.write_file(path, task.test_patch)
    r = sb.run(f"git apply --verbose {shlex.quote(path)}", timeout=120)
    if r.exit_code != 0:
        return f"test patch does not apply: {r.output.strip()[-500:]}"
    return None
