"""dapo: iterations of rollout -> update, with dynamic sampling and the stage 1 -> stage 2 switch
(PAPER.md section 6). Each rollout batch and each update is its own sub-flow run (and its own
dataset version), so the UI shows every step and any one can be re-run from pinned inputs.

    prefect deployment run 'dapo/dev-tiny' --param policy=<models version> --watch
    python -m flows.dapo --config dev-tiny --policy <models version>

Per iteration: draw `tasks_per_batch` tasks from the pool and roll them out (G = `samples` each);
keep drawing while the iteration holds fewer than `batch_size` samples with non-zero advantage,
at most `max_rollout_batches` draws (then it trains on what there is, and says so; with no
signal at all the policy stays as it is). At `stage2_from` the pool is re-filtered from every
trajectory of the loop so far (tasks solved in >= 2/3 of their attempts and tasks never solved
are dropped) and the stage-2 settings apply. Re-running with the same inputs reuses every step.

With `generator="vllm-server"` one server, started once with `VLLM_SERVER_DEV_MODE=1`, serves
the whole loop: each rollout makes it load the policy it rolls out (the iteration's checkpoint,
`swerl/inference/vllm_server.py`), and a failed load stops the iteration before any episode.

`generator="replay"` with `replay=[<trajectories versions>]` makes every rollout play recorded
episodes again instead of sampling (tokenized by the current policy, which then trains on them):
a loop with a known signal, for tests and for checking the update path without a capable model.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.rollout import rollout
from flows.update_policy import update_policy
from swerl.lake import Lake
from swerl.train.checkpoint import resolve_model
from swerl.train.schedule import DapoStage, DapoStages, draw_tasks, pool_ids, refilter_pool, signal
from tasks.params import settings
from tasks.reporting import report_stage, run_info

ROLLOUT_PASSTHROUGH = (
    "max_new_tokens",
    "temperature",
    "top_p",
    "backend",
    "max_live_sandboxes",
    "grade_unsubmitted",
    "turn_penalty_threshold",
    "command_timeout",
    "relative_paths",
    "grading_timeout",
    "prompts_dir",
    "generator",
    "replay",
    "server_url",
    "device",
)
UPDATE_PASSTHROUGH = (
    "eps_low",
    "lr",
    "micro_batch_size",
    "tis_cap",
    "scale_by_std",
    "drop_unsolved",
    "bf16",
    "gradient_checkpointing",
)


def dapo_stages(s: dict[str, Any]) -> DapoStages:
    """Stage 1 and 2 settings from flat parameters; contradictions fail here, before any work."""
    stage1 = DapoStage(
        max_turns=s.get("max_turns", 40),
        max_context_tokens=s.get("max_context_tokens", 65_536),
        eps_high=s.get("eps_high", 0.3),
        batch_size=s.get("batch_size", 128),
        tasks_per_batch=s.get("tasks_per_batch", 300),
    )
    if s.get("stage2_from") is None:
        return DapoStages(stage1)
    stage2 = DapoStage(
        max_turns=s.get("stage2_max_turns", 80),
        max_context_tokens=s.get("stage2_max_context_tokens", 131_072),
        eps_high=s.get("stage2_eps_high", 0.26),
        batch_size=s.get("stage2_batch_size", 256),
        tasks_per_batch=s.get("stage2_tasks_per_batch", 100),
    )
    return DapoStages(stage1, stage2, s["stage2_from"])


def check_batches(stages: DapoStages, samples: int, max_batches: int) -> None:
    for number, st in ((1, stages.stage1), (2, stages.stage2)):
        if st is not None and st.batch_size > st.tasks_per_batch * samples * max_batches:
            raise ValueError(
                f"dapo: stage-{number} batch_size {st.batch_size} is larger than tasks_per_batch "
                f"{st.tasks_per_batch} x samples {samples} x max_rollout_batches {max_batches}: "
                "no iteration could ever fill a batch"
            )


@flow(name="dapo")
def dapo(
    policy: str | None = None,
    pool: str | None = None,
    iterations: int | None = None,
    start_iteration: int | None = None,
    samples: int | None = None,
    tasks_per_batch: int | None = None,
    batch_size: int | None = None,
    max_rollout_batches: int | None = None,
    max_turns: int | None = None,
    max_context_tokens: int | None = None,
    eps_high: float | None = None,
    stage2_from: int | None = None,
    stage2_max_turns: int | None = None,
    stage2_max_context_tokens: int | None = None,
    stage2_eps_high: float | None = None,
    stage2_batch_size: int | None = None,
    stage2_tasks_per_batch: int | None = None,
    max_solve_rate: float | None = None,
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
    eps_low: float | None = None,
    lr: float | None = None,
    micro_batch_size: int | None = None,
    tis_cap: float | None = None,
    scale_by_std: bool | None = None,
    drop_unsolved: bool | None = None,
    bf16: bool | None = None,
    gradient_checkpointing: bool | None = None,
    seed: int | None = None,
    force: bool = False,
    data: str | None = None,
    config: str | None = None,
) -> dict[str, Any]:
    """Run `iterations` DAPO iterations from `policy` on the kept tasks of `pool` (default: the
    latest task_pool); returns the final policy, the pool of the last stage, and per-iteration
    versions."""
    s = settings("dapo", locals())
    logger = get_run_logger()
    lake = Lake(data)
    if not s.get("policy"):
        raise ValueError("dapo: no `policy` given (a models version or name)")
    samples_n, max_batches = s.get("samples", 10), s.get("max_rollout_batches", 4)
    stages = dapo_stages(s)
    check_batches(stages, samples_n, max_batches)
    pool_v = lake.resolve("task_pool", s.get("pool", "latest")).version
    policy_v = resolve_model(lake, s["policy"]).id  # an unknown policy fails here, before work
    start, count = s.get("start_iteration", 0), s.get("iterations", 1)
    seed = s.get("seed", 0)
    passthrough = {k: s[k] for k in ROLLOUT_PASSTHROUGH if k in s}
    update_args = {k: s[k] for k in UPDATE_PASSTHROUGH if k in s}
    loop_trajectories: list[str] = []
    history = []
    refiltered = False
    for it in range(start, start + count):
        stage_no, st = stages.at(it)
        if stage_no == 2 and not refiltered:
            if loop_trajectories:
                new_pool = refilter_pool(
                    lake,
                    pool_v,
                    loop_trajectories,
                    max_solve_rate=s.get("max_solve_rate", 2 / 3),
                    info=run_info(),
                )
                left = len(pool_ids(lake, new_pool))
                if left:
                    logger.info(
                        "stage 2 from iteration %d: re-filtered pool %s (%d tasks)",
                        it,
                        new_pool,
                        left,
                    )
                    pool_v = new_pool
                else:  # e.g. a policy that solved nothing yet: stage 2 goes on with the old pool
                    logger.warning(
                        "stage 2 from iteration %d: the re-filtered pool %s keeps no task (every "
                        "task solved in >= max_solve_rate of its attempts, or never); stage 2 "
                        "keeps pool %s",
                        it,
                        new_pool,
                        pool_v,
                    )
            refiltered = True
        ids = pool_ids(lake, pool_v)
        if not ids:
            raise ValueError(f"dapo: task_pool {pool_v} keeps no task; nothing to train on")
        versions: list[str] = []
        drawn: list[str] = []
        kept = total = 0
        for draw in range(max_batches):
            batch = draw_tasks(
                ids, st.tasks_per_batch, seed=seed, iteration=it, draw=draw, exclude=drawn
            )
            if not batch:
                logger.info("iteration %d: the pool has no undrawn task left", it)
                break
            out = rollout(
                model=policy_v,
                pool=pool_v,
                instances=batch,
                iteration=it,
                samples=samples_n,
                max_turns=st.max_turns,
                max_context_tokens=st.max_context_tokens,
                seed=seed * 1_000_003 + it * 101 + draw,
                force=force,
                data=data,
                config=config,
                **passthrough,
            )
            versions.append(out["trajectories"])
            drawn += batch
            kept, total = signal(
                lake,
                versions,
                it,
                scale_by_std=s.get("scale_by_std", True),
                drop_unsolved=bool(s.get("drop_unsolved")),
            )
            logger.info(
                "iteration %d, draw %d: %d of %d samples carry a non-zero advantage (want %d)",
                it,
                draw,
                kept,
                total,
                st.batch_size,
            )
            if kept >= st.batch_size:
                break
        if kept < st.batch_size:
            logger.warning(
                "iteration %d: %d samples with non-zero advantage after %d rollout batch(es), "
                "fewer than batch_size %d: %s",
                it,
                kept,
                len(versions),
                st.batch_size,
                "training on what there is" if kept else "no signal, the policy stays as it is",
            )
        loop_trajectories += versions
        step = {
            "iteration": it,
            "stage": stage_no,
            "trajectories": versions,
            "kept": kept,
            "samples": total,
            "policy_in": policy_v,
        }
        if kept:
            policy_v = update_policy(
                policy=policy_v,
                trajectories=versions,
                iteration=it,
                eps_high=st.eps_high,
                batch_size=st.batch_size,
                seed=seed,
                force=force,
                data=data,
                config=config,
                **update_args,
            )["models"]
        step["policy_out"] = policy_v
        history.append(step)
    report_stage(
        "dapo",
        inputs={"policy": s["policy"], "task_pool": s.get("pool", "latest")},
        outputs={"policy": policy_v, "task_pool": pool_v},
        figures={
            f"iteration {h['iteration']} (stage {h['stage']})": f"{h['kept']}/{h['samples']} samples kept -> {h['policy_out']}"
            for h in history
        },
        query=(
            "select iteration, count(*) n, avg(resolved::int) resolved, avg(reward) reward, "
            "avg(turns) turns from trajectories_all where stage = 'dapo' group by 1 order by 1"
        ),
    )
    return {"policy": policy_v, "task_pool": pool_v, "iterations": history}
