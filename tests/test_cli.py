"""The `swerl` command end to end: import, datasets, sql in every format, clear errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from swerl.cli import app

LITE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "swebench" / "lite_rows.jsonl"
runner = CliRunner()


@pytest.fixture
def lake_root(tmp_path):
    root = tmp_path / "lake"
    result = runner.invoke(
        app, ["--data", str(root), "tasks", "import", str(LITE), "--name", "lite"]
    )
    assert result.exit_code == 0, result.output
    assert "imported 294 tasks" in result.output
    return root


def swerl(root: Path, *args: str):
    return runner.invoke(app, ["--data", str(root), *args])


def test_sql_table_lists_the_twelve_repositories(lake_root):
    result = swerl(
        lake_root, "sql", "select repo, count(*) n from tasks group by repo order by n desc"
    )
    assert result.exit_code == 0
    assert "django/django" in result.output and "pallets/flask" in result.output
    assert "12 rows" in result.output


def test_sql_csv_json_parquet(lake_root, tmp_path):
    q = "select instance_id, FAIL_TO_PASS from tasks order by instance_id limit 3"
    out = swerl(lake_root, "sql", q, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 3 and rows[0]["instance_id"] == "astropy__astropy-12907"
    out = swerl(lake_root, "sql", q, "--format", "json")
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == 3 and isinstance(lines[0]["FAIL_TO_PASS"], list)
    target = tmp_path / "out.parquet"
    out = swerl(lake_root, "sql", q, "--format", "parquet", "--output", str(target))
    assert out.exit_code == 0 and pq.read_table(target).num_rows == 3


def test_datasets_and_versions(lake_root):
    out = swerl(lake_root, "datasets")
    assert out.exit_code == 0 and "tasks" in out.output and "294" in out.output
    out = swerl(lake_root, "datasets", "tasks", "--schema")
    assert "problem_statement" in out.output
    again = swerl(lake_root, "tasks", "import", str(LITE), "--name", "lite")
    assert "reused" in again.output
    forced = swerl(lake_root, "tasks", "import", str(LITE), "--name", "lite", "--force")
    assert "imported 294 tasks" in forced.output
    out = swerl(lake_root, "sql", "select count(distinct version) from tasks_all", "-f", "csv")
    assert out.stdout.splitlines()[1] == "2"


def test_errors_are_one_line_without_traceback(lake_root, tmp_path):
    out = swerl(lake_root, "sql", "select * from nope")
    assert out.exit_code == 1 and "views in the lake: tasks, tasks_all" in out.output
    assert "Traceback" not in out.output
    out = swerl(lake_root, "sql", "select 1", "--format", "parquet")
    assert out.exit_code == 1 and "needs --output" in out.output
    out = swerl(lake_root, "datasets", "trajectories")
    assert out.exit_code == 1 and "has no published version" in out.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"repo": "o/r"}\n')
    out = swerl(lake_root, "tasks", "import", str(bad))
    assert out.exit_code == 1 and f"{bad}:1: instance_id: missing" in out.output


def test_installed_entry_point_runs(tmp_path):
    exe = Path(sys.executable).parent / "swerl"
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "sql" in result.stdout and "tasks" in result.stdout
