"""Small self-contained tasks and sandboxes of both backends for the sandbox tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from swerl.sandbox import open_sandbox
from swerl.swe.repo import commit_files
from swerl.swe.task import Task

FILES = {
    "calc/__init__.py": "",
    "calc/ops.py": "def add(a, b):\n    return a - b\n",
    "tests/test_ops.py": "from calc.ops import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    "README.md": "calc\n",
}

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]


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


@pytest.fixture(scope="session")
def task() -> Task:
    return make_task(FILES)


@pytest.fixture(scope="session")
def task_image(docker_client, base_image, task) -> str:
    from swerl.sandbox.images import build_images

    return build_images([task], base_image, docker_client)[0].tag


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    if request.param == "docker":
        request.getfixturevalue("task_image")
    return request.param


@pytest.fixture
def sandbox(backend, task):
    with open_sandbox(task, backend, timeout=30, max_output=10_000) as sb:
        yield sb
