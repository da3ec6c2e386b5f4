"""Small self-contained tasks for the sandbox tests and the benchmark."""

from __future__ import annotations

import tempfile
from pathlib import Path

from swerl.swe.repo import commit_files
from swerl.swe.task import Task

FILES = {
    "calc/__init__.py": "",
    "calc/ops.py": "def add(a, b):\n    return a - b\n",
    "tests/test_ops.py": "from calc.ops import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    "README.md": "calc\n",
}


def make_task(files: dict[str, str], instance_id: str = "sandbox__calc-1") -> Task:
    """A task whose repository is `files`, base_commit computed the way `materialize_repo` does."""
    with tempfile.TemporaryDirectory() as tmp:
        base = commit_files(files, Path(tmp) / "repo")
    return Task(
        instance_id=instance_id,
        repo="swerl/calc",
        base_commit=base,
        problem_statement="add() subtracts",
        repo_files=files,
    )
