"""Versioned Parquet datasets with manifests, atomic publishing and DuckDB views.

    from swerl import lake
    version = lake.write("tasks", rows, stage="import_tasks", parameters={...})
    table = lake.read("tasks")                      # latest version, as an Arrow table
    lake.versions("tasks")                          # every published version, oldest first
    con = lake.connect(); con.sql("select repo, count(*) from tasks group by repo").show()

The module functions use the default root (`$SWERL_DATA`, else `data/`) unless given `root=`;
`Lake(root)` holds a root for repeated use. Layout and guarantees: see `swerl.lake.store`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from swerl.lake.schemas import SCHEMAS
from swerl.lake.sql import connect
from swerl.lake.store import Lake, LakeError, Version, default_root

__all__ = [
    "SCHEMAS",
    "Lake",
    "LakeError",
    "Version",
    "connect",
    "default_root",
    "read",
    "versions",
    "write",
]


def write(dataset: str, data: Any, *, root: str | Path | None = None, **kwargs: Any) -> str:
    """Publish a new version (or return the one with the same fingerprint); see `Lake.write`."""
    return Lake(root).write(dataset, data, **kwargs)


def read(
    dataset: str,
    version: str = "latest",
    *,
    columns: list[str] | None = None,
    root: str | Path | None = None,
) -> pa.Table:
    """One version (default: latest) as an Arrow table; see `Lake.read`."""
    return Lake(root).read(dataset, version, columns=columns)


def versions(dataset: str, *, root: str | Path | None = None) -> list[Version]:
    """Published versions of `dataset`, oldest first."""
    return Lake(root).versions(dataset)
