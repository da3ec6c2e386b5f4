"""Task ingestion on the real SWE-bench Lite rows, the Hub's Parquet form, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swerl.lake import Lake, connect
from swerl.swe.ingest import TaskImportError, import_tasks
from swerl.swe.task import Task, load_tasks

SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "swebench"
LITE = SHARED / "lite_rows.jsonl"
GOOD = {"instance_id": "o__r-1", "repo": "o/r", "base_commit": "abc", "problem_statement": "bug"}


def lite_rows() -> list[dict]:
    return [json.loads(line) for line in LITE.read_text().splitlines()]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_lite_rows_import_and_query(tmp_path):
    lake = Lake(tmp_path / "lake")
    result = import_tasks([LITE], name="swe-bench-lite", lake=lake)
    assert (result.rows, result.rejected, result.reused) == (294, 0, False)
    con = connect(lake.root)
    repos = con.sql("select repo, count(*) n from tasks group by repo order by n desc").fetchall()
    assert len(repos) == 12 and repos[0] == ("django/django", 111)
    assert sum(n for _, n in repos) == 294
    first = lite_rows()[0]
    task = load_tasks("swe-bench-lite", root=lake.root, ids=[first["instance_id"]])[0]
    assert task.fail_to_pass == first["FAIL_TO_PASS"] and task.patch == first["patch"]
    assert task.extra == {"pr_link": first["pr_link"]}  # unknown fields kept, not dropped
    assert task.created_at.isoformat() == first["created_at"].replace("Z", "+00:00")
    assert task.source == f"{LITE}:1"
    # same files again: the existing version is reused
    again = import_tasks([LITE], name="swe-bench-lite", lake=lake)
    assert again.reused and again.version == result.version
    assert len(lake.versions("tasks")) == 1


def test_hub_parquet_with_json_string_lists_imports_identically(tmp_path):
    rows = lite_rows()
    hub = [
        {
            **r,
            "FAIL_TO_PASS": json.dumps(r["FAIL_TO_PASS"]),
            "PASS_TO_PASS": json.dumps(r["PASS_TO_PASS"]),
        }
        for r in rows
    ]
    parquet = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(hub), parquet)
    lake = Lake(tmp_path / "lake")
    a = import_tasks([LITE], name="jsonl", lake=lake).version
    b = import_tasks([parquet], name="parquet", lake=lake).version
    ta, tb = (lake.read("tasks", v).drop_columns(["source"]) for v in (a, b))
    assert ta.equals(tb)
    # a JSON array file too
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(rows[:5]))
    c = import_tasks([array], name="array", lake=lake).version
    assert lake.read("tasks", c).drop_columns(["source"]).equals(ta.slice(0, 5))


def test_swe_rebench_fields_are_typed_columns(tmp_path):
    row = {
        **GOOD,
        "install_config": {
            "python": "3.11",
            "test_cmd": "pytest -rA",
            "log_parser": "parse_log_pytest",
        },
        "meta": json.dumps(
            {"llm_score": {"difficulty_score": 1, "issue_text_score": 3, "test_score": 0}}
        ),
        "docker_image": "swerebench/sweb.eval.x86_64.o_1776_r-1",
        "FAIL_TO_FAIL": [],
        "PASS_TO_FAIL": json.dumps(["t::x"]),
        "license_name": "MIT",
        "requirements": "numpy==2.0",
        "environment": "name: testbed",
        "created_at": "2025-01-02T03:04:05",
    }
    lake = Lake(tmp_path / "lake")
    import_tasks([write_jsonl(tmp_path / "rebench.jsonl", [row])], lake=lake)
    task = Task.from_row(lake.read("tasks").to_pylist()[0])
    assert task.install_config["log_parser"] == "parse_log_pytest"
    assert task.meta["llm_score"]["issue_text_score"] == 3
    assert task.pass_to_fail == ["t::x"] and task.fail_to_fail == []
    assert task.docker_image.startswith("swerebench/") and task.extra == {}
    con = connect(lake.root)
    score = con.sql("select meta->'$.llm_score.issue_text_score' from tasks").fetchall()
    assert score == [("3",)]


def test_malformed_rows_fail_naming_file_rows_fields_and_publish_nothing(tmp_path):
    rows = [
        GOOD,
        {**GOOD, "instance_id": "o__r-2", "repo": None},
        {**GOOD, "instance_id": "o__r-3", "FAIL_TO_PASS": "[not json"},
        {**GOOD, "instance_id": "o__r-4", "version": 3.1, "PASS_TO_PASS": [1, 2]},
        {"repo": "o/r"},
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with path.open("a") as fh:
        fh.write("{broken json\n")
    lake = Lake(tmp_path / "lake")
    with pytest.raises(TaskImportError) as e:
        import_tasks([path], lake=lake)
    msg = str(e.value)
    assert "5 invalid task row(s)" in msg and "nothing was imported" in msg
    assert f"{path}:2: repo: missing" in msg
    assert f"{path}:3: FAIL_TO_PASS: not a list nor a JSON-encoded list" in msg
    assert "version: expected a string, got float" in msg and "PASS_TO_PASS: expected a list" in msg
    assert (
        f"{path}:5: instance_id: missing; base_commit: missing; problem_statement: missing" in msg
    )
    assert f"{path}:6: not valid JSON" in msg
    assert lake.datasets() == []


def test_skip_invalid_publishes_good_rows_and_rejected_with_reasons(tmp_path):
    rows = [GOOD, {**GOOD, "instance_id": "o__r-2", "base_commit": 7}]
    lake = Lake(tmp_path / "lake")
    result = import_tasks(
        [write_jsonl(tmp_path / "mixed.jsonl", rows)], skip_invalid=True, lake=lake
    )
    assert (result.rows, result.rejected) == (1, 1)
    rejected = lake.read("tasks_rejected", result.rejected_version).to_pylist()
    assert rejected[0]["instance_id"] == "o__r-2"
    assert rejected[0]["reasons"] == ["base_commit: expected a string, got int"]
    assert json.loads(rejected[0]["row"])["base_commit"] == 7  # nothing lost
    assert lake.manifest("tasks")["info"]["rejected_version"] == result.rejected_version


def test_more_than_twenty_bad_rows_are_summarised(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [{"repo": "o/r"}] * 25)
    with pytest.raises(TaskImportError, match="and 5 more"):
        import_tasks([path], lake=Lake(tmp_path / "lake"))


def test_duplicate_instance_ids_are_named(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [GOOD])
    b = write_jsonl(tmp_path / "b.jsonl", [GOOD])
    with pytest.raises(
        TaskImportError,
        match=r"duplicate instance_id within this import: o__r-1 \(.*a.jsonl:1, .*b.jsonl:1\)",
    ):
        import_tasks([a, b], lake=Lake(tmp_path / "lake"))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", "", "file is empty"),
        ("obj.json", '{"a": 1}', "must hold an array of objects"),
        ("broken.parquet", "not parquet", "cannot read as parquet"),
        ("tasks.csv", "a,b", "unsupported file type"),
    ],
)
def test_unreadable_inputs_get_one_clear_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TaskImportError, match=message) as e:
        import_tasks([path], lake=Lake(tmp_path / "lake"))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_path_and_empty_directory(tmp_path):
    with pytest.raises(TaskImportError, match="no such file or directory"):
        import_tasks([tmp_path / "nope.jsonl"], lake=Lake(tmp_path / "lake"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskImportError, match="holds no .jsonl"):
        import_tasks([tmp_path / "empty"], lake=Lake(tmp_path / "lake"))
