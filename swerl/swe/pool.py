"""Pool filters: which tasks are clean enough to train on (PAPER.md section 3, our section 9).

Static rules read only the task row:
- the gold patch touches at most `max_patch_files` files and changes fewer than
  `max_changed_lines` lines (paper: <= 7 files, < 500 lines);
- no `llm_score` sub-score equals `drop_llm_score` (paper: "an LLM score of 3"; we read that as
  any of difficulty / issue text / test score);
- decontamination: the task's instance id, or with `by="repo"` its repository, does not appear in
  a named evaluation set.

Execution rules read the validation runs (`task_runs`, made by `swerl.swe.validate`): the gold
patch must resolve the task in every run, no patch must leave every FAIL_TO_PASS failing in every
run, results must not vary between runs (flaky), and FAIL_TO_PASS failures of the no-patch run must
not be ImportError / AttributeError (the test would need the agent to guess a name).

`pool_rows` gives one `task_pool` row per task: kept or not, with every reason it was dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from swerl.swe.task import Task


@dataclass(frozen=True)
class PoolFilter:
    """Thresholds of the pool filter; the defaults are the paper's."""

    max_patch_files: int = 7
    """Drop tasks whose gold patch touches more files than this."""
    max_changed_lines: int = 500
    """Drop tasks whose gold patch changes this many lines or more (added + removed)."""
    drop_llm_score: int | None = 3
    """Drop tasks with any `meta.llm_score` sub-score equal to this; None disables the rule."""
    drop_import_errors: bool = True
    """Drop tasks whose FAIL_TO_PASS tests fail with ImportError/AttributeError before the fix."""

    def __post_init__(self) -> None:
        if self.max_patch_files < 1:
            raise ValueError(f"max_patch_files must be >= 1, got {self.max_patch_files}")
        if self.max_changed_lines < 1:
            raise ValueError(f"max_changed_lines must be >= 1, got {self.max_changed_lines}")


@dataclass(frozen=True)
class PatchStats:
    files: int
    added: int
    removed: int

    @property
    def changed(self) -> int:
        return self.added + self.removed


def patch_stats(patch: str) -> PatchStats:
    """Files touched and lines added/removed by a unified git diff."""
    files = added = removed = 0
    in_hunk = False
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            files += 1
            in_hunk = False
        elif line.startswith("@@"):
            in_hunk = True
        elif in_hunk and line.startswith("+"):
            added += 1
        elif in_hunk and line.startswith("-"):
            removed += 1
    return PatchStats(files, added, removed)


LLM_SUBSCORES = ("difficulty_score", "issue_text_score", "test_score")


def static_reasons(task: Task, rules: PoolFilter) -> list[str]:
    """Reasons to drop `task` that need no execution (empty: keep)."""
    reasons = []
    if not task.patch:
        reasons.append("no gold patch")
    else:
        stats = patch_stats(task.patch)
        if stats.files > rules.max_patch_files:
            reasons.append(f"gold patch touches {stats.files} files (> {rules.max_patch_files})")
        if stats.changed >= rules.max_changed_lines:
            reasons.append(
                f"gold patch changes {stats.changed} lines (>= {rules.max_changed_lines})"
            )
    if not task.fail_to_pass:
        reasons.append("no FAIL_TO_PASS tests")
    if rules.drop_llm_score is not None and task.meta:
        scores = task.meta.get("llm_score") or {}
        hit = [k for k in LLM_SUBSCORES if scores.get(k) == rules.drop_llm_score]
        if hit:
            reasons.append(f"llm_score {', '.join(hit)} = {rules.drop_llm_score}")
    return reasons


def contamination_reasons(
    task: Task, eval_sets: dict[str, Iterable[Task]], by: str = "instance"
) -> list[str]:
    """Reasons for `task` overlapping a named evaluation set, by instance id or by repository."""
    if by not in ("instance", "repo"):
        raise ValueError(f"decontaminate by 'instance' or 'repo', got {by!r}")
    reasons = []
    for name, tasks in eval_sets.items():
        keys = {t.instance_id if by == "instance" else t.repo for t in tasks}
        key = task.instance_id if by == "instance" else task.repo
        if key in keys:
            reasons.append(f"contaminated: {by} {key} is in eval set {name!r}")
    return reasons


IMPORT_ERROR = re.compile(r"\b(ImportError|ModuleNotFoundError|AttributeError)\b")


def mentions_import_error(log: str) -> bool:
    """Whether a test log shows an ImportError / ModuleNotFoundError / AttributeError.

    A text match over the test output: it does not tell which test raised it, so a task whose
    unrelated tests print such an error is dropped too (the conservative side for RL rewards)."""
    return bool(IMPORT_ERROR.search(log))


def pool_rows(tasks: Iterable[Task], reasons: dict[str, list[str]]) -> list[dict]:
    """`task_pool` rows: every task, kept when it has no reason to drop."""
    return [
        {
            "instance_id": t.instance_id,
            "repo": t.repo,
            "kept": not reasons.get(t.instance_id),
            "reasons": reasons.get(t.instance_id, []),
        }
        for t in tasks
    ]
