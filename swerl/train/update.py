"""One DAPO update round (PAPER.md section 6): trajectories of iteration k + policy k -> policy k+1.

    version = update_policy(lake, "policy-3", trajectories_version, iteration=3, config=UpdateConfig())

    accelerate launch --num_processes 8 -m swerl.cli train update ...   # data parallel
    swerl train update --policy ... --trajectories ... --iteration 3     # one process, CPU or GPU

What it does, top to bottom:
1. read the trajectories of `iteration` from one `trajectories` version and refuse the unusable
   (no token ids or masks: text-only API generators; ids outside the vocabulary; a sampler whose
   tokenizer differs from the policy's);
2. group advantages by `group_id`, drop the samples whose advantage is 0 (`train/dapo.py`);
3. recompute pi_old with the trainer before the first step, and log the gap to the sampler's
   log-probs (PAPER.md lesson 2);
4. one epoch over the kept samples, shuffled, in minibatches of `batch_size` trajectories; each
   minibatch is split into micro-batches and the gradients are summed so that the loss is the
   token-level mean over the whole minibatch; AdamW, gradient clip, one optimizer step per minibatch;
5. publish a `models` version (weights, tokenizer, `optimizer.pt`) and one `train_metrics` row per
   step. Nothing is published when any step fails; re-running with the same inputs, parameters and
   code returns the existing version without training.

Scale: data parallel through accelerate. Every process holds the whole model and optimizer; each
takes a share of every minibatch's trajectories and the gradients are summed across processes with
one all-reduce per step (which is what DDP does, without its forward wrapper: the chunked log-prob
head calls the decoder directly). Not supported yet: FSDP / DeepSpeed ZeRO sharding for this loop
(the LM-head weight would have to be gathered for `sequence_logprobs`); `update_policy` refuses
them with a message. RFT (`train/rft.py`) runs under both.

Where we deviate from, or add to, the paper: see the README, "The DAPO update" (sample std, tolerance, optional TIS).
The last minibatch of an epoch may be smaller than `batch_size` (it is kept, not dropped).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from swerl.lake import Lake
from swerl.train.checkpoint import (
    OPTIMIZER_FILE,
    CheckpointError,
    check_token_ids,
    load_model,
    model_info,
    resolve_model,
    save_model,
)
from swerl.train.dapo import group_advantages, nonzero_advantage_mask, policy_loss, sampler_gap
from swerl.train.metrics import write_train_metrics

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import Tensor

    from swerl.lake import Version

STAGE = "update_policy"
# Generators that return text only: their "token ids" are a re-tokenization, not what was sampled.
TEXT_ONLY_GENERATORS = ("openai-chat",)


log = logging.getLogger(__name__)


class UpdateError(ValueError):
    """Input the update cannot train on; the message names the dataset version and the problem."""


@dataclass(frozen=True)
class UpdateConfig:
    """Knobs of one update round. Defaults: PAPER.md section 6 (stage 1 except `eps_high`)."""

    eps_low: float = 0.2
    """Lower clip of the ratio: 1 - eps_low."""
    eps_high: float = 0.28
    """Upper clip (clip-higher): 1 + eps_high. The paper: 0.3 in stage 1, 0.26 in stage 2."""
    batch_size: int = 128
    """Trajectories per optimizer step (the paper: 128 in stage 1, 256 in stage 2)."""
    micro_batch_size: int = 1
    """Trajectories per forward/backward on one process; bounds memory, not the math."""
    lr: float = 1e-6
    """AdamW learning rate (constant)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay."""
    max_grad_norm: float = 1.0
    """Clip of the global gradient norm before each step."""
    scale_by_std: bool = True
    """Divide advantages by the group's std (false: R - mean only)."""
    adv_eps: float = 1e-6
    """Added to the group std (the paper's delta)."""
    tol: float = 1e-6
    """Reward spread / |advantage| at or below which a sample carries no signal and is dropped."""
    tis_cap: float | None = None
    """Truncated importance sampling against the sampler's log-probs with this cap; None: off."""
    chunk_size: int = 1024
    """Tokens per LM-head chunk in the log-prob computation (memory, not math)."""
    temperature: float = 1.0
    """The sampler's temperature; logits are divided by it so pi matches what was sampled."""
    seed: int = 0
    """Seed of the minibatch shuffle (mixed with the iteration)."""

    def __post_init__(self) -> None:
        if not (0 < self.eps_low < 1 and self.eps_high > 0):
            raise ValueError(
                f"need 0 < eps_low < 1 and eps_high > 0, got {self.eps_low}, {self.eps_high}"
            )
        if self.batch_size < 1 or self.micro_batch_size < 1:
            raise ValueError(
                f"batch_size {self.batch_size} and micro_batch_size "
                f"{self.micro_batch_size} must be >= 1"
            )
        if self.micro_batch_size > self.batch_size:
            raise ValueError(
                f"micro_batch_size {self.micro_batch_size} > batch_size {self.batch_size}"
            )
        if self.lr <= 0 or self.max_grad_norm <= 0 or self.weight_decay < 0:
            raise ValueError("need lr > 0, max_grad_norm > 0 and weight_decay >= 0")
        if not all(0 <= b < 1 for b in self.betas) or len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.tis_cap is not None and self.tis_cap < 1:
            raise ValueError(f"tis_cap must be >= 1 (a weight cap), got {self.tis_cap}")
        if self.chunk_size < 1 or self.temperature <= 0:
            raise ValueError("need chunk_size >= 1 and temperature > 0")
        if self.tol < 0 or self.adv_eps < 0:
            raise ValueError("tol and adv_eps must be >= 0")


@dataclass
class Sample:
    """One kept trajectory, as tensors on the CPU."""

    trajectory_id: str
    token_ids: Tensor
    loss_mask: Tensor
    sampler_logprobs: Tensor | None
    advantage: float
    old_logprobs: Tensor | None = None

    @property
    def tokens(self) -> int:
        return int(self.loss_mask.sum())


def update_policy(
    lake: Lake,
    policy: str,
    trajectories_version: str | Sequence[str],
    iteration: int,
    config: UpdateConfig = UpdateConfig(),
    *,
    name: str | None = None,
    accelerator: Accelerator | None = None,
) -> Version:
    """Train `policy` (a `models` version or a model directory) for one epoch on the trajectories
    of `iteration` in `trajectories_version`; return the new `models` version (or the existing
    one with the same fingerprint). Several trajectory versions (the rollout batches of one
    iteration under dynamic sampling, or shards) are trained on as one set. Runs on every process
    of an accelerate launch."""
    import torch
    from accelerate import Accelerator, DistributedType
    from accelerate.utils import broadcast_object_list

    acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise UpdateError(
            f"update_policy runs data parallel only (got {acc.distributed_type}); launch it with "
            "configs/accelerate/ddp.yaml (see the module docstring)"
        )
    ref = resolve_model(lake, policy)
    wanted = (
        [trajectories_version] if isinstance(trajectories_version, str) else trajectories_version
    )
    versions = sorted({lake.resolve("trajectories", v).version for v in wanted})
    if not versions:
        raise UpdateError("no trajectories version given")
    source = f"trajectories version(s) {', '.join(versions)} iteration {iteration}"
    parameters = {**asdict(config), "iteration": iteration}
    inputs = {"trajectories": ",".join(versions), "models": ref.id}
    existing = lake.find(
        "models",
        lake.fingerprint("models", stage=STAGE, parameters=parameters, inputs=inputs, name=name),
    )
    if existing is not None:
        return existing

    # ---- data: one iteration, checked, advantages, zero-advantage samples dropped -------------
    table = _read_iteration(lake, versions, iteration, source)
    model, tokenizer = load_model(ref)
    check_token_ids(lake, tokenizer, model.get_output_embeddings().weight.shape[0], table, source)
    samples, dropped = _kept_samples(table, config, source)

    # ---- model and optimizer (continued from the parent's state when it has one) --------------
    model.to(acc.device)
    # Qwen2-style models have no dropout (attention_dropout 0): train and eval log-probs agree.
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=config.betas,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    if ref.has_optimizer:
        state = torch.load(ref.path / OPTIMIZER_FILE, map_location=acc.device, weights_only=True)
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError) as e:
            raise CheckpointError(
                f"model {ref}: {OPTIMIZER_FILE} does not fit the model: {e}"
            ) from e
        for group in optimizer.param_groups:  # this round's hyperparameters, the parent's moments
            group.update(
                lr=config.lr,
                betas=config.betas,
                eps=config.adam_eps,
                weight_decay=config.weight_decay,
            )

    # ---- one epoch: shuffle, minibatches, this process's share of each -------------------------
    order = torch.randperm(
        len(samples), generator=torch.Generator().manual_seed(config.seed * 100_003 + iteration)
    ).tolist()
    minibatches = [
        order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)
    ]
    mine = [mb[acc.process_index :: acc.num_processes] for mb in minibatches]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # ALGO: pi_old recomputed by the trainer before the first step (PAPER.md section 9)
    gap = _compute_old_logprobs(model, [samples[i] for mb in mine for i in mb], config, pad_id, acc)

    rows = []
    for step, (mb, local) in enumerate(zip(minibatches, mine, strict=True)):
        num_tokens = sum(samples[i].tokens for i in mb)  # the whole minibatch, every process
        sums = _train_minibatch(model, [samples[i] for i in local], num_tokens, config, pad_id, acc)
        totals = _all_reduce(sums, acc)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm))
        if not math.isfinite(grad_norm):  # a NaN step would poison every later round
            raise UpdateError(
                f"{source}: gradient norm {grad_norm} at step {step}; nothing published"
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        rows.append(_metrics_row(step, totals, grad_norm, config.lr, len(mb), dropped, gap))

    # ---- publish: main process writes, every process learns the version id --------------------
    result: list[Any] = [None]
    if acc.is_main_process:
        info = {
            **model_info(tokenizer, ref),
            "iteration": iteration,
            "kept_samples": len(samples),
            "trajectory_ids_sha256": _ids_sha256([s.trajectory_id for s in samples]),
            "dropped_samples": dropped,
            "steps": len(rows),
            "processes": acc.num_processes,
            "sampler_gap": gap,
            # on-policy check for the reader: normally exactly the parent
            "sampled_by": sorted({v for v in table["policy_version"].to_pylist() if v}),
        }
        with lake.directory(
            "models", stage=STAGE, parameters=parameters, inputs=inputs, name=name, info=info
        ) as w:
            save_model(w.path, model, tokenizer, optimizer)
            ids = "".join(f"{s.trajectory_id}\n" for s in samples)  # exactly what it trained on
            (w.path / "trajectory_ids.txt").write_text(ids)
            for row in rows:
                row.update(model_version=w.version, stage=STAGE, iteration=iteration)
            w.info["train_metrics"] = write_train_metrics(
                lake, rows, stage=STAGE, inputs={"models": w.version, **inputs}
            )
        result = [w.version]
    if acc.num_processes > 1:
        broadcast_object_list(result, from_process=0)
    return lake.resolve("models", result[0])


def _ids_sha256(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _read_iteration(lake: Lake, versions: list[str], iteration: int, source: str) -> pa.Table:
    columns = [
        "trajectory_id",
        "group_id",
        "iteration",
        "generator",
        "policy_version",
        "token_ids",
        "loss_mask",
        "sampler_logprobs",
        "reward",
    ]
    table = pa.concat_tables(
        [lake.read("trajectories", v, columns=columns) for v in versions], promote_options="default"
    )
    table = table.filter(pc.equal(table["iteration"], iteration))
    if table.num_rows == 0:
        raise UpdateError(f"{source}: no trajectories of that iteration")
    # An episode whose sandbox never started has neither tokens nor a reward: not a sample.
    unstarted = pc.and_(pc.is_null(table["token_ids"]), pc.is_null(table["reward"]))
    skipped = pc.sum(unstarted).as_py() or 0
    if skipped:
        log.warning("%s: %d episodes never started (sandbox errors); left out", source, skipped)
        table = table.filter(pc.invert(unstarted))
        if table.num_rows == 0:
            raise UpdateError(f"{source}: no episode of that iteration started")
    problems = []
    text_only = pc.is_in(table["generator"], pa.array(TEXT_ONLY_GENERATORS))
    if pc.any(text_only).as_py():
        problems.append(
            f"{pc.sum(text_only).as_py()} come from a text-only generator "
            f"({', '.join(TEXT_ONLY_GENERATORS)}): their token ids were not sampled"
        )
    for column in ("token_ids", "loss_mask", "group_id", "reward"):
        nulls = table[column].null_count
        if nulls:
            problems.append(f"{nulls} have no {column}")
    if problems:
        raise UpdateError(f"{source}: cannot train on these trajectories: " + "; ".join(problems))
    ids = table["trajectory_id"].to_pylist()
    lengths = pc.list_value_length(table["token_ids"])
    for column in ("loss_mask", "sampler_logprobs"):
        other = pc.list_value_length(table[column])
        bad = pc.and_(pc.is_valid(other), pc.not_equal(other, lengths))
        if pc.any(bad).as_py():
            first = ids[pc.index(bad, True).as_py()]
            raise UpdateError(f"{source}: {column} and token_ids differ in length, e.g. in {first}")
    return table


def _kept_samples(table: pa.Table, config: UpdateConfig, source: str) -> tuple[list[Sample], int]:
    import torch

    adv = group_advantages(
        table["reward"].to_pylist(),
        table["group_id"].to_pylist(),
        scale_by_std=config.scale_by_std,
        eps=config.adv_eps,
        tol=config.tol,
    )
    keep = nonzero_advantage_mask(adv, config.tol)
    # A kept sample must have something to train on.
    masks = table["loss_mask"].to_pylist()
    keep &= torch.tensor([any(m) for m in masks], dtype=torch.bool)
    if not keep.any():
        raise UpdateError(
            f"{source}: every one of the {table.num_rows} trajectories has a zero advantage "
            f"({len(set(table['group_id'].to_pylist()))} groups, each of equal rewards or one "
            "sample): nothing to learn from"
        )
    sampler = table["sampler_logprobs"].to_pylist()
    if config.tis_cap is not None and any(s is None for i, s in enumerate(sampler) if keep[i]):
        raise UpdateError(
            f"{source}: tis_cap is set but some trajectories have no sampler_logprobs"
        )
    samples = []
    for i in torch.nonzero(keep).flatten().tolist():
        samples.append(
            Sample(
                trajectory_id=table["trajectory_id"][i].as_py(),
                token_ids=torch.tensor(table["token_ids"][i].as_py(), dtype=torch.long),
                loss_mask=torch.tensor(masks[i], dtype=torch.bool),
                sampler_logprobs=None if sampler[i] is None else torch.tensor(sampler[i]),
                advantage=float(adv[i]),
            )
        )
    return samples, table.num_rows - len(samples)


def _pad(rows: list[Tensor], value: float | int) -> Tensor:
    import torch

    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value)


def _micro_batches(samples: list[Sample], size: int) -> list[list[Sample]]:
    return [samples[i : i + size] for i in range(0, len(samples), size)]


def _forward(model, batch: list[Sample], pad_id: int, config: UpdateConfig, device, entropy=False):
    from swerl.train.logprobs import sequence_logprobs

    ids = _pad([s.token_ids for s in batch], pad_id).to(device)
    attention = _pad([s.token_ids.new_ones(len(s.token_ids)) for s in batch], 0).to(device)
    mask = _pad([s.loss_mask for s in batch], False).to(device)
    out = sequence_logprobs(
        model, ids, attention, config.chunk_size, config.temperature, return_entropy=entropy
    )
    return out, mask


def _compute_old_logprobs(
    model, samples: list[Sample], config: UpdateConfig, pad_id: int, acc: Accelerator
) -> dict[str, float | None]:
    """Fill `old_logprobs` of this process's samples; return the sampler gap over all processes."""
    import torch

    sums = torch.zeros(3, dtype=torch.float64, device=acc.device)  # tokens, |diff|, k3
    with torch.no_grad():
        for batch in _micro_batches(samples, config.micro_batch_size):
            logp, mask = _forward(model, batch, pad_id, config, acc.device)
            for row, s in enumerate(batch):
                s.old_logprobs = logp[row, : len(s.token_ids)].float().cpu()
                if s.sampler_logprobs is not None:
                    gap = sampler_gap(s.old_logprobs, s.sampler_logprobs, s.loss_mask)
                    n = s.tokens
                    sums += torch.tensor(
                        [n, gap["logprob_abs_diff"] * n, gap["kl_k3"] * n],
                        dtype=torch.float64,
                        device=acc.device,
                    )
    if acc.num_processes > 1:
        sums = acc.reduce(sums, "sum")
    n = float(sums[0])
    if n == 0:
        return {"sampler_gap_abs": None, "sampler_kl": None}
    return {"sampler_gap_abs": float(sums[1]) / n, "sampler_kl": float(sums[2]) / n}


def _train_minibatch(
    model,
    local: list[Sample],
    num_tokens: int,
    config: UpdateConfig,
    pad_id: int,
    acc: Accelerator,
) -> dict[str, float]:
    """Backward over this process's micro-batches; gradients hold sum / num_tokens."""
    import torch

    sums = {
        "tokens": 0.0,
        "loss": 0.0,
        "clip_low": 0.0,
        "clip_high": 0.0,
        "ratio": 0.0,
        "entropy": 0.0,
        "ratio_max": 0.0,
    }
    for batch in _micro_batches(local, config.micro_batch_size):
        (logp, entropy), mask = _forward(model, batch, pad_id, config, acc.device, entropy=True)
        old = _pad([s.old_logprobs for s in batch], 0.0).to(acc.device)
        adv = torch.tensor([s.advantage for s in batch], device=acc.device)
        sampler = None
        if config.tis_cap is not None:
            sampler = _pad([s.sampler_logprobs for s in batch], 0.0).to(acc.device)
        # ALGO: clipped token-level loss; divisor = action tokens of the whole minibatch
        loss, m = policy_loss(
            logp,
            old,
            adv,
            mask,
            config.eps_low,
            config.eps_high,
            sampler_logprobs=sampler,
            tis_cap=config.tis_cap,
            num_tokens=num_tokens,
        )
        loss.backward()
        n = m["tokens"]
        sums["tokens"] += n
        sums["loss"] += float(loss.detach()) * num_tokens
        sums["clip_low"] += m["clip_frac_low"] * n
        sums["clip_high"] += m["clip_frac_high"] * n
        sums["ratio"] += m["ratio_mean"] * n
        sums["entropy"] += float(entropy.detach()[mask].sum())
        sums["ratio_max"] = max(sums["ratio_max"], m["ratio_max"])
    if acc.num_processes > 1:
        # plumbing: sum the gradients of every process (the loss already divides by the
        # minibatch's token count, so the sum is the minibatch mean); one flat all-reduce
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        flat = acc.reduce(flat, "sum")
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
    return sums


def _all_reduce(sums: dict[str, float], acc: Accelerator) -> dict[str, float]:
    import torch

    if acc.num_processes == 1:
        return sums
    keys = [k for k in sums if k != "ratio_max"]
    total = acc.reduce(
        torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=acc.device), "sum"
    )
    top = acc.gather(torch.tensor([sums["ratio_max"]], dtype=torch.float64, device=acc.device))
    return {**dict(zip(keys, total.tolist(), strict=True)), "ratio_max": float(top.max())}


def _metrics_row(
    step: int,
    t: dict[str, float],
    grad_norm: float,
    lr: float,
    kept: int,
    dropped: int,
    gap: dict[str, float | None],
) -> dict[str, Any]:
    n = t["tokens"]
    return {
        "step": step,
        "loss": t["loss"] / n,
        "clip_frac_low": t["clip_low"] / n,
        "clip_frac_high": t["clip_high"] / n,
        "ratio_mean": t["ratio"] / n,
        "ratio_max": t["ratio_max"],
        "entropy": t["entropy"] / n,
        "grad_norm": grad_norm,
        "lr": lr,
        "tokens": int(n),
        "kept_samples": kept,
        "dropped_samples": dropped,
        **gap,
    }
