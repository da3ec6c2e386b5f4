"""The evaluation summary on hand-made `evals` rows, against figures computed by hand."""

from __future__ import annotations

import math

import pytest

from swerl.evaluation.summary import summarize


def rows_from(table: dict[str, list[bool]], repo_of: dict[str, str]) -> list[dict]:
    out = []
    for task, resolved in table.items():
        for a, ok in enumerate(resolved):
            out.append(
                {
                    "instance_id": task,
                    "repo": repo_of[task],
                    "attempt": a,
                    "resolved": ok,
                    "termination": "submitted" if ok else "max_turns",
                    "grade_outcome": "resolved" if ok else "unresolved",
                    "submitted": ok,
                    "turns": 3 if ok else 10,
                    "completion_tokens": 100,
                    "total_tokens": 1000 + a,
                    "reward": 1.0 if ok else -0.5,
                }
            )
    return out


# Three tasks, four attempts: task a solved 4/4, b 1/4, c 0/4.
TABLE = {
    "a": [True, True, True, True],
    "b": [False, False, True, False],
    "c": [False, False, False, False],
}
REPOS = {"a": "x/one", "b": "x/one", "c": "y/two"}


def test_pass_at_1_is_the_mean_over_runs_with_its_standard_error():
    s = summarize(rows_from(TABLE, REPOS))
    assert (s["tasks"], s["attempts"], s["episodes"]) == (3, 4, 12)
    # runs (attempt r of every task): 1/3, 1/3, 2/3, 1/3 -> mean 5/12
    rates = [1 / 3, 1 / 3, 2 / 3, 1 / 3]
    mean = sum(rates) / 4
    sd = math.sqrt(sum((r - mean) ** 2 for r in rates) / 3)
    assert s["pass_at_1"] == pytest.approx(5 / 12)
    assert s["pass_at_1_sem"] == pytest.approx(sd / 2)
    assert s["pass_at_1_sem"] == pytest.approx(1 / 12)  # sd = 1/6 by hand


def test_pass_at_k_for_every_k_uses_the_unbiased_estimator():
    s = summarize(rows_from(TABLE, REPOS))
    assert sorted(s["pass_at_k"], key=int) == ["1", "2", "3", "4"]
    # task a: 1 for every k; b (n=4, c=1): k/4; c: 0
    for k in range(1, 5):
        assert s["pass_at_k"][str(k)] == pytest.approx((1 + k / 4 + 0) / 3)
    assert s["pass_at_k"]["1"] == pytest.approx(s["pass_at_1"])
    assert s["pass_at_k"]["4"] == pytest.approx(2 / 3)  # solved at least once: a and b


def test_breakdown_by_repository():
    s = summarize(rows_from(TABLE, REPOS))
    one, two = s["by_repo"]["x/one"], s["by_repo"]["y/two"]
    assert one["tasks"] == 2 and two["tasks"] == 1
    assert one["pass_at_1"] == pytest.approx(5 / 8)  # (4 + 1) / 8
    assert one["pass_at_k"] == {"1": pytest.approx(5 / 8), "4": pytest.approx(1.0)}
    # runs over x/one: 1/2, 1/2, 1, 1/2 -> sd 1/4, sem 1/8
    assert one["pass_at_1_sem"] == pytest.approx(1 / 8)
    assert two["pass_at_1"] == 0.0 and two["pass_at_1_sem"] == 0.0


def test_terminations_outcomes_and_means():
    s = summarize(rows_from(TABLE, REPOS))
    assert s["terminations"] == {"submitted": 5, "max_turns": 7}
    assert s["grade_outcomes"] == {"resolved": 5, "unresolved": 7}
    assert s["submit_rate"] == pytest.approx(5 / 12)
    assert s["mean_turns"] == pytest.approx((5 * 3 + 7 * 10) / 12)
    assert s["mean_completion_tokens"] == 100
    assert s["mean_total_tokens"] == pytest.approx(1001.5)
    assert s["mean_reward"] == pytest.approx((5 - 3.5) / 12)


def test_single_attempt_has_zero_standard_error_and_only_pass_at_1():
    s = summarize(rows_from({"a": [True], "b": [False]}, {"a": "r", "b": "r"}))
    assert s["pass_at_1"] == 0.5 and s["pass_at_1_sem"] == 0.0
    assert s["pass_at_k"] == {"1": 0.5}


def test_null_figures_are_left_out_of_means():
    rows = rows_from({"a": [True, False]}, {"a": "r"})
    rows[1]["reward"] = None  # a sandbox error has no reward
    assert summarize(rows)["mean_reward"] == 1.0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"a": [True, False], "b": [True]}, "task b has 1 attempts"),
        ({}, "no evals rows"),
    ],
)
def test_uneven_attempts_are_refused(table, message):
    with pytest.raises(ValueError, match=message):
        summarize(rows_from(table, {"a": "r", "b": "r"}))


def test_gaps_and_duplicates_are_refused():
    rows = rows_from({"a": [True, False, True]}, {"a": "r"})
    with pytest.raises(ValueError, match=r"task a: attempts \[0, 2\]"):
        summarize([rows[0], rows[2]])
    with pytest.raises(ValueError, match="attempt 1 appears twice"):
        summarize([*rows, rows[1]])
