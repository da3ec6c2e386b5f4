"""Local backend: the task's repository in a temporary directory, the shells as child processes.

For machines without Docker, and for speed (no image, no container: a sandbox opens in tens of
milliseconds). Only self-contained tasks (`task.repo_files`, the toy suite) can run here: the
repository is rebuilt with `swerl.swe.repo.materialize_repo`, so it holds `base_commit` and
nothing else.

NOT A SECURITY BOUNDARY. Commands run as the calling user, on the host's filesystem and network:
- they can read and write anything the user can, outside the repository too;
- they can reach the network, the host's loopback services included;
- memory is limited per process (`ulimit -v`, address space), not for the sandbox as a whole;
- there is no process limit (RLIMIT_NPROC counts every process of the user, so it cannot cap
  one sandbox) and no CPU limit: a fork bomb takes the machine down;
- a process that starts its own session (`setsid`) survives timeouts and `close`.
Run untrusted models with the docker backend.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from swerl.sandbox.base import SandboxConfig, SandboxError, memory_bytes
from swerl.sandbox.sandbox import Sandbox
from swerl.sandbox.session import ShellExited
from swerl.swe.repo import RepoError, materialize_repo
from swerl.swe.task import Task


class LocalStream:
    """A bash child process in its own session, stdin and merged stdout/stderr on pipes."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,  # the shell leads its own session: what timeouts kill
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._in, view) :]
        except (BrokenPipeError, OSError):
            raise ShellExited("") from None

    def receive(self, timeout: float) -> bytes | None:
        ready, _, _ = select.select([self._out], [], [], timeout)
        if not ready:
            return None
        return os.read(self._out, 1 << 16)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdin.close()  # type: ignore[union-attr]
        self.process.stdout.close()  # type: ignore[union-attr]


class LocalHost:
    """A temporary directory holding the repository (`<tmp>/repo`), a home and a TMPDIR."""

    def __init__(self, task: Task, config: SandboxConfig):
        self.root = Path(tempfile.mkdtemp(prefix=f"swerl-{_safe(task.instance_id)}-"))
        try:
            repo = materialize_repo(task, self.root / "repo")
        except RepoError as e:
            shutil.rmtree(self.root, ignore_errors=True)
            raise SandboxError(f"local backend: {e}") from e
        for name in ("home", "tmp"):
            (self.root / name).mkdir()
        self.workdir = str(repo)
        # The Python running swerl comes first on PATH, so `python -m pytest` finds its pytest.
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        self.env = {
            "PATH": path,
            "HOME": str(self.root / "home"),
            "TMPDIR": str(self.root / "tmp"),
            "LANG": "C.UTF-8",
        }
        self.setup = "\n".join(
            [
                f"cd {shlex.quote(self.workdir)}",
                "export PAGER=cat GIT_PAGER=cat TERM=dumb PYTHONDONTWRITEBYTECODE=1",
                f"ulimit -v {memory_bytes(config.memory) // 1024}",
                "ulimit -c 0",
            ]
        )

    def spawn_shell(self) -> LocalStream:
        return LocalStream(Path(self.workdir), self.env)

    def read_bytes(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def write_bytes(self, path: str, data: bytes) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)

    def check(self) -> None:
        """A local host cannot go away."""

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def open_local(task: Task, config: SandboxConfig) -> Sandbox:
    return Sandbox(task, LocalHost(task, config), config)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
