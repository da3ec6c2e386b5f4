"""`train_metrics`: one row per optimizer step of RFT or of a DAPO update round.

    swerl sql "select step, loss, clip_frac_high, grad_norm, sampler_kl from train_metrics
               where model_version = '...' order by step"

`TRAIN_METRICS` is the column schema. Until it is registered in `swerl/lake/schemas.py`, the
dataset is written with this schema passed explicitly; once registered, the lake validates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from swerl.lake import SCHEMAS, Lake
from swerl.lake.schemas import col

TRAIN_METRICS = pa.schema(
    [
        col("model_version", pa.string(), "the `models` version this step produced", required=True),
        col("stage", pa.string(), "train_rft or update_policy", required=True),
        col("iteration", pa.int32(), "DAPO iteration of the trajectories (null for RFT)"),
        col("step", pa.int32(), "optimizer step within the run, 0-based", required=True),
        col("epoch", pa.float64(), "epoch progress at this step (RFT; null for updates)"),
        col("loss", pa.float64(), "training loss of the step (RFT: token NLL; DAPO: -J)"),
        col("clip_frac_low", pa.float64(), "fraction of action tokens clipped at 1 - eps_low"),
        col("clip_frac_high", pa.float64(), "fraction of action tokens clipped at 1 + eps_high"),
        col("ratio_mean", pa.float64(), "mean pi_theta / pi_old over action tokens"),
        col("ratio_max", pa.float64(), "largest pi_theta / pi_old over action tokens"),
        col("entropy", pa.float64(), "mean entropy of the policy over action tokens (nats)"),
        col("grad_norm", pa.float64(), "global gradient norm before clipping"),
        col("lr", pa.float64(), "learning rate of the step"),
        col("tokens", pa.int64(), "action (loss) tokens in the step's minibatch"),
        col("kept_samples", pa.int32(), "trajectories in the step's minibatch"),
        col("dropped_samples", pa.int32(), "trajectories of the round dropped (zero advantage)"),
        col(
            "sampler_gap_abs",
            pa.float64(),
            "mean |log pi_trainer - log pi_sampler| over the round's action tokens",
        ),
        col("sampler_kl", pa.float64(), "k3 estimate of KL(sampler || trainer) over the round"),
    ]
)


def write_train_metrics(
    lake: Lake, rows: list[dict[str, Any]], *, stage: str, inputs: Mapping[str, str]
) -> str:
    """Publish `rows` as a new `train_metrics` version; returns its id."""
    schema = None if "train_metrics" in SCHEMAS else TRAIN_METRICS
    return lake.write("train_metrics", rows, stage=stage, inputs=inputs, schema=schema)
