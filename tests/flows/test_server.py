"""The deployments against a real Prefect server: `prefect server start` on a loopback port, the
`swerl-dev` process work pool, `prefect deploy` from prefect.yaml, a process worker, and
`prefect deployment run ... --watch` of import-tasks and filter-tasks (dev-tiny), as a user runs
them. Checks the exit codes and the lake: the filter's `task_pool` version names the flow run and
the deployment in its manifest, a second run reuses that version, `force=true` makes a new one.

Runs from a snapshot of the working tree (tracked and untracked files, not data/), so that edits
made elsewhere while it runs cannot change the code version that re-use depends on; the pull step
then has to send the worker's flow runs to the snapshot, where `prefect deploy` ran. The server
has its own PREFECT_HOME (a shared sqlite database says "database is locked"). Sandboxes use the
local backend (no task images to build); the toy suite is cut to 2 train tasks to keep it short.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from swerl.lake import Lake

# In the default run: 86 s on the 2-core dev machine when it is quiet (446 s under load 12-15).

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
RUN_TIMEOUT = 600


def snapshot(dest: Path) -> Path:
    """The repository's tracked and untracked (not ignored) files, copied to `dest`."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        source = ROOT / name
        if name.startswith("data/") or not source.is_file():  # data/: the lake; deleted files
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest / name)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it after 15 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


class Prefect:
    """The `prefect` CLI against one isolated server, run in the snapshot."""

    def __init__(self, repo: Path, home: Path, lake: Path, logs: Path):
        self.repo, self.logs = repo, logs
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update(
            PREFECT_HOME=str(home),
            PREFECT_API_URL=self.api,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_WORKER_QUERY_SECONDS="1",  # pick a scheduled run up within a second
            SWERL_DATA=str(lake),
        )
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, *args: str, cwd: Path) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - the process writes it
        process = subprocess.Popen(
            [PREFECT, *args],
            cwd=cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends its children too
        )
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def wait_healthy(self, server: subprocess.Popen, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"prefect server exited ({server.returncode}):\n{self.log('server')}")
            try:
                with urllib.request.urlopen(f"{self.api}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        pytest.fail(f"prefect server not healthy after {timeout} s:\n{self.log('server')}")

    def __call__(self, *args: str) -> str:
        """Run a CLI command to its end; fail with its output (and the worker's) on an error."""
        p = subprocess.run(
            [PREFECT, *args],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        if p.returncode != 0:
            worker = self.log("worker") if (self.logs / "worker.log").exists() else ""
            pytest.fail(
                f"`prefect {' '.join(args)}` exited {p.returncode}:\n{p.stdout}\n{p.stderr}\n"
                f"worker log:\n{worker[-6000:]}"
            )
        return p.stdout + p.stderr

    def run_deployment(self, name: str, *params: str) -> str:
        """`prefect deployment run NAME --param ... --watch`; returns the flow run's id."""
        args = [a for p in params for a in ("--param", p)]
        out = self("deployment", "run", name, *args, "--watch", "--watch-timeout", str(RUN_TIMEOUT))
        assert "Flow run finished successfully in 'Completed'" in out, out
        return re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)


@pytest.fixture
def prefect(tmp_path):
    cli = Prefect(snapshot(tmp_path / "repo"), tmp_path / "prefect", tmp_path / "lake", tmp_path)
    try:
        yield cli
    finally:
        for process in reversed(cli.processes):
            stop(process)


def pools(lake: Lake) -> dict[str, dict]:
    return {v.version: v.manifest for v in lake.versions("task_pool")}


def test_deployments_run_on_a_server_and_rerun_reuses_or_forces(prefect, tmp_path):
    server = prefect.start(
        "server",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(prefect.port),
        cwd=tmp_path,
    )
    prefect.wait_healthy(server)
    prefect("work-pool", "create", "swerl-dev", "--type", "process")
    out = prefect(
        "--no-prompt",
        "deploy",
        "--name",
        "import-tasks/dev-tiny",
        "--name",
        "filter-tasks/dev-tiny",
    )
    for name in ("import-tasks/dev-tiny", "filter-tasks/dev-tiny"):
        assert f"Deployment '{name}' successfully created" in out, out
    deployment = json.loads(prefect("deployment", "inspect", "filter-tasks/dev-tiny", "-o", "json"))
    assert deployment["parameters"] == {"config": "dev-tiny"}
    assert deployment["work_pool_name"] == "swerl-dev"
    (step,) = deployment["pull_steps"]  # the directory `prefect deploy` ran in
    assert step == {
        "prefect.deployments.steps.set_working_directory": {"directory": str(prefect.repo)}
    }
    # the worker starts outside the repository: only the pull step can send runs there
    prefect.start("worker", "worker", "start", "--pool", "swerl-dev", "--limit", "1", cwd=tmp_path)

    lake = Lake(tmp_path / "lake")
    prefect.run_deployment("import-tasks/dev-tiny", "toy_train=2", "toy_eval=1")
    train = lake.resolve("tasks", "toy-swe-dev-train")
    assert train.rows == 2

    first = prefect.run_deployment("filter-tasks/dev-tiny", "backend=local")
    ((version, manifest),) = pools(lake).items()
    info = manifest["info"]
    assert info["flow_run_id"] == first
    assert info["flow_name"] == "filter-tasks" and info["deployment"] == "dev-tiny"
    assert manifest["inputs"] == {"tasks": train.version}
    assert manifest["parameters"]["validation"]["runs"] == 2  # from configs/dev-tiny.yaml

    again = prefect.run_deployment("filter-tasks/dev-tiny", "backend=local")
    assert again != first
    assert list(pools(lake)) == [version], "the same inputs, parameters and code made a new version"

    forced = prefect.run_deployment("filter-tasks/dev-tiny", "backend=local", "force=true")
    after = pools(lake)
    new = [v for v in after if v != version]
    assert len(after) == 2 and len(new) == 1, "force=true did not make exactly one new version"
    assert after[new[0]]["info"]["flow_run_id"] == forced
    assert after[version]["info"]["flow_run_id"] == first  # the published version is unchanged
