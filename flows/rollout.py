"""rollout: a `task_pool` (or a `tasks` version) and a policy -> `trajectories` + `turns` of one
DAPO iteration (G = `samples` episodes per task).

    prefect deployment run 'rollout/dev-tiny' --param model=<models version> --param iteration=3 --watch
    python -m flows.rollout --config dev-tiny --model tiny --iteration 0

Finished episodes are saved as they finish: a killed run, started again with the same inputs,
skips them. Thin over `swerl.agent.rollout.rollout`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from swerl.agent.rollout import RolloutOutput
from swerl.agent.rollout import rollout as rollout_lib
from swerl.config import rollout_config
from swerl.lake import Lake
from swerl.sandbox import resolve_backend
from swerl.train.schedule import pool_tasks
from tasks.params import settings
from tasks.reporting import Progress, report_stage, run_info


def run_episodes_stage(
    stage: str, s: dict[str, Any], *, lake: Lake, force: bool, iteration: int, **fixed: Any
) -> RolloutOutput:
    """The shared body of `rollout` and `collect_rft`: settings -> the library rollout stage,
    with progress and the stage's artifacts."""
    logger = get_run_logger()
    if not s.get("model"):
        raise ValueError(f"{stage}: no `model` given (a models version or name, or a directory)")
    if s.get("pool") and not s.get("tasks"):  # the tasks the pool was filtered from
        s["tasks"] = pool_tasks(lake, s["pool"])
    backend = resolve_backend(s.get("backend", "auto"))
    config = rollout_config(
        {**s, "backend": backend},
        stage="rft" if stage == "collect_rft" else "dapo",
        iteration=iteration,
        **fixed,
    )
    kwargs = dict(
        model=s["model"],
        tasks=s.get("tasks", "latest"),
        pool=s.get("pool"),
        instances=s.get("instances"),
        config=config,
        generator=s.get("generator", "hf"),
        replay=s.get("replay"),
        server_url=s.get("server_url"),
        device=s.get("device", "cpu"),
        seed=s.get("seed", 0),
        limit=s.get("limit"),
        force=force,
        info=run_info(),
    )
    progress = Progress(f"{stage.replace('_', '-')}-progress", f"{stage} episodes")
    shards = s.get("shards") or 1
    if s.get("shard") is not None:  # one shard of a fanned-out rollout: run it, publish nothing
        out = rollout_lib(lake, **kwargs, progress=progress, shard=s["shard"], shards=shards)
        logger.info(
            "shard %d of %d done (%d episodes were done before)",
            s["shard"],
            shards,
            out.resumed_episodes,
        )
        return out
    if shards > 1:  # fan out in this process: one Prefect task per shard, then publish once
        futures = [
            rollout_shard.submit(lake, kwargs, shard=i, shards=shards) for i in range(shards)
        ]
        for future in futures:
            future.result()
    out = rollout_lib(lake, **kwargs, progress=progress)
    if out.trajectories is None:
        return out
    con_query = (
        f"select count(*) episodes, avg(resolved::int) resolved, avg(reward) reward, "
        f"avg(turns) turns from trajectories_all where version = '{out.trajectories}'"
    )
    from swerl.lake import connect

    episodes, resolved, reward, turns = connect(lake.root).sql(con_query).fetchall()[0]
    verb = "reused" if out.reused else "published"
    logger.info(
        "%s trajectories %s: %d episodes, resolved %.3f, mean reward %.3f, mean turns %.1f%s",
        verb,
        out.trajectories,
        episodes,
        resolved or 0,
        reward or 0,
        turns or 0,
        f" ({out.resumed_episodes} resumed)" if out.resumed_episodes else "",
    )
    report_stage(
        stage,
        inputs={
            k: str(v)
            for k, v in (
                ("model", s["model"]),
                ("tasks", s.get("tasks", "latest")),
                ("task_pool", s.get("pool")),
                ("replay", ", ".join(s.get("replay") or [])),
            )
            if v
        },
        outputs={"trajectories": out.trajectories, "turns": out.turns},
        figures={
            "episodes": episodes,
            "resolved rate": round(resolved or 0, 4),
            "mean reward": round(reward or 0, 4),
            "mean turns": round(turns or 0, 2),
            "backend": backend,
            "resumed episodes": out.resumed_episodes,
        },
        query=(
            "select termination, count(*) n, avg(reward) reward from trajectories_all "
            f"where version = '{out.trajectories}' group by 1 order by 2 desc"
        ),
        reused=out.reused,
    )
    return out


@task(name="rollout-shard", cache_policy=NO_CACHE)
def rollout_shard(lake: Lake, kwargs: dict[str, Any], shard: int, shards: int) -> int:
    """One shard's episodes, saved to the stage's work folder; returns how many it found done."""
    return rollout_lib(lake, **kwargs, shard=shard, shards=shards).resumed_episodes


@flow(name="rollout", task_runner=ThreadPoolTaskRunner(max_workers=8))
def rollout(
    model: str | None = None,
    tasks: str | None = None,
    pool: str | None = None,
    instances: list[str] | None = None,
    iteration: int = 0,
    samples: int | None = None,
    max_turns: int | None = None,
    max_context_tokens: int | None = None,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    backend: str | None = None,
    max_live_sandboxes: int | None = None,
    grade_unsubmitted: bool | None = None,
    turn_penalty_threshold: int | None = None,
    command_timeout: float | None = None,
    relative_paths: bool | None = None,
    grading_timeout: float | None = None,
    prompts_dir: str | None = None,
    generator: str | None = None,
    replay: list[str] | None = None,
    server_url: str | None = None,
    device: str | None = None,
    seed: int | None = None,
    limit: int | None = None,
    shards: int | None = None,
    shard: int | None = None,
    force: bool = False,
    data: str | None = None,
    config: str | None = None,
) -> dict[str, str | None]:
    """`samples` episodes per task of `pool` (kept tasks; or every task of `tasks`, or the given
    `instances`) with policy `model`; returns the `trajectories` and `turns` versions.

    `generator="replay"` plays recorded episodes again instead of sampling: `replay` names the
    `trajectories` versions; sample s of task t replays recording s mod n_t of t, tokenized by
    `model`'s tokenizer (see `swerl.agent.rollout.rollout`).

    `shards=n` runs the episodes as n concurrent shards, then publishes one version. `shard=i`
    (with `shards=n`) runs only shard i and publishes nothing: fan shards out to several workers
    as separate deployment runs, then run once more without `shard` to publish."""
    s = settings("rollout", locals())
    out = run_episodes_stage("rollout", s, lake=Lake(data), force=force, iteration=iteration)
    return {"trajectories": out.trajectories, "turns": out.turns}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--tasks")
    ap.add_argument("--pool")
    ap.add_argument("--iteration", type=int, default=0)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--config")
    a = ap.parse_args()
    print(
        rollout(
            model=a.model,
            tasks=a.tasks,
            pool=a.pool,
            iteration=a.iteration,
            samples=a.samples,
            force=a.force,
            config=a.config,
        )
    )
