"""Fixtures shared by every test tier.

Docker: `docker_client` skips a test (with the reason) when no engine answers, except under CI
(`CI=true`), where a missing engine is a failure: `.ci/run` starts one, so docker tests must run.
`base_image` is the sandbox base image `.ci/docker-setup.sh` builds. After the session, no
sandbox container started by this test process may remain (`swerl=sandbox` label, owner pid).
"""

from __future__ import annotations

import os
import socket

import pytest

BASE_IMAGE = os.environ.get("SWERL_TEST_BASE_IMAGE", "swerl-base:bookworm")
_docker_used = False


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: docker tests must run; .ci/docker-setup.sh starts one)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    """A client of the engine DOCKER_HOST (or the local socket) names."""
    import docker

    global _docker_used
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as e:  # any failure to connect: skip (or fail under CI) with the reason
        where = os.environ.get("DOCKER_HOST", "the local socket")
        _unavailable(f"no Docker engine reachable at {where}: {type(e).__name__}: {e}")
    _docker_used = True
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The sandbox base image (built by `.ci/docker-setup.sh` / `swerl images base`)."""
    import docker.errors

    try:
        docker_client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        _unavailable(f"base image {BASE_IMAGE} missing: run .ci/docker-setup.sh")
    return BASE_IMAGE


@pytest.fixture(scope="session", autouse=True)
def no_sandbox_container_left():
    """After the session: no sandbox container of this process is left (removed, then failed)."""
    yield
    if not _docker_used:
        return
    import docker

    client = docker.from_env()
    owner = f"{socket.gethostname()}:{os.getpid()}"
    left = client.containers.list(
        all=True, filters={"label": ["swerl=sandbox", f"swerl.owner={owner}"]}
    )
    for container in left:
        container.remove(force=True)
    client.close()
    assert not left, f"sandbox containers left after the tests: {[c.name for c in left]}"
