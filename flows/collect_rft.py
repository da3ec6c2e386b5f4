"""collect_rft: the base policy's episodes on the filtered pool, with the one-shot demonstration
in the system prompt -> `trajectories` + `turns` (stage rft), the data of rejection fine-tuning.

    prefect deployment run 'collect-rft/dev-tiny' --watch
    python -m flows.collect_rft --config dev-tiny

Thin over `swerl.agent.rollout.rollout` with stage `rft` and the demonstration on.
"""

from __future__ import annotations

from prefect import flow

from flows.rollout import run_episodes_stage
from swerl.lake import Lake
from tasks.params import settings


@flow(name="collect-rft")
def collect_rft(
    model: str | None = None,
    tasks: str | None = None,
    pool: str | None = None,
    demonstration: bool | None = None,
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
    server_url: str | None = None,
    device: str | None = None,
    seed: int | None = None,
    limit: int | None = None,
    force: bool = False,
    data: str | None = None,
    config: str | None = None,
) -> dict[str, str]:
    """Collect RFT trajectories of `model` on the kept tasks of `pool` (default: the latest
    `task_pool`); the demonstration is on unless `demonstration=false`."""
    s = settings("collect_rft", locals())
    lake = Lake(data)
    s.setdefault("pool", "latest")
    out = run_episodes_stage(
        "collect_rft",
        s,
        lake=lake,
        force=force,
        iteration=0,
        demonstration=s.get("demonstration", True),
    )
    return {"trajectories": out.trajectories, "turns": out.turns}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--pool")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--config")
    a = ap.parse_args()
    print(collect_rft(model=a.model, pool=a.pool, force=a.force, config=a.config))
