"""The toy-SWE suite: small, real, deterministic SWE tasks for the demo and learning benchmarks.

    rows = build_toy_suite(seed=0, n_train=48, n_eval=16)      # list of `tasks` rows
    version = publish_toy_suite(Lake(), seed=0)                # -> `tasks` version "toy-swe"
    swerl toy build --seed 0 --train 48 --eval 16              # the same from the command line

Each task is a git repository of a small Python package (1-4 modules, each under 60 lines, one
test file) holding one bug from one of seven families, an issue written like a user's (a call,
the expected and the actual outcome, never the fix), the gold `patch`, a `test_patch` adding the
tests that expose the bug, and FAIL_TO_PASS / PASS_TO_PASS found by running pytest. Rows carry
the repository itself (`repo_files`; `swerl.swe.repo.materialize_repo` rebuilds it at
`base_commit`) and the test command (`install_config`): any image with python3 and pytest runs it.
Train and eval tasks share no surface names (`vocab.py`). See the README, "The toy-SWE suite".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from swerl.lake import Lake
from swerl.swe.toy.build import task_rows
from swerl.swe.toy.generate import (
    DIFFICULTIES,
    ToyGenerationError,
    ToyTask,
    generate_task,
    task_difficulty,
)

__all__ = [
    "ToyGenerationError",
    "ToyTask",
    "build_toy_suite",
    "generate_task",
    "publish_toy_suite",
    "task_difficulty",
    "toy_tasks",
]

STAGE = "toy_build"


def _difficulties(difficulties: Iterable[int] | None) -> tuple[int, ...]:
    if difficulties is None:
        return DIFFICULTIES
    chosen = tuple(sorted(set(difficulties)))
    bad = [d for d in chosen if d not in DIFFICULTIES]
    if bad or not chosen:
        raise ValueError(
            f"difficulties must be a non-empty subset of {list(DIFFICULTIES)}, got "
            f"{list(difficulties)}"
        )
    return chosen


def _indices(n: int, difficulties: tuple[int, ...]) -> list[int]:
    """The first `n` task indices whose difficulty is in `difficulties`."""
    out: list[int] = []
    i = 0
    while len(out) < n:
        if task_difficulty(i) in difficulties:
            out.append(i)
        i += 1
    return out


def toy_tasks(
    seed: int,
    n_train: int,
    n_eval: int,
    eval_names: str = "eval",
    difficulties: Iterable[int] | None = None,
) -> list[ToyTask]:
    """The generated tasks (tests not yet run): train first, then eval. `eval_names`: the name
    pool of the eval tasks (`eval`: names no train task uses; `train`: held-out tasks made of
    the train split's names, see `generate_task`). `difficulties`: keep only tasks of these
    difficulties (1-3; default all): the first `n_train` / `n_eval` indices of those
    difficulties, so a task is the same task whatever the filter (its index is its identity)."""
    if n_train < 0 or n_eval < 0:
        raise ValueError(f"task counts must be >= 0, got train={n_train} eval={n_eval}")
    levels = _difficulties(difficulties)
    return [generate_task(seed, "train", i) for i in _indices(n_train, levels)] + [
        generate_task(seed, "eval", i, names=eval_names) for i in _indices(n_eval, levels)
    ]


def build_toy_suite(
    seed: int = 0,
    n_train: int = 48,
    n_eval: int = 16,
    eval_names: str = "eval",
    difficulties: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """`tasks` rows of the suite, tests run; the same arguments give byte-identical rows."""
    return task_rows(toy_tasks(seed, n_train, n_eval, eval_names, difficulties), seed)


def publish_toy_suite(
    lake: Lake,
    seed: int = 0,
    n_train: int = 48,
    n_eval: int = 16,
    name: str = "toy-swe",
    eval_names: str = "eval",
    difficulties: Iterable[int] | None = None,
) -> str:
    """Build the suite and publish it as a `tasks` version named `name`; returns the version id.
    A version built with the same arguments and code already in the lake is returned as is."""
    levels = _difficulties(difficulties)
    parameters: dict[str, Any] = {"seed": seed, "train": n_train, "eval": n_eval}
    if eval_names != "eval":
        parameters["eval_names"] = eval_names
    if levels != DIFFICULTIES:  # recorded only when filtered: older versions keep their print
        parameters["difficulties"] = list(levels)
    existing = lake.find(
        "tasks", lake.fingerprint("tasks", stage=STAGE, parameters=parameters, name=name)
    )
    if existing is not None:
        return existing.version
    rows = build_toy_suite(seed, n_train, n_eval, eval_names, levels)
    return lake.write("tasks", rows, stage=STAGE, parameters=parameters, name=name)
