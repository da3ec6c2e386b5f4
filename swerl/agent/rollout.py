"""Rollouts: G episodes per task with one policy, graded, as `trajectories` and `turns` rows.

    swerl rollout --tasks toy-swe --model models/tiny --samples 4 --backend local

Many episodes run at once (threads: sandbox calls block on I/O while the generator batches the
turns of all live episodes), with a cap on live sandboxes. Each finished episode is graded in a
fresh sandbox (`swerl.grading.grade_patch`); unsubmitted episodes are graded on their diff unless
`grade_unsubmitted=False` (PAPER.md section 9). The reward is PAPER.md section 4's: resolved plus
the turn penalty.

Generators (`generator=`): `hf`, `vllm` and `vllm-server` sample from the policy; `openai-chat`
asks a chat-completions endpoint for text (evaluation of API models: no token ids, nothing to
train on); `replay` plays the assistant messages of recorded `trajectories` versions again
(`replay=[...]`, see `Replays`): re-grade recorded episodes in a new image, check their token
fidelity with another tokenizer or template, or give the DAPO loop a known signal in tests.

Reproducible sampling: every turn of episode (task, sample) of a stage seeded S samples with its
own seed (`episode_seed(S, instance_id, sample)`, then `swerl.agent.episode.turn_seed`; vLLM's
per-request `seed`), so the same stage run again - resumed after a crash, split into shards, on
a busier machine - samples the same tokens, to float rounding (a batch's shape can move a logit
in its last bits; vLLM's kernels are not batch-invariant either). What makes a local-backend
episode differ between runs is then the sandbox's random root, when a prompt names it (the
default instance prompt does; `prompts_dir="tiny"` does not) or when paths are shown absolute
(`relative_paths`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swerl.agent.chat import ChatFormat, Transcript
from swerl.agent.episode import (
    EpisodeConfig,
    TextTranscript,
    derive_seed,
    run_episode,
    run_text_episode,
    score_episode,
)
from swerl.agent.store import EpisodeStore
from swerl.inference.base import Generator
from swerl.inference.batching import BatchingGenerator
from swerl.inference.openai_chat import API_KEY_ENV, LogprobsRequired, OpenAIChatGenerator
from swerl.inference.replay import ReplayGenerator
from swerl.lake import Lake
from swerl.sandbox import SandboxError, open_sandbox
from swerl.swe.task import Task, load_tasks

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "configs" / "prompts"
STORED_OBSERVATION_CHARS = 4_000  # `turns.observation` keeps this much; trajectories keep all


@dataclass(frozen=True)
class Prompts:
    """The scaffold's prompts, read from files (configs/prompts by default)."""

    system: str
    instance: str
    demonstration: str | None = None

    @classmethod
    def load(cls, directory: str | Path = PROMPTS_DIR, demonstration: bool = False) -> Prompts:
        d = Path(directory)
        missing = [n for n in ("system.md", "instance.md") if not (d / n).is_file()]
        if missing:
            raise FileNotFoundError(f"prompt directory {d} lacks {', '.join(missing)}")
        demo = (d / "demonstration.md").read_text() if demonstration else None
        return cls((d / "system.md").read_text(), (d / "instance.md").read_text(), demo)

    def render(
        self, task: Task, config: EpisodeConfig, repo_dir: str = "/testbed"
    ) -> tuple[str, str]:
        system = self.system.replace("{window}", str(config.tools.window)).replace(
            "{timeout}", f"{config.tools.command_timeout:g}"
        )
        if self.demonstration:
            system = system.rstrip() + "\n\n" + self.demonstration
        issue = self.instance.replace("{repo_dir}", repo_dir).replace(
            "{problem_statement}", task.problem_statement
        )
        return system, issue


@dataclass(frozen=True)
class RolloutConfig:
    """How a batch of rollouts runs."""

    samples: int = 10
    """Episodes per task (G, a group)."""
    stage: str = "dapo"
    """rft, dapo or eval: recorded on every row."""
    iteration: int = 0
    """DAPO iteration, recorded on every row."""
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    """Turn and context limits, sampling, tools."""
    backend: str = "docker"
    """Sandbox backend for episodes and grading: docker or local."""
    max_live_sandboxes: int = 8
    """Episodes in flight at once (each holds one sandbox)."""
    grade_unsubmitted: bool = True
    """Grade episodes that hit a limit on their diff (else they score 0)."""
    turn_penalty_threshold: int = 10
    """L_thr of the turn penalty."""
    demonstration: bool = False
    """Put the one-shot demonstration into the system prompt (RFT collection)."""
    grading_timeout: float = 1800.0
    """Seconds the test run of grading may take."""
    prompts_dir: str | None = None
    """Directory of the prompt files (system.md, instance.md, demonstration.md); None:
    configs/prompts. A relative path names a directory under configs/prompts (`tiny`: short
    prompts for tiny models), not one under the working directory; give an absolute path for
    prompts elsewhere. Recorded as given; the prompts' text (a hash of it) is part of the
    stage's fingerprint, so an edited prompt file is a new run."""

    def prompts_path(self) -> Path:
        """The directory `prompts_dir` names (see there)."""
        if self.prompts_dir is None:
            return PROMPTS_DIR
        return PROMPTS_DIR / self.prompts_dir  # an absolute prompts_dir replaces PROMPTS_DIR

    def prompts(self) -> Prompts:
        """The prompts this config names."""
        return Prompts.load(self.prompts_path(), demonstration=self.demonstration)

    def __post_init__(self) -> None:
        wanted = ["system.md", "instance.md"] + (["demonstration.md"] if self.demonstration else [])
        missing = [n for n in wanted if not (self.prompts_path() / n).is_file()]
        if missing:
            raise ValueError(
                f"prompts_dir {self.prompts_dir!r}: {self.prompts_path()} lacks "
                + ", ".join(missing)
                + " (a relative prompts_dir is a folder under configs/prompts)"
            )
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.stage not in ("rft", "dapo", "eval"):
            raise ValueError(f"stage must be rft, dapo or eval, got {self.stage!r}")
        if self.backend not in ("docker", "local"):
            raise ValueError(f"backend must be docker or local, got {self.backend!r}")
        if self.max_live_sandboxes < 1:
            raise ValueError("max_live_sandboxes must be >= 1")
        if self.episode.max_turns <= self.turn_penalty_threshold:
            raise ValueError(
                f"max_turns ({self.episode.max_turns}) must exceed the turn penalty threshold "
                f"({self.turn_penalty_threshold})"
            )


@dataclass
class EpisodeRows:
    """One finished episode as its `trajectories` row and `turns` rows."""

    key: tuple[str, int]
    trajectory: dict[str, Any]
    turns: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)
    """Where the episode's wall time went (`episode_s`, `generation_s`, `sandbox_s`: start,
    tools, diff, close and grading); for benchmarks, not stored in the lake."""


class Replays:
    """The `replay` generator of a rollout: recorded episodes played again, one
    `ReplayGenerator` per episode. Episode (task t, sample s) replays the assistant messages of
    recording number s mod n_t of t, where t's n_t recordings are ordered as `load_recordings`
    returns them. The messages are tokenized by `chat` (the policy's tokenizer and template)."""

    name = ReplayGenerator.name
    has_logprobs = False

    def __init__(self, recordings: dict[str, list[list[str]]], chat: ChatFormat):
        self.recordings = recordings
        self.chat = chat

    def for_episode(self, instance_id: str, sample: int) -> ReplayGenerator:
        scripts = self.recordings.get(instance_id)
        if not scripts:
            raise ValueError(f"replay: no recorded trajectory of {instance_id}")
        script = scripts[sample % len(scripts)]
        return ReplayGenerator(script, self.chat.encode, self.chat.end_of_turn_id)


def load_recordings(
    lake: Lake, versions: Sequence[str], instance_ids: Sequence[str]
) -> dict[str, list[list[str]]]:
    """The assistant messages of every recorded trajectory of `instance_ids` in the `trajectories`
    `versions`: per task, a list of scripts ordered by version (in the given order), then sample,
    then trajectory id. Rows without an assistant message (a sandbox that never started) are not
    recordings. A task without any recording is an error naming it and the versions, raised
    before any episode runs."""
    wanted = set(instance_ids)
    found: dict[str, list[tuple[int, int, str, list[str]]]] = {}
    for rank, version in enumerate(versions):
        table = lake.read(
            "trajectories", version, columns=["instance_id", "sample", "trajectory_id", "messages"]
        )
        for row in table.to_pylist():
            if row["instance_id"] not in wanted:
                continue
            script = [m["content"] for m in row["messages"] or [] if m["role"] == "assistant"]
            if script:
                key = (rank, row["sample"] or 0, row["trajectory_id"], script)
                found.setdefault(row["instance_id"], []).append(key)
    missing = [i for i in instance_ids if i not in found]
    if missing:
        raise ValueError(
            f"replay: {len(missing)} of {len(instance_ids)} tasks have no recorded trajectory "
            f"with an assistant message in trajectories {', '.join(versions)}: "
            + ", ".join(missing[:10])
        )
    return {i: [r[3] for r in sorted(found[i], key=lambda r: r[:3])] for i in instance_ids}


def run_batched(
    tasks: Iterable[Task],
    generator: Generator,
    chat: ChatFormat,
    config: RolloutConfig,
    *,
    max_batch: int,
    **kwargs: Any,
) -> list[EpisodeRows]:
    """`run_rollouts` with the concurrent episodes' requests batched into `generator` calls of
    up to `max_batch` (a `BatchingGenerator`, closed when done). `kwargs`: run_rollouts'."""
    batching = BatchingGenerator(generator, max_batch=max_batch)
    try:
        return run_rollouts(tasks, batching, chat, config, **kwargs)
    finally:
        batching.close()


def run_rollouts(
    tasks: Iterable[Task],
    generator: BatchingGenerator | Replays | OpenAIChatGenerator,
    chat: ChatFormat | None,
    config: RolloutConfig,
    *,
    policy_version: str,
    prompts: Prompts | None = None,
    skip: set[tuple[str, int]] | None = None,
    on_episode: Callable[[EpisodeRows], None] | None = None,
    seed: int | None = None,
) -> list[EpisodeRows]:
    """Run `config.samples` episodes of every task; `skip` holds (instance_id, sample) pairs that
    are already done (resume). `on_episode` sees each episode as soon as it is graded (to save it
    and to show progress); the return value holds them all, in task and sample order. With
    `Replays`, each episode plays its own recording instead of sampling; an
    `OpenAIChatGenerator` plays the text path (`chat` may then be None).

    `seed`: every turn of episode (task, sample) samples with its own seed, derived from
    `episode_seed(seed, instance_id, sample)`, so what an episode samples does not depend on
    which episodes share its batches, on thread timing, on a resume or on sharding (to float
    rounding: a batch's shape can move a logit in its last bits). None: the generator's own
    stream (draws in arrival order). Token path only; the text path sends no seed."""
    prompts = prompts or config.prompts()
    jobs = [
        (task, s)
        for task in tasks
        for s in range(config.samples)
        if (task.instance_id, s) not in (skip or set())
    ]
    results: list[EpisodeRows] = []
    pool = ThreadPoolExecutor(config.max_live_sandboxes, thread_name_prefix="episode")
    try:
        futures = [
            pool.submit(
                one_episode,
                task,
                s,
                generator.for_episode(task.instance_id, s)
                if isinstance(generator, Replays)
                else generator,
                chat,
                config,
                policy_version,
                prompts,
                None if seed is None else episode_seed(seed, task.instance_id, s),
            )
            for task, s in jobs
        ]
        for future in as_completed(futures):
            rows = future.result()
            results.append(rows)
            if on_episode is not None:
                on_episode(rows)
    finally:  # on an error (or Ctrl-C) start no new episode; the running ones finish
        pool.shutdown(wait=True, cancel_futures=True)
    order = {(t.instance_id, s): i for i, (t, s) in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r.key])


def one_episode(
    task: Task,
    sample: int,
    generator: BatchingGenerator | ReplayGenerator | OpenAIChatGenerator,
    chat: ChatFormat | None,
    config: RolloutConfig,
    policy_version: str,
    prompts: Prompts,
    seed: int | None = None,
) -> EpisodeRows:
    """One episode of `task` (sample number `sample`), graded and scored, as its rows; a sandbox
    that cannot start is a recorded outcome. Also used to play scripted demonstrations
    (`swerl.train.demos`) exactly as a policy's episode runs. An `OpenAIChatGenerator` plays the
    text path (`run_text_episode`; `chat` unused, may be None): the row's token columns are null
    and its token counts are the endpoint's."""
    started = time.monotonic()
    trajectory_id = f"{config.stage}/{config.iteration}/{task.instance_id}/{sample}"
    try:
        sandbox = open_sandbox(task, backend=config.backend)
        start_s = time.monotonic() - started
        try:
            system, issue = prompts.render(task, config.episode, repo_dir=sandbox.workdir)
            if isinstance(generator, OpenAIChatGenerator):
                result = run_text_episode(generator.chat, sandbox, system, issue, config.episode)
            else:
                assert chat is not None, "a token generator needs the model's chat format"
                with generator.episode():
                    result = run_episode(
                        chat,
                        generator.complete,
                        sandbox,
                        system,
                        issue,
                        config.episode,
                        seed=seed,
                    )
        finally:
            t0 = time.monotonic()
            sandbox.close()
            close_s = time.monotonic() - t0
    except SandboxError as e:  # the sandbox could not start: a recorded outcome, not a crash
        trajectory = _failed_row(task, sample, config, policy_version, generator)
        trajectory.update(trajectory_id=trajectory_id, error=f"{type(e).__name__}: {e}")
        return EpisodeRows((task.instance_id, sample), trajectory, [])
    score = score_episode(
        task,
        result,
        backend=config.backend,
        max_turns=config.episode.max_turns,
        threshold=config.turn_penalty_threshold,
        grade_unsubmitted=config.grade_unsubmitted,
        timeout=config.grading_timeout,
    )
    t = result.transcript
    trajectory = {
        **_failed_row(task, sample, config, policy_version, generator),
        "trajectory_id": trajectory_id,
        **_token_columns(t, generator.has_logprobs),
        "messages": t.messages,
        "patch": result.patch,
        "submitted": result.submitted,
        "resolved": score.resolved,
        "grade_outcome": score.outcome,
        "tests_status": json.dumps(score.grade.tests_status) if score.grade else None,
        "reward": score.reward,
        "turn_penalty": score.turn_penalty,
        "turns": len(result.turns),
        "termination": result.termination,
        "format_errors": result.format_errors,
        "tool_errors": result.tool_errors,
        "generation_s": result.generation_s,
        "tool_s": result.tool_s,
        "grading_s": score.grading_s,
        "total_s": time.monotonic() - started,
        "error": result.error,
    }
    turn_rows = [
        {
            "trajectory_id": trajectory_id,
            "instance_id": task.instance_id,
            "turn": r.index,
            "command": r.command,
            "observation": r.observation[:STORED_OBSERVATION_CHARS],
            "format_error": r.format_error,
            "tool_error": r.tool_error,
            "timed_out": r.timed_out,
            "completion_tokens": r.completion_tokens,
            "observation_tokens": r.observation_tokens,
            "generation_s": r.generation_s,
            "tool_s": r.tool_s,
        }
        for r in result.turns
    ]
    timings = {
        "episode_s": time.monotonic() - started,
        "generation_s": result.generation_s,
        "sandbox_s": start_s + result.tool_s + close_s + score.grading_s,
    }
    return EpisodeRows((task.instance_id, sample), trajectory, turn_rows, timings)


def _token_columns(t: Transcript | TextTranscript, has_logprobs: bool) -> dict[str, Any]:
    """The row's token columns: the exact sequence of a token transcript, or, on the text path,
    no ids and the endpoint's counts (`total_tokens`: the conversation up to its last reply)."""
    if isinstance(t, TextTranscript):
        return {
            "token_ids": None,
            "loss_mask": None,
            "sampler_logprobs": None,
            "fidelity_mismatches": None,
            "prompt_tokens": t.prompt_tokens,
            "completion_tokens": t.completion_tokens,
            "total_tokens": t.context_tokens,
        }
    return {
        "token_ids": t.token_ids,
        "loss_mask": t.loss_mask,
        "sampler_logprobs": t.logprobs if has_logprobs else None,
        "fidelity_mismatches": t.fidelity_mismatches(),
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": sum(t.loss_mask),
        "total_tokens": len(t.token_ids),
    }


def _failed_row(
    task: Task, sample: int, config: RolloutConfig, policy_version: str, generator
) -> dict[str, Any]:
    """The columns every row has; alone, the row of an episode whose sandbox never started
    (`sandbox_error`, no tokens, reward null: nothing to train on)."""
    return {
        "instance_id": task.instance_id,
        "repo": task.repo,
        "stage": config.stage,
        "iteration": config.iteration,
        "group_id": f"{config.stage}/{config.iteration}/{task.instance_id}",
        "sample": sample,
        "policy_version": policy_version,
        "generator": generator.name,
        "submitted": False,
        "resolved": False,
        "grade_outcome": "not_graded",
        "reward": None,
        "turns": 0,
        "termination": "sandbox_error",
        "sampling": json.dumps(asdict(config.episode.sampling)),
        "config": json.dumps(config_record(config)),
    }


def config_record(config: RolloutConfig) -> dict[str, Any]:
    """The config as recorded on rows and in the stage's parameters (its fingerprint): its
    fields and a hash of the prompts' text."""
    record = asdict(config)
    record["episode"]["sampling"] = asdict(config.episode.sampling)
    prompts = config.prompts()
    text = "\0".join([prompts.system, prompts.instance, prompts.demonstration or ""])
    record["prompts_sha256"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return record


# ---- the stage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutOutput:
    trajectories: str | None
    turns: str | None
    reused: bool
    resumed_episodes: int


def rollout(
    lake: Lake,
    *,
    model: str,
    tasks: str = "latest",
    pool: str | None = None,
    instances: Sequence[str] | None = None,
    config: RolloutConfig = RolloutConfig(),
    generator: str = "hf",
    replay: Sequence[str] | None = None,
    server_url: str | None = None,
    device: str = "cpu",
    max_batch: int = 16,
    seed: int = 0,
    limit: int | None = None,
    force: bool = False,
    info: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard: int | None = None,
    shards: int = 1,
) -> RolloutOutput:
    """The rollout stage: tasks (restricted to `pool`'s kept tasks, then to `instances`, when
    given) x `samples` episodes with `model` -> new `trajectories` and `turns` versions.

    Sharding: with `shard=i` (of `shards`), only the episodes whose index (task order x samples)
    is i modulo `shards` run, they are saved to the stage's work folder (shared by every shard
    through the lake's filesystem), and nothing is published (the output's versions are None).
    A final call without `shard` then finds every episode done and publishes one version.

    Finished episodes are saved under the lake's work folder as they finish; running the same
    stage again (same fingerprint) after a crash or a kill skips them. `model` is a model
    directory or a `models` version id or name.

    `generator="replay"` samples nothing: episode (task t, sample s) plays the assistant messages
    of recording s mod n_t of t in the `trajectories` versions `replay` (ids or names; ordered by
    version as given, then sample), tokenized by `model`'s tokenizer, in a fresh sandbox, graded
    as usual. The rows carry `policy_version` = `model`, generator `replay` and null
    `sampler_logprobs`; the replayed versions are inputs of the output (`trajectories` in the
    manifest, comma-joined). A task without a recording fails before any episode runs."""
    from swerl.train.checkpoint import resolve_model

    if generator == "openai-chat":
        raise LogprobsRequired(
            f"the rollout stage ({config.stage}) makes training data, which needs sampled token "
            "ids; the 'openai-chat' generator returns text only. Evaluate API models with the "
            "evaluate stage (generator openai-chat)"
        )
    if generator not in GENERATORS:
        raise ValueError(f"unknown generator {generator!r}: use {', '.join(GENERATORS)}")
    ref = resolve_model(lake, model)
    tasks_v = lake.resolve("tasks", tasks).version
    inputs = {"tasks": tasks_v, "models": ref.id}
    task_list = load_tasks(tasks_v, root=lake.root)
    if pool is not None:
        pool_v = lake.resolve("task_pool", pool)
        inputs["task_pool"] = pool_v.version
        kept = {
            r["instance_id"]
            for r in lake.read("task_pool", pool_v.version).to_pylist()
            if r["kept"]
        }
        task_list = [t for t in task_list if t.instance_id in kept]
    if instances is not None:
        known = {t.instance_id for t in task_list}
        unknown = sorted(set(instances) - known)
        if unknown:
            raise ValueError(
                f"instances not in tasks {tasks_v}"
                + (f" / pool {pool}" if pool else "")
                + ": "
                + ", ".join(unknown[:10])
            )
        wanted = set(instances)
        task_list = [t for t in task_list if t.instance_id in wanted]
    if limit is not None:
        task_list = task_list[:limit]
    if not task_list:
        raise ValueError(f"no tasks to roll out (tasks {tasks_v}, pool {pool})")
    recordings = None
    if generator == "replay":
        if not replay:
            raise ValueError("generator replay needs `replay`: the trajectories versions to replay")
        replay_vs = [lake.resolve("trajectories", v).version for v in replay]
        inputs["trajectories"] = ",".join(replay_vs)
        recordings = load_recordings(lake, replay_vs, [t.instance_id for t in task_list])
    elif replay:
        raise ValueError(f"`replay` is for generator replay, not {generator!r}")
    parameters = {
        "config": config_record(config),
        "generator": generator,
        "server_url": server_url,
        "seed": seed,
        "instances": [t.instance_id for t in task_list],
    }
    fp = lake.fingerprint("trajectories", stage="rollout", parameters=parameters, inputs=inputs)
    if not force and (done := _published(lake, fp, parameters, inputs)) is not None:
        return done
    if shard is not None and not 0 <= shard < shards:
        raise ValueError(f"shard must be in [0, {shards}), got {shard}")
    part = "all" if shard is None else f"shard-{shard}-of-{shards}"
    with lake.work_lock("rollout", fp, part):
        # the process waited on may have published this very version
        if shard is None and not force and (done := _published(lake, fp, parameters, inputs)):
            return done
        if config.backend == "docker":
            check_images(task_list)
        store = EpisodeStore(lake.work_dir("rollout", fp))
        finished = store.keys()
        skip = set(finished)
        if shard is not None:  # the other shards' episodes are not this call's to run
            keys = [(t.instance_id, s) for t in task_list for s in range(config.samples)]
            skip |= {key for i, key in enumerate(keys) if i % shards != shard}
        total = len(task_list) * config.samples
        count = [len(skip)]

        def save(rows: EpisodeRows) -> None:
            store.save(rows.key, rows)
            count[0] += 1
            if progress is not None:
                progress(count[0], total)

        if len(skip) < total and recordings is not None:  # replay: the policy's tokenizer only
            chat = chat_format(ref.path)
            run_rollouts(
                task_list,
                Replays(recordings, chat),
                chat,
                config,
                policy_version=ref.id,
                skip=skip,
                on_episode=save,
            )
        elif len(skip) < total:  # (a final call after shards only publishes: no model to load)
            gen, chat = make_generator(
                ref.path,
                generator,
                server_url=server_url,
                device=device,
                seed=generator_seed(seed, shard, len(finished)),
            )
            run_batched(
                task_list,
                gen,
                chat,
                config,
                max_batch=max_batch,
                policy_version=ref.id,
                skip=skip,
                on_episode=save,
                seed=seed,
            )
        if shard is not None:
            return RolloutOutput(None, None, False, len(finished))
        episodes = store.load_all()
        order = {
            (t.instance_id, s): i for i, t in enumerate(task_list) for s in range(config.samples)
        }
        rows = sorted(episodes.values(), key=lambda r: order[r.key])
        with lake.writer(
            "trajectories", stage="rollout", parameters=parameters, inputs=inputs, info=info
        ) as tw:
            for r in rows:
                tw.write([r.trajectory])
            with lake.writer(
                "turns", stage="rollout", parameters=parameters, inputs=inputs, info=info
            ) as uw:
                uw.write([turn for r in rows for turn in r.turns])
        store.clear()
        return RolloutOutput(tw.version, uw.version, False, len(skip))


def _published(
    lake: Lake, fp: str, parameters: dict[str, Any], inputs: dict[str, str]
) -> RolloutOutput | None:
    """The rollout already published with this fingerprint (its `trajectories` and `turns`)."""
    done_t = lake.find("trajectories", fp)
    done_u = lake.find(
        "turns", lake.fingerprint("turns", stage="rollout", parameters=parameters, inputs=inputs)
    )
    if done_t is None or done_u is None:
        return None
    return RolloutOutput(done_t.version, done_u.version, True, 0)


def generator_seed(seed: int, shard: int | None, resumed: int) -> int:
    """The generator's own seed for one call of the stage: different per shard and per resume.
    Episodes sample with their own seeds (`episode_seed`); this stream serves only requests
    without one."""
    return int(hashlib.sha256(f"{seed}/{shard}/{resumed}".encode()).hexdigest()[:8], 16)


def episode_seed(seed: int, instance_id: str, sample: int) -> int:
    """The seed of episode (`instance_id`, `sample`) of a stage seeded `seed`: a group's samples
    differ, and the same stage run again, resumed or sharded draws the same numbers for it."""
    return derive_seed(seed, instance_id, sample)


def check_images(tasks: list[Task]) -> None:
    """Fail before any episode when a task's docker image is missing (else every episode of the
    stage would end as a `sandbox_error` row)."""
    import docker
    import docker.errors

    from swerl.sandbox.docker import image_name

    client = docker.from_env()
    missing = []
    try:
        for task in tasks:
            try:
                client.images.get(image_name(task, client))
            except (SandboxError, docker.errors.ImageNotFound):
                missing.append(task.instance_id)
    finally:
        client.close()
    if missing:
        raise SandboxError(
            f"{len(missing)} of {len(tasks)} tasks have no docker image (first: "
            f"{', '.join(missing[:5])}); build them with `swerl images build --tasks <tasks>` "
            "or use the local backend"
        )


GENERATORS = ("hf", "vllm", "vllm-server", "replay")
"""Generator kinds the rollout stage takes (`make_generator` builds the first three; `replay`
needs recordings). `openai-chat` is refused there: text only, nothing to train on."""


def chat_format(model_dir: Path) -> ChatFormat:
    """The chat format of a model directory's tokenizer."""
    from transformers import AutoTokenizer

    return ChatFormat(AutoTokenizer.from_pretrained(model_dir))


def make_generator(
    model: Path | str, kind: str, *, server_url: str | None, device: str, seed: int
) -> tuple[Generator | OpenAIChatGenerator, ChatFormat | None]:
    """The generator backend `kind` and the model's chat format. `model` is a model directory
    for hf, vllm and vllm-server, and the endpoint's model name for openai-chat, which has no
    chat format here (None: the endpoint applies its own template) and reads its API key from
    the environment variable `OPENAI_API_KEY` (never stored in a manifest). vllm-server makes
    the server at `server_url` load `model` first (`VLLMServerGenerator.serve`: every stage that
    samples from a server samples from the checkpoint it names, e.g. each DAPO iteration's new
    policy). (`replay` is not built here: it needs recordings, see `Replays` and the `rollout`
    stage.)"""
    if kind == "openai-chat":
        if not server_url:
            raise ValueError("generator openai-chat needs server_url (the endpoint's base URL)")
        key = os.environ.get(API_KEY_ENV)
        return OpenAIChatGenerator(server_url, model=str(model), api_key=key), None
    model_dir = Path(model)
    chat = chat_format(model_dir)
    if kind == "hf":
        from swerl.inference.hf import HFGenerator

        return HFGenerator(model_dir, device=device, seed=seed), chat
    if kind == "vllm":
        from swerl.inference.vllm import VLLMGenerator

        return VLLMGenerator(model_dir, seed=seed), chat
    if kind == "vllm-server":
        from swerl.inference.vllm_server import VLLMServerGenerator

        if not server_url:
            raise ValueError("generator vllm-server needs server_url")
        server = VLLMServerGenerator(server_url)
        server.serve(model_dir)  # the server loads this checkpoint now, before any episode
        return server, chat
    raise ValueError(f"unknown generator {kind!r}: use hf, vllm, vllm-server or openai-chat")
