"""Rejection fine-tuning (PAPER.md section 5): resolved trajectories -> a `models` version.

    version = train_rft(lake, "models/base", ["<trajectories version>"], turns_version="...")
    swerl train rft --model models/base --trajectories V1 --turns T1          # one process
    accelerate launch --config_file configs/accelerate/fsdp.yaml -m swerl.cli train rft ...

How:
1. `rft_examples`: keep the resolved trajectories of the given versions (at most `max_per_task`
   per task, the first by trajectory id; `resolved_only=False` keeps them all, for behaviour
   cloning of demonstrations); the loss covers the sampled assistant tokens
   (`loss_mask`), except the assistant turns that had a format error: those are masked out of the
   loss and stay in the context. Turn k of a trajectory is the k-th maximal run of loss_mask == 1
   in token order; format errors come from the `turns` dataset (trajectory_id, turn, format_error).
2. TRL's `SFTTrainer` on the pre-tokenized sequences: a dataset of `input_ids` + `assistant_masks`
   (TRL turns the mask into labels, -100 elsewhere), no truncation (longer trajectories are
   dropped before, see `max_length`), token-level mean loss over the whole accumulated batch.
3. Publish a `models` version (HF weights + tokenizer + `trajectory_ids.txt`, the ids it trained
   on) whose manifest names the parent model, the trajectory and turns versions, the
   hyperparameters, and a hash and count of the trajectory ids; one `train_metrics` row per step.

Where we deviate from the paper: trajectories longer than `max_length` are dropped rather than
truncated (a truncated success would teach an episode without its ending); the paper's 65k is the
default. Gradient clipping at 1.0 (the paper does not say; it is TRL's default).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from transformers import TrainerCallback

from swerl.lake import Lake
from swerl.train.checkpoint import check_token_ids, load_model, model_info, resolve_model
from swerl.train.metrics import write_train_metrics

if TYPE_CHECKING:
    from swerl.lake import Version

STAGE = "train_rft"


class RFTDataError(ValueError):
    """Trajectories RFT cannot train on; the message names the dataset version and the problem."""


@dataclass(frozen=True)
class RFTConfig:
    """Knobs of rejection fine-tuning. Defaults: PAPER.md section 5."""

    epochs: float = 1.0
    """Passes over the kept trajectories."""
    lr: float = 5e-6
    """Peak learning rate (AdamW), reached after the warmup, then cosine to 0."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay."""
    warmup_steps: int = 10
    """Linear warmup, in optimizer steps."""
    batch_size: int = 64
    """Trajectories per optimizer step, over every process (micro-batches x accumulation)."""
    micro_batch_size: int = 1
    """Trajectories per forward/backward on one process; bounds memory, not the math."""
    max_length: int = 65536
    """Longest trajectory (tokens) kept; longer ones are dropped, not truncated."""
    max_per_task: int | None = None
    """Cap of kept trajectories per task (None: all resolved ones)."""
    min_reward: float | None = None
    """Keep only trajectories whose reward is at least this (None: no bound). With the turn
    penalty in the reward, 1.0 keeps the successes that stayed within the turn threshold: the
    slow ones, which a policy's bad habits lengthen, are rejected too."""
    resolved_only: bool = True
    """Keep only resolved trajectories (rejection fine-tuning). False: keep every trajectory
    given, resolved or not (behaviour cloning of demonstrations that include scripted failures,
    as the learning benchmark's base SFT does; `swerl.train.demos`, `give_up_rate`)."""
    max_grad_norm: float = 1.0
    """Clip of the global gradient norm."""
    bf16: bool = False
    """Train in bfloat16 mixed precision (GPU)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (long sequences on GPU)."""
    seed: int = 0
    """Seed of the data order."""

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.lr <= 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError("need epochs > 0, lr > 0, weight_decay >= 0 and warmup_steps >= 0")
        if self.micro_batch_size < 1 or self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of micro_batch_size "
                f"{self.micro_batch_size} (>= 1)"
            )
        if self.max_length < 2 or (self.max_per_task is not None and self.max_per_task < 1):
            raise ValueError("need max_length >= 2 and max_per_task >= 1 (or None)")

    def accumulation_steps(self, processes: int) -> int:
        per_step = self.micro_batch_size * processes
        if self.batch_size % per_step:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size "
                f"{self.micro_batch_size} x {processes} processes"
            )
        return self.batch_size // per_step


@dataclass
class RFTData:
    """The training examples and what was kept or dropped, for the manifest."""

    examples: list[dict[str, list[int]]]
    trajectory_ids: list[str]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ids_sha256(self) -> str:
        return hashlib.sha256("\n".join(self.trajectory_ids).encode()).hexdigest()


def assistant_turn_spans(loss_mask: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) of each maximal run of loss_mask == 1, in token order: run k is turn k."""
    spans, start = [], None
    for i, m in enumerate(loss_mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(loss_mask)))
    return spans


def rft_examples(
    trajectories: pa.Table, turns: pa.Table | None, config: RFTConfig, source: str
) -> RFTData:
    """Examples {input_ids, assistant_masks} from the resolved trajectories, or from all of them
    with `config.resolved_only` false (see module doc)."""
    resolved = trajectories.filter(pc.fill_null(trajectories["resolved"], False))
    counts = {"trajectories": trajectories.num_rows, "resolved": resolved.num_rows}
    if config.resolved_only and resolved.num_rows == 0:
        raise RFTDataError(f"{source}: none of the {trajectories.num_rows} trajectories resolved")
    if trajectories.num_rows == 0:
        raise RFTDataError(f"{source}: no trajectories")
    kept = resolved if config.resolved_only else trajectories
    rows = sorted(kept.to_pylist(), key=lambda r: (r["instance_id"], r["trajectory_id"]))
    counts["below_min_reward"] = 0
    if config.min_reward is not None:
        unscored = [r["trajectory_id"] for r in rows if r["reward"] is None]
        if unscored:
            raise RFTDataError(
                f"{source}: min_reward {config.min_reward} needs rewards, but {len(unscored)} "
                f"kept trajectories have none, e.g. {unscored[:3]}"
            )
        below = [r for r in rows if r["reward"] < config.min_reward]
        counts["below_min_reward"] = len(below)
        rows = [r for r in rows if r["reward"] >= config.min_reward]
        if not rows:
            raise RFTDataError(
                f"{source}: no kept trajectory has reward >= min_reward {config.min_reward} "
                f"({len(below)} below it)"
            )
    for column in ("token_ids", "loss_mask"):
        missing = [r["trajectory_id"] for r in rows if r[column] is None]
        if missing:
            raise RFTDataError(
                f"{source}: {len(missing)} kept trajectories have no {column} (text-only "
                f"generator {rows[0]['generator']!r}?), e.g. {missing[:3]}"
            )
    bad = [r["trajectory_id"] for r in rows if len(r["loss_mask"]) != len(r["token_ids"])]
    if bad:
        raise RFTDataError(f"{source}: loss_mask and token_ids differ in length in {bad[:3]}")

    errors: dict[str, set[int]] = {}
    if turns is not None:
        flagged = turns.filter(pc.fill_null(turns["format_error"], False))
        for tid, turn in zip(
            flagged["trajectory_id"].to_pylist(), flagged["turn"].to_pylist(), strict=True
        ):
            errors.setdefault(tid, set()).add(turn)

    per_task: dict[str, int] = {}
    examples, ids = [], []
    for c in ("capped", "too_long", "no_loss_tokens", "masked_turns"):
        counts[c] = 0
    for r in rows:
        tid = r["trajectory_id"]
        if (
            config.max_per_task is not None
            and per_task.get(r["instance_id"], 0) >= config.max_per_task
        ):
            counts["capped"] += 1
            continue
        if len(r["token_ids"]) > config.max_length:
            counts["too_long"] += 1
            continue
        mask = [int(m) for m in r["loss_mask"]]
        spans = assistant_turn_spans(mask)
        bad_turns = errors.get(tid, set())
        if (r.get("format_errors") or 0) > 0 and not bad_turns:
            raise RFTDataError(
                f"{source}: trajectory {tid} has {r['format_errors']} format error(s) but "
                + ("no turns version was given" if turns is None else "no format_error turn rows")
                + ": cannot mask them out of the loss"
            )
        for turn in sorted(bad_turns):
            if turn >= len(spans):
                raise RFTDataError(
                    f"{source}: trajectory {tid}: format error in turn {turn} but its loss_mask "
                    f"has {len(spans)} assistant spans"
                )
            start, end = spans[turn]
            mask[start:end] = [0] * (end - start)
            counts["masked_turns"] += 1
        if not any(mask):
            counts["no_loss_tokens"] += 1
            continue
        per_task[r["instance_id"]] = per_task.get(r["instance_id"], 0) + 1
        examples.append({"input_ids": list(r["token_ids"]), "assistant_masks": mask})
        ids.append(tid)
    counts["kept"] = len(examples)
    if not examples:
        raise RFTDataError(f"{source}: no trajectory left to train on ({counts})")
    return RFTData(examples, ids, counts)


def train_rft(
    lake: Lake,
    model: str,
    trajectory_versions: Sequence[str],
    config: RFTConfig = RFTConfig(),
    *,
    turns_version: str | None = None,
    name: str | None = None,
) -> Version:
    """Fine-tune `model` (a `models` version or a model directory) on the resolved trajectories of
    `trajectory_versions`; return the new `models` version (or the existing one with the same
    fingerprint). Runs on every process of an accelerate launch."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    state = PartialState(cpu=not torch.cuda.is_available())
    ref = resolve_model(lake, model)
    versions = sorted({lake.resolve("trajectories", v).version for v in trajectory_versions})
    if not versions:
        raise RFTDataError("no trajectory version given")
    source = "trajectories version(s) " + ", ".join(versions)
    inputs = {"trajectories": ",".join(versions), "models": ref.id}
    turns = None
    if turns_version is not None:
        tv = lake.resolve("turns", turns_version)
        inputs["turns"] = tv.version
        turns = lake.read("turns", tv.version, columns=["trajectory_id", "turn", "format_error"])
    parameters = asdict(config)
    fp = lake.fingerprint("models", stage=STAGE, parameters=parameters, inputs=inputs, name=name)
    existing = lake.find("models", fp)
    if existing is not None:
        return existing

    table = pa.concat_tables(
        [lake.read("trajectories", v) for v in versions], promote_options="default"
    )
    data = rft_examples(table, turns, config, source)
    net, tokenizer = load_model(ref)
    kept = table.filter(pc.is_in(table["trajectory_id"], pa.array(data.trajectory_ids)))
    check_token_ids(lake, tokenizer, net.get_output_embeddings().weight.shape[0], kept, source)

    metrics: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="swerl-rft-") as scratch:
        args = SFTConfig(
            output_dir=scratch,
            num_train_epochs=config.epochs,
            learning_rate=config.lr,
            weight_decay=config.weight_decay,
            warmup_steps=config.warmup_steps,
            lr_scheduler_type="cosine",
            optim="adamw_torch",
            per_device_train_batch_size=config.micro_batch_size,
            gradient_accumulation_steps=config.accumulation_steps(state.num_processes),
            max_grad_norm=config.max_grad_norm,
            max_length=None,  # too-long trajectories were dropped; never truncate
            bf16=config.bf16,
            activation_checkpointing=config.gradient_checkpointing,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            seed=config.seed,
            data_seed=config.seed,
            use_cpu=not torch.cuda.is_available(),
            ddp_find_unused_parameters=False,  # every parameter of a causal LM gets a gradient
            disable_tqdm=True,
        )
        trainer = SFTTrainer(
            model=net,
            args=args,
            train_dataset=Dataset.from_list(data.examples),
            processing_class=tokenizer,
            callbacks=[_MetricsCallback(metrics)],
        )
        trainer.train()

        # Publish: every process takes part in saving (FSDP / ZeRO-3 gather the weights), the
        # main process writes the version; nothing is published if anything above raised.
        with contextlib.ExitStack() as stack:
            path: list[Any] = [None]
            if state.is_main_process:
                info = {
                    **model_info(tokenizer, ref),
                    "trajectory_count": len(data.trajectory_ids),
                    "trajectory_ids_sha256": data.ids_sha256,
                    "data": data.counts,
                    "steps": len(metrics),
                    "processes": state.num_processes,
                }
                w = stack.enter_context(
                    lake.directory(
                        "models",
                        stage=STAGE,
                        parameters=parameters,
                        inputs=inputs,
                        name=name,
                        info=info,
                    )
                )
                path = [str(w.path)]
            if state.num_processes > 1:
                broadcast_object_list(path, from_process=0)
            trainer.save_model(path[0])
            if state.is_main_process:
                tokenizer.save_pretrained(path[0])
                (w.path / "trajectory_ids.txt").write_text("\n".join(data.trajectory_ids) + "\n")
                for row in metrics:
                    row.update(model_version=w.version, stage=STAGE)
                # "models" = this version (its id makes the fingerprint unique), not the parent
                w.info["train_metrics"] = write_train_metrics(
                    lake, metrics, stage=STAGE, inputs={**inputs, "models": w.version}
                )
            state.wait_for_everyone()
        result = [w.version if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(result, from_process=0)
    return lake.resolve("models", result[0])


class _MetricsCallback(TrainerCallback):
    """Collects one `train_metrics` row per optimizer step from the trainer's logs."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return  # the final summary log (train_loss, train_runtime) is not a step
        self.rows.append(
            {
                "step": state.global_step - 1,
                "epoch": logs.get("epoch"),
                "loss": logs["loss"],
                "grad_norm": logs.get("grad_norm"),
                "lr": logs.get("learning_rate"),
                "entropy": logs.get("entropy"),
            }
        )
