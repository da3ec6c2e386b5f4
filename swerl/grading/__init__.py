"""Grading: official SWE-bench log parsing and grading rules (`grade_log`) and the reward.

`grade_log(task, log_text)` turns a test log into a `Grade` (resolved flag, per-test status in the
official report shape, outcome, detail); `reward(resolved, turns, max_turns)` is PAPER.md section
4's reward with the turn penalty. See the README, "Grading".
"""

from swerl.grading.grade import OUTCOMES, Grade
from swerl.grading.log import choose_eval_type, choose_log_parser, grade_log
from swerl.grading.patch import grade_patch, run_tests
from swerl.grading.reward import reward, turn_penalty

__all__ = [
    "OUTCOMES",
    "Grade",
    "choose_eval_type",
    "choose_log_parser",
    "grade_log",
    "grade_patch",
    "run_tests",
    "reward",
    "turn_penalty",
]
