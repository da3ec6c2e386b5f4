"""DuckDB over the lake: one view per dataset (its latest version), `<dataset>_all` over every
version, and `lake_versions` with one row per published version (name, stage, inputs, ...).

Views are built from the file lists of published versions at connect time, so a connection sees a
consistent snapshot; reconnect to see versions published since. Every read uses
`union_by_name=true` so a column added in a later version does not vanish from `_all` views.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from swerl.lake.store import Lake, Version


def _read_parquet(files: list[Path]) -> str:
    listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return (
        f"read_parquet([{listing}], hive_partitioning=true, hive_types_autocast=false, "
        "union_by_name=true)"
    )


def connect(
    root: str | Path | None = None, *, database: str = ":memory:"
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views over every dataset of the lake at `root`."""
    lake = Lake(root)
    con = duckdb.connect(database)
    rows = []
    for dataset in lake.datasets():
        versions = lake.versions(dataset)
        rows += [_version_row(v) for v in versions]
        versions = [v for v in versions if v.kind == "table"]  # directories have no rows
        if not versions:
            continue
        con.execute(f'CREATE VIEW "{dataset}" AS SELECT * FROM {_read_parquet(versions[-1].files)}')
        all_files = [f for v in versions for f in v.files]
        con.execute(f'CREATE VIEW "{dataset}_all" AS SELECT * FROM {_read_parquet(all_files)}')
    con.execute(
        "CREATE TABLE lake_versions (dataset VARCHAR, version VARCHAR, name VARCHAR, stage VARCHAR, "
        "created_at TIMESTAMPTZ, rows BIGINT, inputs JSON, parameters JSON, code_version VARCHAR, "
        "fingerprint VARCHAR, path VARCHAR)"
    )
    if rows:
        con.executemany("INSERT INTO lake_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return con


def _version_row(v: Version) -> tuple:
    m = v.manifest
    return (
        v.dataset,
        v.version,
        m.get("name"),
        m.get("stage"),
        m.get("created_at"),
        m.get("rows"),
        json.dumps(m.get("inputs", {})),
        json.dumps(m.get("parameters", {}), default=str),
        m.get("code_version"),
        m.get("fingerprint"),
        str(v.path),
    )
