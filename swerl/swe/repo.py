"""Self-contained repositories: tasks whose rows carry their files (`repo_files`, the toy-SWE
suite) are rebuilt as git repositories with a pinned identity and date, so the same files always
give the same `base_commit` on any machine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from swerl.swe.task import Task

# A fixed author, committer and date make commit ids a pure function of the files.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "swerl",
    "GIT_AUTHOR_EMAIL": "swerl@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "swerl",
    "GIT_COMMITTER_EMAIL": "swerl@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}


class RepoError(Exception):
    """A repository could not be rebuilt; the message names the task and what differs."""


def git(args: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        **GIT_IDENTITY,
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RepoError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout


def commit_files(files: dict[str, str], dest: Path, message: str = "base") -> str:
    """Write `files` (path -> text) into a new git repository at `dest` (which must be empty or
    absent), commit them, and return the commit id."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise RepoError(f"{dest} is not empty")
    for rel, text in files.items():
        path = dest / rel
        if path.resolve().is_relative_to(dest.resolve()) is False or rel.startswith("/"):
            raise RepoError(f"file path {rel!r} escapes the repository")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(["init", "-q", "--initial-branch=main"], dest)
    git(["add", "-A"], dest)
    git(["commit", "-q", "--no-gpg-sign", "-m", message], dest)
    return git(["rev-parse", "HEAD"], dest).strip()


def materialize_repo(task: Task, dest: Path) -> Path:
    """Rebuild a self-contained task's repository at `dest`, checked to be at `base_commit`."""
    if task.repo_files is None:
        raise RepoError(
            f"task {task.instance_id} carries no repository files (`repo_files`); "
            "it can only run from its Docker image"
        )
    commit = commit_files(task.repo_files, Path(dest))
    if commit != task.base_commit:
        raise RepoError(
            f"task {task.instance_id}: rebuilt repository is at {commit}, expected base_commit "
            f"{task.base_commit} (files or git identity differ)"
        )
    return Path(dest)
