"""Docker backend: one container per episode, the isolation boundary for untrusted agents.

The container runs the task's image with `sleep infinity` under docker's init (which reaps
orphans, so a killed fork bomb leaves no zombies holding the process limit), the repository at
`/testbed` (the SWE-bench convention), and:
- `network_mode=none`: only a loopback interface of its own; the host's loopback is unreachable;
- memory (swap included), process and CPU limits from `SandboxConfig`;
- labels (`swerl=sandbox`, the task, the owner as `host:pid`), so `reap` removes containers whose
  owner died;
- at most `SWERL_MAX_CONTAINERS` (default 32) live per process; container start is retried.
The shells are `docker exec` processes whose attached sockets carry the sentinel protocol
(`swerl.sandbox.session`); files travel through the archive API, so they work even when the
container cannot fork. Before the agent starts, the repository's git history is stripped to
`base_commit` (`swerl.sandbox.history`). The image's `testbed` conda environment is activated
when it has one (SWE-bench images).

The engine is the one `docker.from_env()` finds: set `DOCKER_HOST` (e.g. `tcp://gpu-box:2375` or
`ssh://user@box`) to run sandboxes on another machine; images must be on that engine.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import socket
import tarfile
import threading
import time
from datetime import UTC, datetime

import docker
import docker.errors

from swerl.sandbox.base import SandboxConfig, SandboxError, memory_bytes
from swerl.sandbox.history import strip_history_script
from swerl.sandbox.images import task_image
from swerl.sandbox.sandbox import Sandbox
from swerl.sandbox.session import ShellExited
from swerl.swe.task import Task

WORKDIR = "/testbed"
LABEL = "swerl"
"""Every sandbox container carries `swerl=sandbox`; `reap` and the test suite look for it."""
START_ATTEMPTS = 3
CONDA_ENV = "/opt/miniconda3/envs/testbed"
SHELL_ARGV = ["setsid", "-w", "bash", "--noprofile", "--norc", "-c", "exec bash --norc 2>&1"]
"""A session leader (what timeouts kill), stderr merged into stdout in order."""

_live = threading.BoundedSemaphore(int(os.environ.get("SWERL_MAX_CONTAINERS", "32")))


def engine_reachable() -> bool:
    """Whether a Docker engine answers (DOCKER_HOST or the default socket)."""
    try:
        docker.from_env(timeout=5).ping()
    except Exception:  # any failure to connect means: not reachable
        return False
    return True


class DockerStream:
    """The attached socket of one `docker exec` (stdin in, docker's multiplexed frames out)."""

    def __init__(self, client: docker.DockerClient, container_id: str, argv: list[str]):
        exec_id = client.api.exec_create(
            container_id, argv, stdin=True, stdout=True, stderr=True, tty=False
        )["Id"]
        response = client.api.exec_start(exec_id, socket=True)
        # unix and tcp engines hand back a SocketIO wrapper; TLS and ssh the socket itself
        self._sock = response._sock if isinstance(response, socket.SocketIO) else response
        self._response = response  # keeps the HTTP connection alive
        self._frames = bytearray()
        self._eof = False

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError:
            raise ShellExited("") from None

    def receive(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            payload = self._payload()
            if payload:
                return payload
            if self._eof:
                return b""
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._sock], [], [], left)
            if ready:
                try:
                    chunk = self._sock.recv(1 << 18)
                except OSError:
                    chunk = b""
                self._frames += chunk
                self._eof = not chunk

    def _payload(self) -> bytes:
        """Payloads of every complete frame in the buffer (header: stream, 0, 0, 0, size)."""
        out = bytearray()
        while len(self._frames) >= 8:
            size = int.from_bytes(self._frames[4:8], "big")
            if len(self._frames) < 8 + size:
                break
            out += self._frames[8 : 8 + size]
            del self._frames[: 8 + size]
        return bytes(out)

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            self._response.close()


class DockerHost:
    """A running container of the task's image."""

    workdir = WORKDIR

    def __init__(self, task: Task, config: SandboxConfig):
        """Connect to the engine, take a slot of the live-container cap (blocking while none is
        free) and start the container."""
        self.task = task
        try:
            self.client = docker.from_env()
            self.client.ping()
        except docker.errors.DockerException as e:
            raise SandboxError(f"task {task.instance_id}: no Docker engine reachable: {e}") from e
        self._slot = True
        _live.acquire()
        try:
            self.image = image_name(task, self.client)
            self.container = self._start(config)
        except BaseException:
            self._release()
            raise
        self.setup = "\n".join(
            [
                f"cd {WORKDIR}",
                "export PAGER=cat GIT_PAGER=cat TERM=dumb PYTHONDONTWRITEBYTECODE=1",
                f"if [ -d {CONDA_ENV} ]; then . /opt/miniconda3/bin/activate {CONDA_ENV}; fi",
            ]
        )

    def _start(self, config: SandboxConfig):
        try:  # never pull implicitly: images come from the user's registry or `swerl images`
            self.client.images.get(self.image)
        except docker.errors.ImageNotFound as e:
            raise SandboxError(self._missing_image(e)) from e
        memory = memory_bytes(config.memory)
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return self.client.containers.run(
                    self.image,
                    entrypoint=["sleep", "infinity"],
                    command=[],
                    detach=True,
                    init=True,
                    network_mode="none",
                    mem_limit=memory,
                    memswap_limit=memory,
                    pids_limit=config.pids,
                    nano_cpus=int(config.cpus * 1e9),
                    working_dir=WORKDIR,
                    labels={
                        LABEL: "sandbox",
                        f"{LABEL}.task": self.task.instance_id,
                        f"{LABEL}.owner": f"{socket.gethostname()}:{os.getpid()}",
                        f"{LABEL}.created": datetime.now(UTC).isoformat(timespec="seconds"),
                    },
                )
            except docker.errors.APIError as e:
                if attempt == START_ATTEMPTS:
                    raise SandboxError(
                        f"task {self.task.instance_id}: container of image {self.image} did not "
                        f"start after {START_ATTEMPTS} attempts: {e}"
                    ) from e
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def _missing_image(self, error: Exception) -> str:
        hint = (
            "build it with `swerl images build --tasks <tasks version>`"
            if self.task.repo_files is not None
            else "load or pull it into the engine (DOCKER_HOST selects which engine)"
        )
        return f"task {self.task.instance_id}: image {self.image} not found ({hint}): {error}"

    def spawn_shell(self) -> DockerStream:
        try:
            return DockerStream(self.client, self.container.id, SHELL_ARGV)
        except docker.errors.APIError as e:
            self.check()  # says why when the container has stopped
            raise SandboxError(f"task {self.task.instance_id}: cannot start a shell: {e}") from e

    def read_bytes(self, path: str) -> bytes:
        try:
            chunks, _ = self.container.get_archive(path)
        except docker.errors.NotFound:
            raise FileNotFoundError(f"{path} (in the sandbox of {self.task.instance_id})") from None
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise IsADirectoryError(f"{path} is not a regular file")
            return tar.extractfile(member).read()  # type: ignore[union-attr]

    def write_bytes(self, path: str, data: bytes) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(path.lstrip("/"))  # extracted at /, parents created
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        self.container.put_archive("/", buffer.getvalue())

    def check(self) -> None:
        try:
            self.container.reload()
        except docker.errors.DockerException as e:
            raise SandboxError(f"task {self.task.instance_id}: container gone: {e}") from e
        state = self.container.attrs["State"]
        if state["Status"] != "running":
            raise SandboxError(
                f"task {self.task.instance_id}: container {self.container.short_id} is "
                f"{state['Status']} (exit code {state.get('ExitCode')}, "
                f"OOM-killed: {state.get('OOMKilled')})"
            )

    def close(self) -> None:
        try:
            with contextlib.suppress(docker.errors.NotFound):
                self.container.remove(force=True)
        finally:
            self._release()

    def _release(self) -> None:
        if self._slot:
            self._slot = False
            _live.release()
            self.client.close()


def image_name(task: Task, client: docker.DockerClient) -> str:
    """The task's image: `docker_image` or `image_name` when the row names one; for
    self-contained tasks the image `swerl images build` made; else SWE-bench's naming scheme."""
    if task.docker_image:
        return task.docker_image
    if task.image_name:
        return task.image_name
    if task.repo_files is not None:
        return task_image(task, client)
    return f"swebench/sweb.eval.x86_64.{task.instance_id.replace('__', '_1776_')}:latest".lower()


def open_docker(task: Task, config: SandboxConfig) -> Sandbox:
    """A sandbox in a new container (blocks while `SWERL_MAX_CONTAINERS` are live), its
    repository stripped to `base_commit`."""
    sandbox = Sandbox(task, DockerHost(task, config), config)  # closes the host if it fails
    try:
        _strip_history(sandbox)
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def _strip_history(sandbox: Sandbox) -> None:
    result = sandbox.run(strip_history_script(WORKDIR, sandbox.task.base_commit), timeout=600)
    if result.exit_code != 0:
        raise SandboxError(
            f"task {sandbox.task.instance_id}: could not reset the repository to base_commit "
            f"{sandbox.task.base_commit}: {result.output.strip()[-500:]}"
        )


def reap(older_than_s: float | None = None, everything: bool = False) -> list[str]:
    """Remove orphaned sandbox containers and return their names: those whose owner process (on
    this machine) is gone, those older than `older_than_s` whoever owns them, or, with
    `everything`, every `swerl=sandbox` container on the engine."""
    client = docker.from_env()
    removed = []
    now = datetime.now(UTC)
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=sandbox"}):
        labels = container.labels
        if everything or _orphaned(labels.get(f"{LABEL}.owner", "")):
            pass
        elif older_than_s is None:
            continue
        else:
            created = datetime.fromisoformat(labels.get(f"{LABEL}.created", now.isoformat()))
            if (now - created).total_seconds() < older_than_s:
                continue
        container.remove(force=True)
        removed.append(container.name)
    client.close()
    return removed


def _orphaned(owner: str) -> bool:
    """Whether `host:pid` names a process of this machine that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
