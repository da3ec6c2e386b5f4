"""grade_log against real SWE-bench logs with official grades, and the edge cases around it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from swebench.harness.constants import APPLY_PATCH_FAIL, TESTS_TIMEOUT, EvalType
from swebench.harness.grading import get_eval_report
from swebench.harness.log_parsers.python import (
    parse_log_django,
    parse_log_pytest,
    parse_log_pytest_v2,
    parse_log_sympy,
)

from swerl.grading import Grade, choose_eval_type, choose_log_parser, grade_log
from swerl.grading.log import _test_spec
from swerl.swe.task import Task

FIXTURE = Path(__file__).resolve().parents[3] / "shared/fixtures/swebench/graded_logs.jsonl"
RECORDS = [json.loads(line) for line in FIXTURE.read_text().splitlines()]

START, END = ">>>>> Start Test Output", ">>>>> End Test Output"


def make_task(repo: str = "toy/calc", f2p=None, p2p=None, **kw) -> Task:
    return Task(
        instance_id=kw.pop("instance_id", "toy__calc-1"),
        repo=repo,
        base_commit="0" * 40,
        problem_statement="placeholder",
        fail_to_pass=["tests/test_calc.py::test_add"] if f2p is None else f2p,
        pass_to_pass=["tests/test_calc.py::test_sub"] if p2p is None else p2p,
        **kw,
    )


def task_of(record: dict) -> Task:
    return make_task(
        record["repo"],
        record["FAIL_TO_PASS"],
        record["PASS_TO_PASS"],
        instance_id=record["instance_id"],
        version=record["version"],
    )


def marked(test_output: str, before: str = "+ git apply -v -\n") -> str:
    return f"{before}+ : '{START}'\n{test_output}\n+ : '{END}'\n+ git checkout abc tests\n"


# --- the 93 officially graded logs ------------------------------------------------------------


def test_fixture_covers_both_verdicts():
    assert len(RECORDS) == 93
    assert {r["resolved"] for r in RECORDS} == {True, False}


@pytest.mark.parametrize(
    "record", RECORDS, ids=[f"{i}-{r['instance_id']}" for i, r in enumerate(RECORDS)]
)
def test_grade_matches_official_report(record):
    grade = grade_log(task_of(record), record["test_output"])
    assert grade.resolved is record["resolved"]
    assert grade.outcome == ("resolved" if record["resolved"] else "unresolved")
    # The whole official report entry: flags and every per-test list, in order.
    assert grade.to_report(record["instance_id"]) == record["report"]


def test_agrees_with_installed_swebench(tmp_path):
    """swebench 5.0.2's own get_eval_report on the same logs: same verdicts; same per-test lists
    wherever it finds test results. It calls a run that crashed before reporting any test "not
    applied"; we (like the official reports in the fixture) grade it unresolved, all tests failed."""
    crashed = []
    for record in RECORDS:
        task = task_of(record)
        log = tmp_path / "test_output.txt"
        log.write_text(record["test_output"])
        spec = _test_spec(task, choose_log_parser(task), choose_eval_type(task))
        prediction = {"instance_id": task.instance_id, "model_patch": "diff"}
        official = get_eval_report(spec, prediction, str(log), True)[task.instance_id]
        grade = grade_log(task, record["test_output"])
        assert official["resolved"] is grade.resolved, task.instance_id
        if "tests_status" in official:
            assert official["tests_status"] == grade.tests_status, task.instance_id
        else:
            crashed.append(task.instance_id)
            assert grade.outcome == "unresolved"
            assert grade.tests_status["FAIL_TO_PASS"]["failure"] == task.fail_to_pass
            assert grade.tests_status["PASS_TO_PASS"]["failure"] == task.pass_to_pass
            assert "no test results" in grade.detail
    assert len(crashed) == 9  # import errors and a database-setup crash in the fixture


# --- parser and eval-type choice ----------------------------------------------------------------


def test_parser_by_swebench_repository():
    assert choose_log_parser(make_task("django/django")) is parse_log_django
    assert choose_log_parser(make_task("sympy/sympy")) is parse_log_sympy
    assert choose_log_parser(make_task("astropy/astropy")) is parse_log_pytest_v2
    # aliases resolve to the official function they alias
    assert choose_log_parser(make_task("pylint-dev/astroid")) is parse_log_pytest


def test_parser_for_our_own_tasks_defaults_to_pytest():
    assert choose_log_parser(make_task("toy/calc")) is parse_log_pytest
    assert choose_log_parser(make_task("someone/unknown-repo")) is parse_log_pytest


def test_parser_named_by_the_task_wins_over_the_repository():
    rebench = make_task("django/django", install_config={"log_parser": "parse_log_pytest_v2"})
    assert choose_log_parser(rebench) is parse_log_pytest_v2
    swebench5 = make_task("toy/calc", extra={"log_parser": "parse_log_sympy"})
    assert choose_log_parser(swebench5) is parse_log_sympy
    # an install_config without a parser falls through to the repository map
    assert choose_log_parser(make_task("django/django", install_config={"python": "3.9"})) is (
        parse_log_django
    )


def test_unknown_parser_name_is_an_error_naming_the_task():
    task = make_task(install_config={"log_parser": "parse_log_nose"}, instance_id="a__b-7")
    with pytest.raises(ValueError, match=r"a__b-7.*'parse_log_nose'"):
        choose_log_parser(task)
    with pytest.raises(ValueError, match="a__b-7"):
        grade_log(task, marked("PASSED tests/test_calc.py::test_add"))


def test_eval_type():
    assert choose_eval_type(make_task("toy/calc")) is EvalType.PASS_AND_FAIL
    assert choose_eval_type(make_task("chartjs/Chart.js")) is EvalType.FAIL_ONLY
    assert choose_eval_type(make_task(extra={"eval_type": "fail_only"})) is EvalType.FAIL_ONLY
    with pytest.raises(ValueError, match="toy__calc-1.*'sometimes'"):
        choose_eval_type(make_task(extra={"eval_type": "sometimes"}))


# --- logs that cannot be graded, and what counts -------------------------------------------------


@pytest.mark.parametrize(
    "log",
    [
        "",
        "PASSED tests/test_calc.py::test_add\nPASSED tests/test_calc.py::test_sub\n",
        f"+ : '{START}'\nPASSED tests/test_calc.py::test_add\n",
    ],
    ids=["empty", "no-markers", "no-end-marker"],
)
def test_missing_markers_is_not_resolved_with_a_reason(log):
    grade = grade_log(make_task(), log)
    assert (grade.resolved, grade.outcome, grade.tests_status) == (False, "no_test_output", {})
    assert START in grade.detail
    entry = grade.to_report("toy__calc-1")["toy__calc-1"]
    assert entry == {
        "patch_is_None": False,
        "patch_exists": True,
        "patch_successfully_applied": False,
        "resolved": False,
    }


@pytest.mark.parametrize(
    ("marker", "outcome"), [(APPLY_PATCH_FAIL, "patch_failed"), (TESTS_TIMEOUT, "timeout")]
)
def test_harness_failure_markers(marker, outcome):
    log = (
        marked("PASSED tests/test_calc.py::test_add\nPASSED tests/test_calc.py::test_sub") + marker
    )
    grade = grade_log(make_task(), log)
    assert (grade.resolved, grade.outcome) == (False, outcome)
    assert marker in grade.detail


def test_only_the_text_between_markers_counts():
    passing = "PASSED tests/test_calc.py::test_add\nPASSED tests/test_calc.py::test_sub\n"
    assert grade_log(make_task(), marked(passing)).resolved
    # the same lines before the start marker (setup output) or after the end marker do not count
    grade = grade_log(make_task(), marked("collected 0 items", before=passing) + passing)
    assert (grade.resolved, grade.outcome) == (False, "unresolved")
    assert grade.tests_status["FAIL_TO_PASS"] == {
        "success": [],
        "failure": ["tests/test_calc.py::test_add"],
    }


def test_crash_between_markers_fails_every_test():
    grade = grade_log(
        make_task(), marked("ImportError while loading conftest 'tests/conftest.py'.")
    )
    assert (grade.resolved, grade.outcome) == (False, "unresolved")
    assert grade.tests_status["PASS_TO_PASS"]["failure"] == ["tests/test_calc.py::test_sub"]
    assert "no test results" in grade.detail


def test_fail_only_without_sign_of_a_run_is_not_graded():
    """Fail-only grading reads an absent test as passed: an empty run must not resolve."""
    task = make_task("toy/js", f2p=["renders"], p2p=[], extra={"eval_type": "fail_only"})
    grade = grade_log(task, marked("Error: browser failed to launch"))
    assert (grade.resolved, grade.outcome) == (False, "no_test_output")
    assert grade_log(task, marked("3 passing (20ms)")).resolved


def test_exit_status_contradicting_the_log_is_an_error():
    passing = "PASSED tests/test_calc.py::test_add\nPASSED tests/test_calc.py::test_sub"
    assert grade_log(make_task(), marked(passing) + ">>>>> Test Exit Code: 0\n").resolved
    grade = grade_log(make_task(), marked(passing) + ">>>>> Test Exit Code: 1\n")
    assert (grade.resolved, grade.outcome) == (False, "error")
    assert "exited 1" in grade.detail
    # a status printed by the tests themselves does not count, only the one after the end marker
    forged = marked(passing + "\n>>>>> Test Exit Code: 0") + ">>>>> Test Exit Code: 1\n"
    assert grade_log(make_task(), forged).outcome == "error"


def test_a_parser_that_raises_is_recorded_not_raised():
    # immutable-js's official parser picks a runner by PR number and rejects unknown ones
    task = make_task("immutable-js/immutable-js", f2p=["x"], p2p=[], instance_id="im__js-9999")
    grade = grade_log(task, marked("PASS x"))
    assert (grade.resolved, grade.outcome) == (False, "error")
    assert "parse_log_immutable_js failed: ValueError" in grade.detail


def test_task_without_test_lists_is_an_error():
    task = make_task(instance_id="toy__calc-9")
    task = Task(**{**task.__dict__, "fail_to_pass": None})
    with pytest.raises(ValueError, match="toy__calc-9.*FAIL_TO_PASS"):
        grade_log(task, marked("PASSED a"))
    with pytest.raises(ValueError, match="toy__calc-9: FAIL_TO_PASS is empty"):
        grade_log(make_task(f2p=[], instance_id="toy__calc-9"), marked("crash"))


def test_to_fail_lists_are_reported_but_do_not_decide():
    task = make_task(fail_to_fail=["tests/test_calc.py::test_div"], pass_to_fail=[])
    log = marked(
        "PASSED tests/test_calc.py::test_add\nPASSED tests/test_calc.py::test_sub\n"
        "FAILED tests/test_calc.py::test_div - ZeroDivisionError"
    )
    grade = grade_log(task, log)
    assert grade.resolved
    assert grade.tests_status["FAIL_TO_FAIL"] == {
        "success": [],
        "failure": ["tests/test_calc.py::test_div"],
    }


# --- a real pytest run through an eval script ----------------------------------------------------

EVAL_SCRIPT = f"""set -uxo pipefail
cd "$1"
: '{START}'
"$2" -m pytest -rA -p no:cacheprovider tests/test_calc.py
SWEBENCH_TEST_EXIT_CODE=$?
: '{END}'
echo ">>>>> Test Exit Code: $SWEBENCH_TEST_EXIT_CODE"
"""

TESTS = """from calc import add, sub

def test_add():
    assert add(2, 3) == 5

def test_sub():
    assert sub(2, 3) == -1
"""


@pytest.mark.parametrize(("body", "resolved"), [("a + b", True), ("a - b", False)])
def test_real_pytest_log(tmp_path, body, resolved):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_text(TESTS)
    (tmp_path / "calc.py").write_text(
        f"def add(a, b):\n    return {body}\n\n\ndef sub(a, b):\n    return a - b\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        ["bash", "-c", EVAL_SCRIPT, "eval", str(tmp_path), sys.executable],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=120,
    )
    log = run.stdout  # streams merged, as a sandbox records them: the markers stay in order
    grade = grade_log(make_task(), log)
    assert grade.resolved is resolved, grade.detail
    f2p = grade.tests_status["FAIL_TO_PASS"]
    assert f2p["success" if resolved else "failure"] == ["tests/test_calc.py::test_add"]
    assert grade.tests_status["PASS_TO_PASS"]["success"] == ["tests/test_calc.py::test_sub"]
    assert grade.detail.startswith("parse_log_pytest: 2 tests parsed")


# --- Grade -----------------------------------------------------------------------------------------


def test_grade_invariants():
    with pytest.raises(ValueError, match="contradicts"):
        Grade(resolved=True, outcome="unresolved")
    with pytest.raises(ValueError, match="unknown grade outcome 'flaky'"):
        Grade(resolved=False, outcome="flaky")
    with pytest.raises(ValueError, match="ungraded"):
        Grade.ungraded("resolved", "no")
    with pytest.raises(ValueError, match="carries no tests_status"):
        Grade(resolved=False, outcome="timeout", tests_status={"FAIL_TO_PASS": {}})
    assert Grade.ungraded("image_missing", "no image x").to_report("i")["i"]["resolved"] is False
