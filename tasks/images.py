"""Sandbox images before a stage runs: with Docker, every task of the stage gets its image
(built from the task's files, reused when it exists); without an engine, the local backend runs
and the flow says so."""

from __future__ import annotations

from prefect import get_run_logger

from swerl.lake import Lake
from swerl.sandbox import resolve_backend
from swerl.swe.task import load_tasks


def build_images(
    lake: Lake, versions: list[str], base_image: str | None = None, backend: str = "auto"
) -> str:
    """Sandbox images of every task when a Docker engine answers (from `base_image`, by default
    python:3.11-slim if the engine has it, else swerl-base:bookworm, built when absent); else the
    local backend. Says on screen which backend runs."""
    logger = get_run_logger()
    asked, backend = backend, resolve_backend(backend)
    if backend != "docker":
        if asked == "auto":
            logger.warning(
                "no Docker engine answers: sandboxes use the local backend (not isolated)"
            )
        else:
            logger.info("sandboxes use the %s backend", backend)
        return backend
    tasks = [t for v in versions for t in load_tasks(v, root=lake.root) if t.repo_files]
    if not tasks:  # SWE-bench tasks name their own images
        return backend
    import docker

    from swerl.sandbox import images

    client = docker.from_env()
    if base_image is None:
        for candidate in (images.DEFAULT_BASE_IMAGE, images.LOCAL_BASE_IMAGE):
            if client.images.list(name=candidate):
                base_image = candidate
                break
        else:
            logger.info("building the base image %s (debootstrap)", images.LOCAL_BASE_IMAGE)
            base_image = images.build_base_image()
    built = images.build_images(tasks, base_image=base_image, client=client)
    logger.info("docker backend: %d task images ready (base %s)", len(built), base_image)
    return backend
