"""update_policy: one DAPO update round: a policy and the trajectories of iteration k -> policy
k+1 (a `models` version carrying its optimizer state) and its `train_metrics`.

    prefect deployment run 'update-policy/dev-tiny' --param policy=<models version> \
        --param trajectories='["<trajectories version>"]' --param iteration=0 --watch

Trains in the worker's process (one device); multi-GPU: `accelerate launch` of
`swerl train update` (see the README). Thin over `swerl.train.update.update_policy`.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from swerl.config import dataclass_from
from swerl.lake import Lake, connect
from swerl.train.update import UpdateConfig
from swerl.train.update import update_policy as update_policy_lib
from tasks.params import settings
from tasks.reporting import report_stage


@flow(name="update-policy")
def update_policy(
    policy: str | None = None,
    trajectories: list[str] | None = None,
    iteration: int = 0,
    eps_low: float | None = None,
    eps_high: float | None = None,
    batch_size: int | None = None,
    micro_batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    max_grad_norm: float | None = None,
    scale_by_std: bool | None = None,
    drop_unsolved: bool | None = None,
    tis_cap: float | None = None,
    chunk_size: int | None = None,
    temperature: float | None = None,
    bf16: bool | None = None,
    gradient_checkpointing: bool | None = None,
    seed: int | None = None,
    name: str | None = None,
    force: bool = False,
    data: str | None = None,
    config: str | None = None,
) -> dict[str, str]:
    """Train `policy` for one epoch on iteration `iteration` of `trajectories` (one or several
    versions, e.g. the rollout batches of a dynamic-sampling iteration; default: the latest)."""
    s = settings("update_policy", locals())
    lake = Lake(data)
    if not s.get("policy"):
        raise ValueError("update_policy: no `policy` given (a models version or name)")
    versions = s.get("trajectories") or [lake.resolve("trajectories").version]
    update = dataclass_from(UpdateConfig, s)
    before = {v.version for v in lake.versions("models")}
    version = update_policy_lib(lake, s["policy"], versions, iteration, update, name=s.get("name"))
    reused = version.version in before
    info = version.manifest.get("info", {})
    get_run_logger().info(
        "%s models %s: %s kept, %s dropped (zero advantage or, with drop_unsolved, no success "
        "in the group), %s steps",
        "reused" if reused else "trained",
        version.version,
        info.get("kept_samples"),
        info.get("dropped_samples"),
        info.get("steps"),
    )
    steps = (
        connect(lake.root)
        .sql(
            "select count(*), avg(loss), avg(clip_frac_high), avg(entropy) from train_metrics_all "
            f"where model_version = '{version.version}'"
        )
        .fetchall()[0]
    )
    report_stage(
        "update_policy",
        inputs={"policy": s["policy"], "trajectories": ", ".join(versions)},
        outputs={"models": version.version},
        figures={
            "iteration": iteration,
            "kept samples": info.get("kept_samples"),
            "dropped samples (A = 0)": info.get("dropped_samples"),
            "optimizer steps": steps[0],
            "mean loss": steps[1],
            "mean clip fraction (high)": steps[2],
            "mean entropy": steps[3],
            "sampler-trainer gap": info.get("sampler_gap"),
        },
        query=(
            "select step, loss, clip_frac_low, clip_frac_high, entropy, grad_norm "
            f"from train_metrics where model_version = '{version.version}'"
        ),
        reused=reused,
    )
    return {"models": version.version}
