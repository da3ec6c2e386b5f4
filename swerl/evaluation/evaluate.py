"""The evaluate stage: n attempts per task with one model -> `evals` (one row per attempt), a
summary, and predictions files for the official SWE-bench harness.

    swerl evaluate --model <models version or dir> --tasks toy-swe --split eval --attempts 10
    out = evaluate(lake, model="models/tiny", tasks="toy-swe", split="eval", attempts=10)
    out.summary["pass_at_1"], out.summary["pass_at_1_sem"], out.predictions

Episodes run exactly as rollouts do (`swerl.agent.rollout.run_rollouts` with stage `eval`): same
scaffold, sandbox, grading in a fresh sandbox, reward. The decoding settings (`episode.sampling`)
and limits are recorded on every row and in the manifest's parameters. The paper evaluates with
its rollout settings; we default to them (temperature 1, nothing else) and record whatever is
used.

Outputs, all inside the new `evals` version folder `<root>/evals/version=<id>/`:
- the Parquet rows (schema `EVALS` in `swerl/lake/schemas.py`);
- `predictions/attempt-NN.jsonl`, one file per attempt, one line per task:
  `{"instance_id", "model_name_or_path", "model_patch"}` - the official harness's format, so
  each file re-grades one run with `python -m swebench.harness.run_evaluation
  --predictions_path .../attempt-00.jsonl`; `attempt-00.jsonl` alone is the usual single
  submission. An attempt without a diff has `model_patch` "".
- the manifest's `info.summary` (`swerl.evaluation.summary.summarize`) and
  `info.predictions` (the folder, relative to the version).

Re-runs: the same model, tasks, parameters and code return the existing version (`force=True`
makes a new one). Attempts finished before a crash or a kill are kept under the lake's work
folder and skipped by the next run with the same fingerprint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swerl.agent.episode import EpisodeConfig
from swerl.agent.rollout import (
    EpisodeRows,
    RolloutConfig,
    config_record,
    make_generator,
    run_batched,
    run_rollouts,
)
from swerl.agent.store import EpisodeStore
from swerl.evaluation.summary import summarize
from swerl.inference.base import Generator
from swerl.inference.openai_chat import OpenAIChatGenerator
from swerl.lake import Lake
from swerl.swe.splits import select_tasks
from swerl.swe.task import load_tasks

STAGE = "evaluate"
PREDICTIONS_DIR = "predictions"

# `trajectories` columns an `evals` row keeps (the rest, token ids and log-probs, are training
# data an evaluation does not need).
KEPT = (
    "instance_id",
    "repo",
    "generator",
    "resolved",
    "grade_outcome",
    "tests_status",
    "reward",
    "turn_penalty",
    "submitted",
    "termination",
    "turns",
    "format_errors",
    "tool_errors",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "patch",
    "messages",
    "sampling",
    "config",
    "generation_s",
    "tool_s",
    "grading_s",
    "total_s",
    "error",
)


@dataclass(frozen=True)
class EvalOutput:
    evals: str
    """The `evals` version id."""
    summary: dict[str, Any]
    """`summarize` of its rows (also in the manifest's `info.summary`)."""
    predictions: Path
    """Folder of `attempt-NN.jsonl` files in the official SWE-bench predictions format."""
    reused: bool
    """True when a version with the same fingerprint existed and nothing ran."""
    resumed_attempts: int = 0
    """Attempts found finished in the work folder (a resumed run)."""


def evaluate(
    lake: Lake,
    *,
    model: str,
    tasks: str = "latest",
    split: str | None = None,
    limit: int | None = None,
    attempts: int = 10,
    episode: EpisodeConfig = EpisodeConfig(),
    backend: str = "docker",
    max_live_sandboxes: int = 8,
    grade_unsubmitted: bool = True,
    turn_penalty_threshold: int = 10,
    grading_timeout: float = 1800.0,
    prompts_dir: str | None = None,
    generator: str | Generator = "hf",
    server_url: str | None = None,
    device: str = "cpu",
    max_batch: int = 16,
    seed: int = 0,
    name: str | None = None,
    force: bool = False,
    info: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalOutput:
    """Evaluate `model` (a `models` version id or name, or a model directory) on the tasks of
    `tasks` (a `tasks` version), restricted to `split` (the toy-SWE `meta.split`: train or eval;
    None keeps every task) and to the first `limit` of them, with `attempts` attempts each. A
    split or limit is published as its own `tasks` version (`swerl.swe.splits.select_tasks`),
    which the `evals` manifest names as its input.

    `generator` is a backend name built from the model directory (hf, vllm, vllm-server with
    `server_url`) or a ready `Generator` (then only its `name` enters the fingerprint).

    API models: `generator="openai-chat"` with `server_url` (the endpoint's base URL) evaluates
    the endpoint's model named `model` (no directory, no `models` input; rows carry
    `model_version` = `openai-chat:<model>`). Episodes take the text path
    (`swerl.agent.episode.run_text_episode`: token counts and the context limit from the
    endpoint's `usage`); the API key is read from `OPENAI_API_KEY` and never stored. A re-run
    with the same model name reuses the version, even if the provider changed the model behind
    it: use `force` or `name` to evaluate it again.
    `prompts_dir`: the prompt files (`RolloutConfig.prompts_dir`: None is configs/prompts, a
    relative path a folder under it, e.g. `tiny`); their text is part of the fingerprint."""
    from swerl.train.checkpoint import resolve_model

    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    config = RolloutConfig(
        samples=attempts,
        stage="eval",
        episode=episode,
        backend=backend,
        max_live_sandboxes=max_live_sandboxes,
        grade_unsubmitted=grade_unsubmitted,
        turn_penalty_threshold=turn_penalty_threshold,
        grading_timeout=grading_timeout,
        prompts_dir=prompts_dir,
    )
    api = generator == "openai-chat"
    if api and not server_url:
        raise ValueError("generator openai-chat needs server_url (the endpoint's base URL)")
    ref = None if api else resolve_model(lake, model)
    model_id = f"openai-chat:{model}" if ref is None else ref.id
    tasks_v = lake.resolve("tasks", tasks)
    if split is not None or limit is not None:  # the subset becomes its own, pinned, version
        tasks_v = lake.resolve("tasks", select_tasks(lake, tasks, split=split, limit=limit))
    task_list = load_tasks(tasks_v.version, root=lake.root)
    if not task_list:
        raise ValueError(f"tasks version {tasks_v.version} holds no task to evaluate")
    inputs = {"tasks": tasks_v.version}
    if ref is not None:
        inputs["models"] = ref.id
    parameters = {
        "model": model if api else None,
        "attempts": attempts,
        "split": split,
        "limit": limit,
        "config": config_record(config),
        "generator": generator if isinstance(generator, str) else generator.name,
        "server_url": server_url,
        "seed": seed,
        "instances": [t.instance_id for t in task_list],
    }
    fp = lake.fingerprint("evals", stage=STAGE, parameters=parameters, inputs=inputs, name=name)
    if not force and (done := _published(lake, fp)) is not None:
        return done
    with lake.work_lock(STAGE, fp):
        # the process waited on may have published this very version
        if not force and (done := _published(lake, fp)) is not None:
            return done
        store = EpisodeStore(lake.work_dir(STAGE, fp))  # finished attempts: their `evals` rows
        skip = store.keys()
        total = len(task_list) * attempts
        count = [len(skip)]

        def save(episode_rows: EpisodeRows) -> None:
            store.save(episode_rows.key, eval_row(episode_rows, model_id))
            count[0] += 1
            if progress is not None:
                progress(count[0], total)

        if ref is None:  # an API model: the text path, no batching (the endpoint batches)
            gen, _ = make_generator(
                model, "openai-chat", server_url=server_url, device=device, seed=0
            )
            assert isinstance(gen, OpenAIChatGenerator)
            try:
                run_rollouts(
                    task_list,
                    gen,
                    None,
                    config,
                    policy_version=model_id,
                    skip=skip,
                    on_episode=save,
                )
            finally:
                gen.close()
        else:
            if isinstance(generator, str):
                gen, chat = make_generator(
                    ref.path, generator, server_url=server_url, device=device, seed=seed
                )
            else:
                from transformers import AutoTokenizer

                from swerl.agent.chat import ChatFormat

                gen, chat = generator, ChatFormat(AutoTokenizer.from_pretrained(ref.path))
            run_batched(
                task_list,
                gen,
                chat,
                config,
                max_batch=max_batch,
                policy_version=model_id,
                skip=skip,
                on_episode=save,
                seed=seed,
            )

        finished = store.load_all()
        rows = [finished[(t.instance_id, a)] for t in task_list for a in range(attempts)]
        summary = summarize(rows)
        model_name = model if ref is None else model_name_of(ref.version, ref.manifest, ref.path)
        with lake.writer(
            "evals", stage=STAGE, parameters=parameters, inputs=inputs, name=name, info=info
        ) as w:
            w.write(rows)
            write_predictions(w.staging / PREDICTIONS_DIR, rows, model_name)
            w.info.update(summary=summary, predictions=PREDICTIONS_DIR, model_name=model_name)
        store.clear()
        version = lake.resolve("evals", w.version)
        return EvalOutput(w.version, summary, version.path / PREDICTIONS_DIR, False, len(skip))


def _published(lake: Lake, fp: str) -> EvalOutput | None:
    """The evaluation already published with this fingerprint."""
    done = lake.find("evals", fp)
    if done is None:
        return None
    info = done.manifest["info"]
    return EvalOutput(done.version, info["summary"], done.path / info["predictions"], reused=True)


def eval_row(episode: EpisodeRows, model_version: str) -> dict[str, Any]:
    """The `evals` row of one finished episode (its `trajectories` row, trimmed)."""
    t = episode.trajectory
    row = {k: t.get(k) for k in KEPT}
    row["attempt"] = episode.key[1]
    row["model_version"] = model_version
    row["resolved"] = bool(t.get("resolved"))
    return row


def model_name_of(version: str | None, manifest: dict[str, Any], path: Path) -> str:
    """`model_name_or_path` of the predictions: `swerl/<name or version>` for a `models`
    version, the directory's name for a plain directory."""
    if version is None:
        return path.resolve().name
    return f"swerl/{manifest.get('name') or version}"


def write_predictions(folder: Path, rows: list[dict[str, Any]], model_name: str) -> list[Path]:
    """One `attempt-NN.jsonl` per attempt, one line per task, in the rows' task order."""
    folder.mkdir(parents=True, exist_ok=True)
    by_attempt: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_attempt.setdefault(r["attempt"], []).append(r)
    paths = []
    for attempt, attempt_rows in sorted(by_attempt.items()):
        path = folder / f"attempt-{attempt:02d}.jsonl"
        lines = [
            json.dumps(
                {
                    "instance_id": r["instance_id"],
                    "model_name_or_path": model_name,
                    "model_patch": r["patch"] or "",
                }
            )
            for r in attempt_rows
        ]
        path.write_text("".join(line + "\n" for line in lines))
        paths.append(path)
    return paths
