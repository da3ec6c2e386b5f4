"""Sandboxes: a task's repository and a persistent shell, in a container or a local directory.

    from swerl.sandbox import open_sandbox
    with open_sandbox(task, backend="docker", memory="1g") as sb:
        result = sb.run("python -m pytest -q", timeout=120)
        patch = sb.diff()

Backends: `docker` (`swerl.sandbox.docker`, the isolation boundary: one container per episode,
no network, cgroup limits) and `local` (`swerl.sandbox.local`, a temp directory: fast, NOT a
security boundary). The shell protocol both use is in `swerl.sandbox.session`, the shared object
in `swerl.sandbox.sandbox`, per-task images in `swerl.sandbox.images`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from swerl.sandbox.base import RunResult, SandboxConfig, SandboxError
from swerl.sandbox.sandbox import Sandbox
from swerl.swe.task import Task

BACKENDS = ("docker", "local")

__all__ = [
    "BACKENDS",
    "RunResult",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "open_sandbox",
    "resolve_backend",
]


def open_sandbox(
    task: Task, backend: str = "docker", config: SandboxConfig | None = None, **settings: Any
) -> Sandbox:
    """A new sandbox for `task`, at `base_commit`, ready for commands. `settings` override fields
    of `config` (see `SandboxConfig`), e.g. `open_sandbox(task, "local", max_output=20_000_000)`.
    Raises SandboxError when the sandbox cannot start (image missing, engine unreachable)."""
    config = replace(config or SandboxConfig(), **settings)
    if backend == "docker":
        from swerl.sandbox.docker import open_docker

        return open_docker(task, config)
    if backend == "local":
        from swerl.sandbox.local import open_local

        return open_local(task, config)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def resolve_backend(backend: str) -> str:
    """`auto` -> `docker` when an engine answers (DOCKER_HOST or the local socket), else `local`;
    `docker` and `local` are returned as they are."""
    if backend in BACKENDS:
        return backend
    if backend != "auto":
        raise ValueError(f"backend must be auto or one of {BACKENDS}, got {backend!r}")
    from swerl.sandbox.docker import engine_reachable

    return "docker" if engine_reachable() else "local"
