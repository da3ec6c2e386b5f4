"""What code produced a dataset: the package version plus a hash of its source files.

The source hash (not the git commit) goes into fingerprints, so an edited working tree never reuses
a version made by different code, and an unrelated commit (docs, tests) does not invalidate one.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

import swerl

PACKAGE_DIR = Path(swerl.__file__).resolve().parent


@functools.cache
def code_version() -> str:
    """`<package version>+<12 hex of the hash of every swerl/*.py file>`."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE_DIR)).encode())
        h.update(path.read_bytes())
    return f"{swerl.__version__}+{h.hexdigest()[:12]}"


@functools.cache
def git_commit() -> str | None:
    """The checkout's HEAD commit (with `-dirty` when it has changes), or None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
