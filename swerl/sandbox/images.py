"""Images for the docker backend.

SWE-bench / SWE-rebench tasks name their own image (see `swerl.sandbox.docker.image_name`).
Self-contained tasks (`task.repo_files`, the toy suite) get one built here:

    swerl images base                      # once, where no registry is reachable: Debian bookworm
    swerl images build --tasks toy-swe     # one image per task, FROM --base-image

A task image is the base plus the repository at `/testbed`, rebuilt by `materialize_repo` and
stripped to `base_commit` (`swerl.sandbox.history`). If the base lacks git, patch, `python` or
pytest, one shared layer installs them (that needs a package index; the bookworm base has them).
Images are cached by content: the tag is a hash of the base image's id, the Dockerfile and the
task's files, so a rebuild with nothing changed reuses every image, and a new base rebuilds all.
Sandboxes find a task's image by its labels (`swerl.task`, `swerl.repo`: the task id and a hash
of its files), newest first, without needing to know which base it was built from.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from swerl.sandbox.base import SandboxError
from swerl.sandbox.history import strip_history_script
from swerl.swe.repo import materialize_repo
from swerl.swe.task import Task

DEFAULT_BASE_IMAGE = "python:3.11-slim"
LOCAL_BASE_IMAGE = "swerl-base:bookworm"
"""What `swerl images base` builds by default: Debian bookworm from its packages, no registry."""
BASE_PACKAGES = "python3,python3-pytest,git,patch"

DOCKERFILE = """\
FROM {base}
RUN (command -v git && command -v patch) >/dev/null \\
    || (apt-get update && apt-get install -y --no-install-recommends git patch \\
        && rm -rf /var/lib/apt/lists/*); \\
    command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python; \\
    python -c 'import pytest' 2>/dev/null || python -m pip install --no-cache-dir pytest
COPY testbed /testbed
WORKDIR /testbed
"""


@dataclass(frozen=True)
class TaskImage:
    instance_id: str
    tag: str
    cached: bool
    """True when an image with this content already existed and was reused."""


def repo_hash(task: Task) -> str:
    """Hash of a self-contained task's files (what identifies its repository)."""
    text = json.dumps(task.repo_files, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def task_image(task: Task, client: docker.DockerClient) -> str:
    """The newest image built for `task` by `build_images`; SandboxError if there is none."""
    labels = [f"swerl.task={task.instance_id}", f"swerl.repo={repo_hash(task)}"]
    images = client.images.list(filters={"label": labels})
    if not images:
        raise SandboxError(
            f"task {task.instance_id}: image not found: no image built for its files; "
            "build it with `swerl images build --tasks <tasks version>`"
        )
    newest = max(images, key=lambda image: image.attrs["Created"])
    return newest.tags[0] if newest.tags else newest.id


def build_images(
    tasks: list[Task],
    base_image: str = DEFAULT_BASE_IMAGE,
    client: docker.DockerClient | None = None,
) -> list[TaskImage]:
    """Build (or reuse) one image per task FROM `base_image`; every task must carry its files."""
    missing = [t.instance_id for t in tasks if t.repo_files is None]
    if missing:
        raise ValueError(
            f"{len(missing)} task(s) carry no repository files (repo_files), so no image can be "
            f"built for them; they name their own images: {missing[:10]}"
        )
    client = client or docker.from_env()
    try:
        base_id = client.images.get(base_image).id
    except docker.errors.ImageNotFound:
        raise SandboxError(
            f"base image {base_image} not found on the engine: pull it, or build "
            f"{LOCAL_BASE_IMAGE} with `swerl images base` and pass --base-image {LOCAL_BASE_IMAGE}"
        ) from None
    dockerfile = DOCKERFILE.format(base=base_image)
    return [_build_one(client, task, base_image, base_id, dockerfile) for task in tasks]


def _build_one(
    client: docker.DockerClient, task: Task, base_image: str, base_id: str, dockerfile: str
) -> TaskImage:
    key = hashlib.sha256(
        "\0".join([base_id, dockerfile, task.instance_id, repo_hash(task)]).encode()
    ).hexdigest()[:16]
    tag = f"swerl-task/{_repository_name(task.instance_id)}:{key}"
    try:
        client.images.get(tag)
        return TaskImage(task.instance_id, tag, cached=True)
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="swerl-image-") as context:
        repo = materialize_repo(task, Path(context) / "testbed")
        strip = subprocess.run(
            ["bash", "-c", strip_history_script(str(repo), task.base_commit)],
            capture_output=True,
            text=True,
        )
        if strip.returncode != 0:
            raise SandboxError(f"task {task.instance_id}: stripping history failed: {strip.stdout}")
        (Path(context) / "Dockerfile").write_text(dockerfile)
        try:
            client.images.build(
                path=context,
                tag=tag,
                rm=True,
                forcerm=True,
                network_mode="host",  # only for the shared layer's package installs
                labels={
                    "swerl": "task-image",
                    "swerl.task": task.instance_id,
                    "swerl.repo": repo_hash(task),
                    "swerl.base": base_image,
                },
            )
        except docker.errors.BuildError as e:
            log = "".join(str(line.get("stream", "")) for line in e.build_log)[-2000:]
            raise SandboxError(f"task {task.instance_id}: image build failed: {e}\n{log}") from e
    return TaskImage(task.instance_id, tag, cached=False)


def build_base_image(name: str = LOCAL_BASE_IMAGE, suite: str = "bookworm") -> str:
    """Build a base image from Debian packages, no registry needed (root, debootstrap and a
    Debian mirror; about a minute): `debootstrap --variant=minbase` then `docker import`.
    Returns the image id."""
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is not installed (apt-get install debootstrap)")
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="swerl-rootfs-") as tmp:
        rootfs, archive = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        debootstrap = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", suite, str(rootfs)],
            capture_output=True,
            text=True,
        )
        if debootstrap.returncode != 0:
            raise SandboxError(f"debootstrap failed: {debootstrap.stdout[-2000:]}")
        subprocess.run(["tar", "-C", str(rootfs), "-c", "-f", str(archive), "."], check=True)
        repository, _, tag = name.partition(":")
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag or "latest")
    return client.images.get(name).id


def _repository_name(instance_id: str) -> str:
    """A docker repository component from an instance id: lowercase runs of [a-z0-9] joined by
    single hyphens (the hash in the tag keeps ids that map to the same name apart)."""
    return re.sub(r"[^a-z0-9]+", "-", instance_id.lower()).strip("-")[:100] or "task"
