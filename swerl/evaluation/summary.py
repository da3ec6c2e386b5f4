"""The summary of an evaluation: the figures of PAPER.md section 7 from `evals` rows.

    summary = summarize(lake.read("evals", version).to_pylist())
    summary["pass_at_1"], summary["pass_at_1_sem"], summary["pass_at_k"]["10"]

- Pass@1: the mean resolved rate over runs, run r being attempt r of every task, with the
  standard error of that mean over runs (`pass_at_1_runs`). Equals the mean of per-task
  resolved rates; the standard error is what differs from a per-attempt binomial one.
- Pass@k for every k <= n: the unbiased estimator of Chen et al. (2021) averaged over tasks
  (`pass_at_k`). Pass@n is "solved in at least one of n".
- By repository: the same two figures over that repository's tasks.
- Terminations and grading outcomes: counts over all attempts.
- Means over attempts: turns, completion (sampled) tokens, total tokens, reward; submit rate.

Every task must have attempts 0..n-1, each exactly once (a resumed run with a gap is an error,
not a silently smaller n). Keys of `pass_at_k` are strings ("1", "2", ...) so the dict survives a
JSON round trip (it is stored in the `evals` manifest) unchanged.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from swerl.evaluation.metrics import mean_pass_at_k, pass_at_1_runs


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The summary of `evals` rows (instance_id, repo, attempt, resolved, termination, turns,
    completion_tokens, total_tokens, reward, submitted, grade_outcome)."""
    if not rows:
        raise ValueError("no evals rows to summarize")
    by_task = _by_task(rows)
    n = len(next(iter(by_task.values())))
    summary: dict[str, Any] = {"tasks": len(by_task), "attempts": n, "episodes": len(rows)}
    summary.update(_pass_figures(by_task, n))
    repo_of = {r["instance_id"]: r.get("repo") or "unknown" for r in rows}
    repos: dict[str, dict[str, list[bool]]] = defaultdict(dict)
    for task, resolved in by_task.items():
        repos[repo_of[task]][task] = resolved
    summary["by_repo"] = {
        repo: {"tasks": len(tasks), **_pass_figures(tasks, n, ks=(1, n))}
        for repo, tasks in sorted(repos.items())
    }
    summary["terminations"] = dict(Counter(r.get("termination") or "unknown" for r in rows))
    summary["grade_outcomes"] = dict(Counter(r.get("grade_outcome") or "unknown" for r in rows))
    summary["submit_rate"] = sum(bool(r.get("submitted")) for r in rows) / len(rows)
    for key in ("turns", "completion_tokens", "total_tokens", "reward"):
        values = [r[key] for r in rows if r.get(key) is not None]
        summary[f"mean_{key}"] = sum(values) / len(values) if values else None
    return summary


def _by_task(rows: Sequence[dict[str, Any]]) -> dict[str, list[bool]]:
    """instance_id -> resolved of attempts 0..n-1; checks that every task has the same n."""
    attempts: dict[str, dict[int, bool]] = defaultdict(dict)
    for r in rows:
        task, a = r["instance_id"], int(r["attempt"])
        if a in attempts[task]:
            raise ValueError(f"task {task}: attempt {a} appears twice")
        attempts[task][a] = bool(r["resolved"])
    out = {}
    n = None
    for task, by_attempt in attempts.items():
        if sorted(by_attempt) != list(range(len(by_attempt))):
            raise ValueError(f"task {task}: attempts {sorted(by_attempt)} are not 0..n-1")
        if n is not None and len(by_attempt) != n:
            raise ValueError(f"task {task} has {len(by_attempt)} attempts, other tasks have {n}")
        n = len(by_attempt)
        out[task] = [by_attempt[a] for a in range(n)]
    return out


def _pass_figures(
    by_task: dict[str, list[bool]], n: int, ks: Sequence[int] | None = None
) -> dict[str, Any]:
    tasks = list(by_task)
    runs = [[by_task[t][r] for t in tasks] for r in range(n)]
    mean, sem = pass_at_1_runs(runs)
    counts = [(n, sum(by_task[t])) for t in tasks]
    ks = range(1, n + 1) if ks is None else sorted(set(ks))
    return {
        "pass_at_1": mean,
        "pass_at_1_sem": sem,
        "pass_at_k": {str(k): mean_pass_at_k(counts, k) for k in ks},
    }
