"""Rollout benchmark: episodes per minute with a tiny random-weight model, at 1 and at N concurrent
episodes, and the share of episode wall time spent outside generation and sandbox calls.

    .venv/bin/python benchmarks/rollout.py                       # local sandboxes, 1 and 8 at once
    .venv/bin/python benchmarks/rollout.py --backend docker --episodes 16

What runs: toy-SWE tasks (built in memory), a tiny Qwen2-architecture model with random weights
(`swerl.models.tiny`, default sizes), the `hf` generator behind a `BatchingGenerator`, and
`run_rollouts` exactly as the rollout stage calls it (grading included). Random weights mean
format errors every turn, so every episode runs its `--max-turns` turns of `--turn-tokens`
sampled tokens: a fixed amount of work per episode.

Printed per concurrency: episodes per minute; the mean generation batch size; and, summed over
episodes, the share of wall time in generation calls (waiting for a batch included), in sandbox
calls (start, tools, diff, close, grading), and outside both (tokenizing observations, the
fidelity check, building rows, thread hand-offs). Goals: speed-up >= 3x at 8 episodes, outside
share < 5%.

Re-measured 2026-11-25 (load ~1.6) after HFGenerator's one-torch-thread default, which made a
single episode ~25x faster: 130.3 and 179.7 episodes per minute at 1 and 8, a speed-up of only
1.38x (goal NOT met), outside share 2.3%. The figures below predate that fix.

Measured on the shared 2-core development machine, 2026-11-24, `.venv/bin/python
benchmarks/rollout.py` (local sandboxes, 16 episodes of 4 turns of at most 32 tokens, 8 toy-SWE
tasks). With a load average of about 5 from other jobs:

    concurrent  episodes  wall_s  episodes/min  mean_batch  gen%  sandbox%  outside%
             1        16   180.1           5.3        1.00   96%        3%      0.2%
             8        16    35.0          27.4        6.40   96%        4%      0.2%
    speed-up 8 vs 1: 5.14x (goal >= 3x)
    largest share outside generation and sandbox calls: 0.2% (goal < 5%)

With a load average of about 13, the same run gave 2.1 and 8.1 episodes per minute (3.81x), 0.1%
outside. Generation dominates: the tiny model on 2 shared cores re-reads the whole prompt every
turn (the hf generator has no prefix cache).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from transformers import AutoTokenizer

from swerl.agent.chat import ChatFormat
from swerl.agent.episode import EpisodeConfig
from swerl.agent.rollout import RolloutConfig, run_rollouts
from swerl.inference.batching import BatchingGenerator
from swerl.inference.hf import HFGenerator
from swerl.models.tiny import build_tiny_model
from swerl.swe.task import Task
from swerl.swe.toy import build_toy_suite


def measure(tasks, model_dir: Path, chat: ChatFormat, args, concurrency: int) -> dict[str, float]:
    config = RolloutConfig(
        samples=max(1, args.episodes // len(tasks)),
        backend=args.backend,
        max_live_sandboxes=concurrency,
        turn_penalty_threshold=1,
        episode=EpisodeConfig(max_turns=args.max_turns, max_turn_tokens=args.turn_tokens),
    )
    batching = BatchingGenerator(HFGenerator(model_dir, seed=0), max_batch=concurrency)
    started = time.perf_counter()
    try:
        episodes = run_rollouts(tasks, batching, chat, config, policy_version="tiny")
    finally:
        batching.close()
    wall = time.perf_counter() - started
    total = sum(e.timings["episode_s"] for e in episodes)
    generation = sum(e.timings["generation_s"] for e in episodes)
    sandbox = sum(e.timings["sandbox_s"] for e in episodes)
    assert all(e.trajectory["fidelity_mismatches"] == 0 for e in episodes)
    return {
        "episodes": len(episodes),
        "wall_s": wall,
        "per_minute": len(episodes) / wall * 60,
        "batch": sum(batching.batch_sizes) / len(batching.batch_sizes),
        "generation": generation / total,
        "sandbox": sandbox / total,
        "outside": (total - generation - sandbox) / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="local", choices=["local", "docker"])
    parser.add_argument("--episodes", type=int, default=16, help="episodes per measurement")
    parser.add_argument("--tasks", type=int, default=8, help="toy-SWE tasks (episodes spread)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--turn-tokens", type=int, default=32, help="max tokens per reply")
    args = parser.parse_args()

    tasks = [Task.from_row(r) for r in build_toy_suite(seed=0, n_train=args.tasks, n_eval=0)]
    if args.backend == "docker":
        from swerl.sandbox.images import LOCAL_BASE_IMAGE, build_images

        build_images(tasks, LOCAL_BASE_IMAGE)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        chat = ChatFormat(AutoTokenizer.from_pretrained(model_dir))
        measure(tasks[:1], model_dir, chat, argparse.Namespace(**{**vars(args), "episodes": 1}), 1)
        print(
            f"backend={args.backend} tasks={len(tasks)} max_turns={args.max_turns} "
            f"turn_tokens={args.turn_tokens}"
        )
        print("concurrent  episodes  wall_s  episodes/min  mean_batch  gen%  sandbox%  outside%")
        results = {}
        for c in args.concurrency:
            r = results[c] = measure(tasks, model_dir, chat, args, c)
            print(
                f"{c:>10}  {r['episodes']:>8}  {r['wall_s']:>6.1f}  {r['per_minute']:>12.1f}  "
                f"{r['batch']:>10.2f}  {r['generation']:>4.0%}  {r['sandbox']:>8.0%}  "
                f"{r['outside']:>8.1%}"
            )
    low, high = min(args.concurrency), max(args.concurrency)
    speedup = results[high]["per_minute"] / results[low]["per_minute"]
    worst = max(r["outside"] for r in results.values())
    print(f"speed-up {high} vs {low}: {speedup:.2f}x (goal >= 3x)")
    print(f"largest share outside generation and sandbox calls: {worst:.1%} (goal < 5%)")


if __name__ == "__main__":
    main()
