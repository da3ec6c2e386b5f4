"""Rejection fine-tuning on a tiny model: data selection and format-error masking, then TRL's
SFTTrainer lowers the loss on the training data and publishes a loadable `models` version."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from swerl.lake import Lake
from swerl.models.tiny import build_tiny_model
from swerl.train.checkpoint import load_model, resolve_model
from swerl.train.logprobs import sequence_logprobs
from swerl.train.rft import RFTConfig, RFTDataError, assistant_turn_spans, rft_examples, train_rft

from .test_update import CORPUS, SPEC, trajectory_rows

# 6 trajectories of 3 tasks, 4 resolved; tiny runs: a learning rate that moves a random model.
REWARDS = {"t1": [1.0, 1.0], "t2": [1.0, 0.0], "t3": [1.0, 0.0]}
CONFIG = RFTConfig(batch_size=2, micro_batch_size=1, lr=3e-3, warmup_steps=0, epochs=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny", SPEC, CORPUS)


@pytest.fixture(scope="module")
def rows(tiny) -> list[dict]:
    return trajectory_rows(tiny, REWARDS, stage="rft")


def turn_rows(trajectory_id: str, format_errors: list[bool]) -> list[dict]:
    return [
        {"trajectory_id": trajectory_id, "turn": k, "format_error": bad}
        for k, bad in enumerate(format_errors)
    ]


def masked_nll(model, examples: list[dict]) -> float:
    total, n = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            logp = sequence_logprobs(model, torch.tensor([ex["input_ids"]]))[0]
            mask = torch.tensor(ex["assistant_masks"], dtype=torch.bool)
            total -= float(logp[mask].sum())
            n += int(mask.sum())
    return total / n


def test_assistant_turn_spans():
    assert assistant_turn_spans([0, 1, 1, 0, 0, 1, 0, 1]) == [(1, 3), (5, 6), (7, 8)]
    assert assistant_turn_spans([0, 0]) == []


def test_examples_keep_resolved_and_mask_format_error_turns(rows):
    rows = [dict(r) for r in rows]
    bad = rows[0]
    bad["format_errors"] = 1
    table = pa.Table.from_pylist(rows)
    turns = pa.Table.from_pylist(turn_rows(bad["trajectory_id"], [False, True]))
    data = rft_examples(table, turns, CONFIG, "test")

    assert data.trajectory_ids == [r["trajectory_id"] for r in rows if r["resolved"]]
    assert data.counts["resolved"] == 4 and data.counts["masked_turns"] == 1
    first = data.examples[0]
    assert first["input_ids"] == bad["token_ids"]  # the bad turn stays in the context
    spans = assistant_turn_spans(bad["loss_mask"])
    assert len(spans) == 2
    (s0, e0), (s1, e1) = spans
    assert first["assistant_masks"][s0:e0] == [1] * (e0 - s0)  # turn 0 trained
    assert sum(first["assistant_masks"]) == e0 - s0  # turn 1 (the format error) masked out

    capped = rft_examples(table, turns, replace(CONFIG, max_per_task=1), "test")
    assert len(capped.trajectory_ids) == 3 and capped.counts["capped"] == 1

    # min_reward rejects slow successes too: t2's success scores 0.75 (turn penalty)
    slow = [dict(r, reward=0.75) if r["trajectory_id"] == "rft/0/t2/0" else r for r in rows]
    quick = rft_examples(pa.Table.from_pylist(slow), turns, replace(CONFIG, min_reward=1.0), "t")
    assert "rft/0/t2/0" not in quick.trajectory_ids and quick.counts["below_min_reward"] == 1
    assert len(quick.trajectory_ids) == 3
    with pytest.raises(RFTDataError, match="no kept trajectory has reward >= min_reward 2.0"):
        rft_examples(table, turns, replace(CONFIG, min_reward=2.0), "test")
    unscored = pa.Table.from_pylist([dict(r, reward=None) for r in rows])
    with pytest.raises(RFTDataError, match="test: min_reward 1.0 needs rewards.*4 kept"):
        rft_examples(unscored, turns, replace(CONFIG, min_reward=1.0), "test")

    with pytest.raises(
        RFTDataError, match="test: trajectory rft/0/t1/0 has 1 format error.*no turns"
    ):
        rft_examples(table, None, CONFIG, "test")
    with pytest.raises(RFTDataError, match="format error in turn 5 .* 2 assistant spans"):
        rft_examples(
            table,
            pa.Table.from_pylist(turn_rows(bad["trajectory_id"], [False] * 5 + [True])),
            CONFIG,
            "test",
        )
    rows[1]["token_ids"] = None
    with pytest.raises(RFTDataError, match="1 kept trajectories have no token_ids"):
        rft_examples(pa.Table.from_pylist(rows), turns, CONFIG, "test")


def test_examples_with_resolved_only_false_keep_every_trajectory(rows):
    table = pa.Table.from_pylist(rows)
    everything = rft_examples(table, None, replace(CONFIG, resolved_only=False), "test")
    assert sorted(everything.trajectory_ids) == sorted(r["trajectory_id"] for r in rows)
    assert everything.counts == {**everything.counts, "resolved": 4, "kept": 6}
    failed = pa.Table.from_pylist([dict(r) for r in rows if not r["resolved"]])
    assert len(rft_examples(failed, None, replace(CONFIG, resolved_only=False), "x").examples) == 2
    with pytest.raises(RFTDataError, match="x: none of the 2 trajectories resolved"):
        rft_examples(failed, None, CONFIG, "x")


def test_rft_lowers_the_loss_and_writes_a_loadable_version(tiny, rows, tmp_path):
    lake = Lake(tmp_path / "lake")
    rows = [dict(r) for r in rows]
    rows[0]["format_errors"] = 1
    tv = lake.write("trajectories", rows, stage="collect_rft")
    turns = lake.write(
        "turns", turn_rows(rows[0]["trajectory_id"], [False, True]), stage="collect_rft"
    )
    data = rft_examples(pa.Table.from_pylist(rows), lake.read("turns"), CONFIG, "test")

    version = train_rft(lake, str(tiny), [tv], CONFIG, turns_version=turns)

    before, _ = load_model(resolve_model(lake, str(tiny)))
    after, tokenizer = load_model(resolve_model(lake, version.version))  # loadable from the lake
    assert masked_nll(after, data.examples) < masked_nll(before, data.examples) - 0.5
    m = version.manifest
    assert m["inputs"] == {"trajectories": tv, "turns": turns, "models": f"path:{tiny.resolve()}"}
    assert m["parameters"]["lr"] == 3e-3 and m["parameters"]["batch_size"] == 2
    assert m["info"]["trajectory_count"] == 4 and m["info"]["data"]["masked_turns"] == 1
    ids = (version.path / "trajectory_ids.txt").read_text().split()
    assert ids == data.trajectory_ids
    # 4 trajectories, batch 2, 3 epochs: 6 optimizer steps, one metrics row each
    metrics = lake.read("train_metrics", m["info"]["train_metrics"]).to_pylist()
    assert [r["step"] for r in metrics] == list(range(6))
    assert all(r["model_version"] == version.version and r["loss"] > 0 for r in metrics)
    assert metrics[-1]["lr"] < metrics[0]["lr"]  # cosine decay
    # the same inputs again: the existing version, no training
    assert train_rft(lake, str(tiny), [tv], CONFIG, turns_version=turns).version == version.version
    # another setting from the same parent: a new model and its own metrics version, naming it
    other = train_rft(
        lake, str(tiny), [tv], replace(CONFIG, lr=1e-3, epochs=1), turns_version=turns
    )
    assert other.version != version.version
    other_metrics = other.manifest["info"]["train_metrics"]
    assert other_metrics != m["info"]["train_metrics"]
    assert (
        lake.resolve("train_metrics", other_metrics).manifest["inputs"]["models"] == other.version
    )
    rows2 = lake.read("train_metrics", other_metrics).to_pylist()
    assert len(rows2) == 2 and all(r["model_version"] == other.version for r in rows2)


def test_config_checks():
    with pytest.raises(ValueError, match="batch_size 64 must be a multiple of micro_batch_size 5"):
        RFTConfig(micro_batch_size=5)
    with pytest.raises(ValueError, match="3 processes"):
        RFTConfig(batch_size=64, micro_batch_size=2).accumulation_steps(3)
    assert RFTConfig().accumulation_steps(8) == 8  # paper: 64 = 1 x 8 processes x 8
