"""Reports over a lake holding a whole run (written with the lake's writers and registered
schemas), a run selected by its final model, a partial run and an empty lake."""

from __future__ import annotations

import random
import re
import shutil

import pytest

from swerl.lake import Lake
from swerl.report import build_report, report_figures
from swerl.report.run import load_run

from .run_lake import _evaluate, populate

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    lake = Lake(tmp_path_factory.mktemp("lake"))
    return lake, populate(lake)


def by_key(sections):
    return {s.key: s for s in sections}


def test_page_is_self_contained_with_every_section(run, tmp_path):
    lake, _ = run
    out = build_report(lake, tmp_path / "sub" / "report.html", title="toy run")
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>toy run</title>" in page
    assert "No data yet" not in page
    images = re.findall(r'<img alt="[^"]*" src="([^"]*)"', page)
    assert len(images) == 5 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch
    for label in ("base", "RFT", "DAPO it. 1", "DAPO it. 3", "flipped"):
        assert f"<td>{label}</td>" in page


def test_figures_as_data_for_artifacts(run):
    lake, _ = run
    sections = report_figures(lake)
    assert [s.key for s in sections] == [
        "stage-table",
        "eval-pass",
        "eval-terminations",
        "eval-by-repo",
        "rollouts",
        "rollout-terminations",
        "training",
    ]
    for s in sections:
        assert not s.empty and s.text and s.title
        if s.png is not None:
            assert s.png.startswith(PNG) and len(s.png) > 10_000
    stage = by_key(sections)["stage-table"].table
    # ordered by depth in the model tree: base, RFT, then DAPO checkpoints and the control
    assert [r["model"] for r in stage][:2] == ["base", "RFT"]
    summaries = {
        v.manifest["inputs"]["models"]: v.manifest["info"]["summary"]
        for v in lake.versions("evals")
    }
    for row in stage:
        s = next(x for m, x in summaries.items() if m.endswith(row["models version"][-6:]))
        assert row["Pass@1 % ± SEM"] == (
            f"{100 * s['pass_at_1']:.1f} ± {100 * s['pass_at_1_sem']:.1f}"
        )
        assert row["Pass@5 %"] == f"{100 * s['pass_at_k']['5']:.1f}"


def test_a_run_is_its_final_model_and_ancestors(run):
    lake, ids = run
    whole = by_key(report_figures(lake))
    mine = by_key(report_figures(lake, model=ids["dapo3"]))
    assert [r["model"] for r in mine["stage-table"].table] == [
        "base",
        "RFT",
        "DAPO it. 1",
        "DAPO it. 3",
    ]
    # the control's rollouts (its first from RFT, a shared ancestor, and its own), the
    # reward-flipped copy it trained on and its update steps stay out; so do the demonstrations
    episodes = {r["iteration"]: r["episodes"] for r in mine["rollouts"].table}
    assert episodes == {0: 24, 1: 24, 2: 24, 3: 24}
    assert "RFT collection: 24 episodes" in mine["rollouts"].text
    # the whole lake counts every sampled episode once: no flipped copies, no demonstrations
    assert {r["iteration"]: r["episodes"] for r in whole["rollouts"].table} == {
        0: 48,
        1: 48,
        2: 24,
        3: 24,
    }
    assert "RFT collection: 24 episodes" in whole["rollouts"].text
    control = by_key(report_figures(lake, model=ids["flipped"]))
    assert {r["iteration"]: r["episodes"] for r in control["rollouts"].table} == {0: 24, 1: 24}
    assert [r["steps"] for r in mine["training"].table] == [2, 2, 2, 2]
    assert whole["training"].table[0]["steps"] == 4
    # dropped share of iteration k: (4 + k) dropped vs 16 kept
    assert [r["dropped (no signal) %"] for r in mine["training"].table] == [
        f"{100 * (4 + k) / (20 + k):.1f}" for k in range(4)
    ]
    # a run ending in RFT: its collection only; the rollouts RFT sampled were trained on by the
    # updates after it (DAPO, the control), outside this run; no update steps
    rft = by_key(report_figures(lake, model=ids["rft"]))
    assert rft["rollouts"].empty and rft["training"].empty
    rows = load_run(lake, model=ids["rft"]).trajectories
    assert len(rows) == 24 and {r["stage"] for r in rows} == {"rft"}
    assert [r["model"] for r in rft["stage-table"].table] == ["base", "RFT"]


def test_empty_lake_says_no_data_yet(tmp_path):
    sections = report_figures(Lake(tmp_path / "nothing"))
    assert all(s.empty and s.text.startswith("No data yet") for s in sections)
    page = build_report(Lake(tmp_path / "nothing"), tmp_path / "r.html").read_text()
    assert page.count("No data yet") == len(sections)


def test_partial_run_shows_what_exists(tmp_path, run):
    lake, ids = run
    partial = Lake(tmp_path / "partial")
    for v in lake.versions("models") + lake.versions("tasks"):  # models and tasks, no results
        (partial.root / v.dataset).mkdir(parents=True, exist_ok=True)
        shutil.copytree(v.path, partial.root / v.dataset / v.path.name)
    for v in lake.versions("train_metrics"):
        partial.write(
            "train_metrics",
            lake.read("train_metrics", v.version),
            stage="update_policy",
            inputs=v.manifest["inputs"],
        )
    sections = by_key(report_figures(partial))
    assert not sections["training"].empty
    assert sections["stage-table"].empty and sections["rollouts"].empty


def test_a_model_evaluated_on_two_task_sets_is_labelled_by_set(tmp_path):
    lake = Lake(tmp_path / "lake")
    ids = populate(lake)
    more = lake.write(
        "tasks",
        [{"instance_id": f"x-{t}", "repo": "toy/x", "base_commit": "0", "problem_statement": "."}
         for t in range(8)],
        stage="toy_build",
        name="more-tasks",
    )  # fmt: skip
    _evaluate(lake, random.Random(1), more, ids["base"], 0.1)
    rows = by_key(report_figures(lake, model=ids["rft"]))["eval-terminations"].table
    assert [r["model"] for r in rows] == [
        "base [eval] (toy-swe)",
        "base [eval] (more-tasks)",
        "RFT [eval]",
    ]
