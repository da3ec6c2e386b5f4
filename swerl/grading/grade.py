"""The result of grading one patch or one test log: `Grade`, and the outcomes it can record.

A `Grade` says whether the task is resolved (the SWE-bench rule), which tests passed and failed in
the official report shape, and, when the tests could not be graded at all, why. `to_report` gives
the dict the official harness writes to `report.json`, so our grades can be compared with (or
handed to) SWE-bench tooling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OUTCOMES = (
    "resolved",  # every FAIL_TO_PASS and PASS_TO_PASS test passes
    "unresolved",  # the tests ran and were parsed, and some required test did not pass
    "no_test_output",  # no test-output markers, or nothing parseable and no sign the suite ran
    "patch_failed",  # the patch (or the test patch) did not apply
    "timeout",  # the test run exceeded its time limit
    "image_missing",  # the task's image is not available (set by `grade_patch`)
    "error",  # the grading itself failed: reset failed, parser error, log contradicts exit code
)
GRADED = ("resolved", "unresolved")  # outcomes where the tests ran and were parsed

TestsStatus = dict[str, dict[str, list[str]]]
"""{FAIL_TO_PASS | PASS_TO_PASS | FAIL_TO_FAIL | PASS_TO_FAIL: {"success": [...], "failure": [...]}}"""


@dataclass(frozen=True)
class Grade:
    """One grading result; `resolved` is True exactly when `outcome == "resolved"`."""

    resolved: bool
    outcome: str
    """One of `OUTCOMES`."""
    tests_status: TestsStatus = field(default_factory=dict)
    """Per-test results in the official report shape; empty when the tests were not graded."""
    detail: str = ""
    """A human-readable reason: which parser, how many tests passed, or what went wrong."""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown grade outcome {self.outcome!r}; expected one of {OUTCOMES}")
        if self.resolved != (self.outcome == "resolved"):
            raise ValueError(f"resolved={self.resolved} contradicts outcome {self.outcome!r}")
        if self.outcome not in GRADED and self.tests_status:
            raise ValueError(f"outcome {self.outcome!r} carries no tests_status")

    @classmethod
    def ungraded(cls, outcome: str, detail: str) -> Grade:
        """A grade for a run whose tests could not be graded (`outcome` not resolved/unresolved)."""
        if outcome in GRADED:
            raise ValueError(f"ungraded() is for outcomes other than {GRADED}, got {outcome!r}")
        return cls(resolved=False, outcome=outcome, detail=detail)

    def to_report(self, instance_id: str) -> dict[str, dict[str, Any]]:
        """The official `report.json` entry for this grade.

        Like `swebench.harness.grading.get_eval_report` with `include_tests_status=True`:
        `patch_successfully_applied` is True when the log was graded, and `tests_status` is
        present only then. A grade always concerns a patch, so `patch_is_None` is False and
        `patch_exists` True. (swebench 5.x adds advisory `infra_failure` keys; we leave them out,
        as the reports of earlier versions do.)
        """
        entry: dict[str, Any] = {
            "patch_is_None": False,
            "patch_exists": True,
            "patch_successfully_applied": self.outcome in GRADED,
            "resolved": self.resolved,
        }
        if self.outcome in GRADED:
            entry["tests_status"] = self.tests_status
        return {instance_id: entry}
