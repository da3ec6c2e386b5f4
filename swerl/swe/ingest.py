"""Import SWE-bench / SWE-bench Verified / SWE-rebench / SWE-Gym task files into the `tasks` dataset.

    swerl tasks import swe-bench-lite.jsonl --name swe-bench-lite
    import_tasks(["test-00000-of-00001.parquet"], name="verified")   # from Python

Reads JSONL, JSON arrays and Parquet (the Hugging Face files); a directory stands for the supported
files inside it. Test lists may be lists or JSON-encoded strings (as on the Hub). Every standard
SWE-bench field and the SWE-rebench fields are kept in typed columns; any other field goes into the
`extra` JSON column, never dropped. A malformed row fails the import naming file, row and field,
and nothing is published; with `skip_invalid` the good rows are published and the bad ones go into
`tasks_rejected` with their reasons.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from swerl.lake import Lake

REQUIRED = ("instance_id", "repo", "base_commit", "problem_statement")
TEXT = (
    "patch",
    "test_patch",
    "hints_text",
    "version",
    "environment_setup_commit",
    "docker_image",
    "image_name",
    "requirements",
    "environment",
    "license_name",
)
TEST_LISTS = ("FAIL_TO_PASS", "PASS_TO_PASS", "FAIL_TO_FAIL", "PASS_TO_FAIL")
JSON_OBJECTS = ("install_config", "meta", "repo_files")
KNOWN = {*REQUIRED, *TEXT, *TEST_LISTS, *JSON_OBJECTS, "created_at"}
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
MAX_LISTED = 20


class TaskImportError(Exception):
    """An import that publishes nothing; the message says which file, rows and fields."""


@dataclass(frozen=True)
class ImportResult:
    version: str
    rows: int
    rejected_version: str | None
    rejected: int
    reused: bool


@dataclass(frozen=True)
class Rejected:
    source: str
    instance_id: str | None
    reasons: list[str]
    row: dict[str, Any]


def import_tasks(
    paths: list[str | Path],
    *,
    name: str | None = None,
    skip_invalid: bool = False,
    force: bool = False,
    lake: Lake | None = None,
    info: dict | None = None,
) -> ImportResult:
    """Read task files, validate every row, and publish a `tasks` version (named `name`); `info`
    goes into the manifests (e.g. the flow run that imported them)."""
    lake = lake or Lake()
    files = expand_paths(paths)
    parameters = {
        "files": [{"name": f.name, "sha256": _sha256(f)} for f in files],
        "skip_invalid": skip_invalid,
    }
    if not force:
        existing = lake.find(
            "tasks",
            lake.fingerprint("tasks", stage="import_tasks", parameters=parameters, name=name),
        )
        if existing is not None:
            rejected = lake.find(
                "tasks_rejected",
                lake.fingerprint(
                    "tasks_rejected", stage="import_tasks", parameters=parameters, name=name
                ),
            )
            return ImportResult(
                existing.version,
                existing.rows,
                rejected.version if rejected else None,
                rejected.rows if rejected else 0,
                reused=True,
            )

    good: list[dict[str, Any]] = []
    bad: list[Rejected] = []
    for source, raw in read_rows(files):
        task, reasons = normalize_row(raw, source)
        if reasons:
            iid = raw.get("instance_id") if isinstance(raw.get("instance_id"), str) else None
            bad.append(Rejected(source, iid, reasons, raw))
        else:
            good.append(task)

    duplicates = _duplicates(good)
    if duplicates:
        listed = ", ".join(f"{iid} ({', '.join(srcs)})" for iid, srcs in duplicates[:MAX_LISTED])
        more = f" and {len(duplicates) - MAX_LISTED} more" if len(duplicates) > MAX_LISTED else ""
        raise TaskImportError(f"duplicate instance_id within this import: {listed}{more}")
    if bad and not skip_invalid:
        raise TaskImportError(_describe_bad(bad))
    if not good:
        raise TaskImportError(
            f"no valid task rows in {', '.join(map(str, files))}"
            + (f" ({len(bad)} rejected)" if bad else "")
        )

    # Both versions are staged fully before either is published (rejected first, so the tasks
    # manifest can name it).
    with lake.writer(
        "tasks", stage="import_tasks", parameters=parameters, name=name, info=info
    ) as tasks_w:
        tasks_w.write(good)
        rejected_version = None
        if bad:
            with lake.writer(
                "tasks_rejected", stage="import_tasks", parameters=parameters, name=name, info=info
            ) as rejected_w:
                rejected_w.write(
                    [
                        {
                            "source": r.source,
                            "instance_id": r.instance_id,
                            "reasons": r.reasons,
                            "row": json.dumps(r.row, default=_json_default),
                        }
                        for r in bad
                    ]
                )
            rejected_version = rejected_w.version
            tasks_w.info["rejected_version"] = rejected_version
    version = tasks_w.version
    return ImportResult(version, len(good), rejected_version, len(bad), reused=False)


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files to read: each path itself, or the supported files inside a directory (sorted)."""
    if not paths:
        raise TaskImportError("no task files given")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES)
            if not inside:
                raise TaskImportError(f"{p}: directory holds no .jsonl, .json or .parquet files")
            files += inside
        elif p.is_file():
            if p.suffix not in SUFFIXES:
                raise TaskImportError(f"{p}: unsupported file type (use .jsonl, .json or .parquet)")
            files.append(p)
        else:
            raise TaskImportError(f"{p}: no such file or directory")
    return files


def read_rows(files: list[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (`file:row`, row) for every row of every file; row numbers start at 1."""
    for f in files:
        kind = SUFFIXES[f.suffix]
        n = 0
        for n, row in enumerate(_read_file(f, kind), start=1):
            if not isinstance(row, dict):
                yield f"{f}:{n}", {"__not_an_object__": row}
            else:
                yield f"{f}:{n}", row
        if n == 0:
            raise TaskImportError(f"{f}: file is empty (no task rows)")


def _read_file(f: Path, kind: str) -> Iterator[Any]:
    try:
        if kind == "parquet":
            for batch in pq.ParquetFile(f).iter_batches(batch_size=1000):
                yield from batch.to_pylist()
        elif kind == "json":
            data = json.loads(f.read_text())
            if not isinstance(data, list):
                raise TaskImportError(f"{f}: a .json task file must hold an array of objects")
            yield from data
        else:
            with f.open() as fh:
                for line_no, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        yield {
                            "__unparseable__": f"line {line_no}: {e.msg}",
                            "__text__": line[:200],
                        }
    except (OSError, UnicodeDecodeError, pa.ArrowException, json.JSONDecodeError) as e:
        raise TaskImportError(f"{f}: cannot read as {kind}: {e}") from e


def normalize_row(raw: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """A `tasks` row from an input row, and every problem found (empty when the row is good)."""
    if "__not_an_object__" in raw:
        return {}, [f"row is a {type(raw['__not_an_object__']).__name__}, not an object"]
    if "__unparseable__" in raw:
        return {}, [f"not valid JSON ({raw['__unparseable__']})"]
    problems: list[str] = []
    row: dict[str, Any] = {"source": source}
    for key in REQUIRED:
        value = raw.get(key)
        if value is None or value == "":
            problems.append(f"{key}: missing")
        elif not isinstance(value, str):
            problems.append(f"{key}: expected a string, got {type(value).__name__}")
        else:
            row[key] = value
    for key in TEXT:
        value = raw.get(key)
        if value is None or isinstance(value, str):
            row[key] = value
        else:
            problems.append(f"{key}: expected a string, got {type(value).__name__}")
    for key in TEST_LISTS:
        value, problem = _test_list(raw.get(key))
        if problem:
            problems.append(f"{key}: {problem}")
        row[key] = value
    for key in JSON_OBJECTS:
        value, problem = _json_object(raw.get(key))
        if problem:
            problems.append(f"{key}: {problem}")
        row[key] = value
    row["created_at"], problem = _timestamp(raw.get("created_at"))
    if problem:
        problems.append(f"created_at: {problem}")
    extra = {k: v for k, v in raw.items() if k not in KNOWN}
    row["extra"] = json.dumps(extra, sort_keys=True, default=_json_default) if extra else None
    return row, problems


def _test_list(value: Any) -> tuple[list[str] | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            return None, f"not a list nor a JSON-encoded list ({e.msg})"
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        return None, "expected a list of test ids (strings)"
    return value, None


def _json_object(value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        if not value.strip():
            return None, None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            return None, f"not a JSON object ({e.msg})"
    if not isinstance(value, dict):
        return None, f"expected an object, got {type(value).__name__}"
    return json.dumps(value, sort_keys=True, default=_json_default), None


def _timestamp(value: Any) -> tuple[datetime | None, str | None]:
    if value is None or value == "":
        return None, None
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            return None, f"not an ISO-8601 time: {value[:40]!r}"
    elif isinstance(value, int | float):  # epoch milliseconds, as some JSON exports write them
        ts = datetime.fromtimestamp(value / 1000, tz=UTC)
    else:
        return None, f"expected a time, got {type(value).__name__}"
    return (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)), None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _duplicates(rows: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    counts = Counter(r["instance_id"] for r in rows)
    dup = {iid for iid, n in counts.items() if n > 1}
    return [(iid, [r["source"] for r in rows if r["instance_id"] == iid]) for iid in sorted(dup)]


def _describe_bad(bad: list[Rejected]) -> str:
    files = sorted({r.source.rsplit(":", 1)[0] for r in bad})
    lines = [f"{len(bad)} invalid task row(s) in {', '.join(files)}; nothing was imported:"]
    for r in bad[:MAX_LISTED]:
        lines.append(f"  {r.source}: {'; '.join(r.reasons)}")
    if len(bad) > MAX_LISTED:
        lines.append(f"  ... and {len(bad) - MAX_LISTED} more")
    lines.append(
        "Fix the rows, or pass --skip-invalid to import the good rows and record the bad "
        "ones in the tasks_rejected dataset."
    )
    return "\n".join(lines)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
