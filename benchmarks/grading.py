"""Grading benchmark: time to grade a toy-SWE task, and validation throughput, per backend.

    .venv/bin/python benchmarks/grading.py                      # both backends when docker answers
    .venv/bin/python benchmarks/grading.py --backends local --validate-tasks 64

On the toy-SWE suite (`--seed`, `--train`, `--eval`; the default suite is 48 + 16 tasks):
- grading: `grade_patch(task, gold patch)` one task at a time, each in a fresh sandbox (start,
  apply, reset the test files, test patch, pytest, grade, close): mean / median / p95 / max
  seconds per task, and how many were resolved (all of them, or grading is broken);
- validation: `validation_runs` on `--validate-tasks` tasks spread over the suite, `--runs` runs
  of each kind (gold patch, no patch) at `--concurrency` runs in flight (the defaults are
  `ValidationConfig`'s): tasks per minute, runs per minute, and how many tasks the execution rules
  keep (all of them on the toy suite).
Docker task images are built (or reused) first; that time is printed and not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from swerl.grading import grade_patch
from swerl.sandbox import resolve_backend
from swerl.sandbox.images import LOCAL_BASE_IMAGE, build_images
from swerl.swe.task import Task
from swerl.swe.toy import build_toy_suite
from swerl.swe.validate import ValidationConfig, execution_reasons, validation_runs


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def time_grading(tasks: list[Task], backend: str) -> tuple[list[float], int]:
    """Seconds per task for the gold patch, and how many were resolved."""
    seconds, resolved = [], 0
    for task in tasks:
        started = time.perf_counter()
        grade = grade_patch(task, task.patch, backend=backend, timeout=300)
        seconds.append(time.perf_counter() - started)
        resolved += grade.resolved
        if not grade.resolved:
            print(f"  {backend}: {task.instance_id} not resolved: {grade.outcome} {grade.detail}")
    return seconds, resolved


def time_validation(tasks: list[Task], config: ValidationConfig) -> tuple[float, int, int]:
    """(wall seconds, tasks kept, tasks flaky) of validating `tasks`."""
    started = time.perf_counter()
    runs = validation_runs(tasks, config)
    wall = time.perf_counter() - started
    kept = flaky = 0
    for task in tasks:
        reasons = execution_reasons(task, [r for r in runs if r["instance_id"] == task.instance_id])
        kept += not reasons
        flaky += any(r.startswith("flaky") for r in reasons)
        if reasons:
            print(f"  {config.backend}: {task.instance_id} dropped: {reasons}")
    return wall, kept, flaky


def main() -> None:
    defaults = ValidationConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--backends", nargs="+", default=None, help="default: docker if it answers, and local"
    )
    parser.add_argument("--base-image", default=LOCAL_BASE_IMAGE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--eval", type=int, default=16)
    parser.add_argument("--validate-tasks", type=int, default=16)
    parser.add_argument("--runs", type=int, default=defaults.runs)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    args = parser.parse_args()
    backends = args.backends or sorted({resolve_backend("auto"), "local"})

    started = time.perf_counter()
    tasks = [Task.from_row(row) for row in build_toy_suite(args.seed, args.train, args.eval)]
    print(
        f"toy-SWE suite: seed {args.seed}, {args.train} train + {args.eval} eval tasks, "
        f"built in {time.perf_counter() - started:.1f} s"
    )
    if "docker" in backends:
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda t: build_images([t], args.base_image), tasks))
        print(f"docker task images ({args.base_image}): {time.perf_counter() - started:.1f} s")
    step = max(1, len(tasks) // max(1, args.validate_tasks))
    sample = tasks[::step][: args.validate_tasks]

    grading, validation = [], []
    for backend in backends:
        seconds, resolved = time_grading(tasks, backend)
        grading.append((backend, seconds, resolved))
        config = ValidationConfig(
            runs=args.runs, backend=backend, timeout=300, concurrency=args.concurrency
        )
        validation.append((backend, *time_validation(sample, config)))

    print(f"\ngrading time per task, gold patch, one task at a time ({len(tasks)} tasks), seconds")
    print(f"{'backend':8} {'mean':>6} {'median':>7} {'p95':>6} {'max':>6} {'resolved':>9}")
    for backend, seconds, resolved in grading:
        print(
            f"{backend:8} {statistics.mean(seconds):6.2f} {statistics.median(seconds):7.2f} "
            f"{p95(seconds):6.2f} {max(seconds):6.2f} {resolved:5d}/{len(seconds)}"
        )
    n_runs = len(sample) * 2 * args.runs
    print(
        f"\nvalidation: {len(sample)} tasks x {args.runs} runs x (gold, no patch) = {n_runs} "
        f"runs, {args.concurrency} in flight"
    )
    print(f"{'backend':8} {'wall':>8} {'tasks/min':>10} {'runs/min':>9} {'kept':>7} {'flaky':>6}")
    for backend, wall, kept, flaky in validation:
        print(
            f"{backend:8} {wall:6.1f} s {len(sample) / wall * 60:10.1f} {n_runs / wall * 60:9.1f} "
            f"{kept:3d}/{len(sample):<3d} {flaky:6d}"
        )


if __name__ == "__main__":
    main()
