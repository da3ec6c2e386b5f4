"""The lake: versioned, immutable Parquet datasets under one root directory.

Layout (Hive partitioning, so DuckDB sees `version` as a column and prunes by it):

    <root>/<dataset>/version=<id>/part-00000.parquet ... _manifest.json
    <root>/_staging/...            half-written versions; never inside a dataset folder

Publishing a version: write every part into a fresh staging folder, write `_manifest.json` last,
then `rename` the folder into `<root>/<dataset>/version=<id>`. The rename is atomic on one
filesystem, so a reader sees a version whole or not at all; a version folder without a manifest is
never listed (the rule that carries over to object stores, where there is no rename). Published
versions are never modified. Version ids start with the UTC creation time to the microsecond and
end in random hex, so they sort by creation and two concurrent writers never collide.

Re-runs: every version carries a fingerprint of (dataset, stage, parameters, input versions, code
version, name). Writing with a fingerprint that a published version already has returns that
version instead of writing again, unless `force=True`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from swerl.lake.schemas import SCHEMAS, describe
from swerl.provenance import code_version, git_commit

MANIFEST = "_manifest.json"
STAGING = "_staging"
WORK = "_work"
DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Buffer incoming rows until this many bytes before writing a row group: many tiny row groups make
# Parquet slow to read, one huge buffer costs memory.
ROW_GROUP_BYTES = 64 * 2**20
ROWS_PER_FILE = 1_000_000


class LakeError(Exception):
    """A lake operation that cannot proceed; the message names the dataset, version or path."""


def default_root() -> Path:
    """`$SWERL_DATA` if set, else `data/` under the current directory."""
    return Path(os.environ.get("SWERL_DATA", "data"))


def new_version_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def fingerprint(
    dataset: str,
    stage: str,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, str],
    code: str,
    name: str | None,
) -> str:
    """A stable hash of everything that determines a stage's output."""
    payload = {
        "dataset": dataset,
        "stage": stage,
        "parameters": parameters,
        "inputs": dict(sorted(inputs.items())),
        "code_version": code,
        "name": name,
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


@dataclass(frozen=True)
class Version:
    """A published version, as its manifest describes it."""

    dataset: str
    version: str
    manifest: dict[str, Any]
    path: Path

    @property
    def name(self) -> str | None:
        return self.manifest.get("name")

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def kind(self) -> str:
        """`table` (Parquet parts) or `directory` (a model checkpoint)."""
        return self.manifest.get("kind", "table")

    @property
    def files(self) -> list[Path]:
        return [self.path / f for f in self.manifest["files"]]


class Lake:
    """One lake root. Cheap to create; holds no open files or connections."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    # ---- reading -------------------------------------------------------------------------------

    def datasets(self) -> list[str]:
        """Names of the datasets that have at least one published version."""
        if not self.root.is_dir():
            return []
        return sorted(
            d.name
            for d in self.root.iterdir()
            if d.is_dir() and DATASET_NAME.match(d.name) and self.versions(d.name)
        )

    def versions(self, dataset: str) -> list[Version]:
        """Published versions of `dataset`, oldest first. Unknown datasets have none."""
        _check_dataset_name(dataset)
        folder = self.root / dataset
        if not folder.is_dir():
            return []
        out = []
        for d in folder.iterdir():
            if not d.name.startswith("version="):
                continue
            manifest_path = d / MANIFEST
            try:
                manifest = json.loads(manifest_path.read_text())
            except FileNotFoundError:
                continue  # not a complete version (an object store without rename)
            except json.JSONDecodeError as e:
                raise LakeError(f"corrupt manifest {manifest_path}: {e}") from e
            out.append(Version(dataset, d.name.removeprefix("version="), manifest, d))
        out.sort(key=lambda v: v.version)
        return out

    def resolve(self, dataset: str, version: str = "latest") -> Version:
        """`version` may be `latest`, an exact version id, or a name given at write time
        (the latest version with that name)."""
        versions = self.versions(dataset)
        if not versions:
            known = ", ".join(self.datasets()) or "none"
            raise LakeError(
                f"dataset {dataset!r} has no published version under {self.root} "
                f"(datasets there: {known})"
            )
        if version == "latest":
            return versions[-1]
        for v in versions:
            if v.version == version:
                return v
        named = [v for v in versions if v.name == version]
        if named:
            return named[-1]
        recent = ", ".join(
            f"{v.version}" + (f" ({v.name})" if v.name else "") for v in versions[-5:]
        )
        raise LakeError(
            f"dataset {dataset!r} has no version or name {version!r}; most recent: {recent}"
        )

    def manifest(self, dataset: str, version: str = "latest") -> dict[str, Any]:
        return self.resolve(dataset, version).manifest

    def read(
        self, dataset: str, version: str = "latest", columns: list[str] | None = None
    ) -> pa.Table:
        """One version as an Arrow table (without the `version` partition column)."""
        v = self.resolve(dataset, version)
        if v.kind != "table":
            raise LakeError(f"{dataset} version {v.version} is a directory ({v.path}), not a table")
        tables = [pq.read_table(f, columns=columns) for f in v.files]
        if not tables:
            return pa.schema([]).empty_table()
        return pa.concat_tables(tables, promote_options="default")

    def find(self, dataset: str, fingerprint: str) -> Version | None:
        """The newest published version with this fingerprint, if any."""
        for v in reversed(self.versions(dataset)):
            if v.manifest.get("fingerprint") == fingerprint:
                return v
        return None

    # ---- writing -------------------------------------------------------------------------------

    def fingerprint(
        self,
        dataset: str,
        *,
        stage: str,
        parameters: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> str:
        return fingerprint(dataset, stage, parameters or {}, inputs or {}, code_version(), name)

    @contextlib.contextmanager
    def writer(
        self,
        dataset: str,
        *,
        stage: str,
        parameters: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str] | None = None,
        name: str | None = None,
        info: Mapping[str, Any] | None = None,
        schema: pa.Schema | None = None,
    ) -> Iterator[DatasetWriter]:
        """Stream rows into a new version; it is published when the block exits cleanly and
        discarded (nothing published) when it raises. Does not look for a matching fingerprint:
        `write()` does, and stages call `find()` before doing their work. `info` is provenance
        that does not change the output (flow run, host, companion versions): it goes into the
        manifest but not into the fingerprint."""
        _check_names(dataset, name)
        if dataset in SCHEMAS and schema is not None:
            raise LakeError(f"dataset {dataset!r} has a registered schema; do not pass another")
        w = DatasetWriter(
            lake=self,
            dataset=dataset,
            schema=SCHEMAS.get(dataset, schema),
            stage=stage,
            parameters=dict(parameters or {}),
            inputs=dict(inputs or {}),
            name=name,
            info=dict(info or {}),
        )
        try:
            yield w
        except BaseException:
            w.abort()
            raise
        w.publish()

    @contextlib.contextmanager
    def directory(
        self,
        dataset: str,
        *,
        stage: str,
        parameters: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str] | None = None,
        name: str | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> Iterator[DirectoryWriter]:
        """A new version that is a directory of files (a model checkpoint in Hugging Face format):
        write into `w.path`; published atomically on a clean exit, discarded on an exception."""
        _check_names(dataset, name)
        w = DirectoryWriter(
            self, dataset, stage, dict(parameters or {}), dict(inputs or {}), name, dict(info or {})
        )
        try:
            yield w
        except BaseException:
            w.abort()
            raise
        w.publish()

    def write(
        self,
        dataset: str,
        data: pa.Table
        | Iterable[pa.Table | pa.RecordBatch | list[dict[str, Any]]]
        | list[dict[str, Any]],
        *,
        stage: str,
        parameters: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str] | None = None,
        name: str | None = None,
        info: Mapping[str, Any] | None = None,
        schema: pa.Schema | None = None,
        force: bool = False,
    ) -> str:
        """Publish `data` as a new version of `dataset` and return its id; if a version with the
        same fingerprint exists (and not `force`), return that one and write nothing."""
        if not force:
            fp = self.fingerprint(
                dataset, stage=stage, parameters=parameters, inputs=inputs, name=name
            )
            existing = self.find(dataset, fp)
            if existing is not None:
                return existing.version
        with self.writer(
            dataset,
            stage=stage,
            parameters=parameters,
            inputs=inputs,
            name=name,
            info=info,
            schema=schema,
        ) as w:
            if isinstance(data, pa.Table) or (
                isinstance(data, list) and (not data or isinstance(data[0], dict))
            ):
                w.write(data)
            else:
                for chunk in data:
                    w.write(chunk)
        return w.version

    def work_dir(self, stage: str, fingerprint: str) -> Path:
        """Scratch space where a resumable stage keeps finished work until it publishes: the same
        stage with the same fingerprint finds it again after a crash (`<root>/_work/...`, outside
        every dataset folder)."""
        path = self.root / WORK / stage / fingerprint
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextlib.contextmanager
    def work_lock(self, stage: str, fingerprint: str, part: str = "all") -> Iterator[None]:
        """Hold one resumable stage's work (one fingerprint; `part`: `all`, or a shard's name
        when shards of one stage run at once) against other processes: a second caller says so
        on stderr and waits until the holder exits, then goes on - and should look for the
        version the holder published before doing the work again. Without it the first caller
        to publish clears the shared work folder under the second. An advisory `flock` on
        `<root>/_work/<stage>/<fingerprint>.<part>.lock` (released when the holder's process
        dies; on a network filesystem only if it supports `flock`)."""
        path = self.root / WORK / stage / f"{fingerprint}.{part}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(
                    f"another process is running {stage} {fingerprint} ({part}); waiting for it "
                    f"to finish (lock {path})",
                    file=sys.stderr,
                    flush=True,
                )
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def clean_staging(self) -> int:
        """Remove half-written versions left by killed writers; returns how many."""
        staging = self.root / STAGING
        if not staging.is_dir():
            return 0
        n = 0
        for d in staging.iterdir():
            pid = _pid_of_staging(d.name)
            this_host = socket.gethostname().replace(".", "-")
            if pid is not None and _host_of_staging(d.name) == this_host and _alive(pid):
                continue
            shutil.rmtree(d, ignore_errors=True)
            n += 1
        return n


@dataclass
class DatasetWriter:
    """Writes one new version part by part. Made by `Lake.writer`; not thread-safe."""

    lake: Lake
    dataset: str
    schema: pa.Schema | None
    stage: str
    parameters: dict[str, Any]
    inputs: dict[str, str]
    name: str | None
    info: dict[str, Any]
    version: str = field(default_factory=new_version_id)
    rows: int = 0
    _files: list[str] = field(default_factory=list)
    _buffer: list[pa.Table] = field(default_factory=list)
    _buffer_bytes: int = 0
    _pq: pq.ParquetWriter | None = None
    _rows_in_file: int = 0
    _staging: Path | None = None

    @property
    def staging(self) -> Path:
        if self._staging is None:
            self._staging = _new_staging(self.lake, self.dataset, self.version)
        return self._staging

    def write(self, data: pa.Table | pa.RecordBatch | list[dict[str, Any]]) -> None:
        """Append rows (a table, a record batch, or a list of dicts)."""
        table = self._conform(data)
        if self.schema is None:
            self.schema = table.schema
        if table.num_rows == 0:
            return
        self._buffer.append(table)
        self._buffer_bytes += table.nbytes
        self.rows += table.num_rows
        if self._buffer_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _conform(self, data: pa.Table | pa.RecordBatch | list[dict[str, Any]]) -> pa.Table:
        if isinstance(data, list):
            if self.schema is None:
                return pa.Table.from_pylist(data)
            return _table_from_rows(data, self.schema, self.dataset)
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        if self.schema is None:
            return table
        return _cast(table, self.schema, self.dataset)

    def _flush(self) -> None:
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer)
        self._buffer, self._buffer_bytes = [], 0
        if self._pq is None:
            fname = f"part-{len(self._files):05d}.parquet"
            self._files.append(fname)
            self._pq = pq.ParquetWriter(self.staging / fname, self.schema, compression="zstd")
        self._pq.write_table(table, row_group_size=max(1, table.num_rows))
        self._rows_in_file += table.num_rows
        if self._rows_in_file >= ROWS_PER_FILE:
            self._close_file()

    def _close_file(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq = None
            self._rows_in_file = 0

    def publish(self) -> None:
        if self.schema is None:
            raise LakeError(
                f"nothing was written to dataset {self.dataset!r} and it has no registered schema; "
                "cannot publish an empty version without columns"
            )
        self._flush()
        if not self._files:  # an empty version still has a file, so readers see its columns
            self._files.append("part-00000.parquet")
            pq.write_table(self.schema.empty_table(), self.staging / self._files[0])
        self._close_file()
        _publish(
            self.lake,
            self.dataset,
            self.version,
            self.staging,
            _manifest(
                self, kind="table", rows=self.rows, files=self._files, schema=describe(self.schema)
            ),
        )

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._close_file()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)


@dataclass
class DirectoryWriter:
    """A new directory version (a model checkpoint): fill `path`, it is published whole on exit.
    Made by `Lake.directory`."""

    lake: Lake
    dataset: str
    stage: str
    parameters: dict[str, Any]
    inputs: dict[str, str]
    name: str | None
    info: dict[str, Any]
    version: str = field(default_factory=new_version_id)
    path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.path = _new_staging(self.lake, self.dataset, self.version)

    def publish(self) -> None:
        files = sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())
        if not files:
            raise LakeError(f"nothing was written into the new {self.dataset!r} directory version")
        _publish(
            self.lake,
            self.dataset,
            self.version,
            self.path,
            _manifest(self, kind="directory", rows=0, files=files, schema=[]),
        )

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _manifest(w: DatasetWriter | DirectoryWriter, **fields: Any) -> dict[str, Any]:
    return {
        "dataset": w.dataset,
        "version": w.version,
        "name": w.name,
        "created_at": datetime.now(UTC).isoformat(),
        "stage": w.stage,
        "parameters": w.parameters,
        "inputs": w.inputs,
        "code_version": code_version(),
        "git_commit": git_commit(),
        "fingerprint": fingerprint(
            w.dataset, w.stage, w.parameters, w.inputs, code_version(), w.name
        ),
        "info": w.info,
        **fields,
    }


def _publish(lake: Lake, dataset: str, version: str, staging: Path, manifest: dict) -> None:
    """Manifest last, then one atomic rename into the dataset folder."""
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    target = lake.root / dataset / f"version={version}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staging, target)  # atomic; fails rather than overwrite an existing version


def _table_from_rows(rows: list[dict[str, Any]], schema: pa.Schema, dataset: str) -> pa.Table:
    unknown = sorted({k for r in rows for k in r} - set(schema.names))
    if unknown:
        raise LakeError(f"dataset {dataset!r} has no column(s) {', '.join(unknown)}")
    columns = {}
    for f in schema:
        values = [r.get(f.name) for r in rows]
        if pa.types.is_list(f.type):  # pyarrow would split a string into a list of characters
            for i, value in enumerate(values):
                if value is not None and not isinstance(value, list | tuple):
                    raise LakeError(
                        f"dataset {dataset!r} column {f.name!r} ({f.type}): row {i} holds a "
                        f"{type(value).__name__}, not a list"
                    )
        try:
            columns[f.name] = pa.array(values, type=f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as e:
            raise LakeError(f"dataset {dataset!r} column {f.name!r} ({f.type}): {e}") from e
    return _check_required(pa.table(columns, schema=schema), dataset)


def _cast(table: pa.Table, schema: pa.Schema, dataset: str) -> pa.Table:
    unknown = [n for n in table.schema.names if n not in schema.names]
    if unknown:
        raise LakeError(f"dataset {dataset!r} has no column(s) {', '.join(unknown)}")
    columns = []
    for f in schema:
        if f.name in table.schema.names:
            column = table.column(f.name)
            if column.type != f.type:
                try:
                    column = column.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise LakeError(
                        f"dataset {dataset!r} column {f.name!r}: cannot cast {column.type} to {f.type}: {e}"
                    ) from e
        elif not f.nullable:
            raise LakeError(f"dataset {dataset!r}: required column {f.name!r} is missing")
        else:
            column = pa.nulls(table.num_rows, f.type)
        columns.append(column)
    return _check_required(pa.table(columns, schema=schema), dataset)


def _check_required(table: pa.Table, dataset: str) -> pa.Table:
    for f in table.schema:
        if not f.nullable and table.column(f.name).null_count:
            raise LakeError(
                f"dataset {dataset!r}: required column {f.name!r} has "
                f"{table.column(f.name).null_count} null value(s)"
            )
    return table


def _new_staging(lake: Lake, dataset: str, version: str) -> Path:
    """A fresh staging folder, named so `clean_staging` can tell whether its writer lives."""
    host = socket.gethostname().replace(".", "-")
    path = lake.root / STAGING / f"{dataset}.{version}.{host}.{os.getpid()}"
    path.mkdir(parents=True)
    return path


def _check_names(dataset: str, name: str | None) -> None:
    _check_dataset_name(dataset)
    if name is not None and not VERSION_NAME.match(name):
        raise LakeError(
            f"version name {name!r} for dataset {dataset!r} must be letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )


def _check_dataset_name(dataset: str) -> None:
    if not DATASET_NAME.match(dataset):
        raise LakeError(
            f"dataset name {dataset!r} must be lower-case letters, digits and '_', starting with a letter"
        )


def _pid_of_staging(name: str) -> int | None:
    try:
        return int(name.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return None


def _host_of_staging(name: str) -> str:
    parts = name.rsplit(".", 2)
    return parts[-2] if len(parts) == 3 else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
