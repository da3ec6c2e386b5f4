"""The lake's contract: versions, immutability, fingerprints, schemas, failed writes, DuckDB views."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from swerl.lake import Lake, LakeError, connect
from swerl.lake.store import STAGING

TASK = {"instance_id": "o__r-1", "repo": "o/r", "base_commit": "abc", "problem_statement": "bug"}


def task(i: int, **kw) -> dict:
    return {**TASK, "instance_id": f"o__r-{i}", **kw}


def test_write_read_roundtrip_and_manifest(tmp_path):
    lake = Lake(tmp_path)
    v = lake.write(
        "tasks", [task(1, FAIL_TO_PASS=["t::a"]), task(2)], stage="test", parameters={"k": 1}
    )
    rows = lake.read("tasks", v).to_pylist()
    assert [r["instance_id"] for r in rows] == ["o__r-1", "o__r-2"]
    assert rows[0]["FAIL_TO_PASS"] == ["t::a"] and rows[1]["FAIL_TO_PASS"] is None
    m = lake.manifest("tasks", v)
    assert (m["dataset"], m["version"], m["stage"], m["rows"]) == ("tasks", v, "test", 2)
    assert m["parameters"] == {"k": 1} and m["code_version"].startswith("0.1.0+")
    assert {c["name"] for c in m["schema"]} >= {"instance_id", "FAIL_TO_PASS", "extra"}
    assert all(c["description"] for c in m["schema"])
    folder = tmp_path / "tasks" / f"version={v}"
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "part-00000.parquet"]
    assert not any((tmp_path / STAGING).iterdir())


def test_versions_sort_by_creation_and_latest(tmp_path):
    lake = Lake(tmp_path)
    made = [lake.write("tasks", [task(i)], stage="test", parameters={"i": i}) for i in range(5)]
    assert [v.version for v in lake.versions("tasks")] == made == sorted(made)
    assert lake.resolve("tasks").version == made[-1]
    assert lake.read("tasks").to_pylist()[0]["instance_id"] == "o__r-4"


def test_same_fingerprint_reuses_version_and_force_makes_new(tmp_path):
    lake = Lake(tmp_path)
    v1 = lake.write("tasks", [task(1)], stage="s", parameters={"a": 1}, inputs={"x": "1"})
    assert lake.write("tasks", [task(2)], stage="s", parameters={"a": 1}, inputs={"x": "1"}) == v1
    assert len(lake.versions("tasks")) == 1
    v2 = lake.write(
        "tasks", [task(2)], stage="s", parameters={"a": 1}, inputs={"x": "1"}, force=True
    )
    assert v2 != v1 and len(lake.versions("tasks")) == 2
    # any change of parameters, inputs or name is a different fingerprint
    assert lake.write(
        "tasks", [task(3)], stage="s", parameters={"a": 2}, inputs={"x": "1"}
    ) not in (v1, v2)
    assert lake.write(
        "tasks", [task(3)], stage="s", parameters={"a": 1}, inputs={"x": "2"}
    ) not in (v1, v2)
    assert lake.write(
        "tasks", [task(3)], stage="s", parameters={"a": 1}, inputs={"x": "1"}, name="n"
    ) not in (v1, v2)


def test_resolve_by_name_and_clear_errors(tmp_path):
    lake = Lake(tmp_path)
    a = lake.write("tasks", [task(1)], stage="s", name="lite")
    b = lake.write("tasks", [task(2)], stage="s", name="toy")
    assert lake.resolve("tasks", "lite").version == a
    assert lake.resolve("tasks", "toy").version == b
    with pytest.raises(LakeError, match="no version or name 'nope'"):
        lake.resolve("tasks", "nope")
    with pytest.raises(LakeError, match="dataset 'trajectories' has no published version"):
        lake.read("trajectories")
    with pytest.raises(LakeError, match="dataset name"):
        lake.versions("Bad-Name")
    with pytest.raises(LakeError, match="version name"):
        lake.write("tasks", [task(1)], stage="s", name="has space")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{**TASK, "bogus": 1}], "no column\\(s\\) bogus"),
        ([{**TASK, "repo": None}], "required column 'repo' has 1 null"),
        ([{**TASK, "FAIL_TO_PASS": "not a list"}], "column 'FAIL_TO_PASS'"),
    ],
)
def test_schema_violations_name_the_column_and_publish_nothing(tmp_path, rows, message):
    lake = Lake(tmp_path)
    with pytest.raises(LakeError, match=message):
        lake.write("tasks", rows, stage="s")
    assert lake.versions("tasks") == []
    assert not (tmp_path / STAGING).exists() or not any((tmp_path / STAGING).iterdir())


def test_failure_inside_writer_publishes_nothing(tmp_path):
    lake = Lake(tmp_path)
    with pytest.raises(RuntimeError), lake.writer("tasks", stage="s") as w:
        w.write([task(1)])
        raise RuntimeError("stage crashed")
    assert lake.versions("tasks") == []
    assert not (tmp_path / STAGING).exists() or not any((tmp_path / STAGING).iterdir())


def test_published_version_cannot_be_overwritten(tmp_path):
    lake = Lake(tmp_path)
    v = lake.write("tasks", [task(1)], stage="s")
    with pytest.raises(OSError), lake.writer("tasks", stage="s") as w:
        w.version = v  # a colliding id must fail rather than replace a published version
        w.write([task(2)])
    assert lake.read("tasks", v).to_pylist()[0]["instance_id"] == "o__r-1"


def test_empty_version_keeps_its_columns(tmp_path):
    lake = Lake(tmp_path)
    v = lake.write("tasks_rejected", [], stage="s")
    assert lake.read("tasks_rejected", v).num_rows == 0
    assert "reasons" in lake.read("tasks_rejected", v).schema.names
    assert connect(tmp_path).sql("select count(*) from tasks_rejected").fetchall() == [(0,)]


def test_streamed_write_makes_row_groups_and_files(tmp_path, monkeypatch):
    import swerl.lake.store as store

    monkeypatch.setattr(store, "ROW_GROUP_BYTES", 1)
    monkeypatch.setattr(store, "ROWS_PER_FILE", 3)
    lake = Lake(tmp_path)
    chunks = (pa.table({"x": list(range(i * 2, i * 2 + 2))}) for i in range(4))
    v = lake.write("numbers", chunks, stage="s")
    ver = lake.resolve("numbers", v)
    assert len(ver.files) == 2 and ver.rows == 8
    assert sorted(lake.read("numbers").column("x").to_pylist()) == list(range(8))


def test_duckdb_views_latest_all_and_lake_versions(tmp_path):
    lake = Lake(tmp_path)
    v1 = lake.write(
        "scores", pa.table({"task": ["a", "b"], "reward": [1.0, 0.0]}), stage="s", name="one"
    )
    # a later version adds a column: `_all` views must keep both (union_by_name)
    v2 = lake.write(
        "scores", pa.table({"task": ["a"], "reward": [0.5], "turns": [7]}), stage="s", name="two"
    )
    con = connect(tmp_path)
    assert con.sql("select count(*) from scores").fetchall() == [(1,)]
    rows = con.sql(
        "select version, task, reward, turns from scores_all order by version, task"
    ).fetchall()
    assert rows == [(v1, "a", 1.0, None), (v1, "b", 0.0, None), (v2, "a", 0.5, 7)]
    by_version = dict(
        con.sql("select version, avg(reward) from scores_all group by version").fetchall()
    )
    assert by_version == {v1: 0.5, v2: 0.5}
    meta = con.sql(
        "select version, name, stage, rows from lake_versions where dataset='scores' order by version"
    ).fetchall()
    assert meta == [(v1, "one", "s", 2), (v2, "two", "s", 1)]


def test_unregistered_dataset_keeps_its_own_schema_and_registered_refuses_another(tmp_path):
    lake = Lake(tmp_path)
    lake.write("mine", [{"a": 1, "b": "x"}], stage="s")
    assert lake.read("mine").schema.names == ["a", "b"]
    with pytest.raises(LakeError, match="registered schema"):
        lake.write("tasks", [task(1)], stage="s", schema=pa.schema([("a", pa.int64())]))


def test_version_without_manifest_is_invisible_and_corrupt_manifest_is_named(tmp_path):
    lake = Lake(tmp_path)
    (tmp_path / "tasks" / "version=20990101T000000000000Z-000000").mkdir(parents=True)
    assert lake.versions("tasks") == []
    v = lake.write("tasks", [task(1)], stage="s")
    (tmp_path / "tasks" / f"version={v}" / "_manifest.json").write_text("{not json")
    with pytest.raises(LakeError, match="corrupt manifest .*_manifest.json"):
        lake.versions("tasks")


def test_clean_staging_removes_dead_writers_leftovers(tmp_path):
    lake = Lake(tmp_path)
    dead = tmp_path / STAGING / "tasks.20200101T000000000000Z-abcdef.somehost.999999999"
    dead.mkdir(parents=True)
    (dead / "part-00000.parquet").write_bytes(b"partial")
    assert lake.clean_staging() == 1
    assert not dead.exists()
    assert json.loads(json.dumps(lake.datasets())) == []


def test_directory_versions_publish_whole_or_not_at_all(tmp_path):
    lake = Lake(tmp_path)
    with lake.directory("models", stage="train_rft", parameters={"lr": 5e-6}, name="rft") as w:
        (w.path / "config.json").write_text("{}")
        (w.path / "sub").mkdir()
        (w.path / "sub" / "weights.bin").write_bytes(b"\0" * 10)
        assert lake.versions("models") == []  # nothing visible before the block ends
    v = lake.resolve("models", "rft")
    assert v.kind == "directory" and v.manifest["files"] == ["config.json", "sub/weights.bin"]
    assert (v.path / "sub" / "weights.bin").read_bytes() == b"\0" * 10
    with pytest.raises(LakeError, match="is a directory"):
        lake.read("models")
    with pytest.raises(RuntimeError), lake.directory("models", stage="train_rft") as w:
        (w.path / "config.json").write_text("{}")
        raise RuntimeError("training crashed")
    assert len(lake.versions("models")) == 1
    lake.write("tasks", [task(1)], stage="s")
    con = connect(tmp_path)  # directory datasets have no view, but are listed
    assert con.sql("select dataset, name from lake_versions order by dataset").fetchall() == [
        ("models", "rft"),
        ("tasks", None),
    ]
