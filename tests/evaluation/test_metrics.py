"""pass@k against the closed form on a grid, edge cases, and Pass@1 with its standard error."""

from __future__ import annotations

import math

import pytest

from swerl.evaluation.metrics import mean_pass_at_k, pass_at_1_runs, pass_at_k


def closed_form(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 17, 50])
def test_matches_closed_form_on_a_grid(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(closed_form(n, c, k), abs=1e-12)


def test_edge_cases():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 0, 10) == 0.0  # c = 0
    assert pass_at_k(10, 8, 3) == 1.0  # n - c < k
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the plain success rate
    assert pass_at_k(1000, 1, 1000) == 1.0 and 0 < pass_at_k(1000, 1, 1) < 0.0011  # large n
    for bad in [(0, 0, 1), (5, 6, 1), (5, 2, 0), (5, 2, 6), (5, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)
    with pytest.raises(TypeError):
        pass_at_k(5, 2.0, 1)


def test_mean_pass_at_k_and_pass_at_1_with_sem():
    assert mean_pass_at_k([(10, 0), (10, 10), (10, 5)], 1) == pytest.approx(0.5)
    runs = [[True, False, False, True], [True, True, False, False], [False, False, False, True]]
    mean, sem = pass_at_1_runs(runs)
    rates = [0.5, 0.5, 0.25]
    sd = math.sqrt(sum((r - sum(rates) / 3) ** 2 for r in rates) / 2)
    assert mean == pytest.approx(sum(rates) / 3) and sem == pytest.approx(sd / math.sqrt(3))
    assert pass_at_1_runs([[True, False]]) == (0.5, 0.0)
    with pytest.raises(ValueError, match="same tasks"):
        pass_at_1_runs([[True], [True, False]])
