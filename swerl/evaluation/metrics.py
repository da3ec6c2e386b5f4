"""Pass@k and Pass@1 as the paper reports them (PAPER.md section 7).

- `pass_at_k(n, c, k)`: the unbiased estimator of Chen et al. (2021), "Evaluating Large Language
  Models Trained on Code": the probability that at least one of k attempts drawn without
  replacement from n attempts, c of them correct, is correct: 1 - C(n-c, k) / C(n, k). Computed as
  a product so it stays exact for large n.
- `pass_at_1_runs(resolved)`: Pass@1 as the mean resolved rate over runs (each run attempts every
  task once) with the standard error of that mean over runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with n attempts of which c are correct."""
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError("n, c and k must be integers")
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need n >= 1, 0 <= c <= n, 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k attempts contains a correct one
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k / i)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over tasks, each given as (n attempts, c correct)."""
    if not counts:
        raise ValueError("no tasks")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def pass_at_1_runs(resolved: Sequence[Sequence[bool]]) -> tuple[float, float]:
    """(mean, standard error) of the per-run resolved rate; `resolved[r][t]` is run r, task t.
    The standard error is the sample standard deviation of run means over sqrt(runs); 0.0 for a
    single run."""
    if not resolved or not resolved[0]:
        raise ValueError("need at least one run over at least one task")
    width = len(resolved[0])
    if any(len(run) != width for run in resolved):
        raise ValueError("every run must attempt the same tasks")
    rates = [sum(run) / width for run in resolved]
    mean = sum(rates) / len(rates)
    if len(rates) < 2:
        return mean, 0.0
    var = sum((r - mean) ** 2 for r in rates) / (len(rates) - 1)
    return mean, math.sqrt(var / len(rates))
