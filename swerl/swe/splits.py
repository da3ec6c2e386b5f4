"""Named subsets of a `tasks` version: the train or eval split of a suite, optionally the first
`limit` tasks, published as their own `tasks` version so every later stage can pin it.

    select_tasks(lake, "toy-swe", split="train", limit=8, name="toy-swe-train")

A task's split is `meta["split"]` (the toy-SWE suite sets it); tasks without one belong to no
split. Order is the parent version's order, so `limit` keeps the same tasks on every machine.
"""

from __future__ import annotations

from swerl.lake import Lake

STAGE = "select_tasks"


class SplitError(ValueError):
    """A split or limit that selects nothing."""


def task_split(row: dict) -> str | None:
    """The split a `tasks` row belongs to (`meta.split`), or None."""
    meta = row.get("meta") or {}
    if isinstance(meta, str):
        import json

        meta = json.loads(meta)
    return meta.get("split")


def select_tasks(
    lake: Lake,
    tasks: str = "latest",
    *,
    split: str | None = None,
    limit: int | None = None,
    name: str | None = None,
    force: bool = False,
) -> str:
    """Publish the tasks of `tasks` in `split` (all when None), the first `limit` of them, as a
    new `tasks` version named `name`; returns its id (the existing one on a re-run)."""
    if limit is not None and limit < 1:
        raise SplitError(f"limit must be >= 1, got {limit}")
    parent = lake.resolve("tasks", tasks)
    parameters = {"split": split, "limit": limit}
    inputs = {"tasks": parent.version}
    fp = lake.fingerprint("tasks", stage=STAGE, parameters=parameters, inputs=inputs, name=name)
    done = None if force else lake.find("tasks", fp)
    if done is not None:
        return done.version
    table = lake.read("tasks", parent.version)
    if split is not None:
        found = [task_split(r) for r in table.select(["meta"]).to_pylist()]
        keep = [i for i, s in enumerate(found) if s == split]
        if not keep:
            raise SplitError(
                f"tasks {parent.version}: no task in split {split!r} "
                f"(splits there: {', '.join(sorted({s for s in found if s})) or 'none'})"
            )
        table = table.take(keep)
    if limit is not None:
        table = table.slice(0, limit)
    return lake.write(
        "tasks", table, stage=STAGE, parameters=parameters, inputs=inputs, name=name, force=True
    )
