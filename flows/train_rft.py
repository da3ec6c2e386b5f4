"""train_rft: rejection fine-tuning of a model on the resolved RFT trajectories -> a `models`
version (the RFT checkpoint) and its `train_metrics`.

    prefect deployment run 'train-rft/dev-tiny' --param model=tiny --watch
    python -m flows.train_rft --config dev-tiny --model tiny

Trains in the worker's process (one device). Multi-GPU: `accelerate launch` of `swerl train rft`
(see the README). Thin over `swerl.train.rft.train_rft`.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from swerl.config import dataclass_from
from swerl.lake import Lake, connect
from swerl.train.rft import RFTConfig
from swerl.train.rft import train_rft as train_rft_lib
from tasks.params import settings
from tasks.reporting import report_stage


def latest_rollouts(lake: Lake, stage: str) -> str:
    """The newest `trajectories` version made by episodes of `stage` (rft, dapo or eval)."""
    for v in reversed(lake.versions("trajectories")):
        if (v.manifest.get("parameters", {}).get("config") or {}).get("stage") == stage:
            return v.version
    raise ValueError(f"no trajectories version of stage {stage!r} in the lake at {lake.root}")


@flow(name="train-rft")
def train_rft(
    model: str | None = None,
    trajectories: list[str] | None = None,
    epochs: float | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    warmup_steps: int | None = None,
    batch_size: int | None = None,
    micro_batch_size: int | None = None,
    max_length: int | None = None,
    max_per_task: int | None = None,
    min_reward: float | None = None,
    bf16: bool | None = None,
    gradient_checkpointing: bool | None = None,
    seed: int | None = None,
    name: str | None = None,
    force: bool = False,
    data: str | None = None,
    config: str | None = None,
) -> dict[str, str]:
    """Fine-tune `model` on the resolved trajectories of `trajectories` (default: the newest
    version collected by collect_rft); returns the `models` version."""
    s = settings("train_rft", locals())
    lake = Lake(data)
    if not s.get("model"):
        raise ValueError("train_rft: no `model` given (a models version or name, or a directory)")
    versions = s.get("trajectories") or [latest_rollouts(lake, "rft")]
    rft = dataclass_from(RFTConfig, s)
    before = {v.version for v in lake.versions("models")}
    version = train_rft_lib(lake, s["model"], versions, rft, name=s.get("name"))
    reused = version.version in before
    info = version.manifest.get("info", {})
    get_run_logger().info(
        "%s models %s from %s", "reused" if reused else "trained", version.version, versions
    )
    rows = (
        connect(lake.root)
        .sql(
            "select count(*), avg(loss) from train_metrics_all "
            f"where model_version = '{version.version}'"
        )
        .fetchall()
    )
    report_stage(
        "train_rft",
        inputs={"model": s["model"], "trajectories": ", ".join(versions)},
        outputs={"models": version.version},
        figures={
            "trained trajectories": info.get("trajectory_count"),
            "optimizer steps": rows[0][0],
            "mean loss": rows[0][1],
        },
        query=f"select step, loss, lr from train_metrics where model_version = '{version.version}'",
        reused=reused,
    )
    return {"models": version.version}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--trajectories", nargs="*")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--config")
    a = ap.parse_args()
    print(train_rft(model=a.model, trajectories=a.trajectories, force=a.force, config=a.config))
