"""Grade a test log the way SWE-bench does: official log parsers and official grading rules.

    grade = grade_log(task, log_text)          # -> Grade(resolved, tests_status, outcome, detail)
    grade.to_report(task.instance_id)          # the official report.json entry

`log_text` is the output of an eval script in the SWE-bench style: whatever setup it prints, then
the test command's output between the `>>>>> Start Test Output` and `>>>>> End Test Output` marker
lines, optionally followed by `>>>>> Test Exit Code: N` (swebench 5.x records the test command's
exit status there). Everything that decides a grade comes from the installed `swebench` package:
the marker and failure strings, the log parsers, `SUITE_RAN`, `parse_test_exit_code`,
`get_eval_tests_report` and `get_resolution_status`. `grade_log` walks the same steps as
`swebench.harness.grading.get_logs_eval`, but records why a log could not be graded instead of
returning `({}, False)`.

Where we deviate from swebench 5.0.2's `get_logs_eval`:
- Only the text between the markers is parsed. 5.0.2 falls back to the whole log when the marked
  region yields no test (for runners whose stdout/stderr interleave differently, e.g. on Modal);
  our sandboxes record the eval script with its streams merged, and text outside the markers
  (setup, `git apply`, anything printed while installing the patch) must never count as a result.
- A run that reports no test at all (an import error, a crash in test setup) is graded
  "unresolved" with every test failed, as swebench <= 4 did and as the official reports of our
  fixture record; 5.0.2 reports "patch not applied" instead. The verdict is the same. Only under
  fail-only grading, where an absent test counts as passed, is such a log `no_test_output` unless
  5.x's `SUITE_RAN` shows the suite ran.
- The recorded exit status is read after the end marker, where the eval script writes it, so a
  line printed by the tests cannot stand in for it.

This module runs no tests; `grade_patch` runs them in a sandbox and hands the log to `grade_log`.
"""

from __future__ import annotations

from collections.abc import Callable

from swebench.harness.constants import (
    APPLY_PATCH_FAIL,
    END_TEST_OUTPUT,
    FAIL_ONLY_REPOS,
    FAIL_TO_FAIL,
    FAIL_TO_PASS,
    PASS_TO_FAIL,
    PASS_TO_PASS,
    RESET_FAILED,
    START_TEST_OUTPUT,
    TESTS_ERROR,
    TESTS_TIMEOUT,
    EvalType,
    ResolvedStatus,
    TestStatus,
)
from swebench.harness.grading import (
    SUITE_RAN,
    get_eval_tests_report,
    get_resolution_status,
    parse_test_exit_code,
)
from swebench.harness.log_parsers import PARSER_REGISTRY
from swebench.harness.log_parsers.c import MAP_REPO_TO_PARSER_C
from swebench.harness.log_parsers.go import MAP_REPO_TO_PARSER_GO
from swebench.harness.log_parsers.java import MAP_REPO_TO_PARSER_JAVA
from swebench.harness.log_parsers.javascript import MAP_REPO_TO_PARSER_JS
from swebench.harness.log_parsers.php import MAP_REPO_TO_PARSER_PHP
from swebench.harness.log_parsers.python import MAP_REPO_TO_PARSER_PY, parse_log_pytest
from swebench.harness.log_parsers.ruby import MAP_REPO_TO_PARSER_RUBY
from swebench.harness.log_parsers.rust import MAP_REPO_TO_PARSER_RUST
from swebench.types import TestSpec

from swerl.grading.grade import Grade
from swerl.swe.task import Task

LogParser = Callable[[str, TestSpec], dict[str, str]]
"""An official log parser: (log text, test spec) -> {test id: TestStatus value}."""

# swebench 5.x keeps one repo -> parser map per language and no longer merges them.
MAP_REPO_TO_PARSER: dict[str, LogParser] = {
    **MAP_REPO_TO_PARSER_PY,
    **MAP_REPO_TO_PARSER_JS,
    **MAP_REPO_TO_PARSER_C,
    **MAP_REPO_TO_PARSER_GO,
    **MAP_REPO_TO_PARSER_JAVA,
    **MAP_REPO_TO_PARSER_PHP,
    **MAP_REPO_TO_PARSER_RUBY,
    **MAP_REPO_TO_PARSER_RUST,
}
DEFAULT_LOG_PARSER: LogParser = parse_log_pytest
"""For repositories swebench does not know (our toy-SWE suite `toy/<name>`, SWE-Gym, ...)."""

# Strings the official harness writes into a log when the run went wrong, and what we call them.
FAILURE_MARKERS = (
    (APPLY_PATCH_FAIL, "patch_failed"),
    (RESET_FAILED, "error"),
    (TESTS_ERROR, "error"),
    (TESTS_TIMEOUT, "timeout"),
)


def choose_log_parser(task: Task) -> LogParser:
    """The official log parser for `task`, first match wins:

    1. `log_parser` named by the task itself: a top-level field of swebench 5.x instances (kept in
       `task.extra`) or SWE-rebench's `install_config["log_parser"]`; a name in swebench's
       `PARSER_REGISTRY`, such as `parse_log_pytest`.
    2. the parser swebench maps the task's repository to (`django/django` -> `parse_log_django`).
    3. `parse_log_pytest` for every other repository (our own tasks run pytest with `-rA`).
    """
    name = task.extra.get("log_parser") or (task.install_config or {}).get("log_parser")
    if name:
        if name not in PARSER_REGISTRY:
            raise ValueError(
                f"task {task.instance_id}: log_parser {name!r} is not a parser of the installed "
                f"swebench (known: {', '.join(sorted(PARSER_REGISTRY))})"
            )
        return PARSER_REGISTRY[name]
    return MAP_REPO_TO_PARSER.get(task.repo, DEFAULT_LOG_PARSER)


def choose_eval_type(task: Task) -> EvalType:
    """`eval_type` of the task (swebench 5.x field, in `task.extra`), else swebench's rule by
    repository: fail-only for the repos whose parsers record failures only, else pass-and-fail."""
    if "eval_type" in task.extra:
        try:
            return EvalType(task.extra["eval_type"])
        except ValueError:
            known = [t.value for t in EvalType]
            raise ValueError(
                f"task {task.instance_id}: eval_type {task.extra['eval_type']!r} is not one of {known}"
            ) from None
    return EvalType.FAIL_ONLY if task.repo in FAIL_ONLY_REPOS else EvalType.PASS_AND_FAIL


def _test_spec(task: Task, parser: LogParser, eval_type: EvalType) -> TestSpec:
    """The `TestSpec` the official parsers receive (a few read its instance_id or version)."""
    if task.fail_to_pass is None or task.pass_to_pass is None:
        raise ValueError(f"task {task.instance_id}: FAIL_TO_PASS and PASS_TO_PASS are required")
    if not task.fail_to_pass:
        # The official rule counts an empty FAIL_TO_PASS as all passed: any log would resolve.
        raise ValueError(f"task {task.instance_id}: FAIL_TO_PASS is empty, nothing to grade")
    return TestSpec(
        instance_id=task.instance_id,
        image=task.image_name or task.docker_image or "",
        eval_script_list=[],
        repo=task.repo,
        version=task.version or "",
        FAIL_TO_PASS=task.fail_to_pass,
        PASS_TO_PASS=task.pass_to_pass,
        log_parser=parser.__name__,
        eval_type=eval_type.value,
    )


def grade_log(task: Task, log_text: str) -> Grade:
    """Grade one eval-script log against `task`'s FAIL_TO_PASS / PASS_TO_PASS lists.

    A log that cannot be graded (failure marker, no test-output markers, nothing parseable, a
    parser error, an exit status that contradicts the parsed results) gives a not-resolved `Grade`
    whose `outcome` and `detail` say why; a task without test lists or with an unknown
    `log_parser` name raises `ValueError`, since that is a bad task, not a bad run.
    """
    parser, eval_type = choose_log_parser(task), choose_eval_type(task)
    spec = _test_spec(task, parser, eval_type)

    for marker, outcome in FAILURE_MARKERS:
        if marker in log_text:
            return Grade.ungraded(outcome, f"the log contains {marker!r}")
    if START_TEST_OUTPUT not in log_text or END_TEST_OUTPUT not in log_text:
        return Grade.ungraded(
            "no_test_output", f"no {START_TEST_OUTPUT!r} ... {END_TEST_OUTPUT!r} markers in the log"
        )
    # The official slice: after the first start marker, up to the next end marker.
    test_output = log_text.split(START_TEST_OUTPUT)[1].split(END_TEST_OUTPUT)[0]
    try:
        status_map = parser(test_output, spec)
    except Exception as e:  # a third-party parser choking on odd output is a bad log, not a crash
        return Grade.ungraded("error", f"{parser.__name__} failed: {type(e).__name__}: {e}")
    if not status_map and eval_type == EvalType.FAIL_ONLY and not SUITE_RAN.search(test_output):
        # Fail-only grading counts every test it does not see failing as passed.
        return Grade.ungraded(
            "no_test_output",
            f"{parser.__name__} found no test results between the markers and no sign that "
            f"the suite ran ({len(test_output)} characters)",
        )
    # A patch can print its own "PASSED ..." lines; a failing exit status with no failure in the
    # log means the log does not describe the run (swebench 5.x's cross-check).
    exit_code = parse_test_exit_code(log_text.split(END_TEST_OUTPUT, 1)[1])
    failing = (TestStatus.FAILED.value, TestStatus.ERROR.value)
    if exit_code not in (None, 0) and status_map and not set(status_map.values()) & set(failing):
        return Grade.ungraded(
            "error", f"the test command exited {exit_code} but the log reports no failing test"
        )

    gold = {
        FAIL_TO_PASS: task.fail_to_pass,
        PASS_TO_PASS: task.pass_to_pass,
        FAIL_TO_FAIL: task.fail_to_fail or [],
        PASS_TO_FAIL: task.pass_to_fail or [],
    }
    # The *_TO_FAIL lists are informative only: resolution looks at F2P and P2P, as upstream.
    calculate_to_fail = bool(gold[FAIL_TO_FAIL] or gold[PASS_TO_FAIL])
    report = get_eval_tests_report(status_map, gold, calculate_to_fail, eval_type)
    resolved = get_resolution_status(report) == ResolvedStatus.FULL.value
    counts = ", ".join(
        f"{len(report[k]['success'])}/{len(gold[k])} {k} pass" for k in (FAIL_TO_PASS, PASS_TO_PASS)
    )
    return Grade(
        resolved=resolved,
        outcome="resolved" if resolved else "unresolved",
        tests_status=report,
        detail=f"{parser.__name__}: {len(status_map)} tests parsed; {counts}"
        + ("" if status_map else " (no test results in the output: did the run crash?)"),
    )
