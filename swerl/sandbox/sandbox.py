"""The Sandbox: one task's repository and a persistent shell, the same class for every backend.

    with open_sandbox(task, backend="docker") as sb:
        sb.run("cd src && export X=1")          # state persists between calls
        r = sb.run("pytest -x", timeout=60)     # RunResult(output, exit_code, timed_out)
        sb.write_file("src/new.py", "...")      # relative paths: from the repository root
        patch = sb.diff()                       # changes against base_commit, new files included

A backend supplies a `Host`: where the shells run and how files are read and written. The
sandbox keeps two shells there: the session (the agent's commands, `session.Shell`) and a
control shell that kills the session's processes on a timeout. Recovery rules:
- timeout: every process of the session except the shell is SIGKILLed (the command's process
  group, its children, and what it left in the background); the shell keeps its cwd and
  environment. If the shell itself is busy (a loop of builtins), it is killed too and restarted.
- the shell exits (`exit`, `kill -9 $$`, `set -e` and a failure): a new shell starts in the
  repository root and the result says that cwd and environment were reset.
- the host is gone (container removed, engine down): `SandboxError`.
"""

from __future__ import annotations

import contextlib
import posixpath
import shlex
import time
from typing import Protocol

from swerl.sandbox.base import RunResult, SandboxConfig, SandboxError
from swerl.sandbox.session import KILL_FUNCTION, Completed, Shell, ShellExited, Stream
from swerl.swe.task import Task

KILL_GRACE_S = 3.0
"""After a kill, seconds to wait for the shell's marker before escalating."""
SETUP_TIMEOUT_S = 60.0
"""Seconds for the sandbox's own commands (shell setup, kills)."""
DIFF_TIMEOUT_S = 300.0


class Host(Protocol):
    """Where a sandbox's processes run and its files live (a container, a temp directory)."""

    workdir: str
    """Absolute path of the repository root."""
    setup: str
    """Shell lines every new session runs first (cd, environment, limits)."""

    def spawn_shell(self) -> Stream:
        """Start `bash` as a session leader, stderr merged into stdout."""
        ...

    def read_bytes(self, path: str) -> bytes:
        """Contents of an absolute path; FileNotFoundError if it does not exist."""
        ...

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write an absolute path, creating parent directories."""
        ...

    def check(self) -> None:
        """Raise SandboxError (saying why) if the host can no longer run anything."""
        ...

    def close(self) -> None: ...


class Sandbox:
    """A task's sandbox (see the module docstring). Use as a context manager or call `close`.
    One caller at a time: episodes run concurrently in separate sandboxes, not in one."""

    def __init__(self, task: Task, host: Host, config: SandboxConfig):
        self.task = task
        self.host = host
        self.config = config
        self.workdir = host.workdir
        self._closed = False
        self._control: Shell | None = None
        self._shell: Shell | None = None
        try:
            self._control = self._start_control()
            self._shell, self._shell_pid = self._start_session()
        except BaseException:
            self.close()
            raise

    # ---- the agent's interface -----------------------------------------------------------------

    def run(self, command: str, timeout: float | None = None) -> RunResult:
        """Run `command` in the persistent shell; see the module docstring for timeouts."""
        timeout = self.config.timeout if timeout is None else timeout
        self._check_open()
        timed_out = False
        try:
            self._shell.start(command)
            done = self._shell.wait(time.monotonic() + timeout)
            if done is None:
                timed_out = True
                self._kill(all_processes=False)
                done = self._shell.wait(time.monotonic() + KILL_GRACE_S)
            if done is None:  # the shell itself is stuck: kill it, the stream ends below
                self._kill(all_processes=True)
                done = self._shell.wait(time.monotonic() + KILL_GRACE_S)
            if done is None:
                raise ShellExited("")
        except ShellExited as e:
            return self._recover(e.partial, timed_out, timeout)
        output = done.output
        if timed_out:
            output += (
                f"\n[swerl: the command ran past its {timeout:g} s timeout and was killed, "
                "with every process it started]"
            )
        return RunResult(output, done.exit_code, timed_out)

    def read_file(self, path: str) -> str:
        """Text of `path` (relative paths from the repository root); undecodable bytes become
        U+FFFD. FileNotFoundError if it does not exist."""
        self._check_open()
        return self.host.read_bytes(self._abs(path)).decode("utf-8", errors="replace")

    def write_file(self, path: str, text: str) -> None:
        """Write `text` to `path` (relative paths from the repository root), creating parents."""
        self._check_open()
        self.host.write_bytes(self._abs(path), text.encode("utf-8"))

    def diff(self) -> str:
        """The repository's changes against `base_commit` as a git patch: edits, deletions and
        new files (files ignored by .gitignore excluded). A scratch copy of the index is used, so
        the agent's staging area is left as it was; the copy keeps the index's mtime, or git's
        racy-clean check would miss an edit made within a second of checkout that kept the size."""
        self._check_open()
        base = shlex.quote(self.task.base_commit)
        script = (
            f"( cd {shlex.quote(self.workdir)} && i=$(mktemp) && o=$(mktemp) && "
            '{ cp -p .git/index "$i" 2>/dev/null || rm -f "$i"; } && '
            'GIT_INDEX_FILE="$i" git add -A && '
            f'GIT_INDEX_FILE="$i" git diff --cached --binary --no-color --no-ext-diff {base} '
            '>"$o"; rc=$?; rm -f "$i"; echo "$o"; exit $rc )'
        )
        result = self.run(script, timeout=DIFF_TIMEOUT_S)
        lines = result.output.strip().splitlines()
        if result.exit_code != 0 or not lines:
            raise SandboxError(
                f"task {self.task.instance_id}: git diff against {self.task.base_commit} failed "
                f"(exit {result.exit_code}): {result.output.strip()[-500:]}"
            )
        out_path = lines[-1]
        patch = self.host.read_bytes(out_path).decode("utf-8", errors="replace")
        self.run(f"rm -f {shlex.quote(out_path)}", timeout=SETUP_TIMEOUT_S)
        return patch

    def close(self) -> None:
        """Stop the shells and remove the host (container or temp directory). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._shell is not None and self._control is not None:
            # background jobs too (a container's removal would, a local host's would not);
            # failures do not matter, the host is going away
            with contextlib.suppress(ShellExited, TimeoutError, OSError):
                self._control.run(f"__swerl_kill {self._shell_pid} all", SETUP_TIMEOUT_S)
        for shell in (self._shell, self._control):
            if shell is not None:
                shell.close()
        self.host.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- shells --------------------------------------------------------------------------------

    def _start_session(self) -> tuple[Shell, int]:
        shell = Shell(self.host.spawn_shell(), self.config.max_output)
        done = self._setup_command(shell, self.host.setup + "\necho $$", "start the shell")
        return shell, int(done.output.strip().splitlines()[-1])

    def _start_control(self) -> Shell:
        shell = Shell(self.host.spawn_shell(), 64 * 1024)
        self._setup_command(shell, KILL_FUNCTION, "start the control shell")
        return shell

    def _setup_command(self, shell: Shell, command: str, what: str) -> Completed:
        try:
            done = shell.run(command, SETUP_TIMEOUT_S)
        except (ShellExited, TimeoutError) as e:
            self.host.check()
            raise SandboxError(f"task {self.task.instance_id}: could not {what}: {e}") from e
        if done.exit_code != 0:
            raise SandboxError(
                f"task {self.task.instance_id}: could not {what} "
                f"(exit {done.exit_code}): {done.output.strip()[-500:]}"
            )
        return done

    def _kill(self, all_processes: bool) -> None:
        """SIGKILL the session's processes (and the shell itself if `all_processes`) through the
        control shell, restarting the control shell once if it was killed."""
        command = f"__swerl_kill {self._shell_pid}" + (" all" if all_processes else "")
        for attempt in range(2):
            try:
                self._control.run(command, SETUP_TIMEOUT_S)
                return
            except (ShellExited, TimeoutError) as e:
                self._control.close()
                if attempt == 1:
                    self.host.check()
                    raise SandboxError(
                        f"task {self.task.instance_id}: could not kill a timed-out command: {e}"
                    ) from e
                self._control = self._start_control()

    def _recover(self, partial: str, timed_out: bool, timeout: float) -> RunResult:
        """The session's shell is gone: start a new one and say so in the output."""
        self._shell.close()
        self.host.check()
        try:
            self._control.run(f"__swerl_kill {self._shell_pid} all", SETUP_TIMEOUT_S)
        except (ShellExited, TimeoutError):  # the control shell went too; restart it as well
            self._control.close()
            self._control = self._start_control()
        self._shell, self._shell_pid = self._start_session()
        why = f"the command ran past its {timeout:g} s timeout and " if timed_out else ""
        note = (
            f"\n[swerl: {why}the shell exited; a new shell was started in "
            f"{self.workdir}: cwd, environment variables and background jobs were reset]"
        )
        return RunResult(partial + note, None, timed_out)

    # ---- helpers -------------------------------------------------------------------------------

    def _abs(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self.workdir, path))

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError(f"task {self.task.instance_id}: the sandbox is closed")
