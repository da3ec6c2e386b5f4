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


# ---- rollout and evaluate: every option reaches the stage's config -----------------------------


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    """A lake with a 1+1 toy-SWE suite and a tiny random model directory, built by the CLI."""
    root = tmp_path_factory.mktemp("toy") / "lake"
    model = root.parent / "tiny"
    for args in (
        ["toy", "build", "--train", "1", "--eval", "1", "--name", "toy"],
        ["models", "tiny", "--out", str(model), "--hidden-size", "32", "--layers", "1",
         "--copy-steps", "2"],
    ):  # fmt: skip
        result = swerl(root, *args)
        assert result.exit_code == 0, result.output
    return root, model


def test_toy_build_keeps_only_the_difficulties_asked_for(tmp_path):
    from swerl.swe.task import load_tasks

    root = tmp_path / "lake"
    out = swerl(root, "toy", "build", "--train", "2", "--eval", "1", "--difficulty", "2")
    assert out.exit_code == 0, out.output
    assert "of difficulty 2" in " ".join(out.output.split())  # rich wraps lines
    assert {t.meta["difficulty"] for t in load_tasks("toy-swe", root=root)} == {2}
    out = swerl(root, "toy", "build", "--difficulty", "4")
    assert out.exit_code != 0 and "less than or equal to 3" in " ".join(out.output.split())


def test_models_tiny_records_its_spec_and_the_copying_warm_up(toy_root):
    record = json.loads((toy_root[1] / "swerl_tiny.json").read_text())
    assert (record["hidden_size"], record["layers"], record["copy_steps"]) == (32, 1, 2)
    assert record["copy_loss"]["first"] > 0 and record["copy_loss"]["last_50_mean"] > 0


def tiny_prompt(name: str) -> str:
    from swerl.agent.rollout import PROMPTS_DIR

    return (PROMPTS_DIR / "tiny" / name).read_text()


def test_rollout_options_reach_the_config_and_prompts_dir_picks_the_prompts(toy_root):
    from swerl.lake import Lake

    root, model = toy_root
    out = swerl(
        root, "rollout", "--tasks", "toy", "--model", str(model), "--samples", "1",
        "--limit", "1", "--backend", "local", "--stage", "rft", "--iteration", "3",
        "--max-live-sandboxes", "1", "--max-turns", "2", "--max-context-tokens", "2048",
        "--max-new-tokens", "8", "--temperature", "0.7", "--top-p", "0.9",
        "--command-timeout", "9", "--grading-timeout", "600", "--turn-penalty-threshold", "1",
        "--no-grade-unsubmitted", "--demonstration", "--prompts-dir", "tiny", "--seed", "1",
        "--relative-paths",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    lake = Lake(root)
    version = lake.versions("trajectories")[-1].version
    config = lake.manifest("trajectories", version)["parameters"]["config"]
    episode = config["episode"]
    assert (config["samples"], config["stage"], config["iteration"]) == (1, "rft", 3)
    assert (config["backend"], config["max_live_sandboxes"]) == ("local", 1)
    assert (config["turn_penalty_threshold"], config["grade_unsubmitted"]) == (1, False)
    assert (config["demonstration"], config["prompts_dir"]) == (True, "tiny")
    assert (episode["max_turns"], episode["max_context_tokens"]) == (2, 2048)
    assert (episode["max_turn_tokens"], episode["tools"]["command_timeout"]) == (8, 9.0)
    assert episode["tools"]["relative_paths"] is True
    assert episode["sampling"]["temperature"] == 0.7 and episode["sampling"]["top_p"] == 0.9
    assert config["grading_timeout"] == 600.0
    (row,) = lake.read("trajectories", version).to_pylist()
    demonstration = tiny_prompt("demonstration.md")
    assert (
        row["messages"][0]["content"] == tiny_prompt("system.md").rstrip() + "\n\n" + demonstration
    )


def test_evaluate_options_reach_the_config_and_prompts_dir_picks_the_prompts(toy_root):
    from swerl.lake import Lake

    root, model = toy_root
    out = swerl(
        root, "evaluate", "--model", str(model), "--tasks", "toy", "--split", "eval",
        "--attempts", "1", "--backend", "local", "--max-turns", "2",
        "--max-context-tokens", "2048", "--max-new-tokens", "8", "--temperature", "0.7",
        "--top-p", "0.9", "--max-live-sandboxes", "1", "--turn-penalty-threshold", "1",
        "--no-grade-unsubmitted", "--command-timeout", "9", "--grading-timeout", "600",
        "--prompts-dir", "tiny", "--relative-paths",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    lake = Lake(root)
    version = lake.versions("evals")[-1].version
    config = lake.manifest("evals", version)["parameters"]["config"]
    episode = config["episode"]
    assert (config["stage"], config["backend"], config["max_live_sandboxes"]) == (
        "eval",
        "local",
        1,
    )
    assert (config["turn_penalty_threshold"], config["prompts_dir"]) == (1, "tiny")
    assert (config["grade_unsubmitted"], config["grading_timeout"]) == (False, 600.0)
    assert (episode["max_turns"], episode["max_context_tokens"]) == (2, 2048)
    assert (episode["max_turn_tokens"], episode["tools"]["command_timeout"]) == (8, 9.0)
    assert episode["sampling"]["temperature"] == 0.7 and episode["sampling"]["top_p"] == 0.9
    assert episode["tools"]["relative_paths"] is True
    assert config["prompts_sha256"]  # the prompts' text is part of the fingerprint
    (row,) = lake.read("evals", version).to_pylist()
    assert row["messages"][0]["content"] == tiny_prompt("system.md")


def test_rollout_and_evaluate_take_every_flat_episode_setting_with_the_library_defaults():
    import typer

    from swerl.config import ROLLOUT_PARAMETERS, rollout_config

    group = typer.main.get_command(app)
    for command, renames in (("rollout", {}), ("evaluate", {"samples": "attempts"})):
        options = {p.name: p for p in group.commands[command].params}
        names = [renames.get(n, n) for n in ROLLOUT_PARAMETERS]
        assert set(names) <= set(options), command
        # the CLI's defaults are the library's (samples excepted: rollout's is 4)
        defaults = {n: options[renames.get(n, n)].default for n in ROLLOUT_PARAMETERS}
        defaults.update(samples=None, backend="local")
        assert rollout_config(defaults, stage="eval") == rollout_config(
            {"backend": "local"}, stage="eval"
        )
        out = runner.invoke(app, [command, "--help"], env={"COLUMNS": "240"})
        assert out.exit_code == 0
        for name in names:
            assert f"--{name.replace('_', '-')}" in out.output, (command, name)
    assert "--no-grade-unsubmitted" in out.output and "[default: 1800.0]" in out.output


def test_a_prompts_dir_without_prompts_fails_before_any_work(tmp_path):
    for command in (
        ["rollout", "--tasks", "t", "--model", "m"],
        ["evaluate", "--model", "m"],
    ):
        out = swerl(tmp_path / "lake", *command, "--backend", "local", "--prompts-dir", "nope")
        assert out.exit_code == 1 and "Traceback" not in out.output
        assert "prompts_dir 'nope'" in out.output and "lacks system.md" in out.output
        assert not (tmp_path / "lake").exists()
