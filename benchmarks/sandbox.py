"""Sandbox benchmark: start-up, command round trip, and many sandboxes at once, per backend.

    .venv/bin/python benchmarks/sandbox.py                   # both backends (docker needs an engine
                                                             # and swerl-base:bookworm)
    .venv/bin/python benchmarks/sandbox.py --backends local --sandboxes 4

For each backend, on a small self-contained task:
- start: `open_sandbox` until the first command (`true`) has answered (median of `--starts`);
- round trip of `true` in the persistent session (median of `--round-trips`), against the
  one-process-per-command baseline: docker-py `container.exec_run("true")` in the same container
  for docker, `subprocess.run(["bash", "-c", "true"])` for local. Goal: ratio <= 1.0;
- `--sandboxes` sandboxes each running `--commands` commands concurrently (threads, like
  rollouts): errors (exceptions or a wrong answer) and the total time. Goal: 0 errors.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from swerl.sandbox import open_sandbox
from swerl.sandbox.images import LOCAL_BASE_IMAGE, build_images
from swerl.swe.repo import commit_files
from swerl.swe.task import Task

FILES = {
    "calc/__init__.py": "",
    "calc/ops.py": "def add(a, b):\n    return a + b\n",
    "tests/test_ops.py": "from calc.ops import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}


def make_task() -> Task:
    with tempfile.TemporaryDirectory() as tmp:
        base = commit_files(FILES, Path(tmp) / "repo")
    return Task("bench__calc-1", "swerl/calc", base, "benchmark", repo_files=FILES)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_start(task: Task, backend: str, n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        with open_sandbox(task, backend) as sb:
            sb.run("true")
            samples.append(time.perf_counter() - started)
    return median_ms(samples)


def time_round_trips(task: Task, backend: str, n: int) -> tuple[float, float]:
    """(session `true`, one-process-per-command baseline), medians in ms."""
    session, baseline = [], []
    with open_sandbox(task, backend) as sb:
        for _ in range(n):
            started = time.perf_counter()
            sb.run("true")
            session.append(time.perf_counter() - started)
        for _ in range(max(n // 4, 10)):
            started = time.perf_counter()
            if backend == "docker":
                sb.host.container.exec_run("true")
            else:
                subprocess.run(["bash", "-c", "true"], check=True)
            baseline.append(time.perf_counter() - started)
    return median_ms(session), median_ms(baseline)


def one_episode(task: Task, backend: str, commands: int) -> int:
    """Open, run `commands` commands that check the session's state, close; the error count."""
    errors = 0
    with open_sandbox(task, backend, timeout=60) as sb:
        for i in range(commands):
            if i % 4 == 0:
                expected, result = f"{i}\n", sb.run(f"export N={i}; cd calc; echo $N")
            elif i % 4 == 1:
                expected, result = "ops.py\n", sb.run("ls ops.py && cd ..")
            elif i % 4 == 2:
                expected, result = (
                    "5\n",
                    sb.run("python3 -c 'from calc.ops import add; print(add(2, 3))'"),
                )
            else:
                expected, result = "", sb.run("git status --porcelain")
            errors += result.output != expected or result.exit_code != 0
    return errors


def time_concurrent(task: Task, backend: str, sandboxes: int, commands: int) -> tuple[int, float]:
    started = time.perf_counter()
    errors = 0
    with ThreadPoolExecutor(sandboxes) as pool:
        futures = [pool.submit(one_episode, task, backend, commands) for _ in range(sandboxes)]
        for future in futures:
            try:
                errors += future.result()
            except Exception as e:  # a sandbox that failed outright counts every command
                print(f"  {backend}: {type(e).__name__}: {e}")
                errors += commands
    return errors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["docker", "local"])
    parser.add_argument("--base-image", default=LOCAL_BASE_IMAGE)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--sandboxes", type=int, default=16)
    parser.add_argument("--commands", type=int, default=20)
    args = parser.parse_args()

    task = make_task()
    if "docker" in args.backends:
        build_images([task], args.base_image)
    rows = []
    for backend in args.backends:
        start = time_start(task, backend, args.starts)
        session, baseline = time_round_trips(task, backend, args.round_trips)
        errors, total = time_concurrent(task, backend, args.sandboxes, args.commands)
        rows.append((backend, start, session, baseline, errors, total))

    base_name = {"docker": "exec_run", "local": "bash -c"}
    print(
        f"{'backend':8} {'start->1st cmd':>15} {'true (session)':>15} {'true (baseline)':>22} "
        f"{'ratio':>6} {f'{args.sandboxes}x{args.commands} errors':>15} {'total':>8}"
    )
    for backend, start, session, baseline, errors, total in rows:
        print(
            f"{backend:8} {start:12.1f} ms {session:12.2f} ms "
            f"{baseline:10.2f} ms ({base_name[backend]:>8}) {session / baseline:6.3f} "
            f"{errors:15d} {total:6.2f} s"
        )


if __name__ == "__main__":
    main()
