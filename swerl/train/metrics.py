"""`train_metrics`: one row per optimizer step of RFT or of a DAPO update round.

    swerl sql "select step, loss, clip_frac_high, grad_norm, sampler_kl from train_metrics
               where model_version = '...' order by step"

The column schema is `TRAIN_METRICS` in `swerl/lake/schemas.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swerl.lake import Lake


def write_train_metrics(
    lake: Lake, rows: list[dict[str, Any]], *, stage: str, inputs: Mapping[str, str]
) -> str:
    """Publish `rows` as a new `train_metrics` version; returns its id."""
    return lake.write("train_metrics", rows, stage=stage, inputs=inputs)
