"""import_tasks: task files -> a `tasks` version (and `tasks_rejected` when rows are skipped).

    python -m flows.import_tasks ../shared/fixtures/swebench/lite_rows.jsonl --name swe-bench-lite

The same as `swerl tasks import`, as a Prefect flow; it returns the published version ids.
"""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger

from swerl.lake import Lake
from swerl.swe.ingest import import_tasks as import_tasks_lib


@flow(name="import-tasks")
def import_tasks(
    paths: list[str],
    name: str | None = None,
    skip_invalid: bool = False,
    force: bool = False,
    data: str | None = None,
) -> dict[str, str | None]:
    """Import SWE-bench / SWE-rebench task files into the lake at `data` (default: $SWERL_DATA)."""
    result = import_tasks_lib(
        paths, name=name, skip_invalid=skip_invalid, force=force, lake=Lake(data)
    )
    logger = get_run_logger()
    verb = "reused" if result.reused else "published"
    logger.info("%s tasks version %s (%d rows)", verb, result.version, result.rows)
    if result.rejected:
        logger.warning(
            "%d invalid rows -> tasks_rejected %s", result.rejected, result.rejected_version
        )
    return {"tasks": result.version, "tasks_rejected": result.rejected_version}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--name")
    ap.add_argument("--skip-invalid", action="store_true")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    print(import_tasks(args.paths, args.name, args.skip_invalid, args.force))
    sys.exit(0)
