"""The reward of PAPER.md section 4, against the paper's worked examples."""

import pytest

from swerl.grading import reward, turn_penalty


@pytest.mark.parametrize(
    ("resolved", "turns", "max_turns", "expected"),
    [
        (True, 25, 40, 0.5),  # paper: 1 - 15/30
        (True, 40, 40, 0.0),  # paper: a success in T_max turns scores 0
        (True, 45, 80, 0.5),  # paper: T_max = 80, 1 - 35/70
        (False, 25, 40, -0.5),  # the penalty applies to failures alike
        (False, 40, 40, -1.0),  # and reaches -1 at T_max
        (False, 45, 80, -0.5),
        (True, 10, 40, 1.0),  # at the threshold the penalty is 0
        (True, 3, 40, 1.0),  # below it there is none
        (False, 9, 40, 0.0),
        (True, 11, 40, 1 - 1 / 30),
    ],
)
def test_paper_examples(resolved, turns, max_turns, expected):
    assert reward(resolved, turns, max_turns) == pytest.approx(expected)
    assert turn_penalty(turns, max_turns) == pytest.approx(expected - float(resolved))


def test_threshold_is_a_parameter():
    assert turn_penalty(25, 40, threshold=20) == pytest.approx(-5 / 20)
    assert turn_penalty(0, 5, threshold=0) == 0.0
    assert turn_penalty(5, 5, threshold=0) == -1.0


@pytest.mark.parametrize(
    ("turns", "max_turns", "threshold", "message"),
    [
        (5, 10, 10, r"max_turns \(10\) must exceed the turn penalty threshold \(10\)"),
        (5, 8, 10, r"max_turns \(8\) must exceed"),
        (41, 40, 10, r"turns must be in \[0, max_turns=40\], got 41"),
        (-1, 40, 10, r"got -1"),
        (5, 40, -1, r"threshold must be >= 0, got -1"),
    ],
)
def test_bad_arguments(turns, max_turns, threshold, message):
    with pytest.raises(ValueError, match=message):
        turn_penalty(turns, max_turns, threshold)
    with pytest.raises(ValueError, match=message):
        reward(True, turns, max_turns, threshold)
