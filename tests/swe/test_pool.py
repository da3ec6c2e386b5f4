"""Static pool filters on real SWE-bench Lite rows, and on hand-made rows with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swerl.swe.pool import (
    PoolFilter,
    contamination_reasons,
    mentions_import_error,
    patch_stats,
    pool_rows,
    static_reasons,
)
from swerl.swe.task import Task

LITE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "swebench" / "lite_rows.jsonl"

PATCH = """diff --git a/a.py b/a.py
--- a/a.py
+++ b/a.py
@@ -1,3 +1,3 @@
 x = 1
-y = 2
+y = 3
--- z
diff --git a/b.py b/b.py
new file mode 100644
--- /dev/null
+++ b/b.py
@@ -0,0 +1,2 @@
+++ not a header inside a hunk
+b = 2
"""


def lite() -> list[Task]:
    return [Task.from_row(json.loads(line)) for line in LITE.read_text().splitlines()]


def test_patch_stats_counts_files_and_lines_not_headers():
    stats = patch_stats(PATCH)
    assert (stats.files, stats.added, stats.removed, stats.changed) == (2, 3, 2, 5)


def test_lite_patch_sizes_against_an_independent_count():
    tasks = lite()
    for t in tasks:
        lines = t.patch.splitlines()
        files = sum(line.startswith("diff --git") for line in lines)
        body = [x for x in lines if not x.startswith(("+++ ", "--- ", "diff --git"))]
        changed = sum(x.startswith(("+", "-")) for x in body)
        assert patch_stats(t.patch).files == files, t.instance_id
        assert patch_stats(t.patch).changed == changed, t.instance_id
    # Lite was built from small single-file fixes: the paper's limits keep every one of them
    assert all(static_reasons(t, PoolFilter()) == [] for t in tasks)


def test_thresholds_drop_large_patches_on_real_rows():
    tasks = lite()
    rules = PoolFilter(max_patch_files=1, max_changed_lines=10)
    dropped = {t.instance_id: static_reasons(t, rules) for t in tasks}
    expect_lines = {t.instance_id for t in tasks if patch_stats(t.patch).changed >= 10}
    got_lines = {i for i, r in dropped.items() if any("lines (>= 10)" in x for x in r)}
    assert got_lines == expect_lines and 0 < len(got_lines) < len(tasks)
    # the boundary: < max_changed_lines is kept, == is dropped
    t = next(t for t in tasks if patch_stats(t.patch).changed == 4)
    assert static_reasons(t, PoolFilter(max_changed_lines=5)) == []
    assert static_reasons(t, PoolFilter(max_changed_lines=4)) == [
        "gold patch changes 4 lines (>= 4)"
    ]


@pytest.mark.parametrize(
    ("scores", "dropped"),
    [
        ({"difficulty_score": 1, "issue_text_score": 0, "test_score": 1}, []),
        ({"difficulty_score": 3, "issue_text_score": 0, "test_score": 1}, ["difficulty_score"]),
        (
            {"difficulty_score": 3, "issue_text_score": 3, "test_score": 3},
            ["difficulty_score", "issue_text_score", "test_score"],
        ),
    ],
)
def test_any_llm_subscore_of_three_drops(scores, dropped):
    t = Task(
        "o__r-1", "o/r", "abc", "bug", patch=PATCH, fail_to_pass=["t"], meta={"llm_score": scores}
    )
    reasons = static_reasons(t, PoolFilter())
    assert reasons == ([f"llm_score {', '.join(dropped)} = 3"] if dropped else [])
    assert static_reasons(t, PoolFilter(drop_llm_score=None)) == []


def test_decontamination_by_instance_and_by_repo():
    tasks = lite()
    django = [t for t in tasks if t.repo == "django/django"]
    verified = {"verified-mini": django[:3]}
    by_id = [t.instance_id for t in tasks if contamination_reasons(t, verified)]
    assert by_id == [t.instance_id for t in django[:3]]
    by_repo = [t.instance_id for t in tasks if contamination_reasons(t, verified, by="repo")]
    assert by_repo == [t.instance_id for t in django]
    assert contamination_reasons(django[0], verified) == [
        f"contaminated: instance {django[0].instance_id} is in eval set 'verified-mini'"
    ]
    with pytest.raises(ValueError, match="'instance' or 'repo'"):
        contamination_reasons(django[0], verified, by="owner")


def test_missing_patch_or_tests_and_pool_rows():
    bare = Task("o__r-2", "o/r", "abc", "bug")
    assert static_reasons(bare, PoolFilter()) == ["no gold patch", "no FAIL_TO_PASS tests"]
    rows = pool_rows([bare, lite()[0]], {"o__r-2": ["no gold patch"]})
    assert rows[0] == {
        "instance_id": "o__r-2",
        "repo": "o/r",
        "kept": False,
        "reasons": ["no gold patch"],
    }
    assert rows[1]["kept"] is True and rows[1]["reasons"] == []


def test_import_error_detection():
    assert mentions_import_error("E   ImportError: cannot import name 'foo' from 'pkg'")
    assert mentions_import_error("FAILED t.py::test - AttributeError: 'X' object has no attribute")
    assert mentions_import_error("ModuleNotFoundError: No module named 'pkg.new'")
    assert not mentions_import_error("FAILED t.py::test - AssertionError: 1 != 2")


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="max_patch_files"):
        PoolFilter(max_patch_files=0)
