"""Docker-specific behaviour: images (naming, building, caching), git history stripping, orphan
reaping, the live-container cap."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import docker
import pytest

import swerl.sandbox.docker as sandbox_docker
from swerl.sandbox import SandboxError, open_sandbox, resolve_backend
from swerl.sandbox.docker import image_name, reap
from swerl.sandbox.images import build_images
from swerl.swe.repo import git
from swerl.swe.task import Task

from .repos import FILES, make_task

pytestmark = pytest.mark.docker


def test_image_names_follow_the_task_row(docker_client, task_image, task):
    swebench = Task("django__django-11099", "django/django", "abc", "p")
    assert image_name(swebench, docker_client) == (
        "swebench/sweb.eval.x86_64.django_1776_django-11099:latest"
    )
    named = dataclasses.replace(swebench, image_name="reg/img:1", docker_image=None)
    assert image_name(named, docker_client) == "reg/img:1"
    assert image_name(dataclasses.replace(named, docker_image="d/i:2"), docker_client) == "d/i:2"
    assert image_name(task, docker_client) == task_image


def test_a_missing_image_is_a_clear_per_task_error(docker_client):
    absent = Task("nobody__nothing-1", "nobody/nothing", "abc", "p")
    with pytest.raises(SandboxError, match="nobody__nothing-1.*image .* not found"):
        open_sandbox(absent, "docker")
    unbuilt = make_task({"only.py": "X = 1\n"}, "sandbox__never-built")
    with pytest.raises(SandboxError, match="not found.*swerl images build"):
        open_sandbox(unbuilt, "docker")


def test_images_are_cached_by_content(docker_client, base_image, task, task_image):
    again = build_images([task], base_image, docker_client)[0]
    assert again.cached and again.tag == task_image
    changed = make_task({**FILES, "README.md": "changed\n"})
    built = build_images([changed], base_image, docker_client)[0]
    assert not built.cached and built.tag != task_image
    try:
        with open_sandbox(changed, "docker") as sb:  # found by its files, not the older image
            assert sb.read_file("README.md") == "changed\n"
    finally:
        docker_client.images.remove(built.tag, force=True)
    with pytest.raises(ValueError, match="carry no repository files"):
        build_images([Task("a__b-1", "a/b", "abc", "p")], base_image, docker_client)


def test_a_full_clone_is_stripped_to_base_commit(docker_client, base_image):
    """An image whose /testbed holds the fix in later commits, a branch, a tag, a stash, a remote
    and the reflog: the agent's first command sees none of it."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "testbed"
        repo.mkdir()
        git(["init", "-q", "--initial-branch=main"], repo)
        (repo / "a.py").write_text("bug\n")
        git(["add", "-A"], repo)
        git(["commit", "-q", "-m", "base"], repo)
        base = git(["rev-parse", "HEAD"], repo).strip()
        (repo / "a.py").write_text("THE FIX\n")
        git(["commit", "-q", "-am", "fix"], repo)
        fix = git(["rev-parse", "HEAD"], repo).strip()
        git(["tag", "v2"], repo)
        git(["branch", "fixed"], repo)
        git(["remote", "add", "origin", "https://example.invalid/repo.git"], repo)
        git(["update-ref", "refs/remotes/origin/main", fix], repo)
        git(["reset", "-q", "--hard", base], repo)
        (repo / "a.py").write_text("stashed fix\n")
        git(["stash", "-q"], repo)
        (Path(tmp) / "Dockerfile").write_text(f"FROM {base_image}\nCOPY testbed /testbed\n")
        tag = "swerl-test/full-clone:latest"
        docker_client.images.build(path=tmp, tag=tag, rm=True, network_mode="host")
    task = Task("sandbox__full-clone", "x/y", base, "p", docker_image=tag)
    try:
        with open_sandbox(task, "docker") as sb:
            refs = sb.run("git for-each-ref --format='%(refname)'; git remote; git stash list")
            assert refs.output.split() == ["refs/heads/main"]
            assert sb.run("git rev-list --all").output.split() == [base]
            assert sb.run(f"git cat-file -e {fix}").exit_code != 0  # the object is gone
            assert sb.run("git reflog --all").output == ""
            hunt = sb.run("git fsck --lost-found --unreachable --no-reflogs 2>&1; grep -r FIX .git")
            assert "FIX" not in hunt.output and "unreachable" not in hunt.output
            assert sb.read_file("a.py") == "bug\n"
    finally:
        docker_client.images.remove(tag, force=True)


def test_reap_removes_containers_whose_owner_is_gone(docker_client, base_image):
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = f"{sandbox_docker.socket.gethostname()}:{dead.pid}"
    orphan = docker_client.containers.run(
        base_image,
        ["sleep", "infinity"],
        detach=True,
        network_mode="none",
        labels={"swerl": "sandbox", "swerl.owner": owner, "swerl.created": "2000-01-01T00:00:00"},
    )
    try:
        removed = reap()
        assert orphan.name in removed
        with pytest.raises(docker.errors.NotFound):
            orphan.reload()
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            orphan.remove(force=True)


def test_live_containers_are_capped(monkeypatch, task_image, task):
    monkeypatch.setattr(sandbox_docker, "_live", threading.BoundedSemaphore(2))
    first, second = open_sandbox(task, "docker"), open_sandbox(task, "docker")
    opened = []
    waiter = threading.Thread(target=lambda: opened.append(open_sandbox(task, "docker")))
    waiter.start()
    time.sleep(1.0)
    assert opened == []  # blocked: two are live
    first.close()
    waiter.join(timeout=30)
    assert len(opened) == 1
    second.close()
    opened[0].close()


def test_resolve_backend(docker_client):
    assert resolve_backend("auto") == "docker"
    assert resolve_backend("local") == "local"
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("podman")


def test_files_travel_through_the_archive_api_even_when_nothing_can_fork(task_image, task):
    with open_sandbox(task, "docker", pids=16, timeout=30) as sb:
        sb.run("bomb() { bomb | bomb & }; bomb", timeout=2)
        sb.write_file("calc/ops.py", "def add(a, b):\n    return a + b\n")
        assert sb.read_file("calc/ops.py").endswith("a + b\n")
        assert sb.run("sleep 60", timeout=1).timed_out  # clears the bomb
        assert "+    return a + b" in sb.diff()
