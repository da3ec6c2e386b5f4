"""The built suite for real: rows valid for the lake, every task graded the way grading does it.

Each task is rebuilt from its row alone (`materialize_repo`, which checks `base_commit`), the test
patch is applied with `git apply`, the row's test command runs, and the log, wrapped in the
SWE-bench output markers, is graded by `swerl.grading.log.grade_log` (swebench's parser and
rules): the gold patch must resolve the task, no patch must fail every FAIL_TO_PASS test and pass
every PASS_TO_PASS test. These run pytest in subprocesses, about a second per task.
"""

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT

from swerl.grading.log import grade_log
from swerl.lake import Lake
from swerl.swe.repo import git, materialize_repo
from swerl.swe.task import Task, load_tasks
from swerl.swe.toy import build_toy_suite, publish_toy_suite
from swerl.swe.toy.build import find_tests
from swerl.swe.toy.generate import ToyGenerationError, generate_task, unified_diff

SEED, N_TRAIN, N_EVAL = 0, 21, 7  # every (family, difficulty) pair in train, every family in eval


@pytest.fixture(scope="module")
def rows():
    return build_toy_suite(SEED, N_TRAIN, N_EVAL)


def run_row(task: Task, tmp: Path, gold: bool) -> str:
    """The test log of `task` at base_commit + test_patch (+ gold patch), with output markers."""
    repo = materialize_repo(task, tmp / "repo")
    patches = [task.test_patch] + ([task.patch] if gold else [])
    for n, patch in enumerate(patches):
        (tmp / f"{n}.diff").write_text(patch)
        git(["apply", str(tmp / f"{n}.diff")], repo)
    command = shlex.split(task.install_config["test_cmd"])
    files = [line.split(" b/")[-1] for line in task.test_patch.splitlines() if line[:4] == "diff"]
    assert command[0] == "python"
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # a bare image has no plugins
    result = subprocess.run(
        [sys.executable, *command[1:], *files], cwd=repo, env=env, capture_output=True, text=True
    )
    return f"{START_TEST_OUTPUT}\n{result.stdout}{result.stderr}\n{END_TEST_OUTPUT}\n"


def check_row(row: dict, tmp: Path) -> None:
    task = Task.from_row(row)
    assert task.fail_to_pass and task.pass_to_pass, task.instance_id
    gold = grade_log(task, run_row(task, tmp / "gold", gold=True))
    assert gold.resolved, (task.instance_id, gold.detail)
    empty = grade_log(task, run_row(task, tmp / "empty", gold=False))
    assert not empty.resolved
    assert empty.tests_status["FAIL_TO_PASS"]["success"] == [], task.instance_id
    assert empty.tests_status["PASS_TO_PASS"]["failure"] == [], task.instance_id


def test_every_task_is_resolved_by_its_gold_patch_only(rows, tmp_path):
    assert len(rows) == N_TRAIN + N_EVAL
    for row in rows:
        check_row(row, tmp_path / row["instance_id"])


def test_rows_are_deterministic_and_eval_rows_ignore_the_train_count(rows):
    again = build_toy_suite(SEED, 2, 2)
    assert json.dumps(again, default=str) == json.dumps(rows[:2] + rows[N_TRAIN:][:2], default=str)


def test_rows_describe_the_task(rows):
    for row in rows:
        meta = json.loads(row["meta"])
        assert row["repo"] == f"toy/{row['instance_id'].split('__')[1].rsplit('-', 1)[0]}"
        assert row["version"] == "0.1"
        assert meta["split"] in ("train", "eval")
        assert json.loads(row["install_config"])["log_parser"] == "parse_log_pytest"
        assert all(t.startswith("tests/test_") and "::" in t for t in row["FAIL_TO_PASS"])
        hidden = {ln[5:].split("(")[0] for ln in row["test_patch"].splitlines() if "+def " in ln}
        assert {t.split("::")[1] for t in row["FAIL_TO_PASS"]} == hidden


def test_publish_writes_a_named_tasks_version_and_reuses_it(tmp_path):
    lake = Lake(tmp_path / "lake")
    version = publish_toy_suite(lake, seed=3, n_train=3, n_eval=2)
    assert lake.resolve("tasks", "toy-swe").version == version
    assert lake.manifest("tasks", version)["parameters"] == {"seed": 3, "train": 3, "eval": 2}
    tasks = load_tasks("toy-swe", root=tmp_path / "lake")
    assert [t.meta["split"] for t in tasks] == ["train"] * 3 + ["eval"] * 2
    for task in tasks:
        materialize_repo(task, tmp_path / task.instance_id)  # checks base_commit
    assert publish_toy_suite(lake, seed=3, n_train=3, n_eval=2) == version
    assert len(lake.versions("tasks")) == 1
    easy = publish_toy_suite(lake, seed=3, n_train=2, n_eval=1, name="easy", difficulties=[1])
    assert lake.manifest("tasks", easy)["parameters"]["difficulties"] == [1]
    assert {t.meta["difficulty"] for t in load_tasks("easy", root=lake.root)} == {1}


def test_a_task_whose_patch_does_not_fix_the_bug_is_refused():
    task = generate_task(0, "train", 0)
    path = task.meta["bug_file"]
    no_fix = unified_diff(path, task.files[path], task.files[path] + "# not a fix\n")
    with pytest.raises(ToyGenerationError, match="toy__.*with the gold patch not every test"):
        find_tests(dataclasses.replace(task, patch=no_fix))


@pytest.mark.slow
def test_default_suite_twice_identical_and_all_graded(tmp_path):
    first = build_toy_suite(0, 48, 16)
    assert json.dumps(first, default=str) == json.dumps(build_toy_suite(0, 48, 16), default=str)
    for row in first:
        check_row(row, tmp_path / row["instance_id"])
