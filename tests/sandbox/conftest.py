"""Small self-contained tasks and sandboxes of both backends for the sandbox tests."""

from __future__ import annotations

import pytest

from swerl.sandbox import open_sandbox
from swerl.swe.task import Task

from .repos import FILES, make_task

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]


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
