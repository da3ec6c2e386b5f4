"""One DAPO update round (PAPER.md section 6): trajectories of iteration k + policy k -> policy k+1.

    version = update_policy(lake, "policy-3", trajectories_version, iteration=3, config=UpdateConfig())

    swerl train update --policy ... --trajectories ... --iteration 3     # one process, CPU or GPU
    accelerate launch --config_file configs/accelerate/ddp.yaml -m swerl.cli train update ...
    accelerate launch --config_file configs/accelerate/fsdp.yaml -m swerl.cli train update --bf16 ...

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

Scale, through accelerate (the same code on one process, many, or many machines):
- one process, or data parallel (`configs/accelerate/ddp.yaml`, or torchrun): every process holds
  the whole model and optimizer, takes a share of every minibatch's trajectories, and the
  gradients are summed across processes with one all-reduce per step (what DDP does, without its
  forward wrapper);
- FSDP2 (`configs/accelerate/fsdp.yaml`): parameters, gradients and AdamW state sharded over the
  processes (`torch.distributed.fsdp.fully_shard`), for policies that do not fit one GPU. Each
  decoder layer (the model's `_no_split_modules` class) is one unit; the rest (embeddings, final
  norm, LM head) belongs to the root unit, a `LogprobModel` wrapper, so that the chunked LM-head
  log-probs run inside the root's forward where FSDP has gathered the head weight (see
  `train/logprobs.py`). Gradients are summed, not averaged, over processes (divide factor 1),
  as in the data-parallel path. Every process runs the same number of forward/backward passes
  (FSDP's gathers are collective): a process whose share of a minibatch is shorter runs filler
  micro-batches whose loss is multiplied by 0. Only process 0 reads the weights (the others build
  the model on the meta device and receive their shards from it), and saving gathers the full
  weights and optimizer state on process 0's CPU (`train/checkpoint.py`: one `optimizer.pt` that
  any later layout loads). The update shards the model itself, always with FSDP2: the launch
  file's `fsdp_config` knobs (wrap policy, offload, activation checkpointing, FSDP1) are read by
  RFT, not here. accelerate enables FSDP only for GPU processes; on CPU processes the update
  shards when `ACCELERATE_USE_FSDP=true` is set, the variable `accelerate launch` sets (the
  two-process CPU test runs that way).
- DeepSpeed ZeRO is refused (deepspeed is not a dependency; RFT is written for it).

Precision: float32 by default. `bf16=True` is mixed precision: bfloat16 forward (one process /
data parallel: `torch.autocast`; FSDP: `MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=float32)`), float32 master weights, gradient reduction and AdamW state; the log-probs
(softmax, the ratio, the comparison with the sampler) are float32 either way. pi_old is recomputed
in the same precision as pi_theta, so the first step's ratio is exactly 1. The launch file's
`mixed_precision` does not apply to the update; `bf16` does (and is recorded in the version's
parameters).

Where we deviate from, or add to, the paper: see the README, "The DAPO update" (sample std, tolerance, optional TIS).
The kept samples are cut into ceil(kept / `batch_size`) minibatches of near-equal size (72 kept
with batch 64: two of 36), not full ones and a remainder: Adam's step has about the same size
whatever the minibatch, and a remainder of a few samples would be a full step on a noisy
gradient. Nothing is dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from swerl.lake import Lake
from swerl.train.checkpoint import (
    CheckpointError,
    check_token_ids,
    load_model,
    load_optimizer_state,
    model_info,
    read_optimizer_state,
    resolve_model,
    save_model,
    save_optimizer_state,
)
from swerl.train.dapo import keep_mask, policy_loss, sampler_gap
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
    """Most trajectories per optimizer step (the paper: 128 in stage 1, 256 in stage 2); the kept
    samples are cut into ceil(kept / batch_size) near-equal minibatches."""
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
    drop_unsolved: bool = False
    """Also drop the groups with no resolved sample (`swerl.train.dapo.solved_group_mask`): not
    in the paper. With the turn penalty such groups still have spread, and their advantages
    reward failing quickly; the learning benchmark trains better without them (README)."""
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
    bf16: bool = False
    """bfloat16 mixed precision: bf16 forward, float32 weights, AdamW state and log-probs."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in backward (long trajectories; memory only)."""
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

    from swerl.train.logprobs import LogprobModel

    acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    if acc.distributed_type == DistributedType.DEEPSPEED:
        raise UpdateError(
            "update_policy does not run under DeepSpeed (not a dependency, and its ZeRO-3 "
            "gathering is untested here); launch it with configs/accelerate/fsdp.yaml (sharded) "
            "or ddp.yaml (see the module docstring)"
        )
    sharded = _fsdp_requested(acc)
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
    if sharded:
        net, tokenizer = _load_sharded(ref, config, acc)
    else:
        model, tokenizer = load_model(ref)
        _checkpoint_layers(model, config)
        net = LogprobModel(model.to(acc.device))
    lm = net.lm
    check_token_ids(lake, tokenizer, lm.get_output_embeddings().weight.shape[0], table, source)
    samples, dropped = _kept_samples(table, config, source)

    # ---- optimizer (continued from the parent's state when it has one) -------------------------
    # Qwen2-style models have no dropout (attention_dropout 0): train and eval log-probs agree.
    net.train()
    optimizer = torch.optim.AdamW(
        lm.parameters(),
        lr=config.lr,
        betas=config.betas,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    if ref.has_optimizer:
        state = _on_main(acc, sharded, lambda: read_optimizer_state(ref, lm), {})
        load_optimizer_state(lm, optimizer, state, sharded=sharded, source=f"model {ref}")
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
    minibatches = _even_minibatches(order, config.batch_size)
    shares = [[mb[p :: acc.num_processes] for mb in minibatches] for p in range(acc.num_processes)]
    mine = shares[acc.process_index]
    run = _Runner(net, config, tokenizer, acc, sharded)

    # ALGO: pi_old recomputed by the trainer before the first step (PAPER.md section 9)
    # (under FSDP every process makes as many passes as the one with the most samples)
    passes = max(math.ceil(sum(map(len, s)) / config.micro_batch_size) for s in shares)
    gap = _compute_old_logprobs(run, [samples[i] for mb in mine for i in mb], passes, samples[0])

    rows = []
    for step, (mb, local) in enumerate(zip(minibatches, mine, strict=True)):
        num_tokens = sum(samples[i].tokens for i in mb)  # the whole minibatch, every process
        passes = math.ceil(len(shares[0][step]) / config.micro_batch_size)  # process 0's: most
        sums = _train_minibatch(
            run, [samples[i] for i in local], num_tokens, passes, filler=samples[mb[0]]
        )
        totals = _all_reduce(sums, acc)
        grad_norm = _full_float(
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
        )
        if not math.isfinite(grad_norm):  # a NaN step would poison every later round
            raise UpdateError(
                f"{source}: gradient norm {grad_norm} at step {step}; nothing published"
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        rows.append(_metrics_row(step, totals, grad_norm, config.lr, len(mb), dropped, gap))

    # ---- publish: main process writes, every process gathers (FSDP) and learns the version id
    info = {
        **model_info(tokenizer, ref),
        "iteration": iteration,
        "kept_samples": len(samples),
        "trajectory_ids_sha256": _ids_sha256([s.trajectory_id for s in samples]),
        "dropped_samples": dropped,
        "steps": len(rows),
        "processes": acc.num_processes,
        "sharded": sharded,
        "sampler_gap": gap,
        # on-policy check for the reader: normally exactly the parent
        "sampled_by": sorted({v for v in table["policy_version"].to_pylist() if v}),
    }
    result: list[Any] = [None]
    with contextlib.ExitStack() as stack:
        main = acc.is_main_process
        if main:
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
        # one full state on process 0's CPU at a time: the weights, then the AdamW state
        weights = _gather_weights(lm, sharded)
        if main:
            save_model(w.path, lm, tokenizer, state_dict=weights)
        del weights
        optimizer_state = _gather_optimizer_state(lm, optimizer)
        if main:
            save_optimizer_state(w.path, optimizer_state)
            ids = "".join(f"{s.trajectory_id}\n" for s in samples)  # exactly what it trained on
            (w.path / "trajectory_ids.txt").write_text(ids)
            for row in rows:
                row.update(model_version=w.version, stage=STAGE, iteration=iteration)
            # "models" = this version (its id makes the fingerprint unique), not the parent
            w.info["train_metrics"] = write_train_metrics(
                lake, rows, stage=STAGE, inputs={**inputs, "models": w.version}
            )
            result = [w.version]
        del optimizer_state
    if acc.num_processes > 1:
        broadcast_object_list(result, from_process=0)
    return lake.resolve("models", result[0])


def _fsdp_requested(acc: Accelerator) -> bool:
    """FSDP from the launch: accelerate's FSDP (GPU processes), or ACCELERATE_USE_FSDP=true on
    CPU processes, where accelerate leaves FSDP off (gloo runs FSDP2 too)."""
    import os

    from accelerate import DistributedType

    if acc.distributed_type == DistributedType.FSDP:
        return True
    return (
        acc.distributed_type == DistributedType.MULTI_CPU
        and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    )


def _on_main(acc: Accelerator, sharded: bool, read: Callable[[], Any], other: Any) -> Any:
    """`read()` on process 0 only when sharded (the others get `other`), on every process
    otherwise. A CheckpointError on process 0 is raised on every process, not left to hang the
    others in the next collective."""
    import torch.distributed as dist

    if not sharded:
        return read()
    value, error = other, None
    if acc.is_main_process:
        try:
            value = read()
        except CheckpointError as e:
            error = str(e)
    errors: list[str | None] = [error]
    dist.broadcast_object_list(errors, src=0)
    if errors[0] is not None:
        raise CheckpointError(errors[0])
    return value


def _load_sharded(ref, config: UpdateConfig, acc: Accelerator):
    """The policy as an FSDP2-sharded `LogprobModel`, and its tokenizer.

    Process 0 reads the weights; every process builds the model on the meta device, shards it
    (one unit per decoder layer, the root unit holding embeddings, final norm and LM head),
    allocates its shards, and receives them from process 0 (`set_model_state_dict` with
    `broadcast_from_rank0`). Buffers outside the state dict (rotary frequencies) are copied from
    process 0 too."""
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    from swerl.train.logprobs import LogprobModel

    model, tokenizer = _on_main(acc, True, lambda: load_model(ref), (None, None))
    full: dict[str, Tensor] = {}
    buffers: dict[str, Tensor] = {}
    if acc.is_main_process:
        full = model.state_dict()
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        model.to(torch.device("meta"))
        model.tie_weights()  # .to() untied the shared embedding / head weight
    else:
        model, tokenizer = load_model(ref, weights=False)
    _checkpoint_layers(model, config)  # before sharding: FSDP's hooks stay outside the recompute
    layer_classes = set(model._no_split_modules or ())
    layers = [m for m in model.modules() if type(m).__name__ in layer_classes]
    if not layers:
        raise UpdateError(
            f"model {ref}: {type(model).__name__} names no decoder layer class "
            "(_no_split_modules) to shard by"
        )
    net = LogprobModel(model)
    mp = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if config.bf16 else None, reduce_dtype=torch.float32
    )
    for layer in layers:
        fully_shard(layer, mp_policy=mp)
    fully_shard(net, mp_policy=mp)
    for unit in net.modules():
        if isinstance(unit, FSDPModule):  # sum the processes' gradients, as the DDP path does
            unit.set_gradient_divide_factor(1.0)
            unit.set_force_sum_reduction_for_comms(True)
    net.to_empty(device=acc.device)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, full, options=options)
    del full
    for n, b in model.named_buffers():
        if acc.is_main_process:
            b.copy_(buffers[n])
        dist.broadcast(b, src=0)
    return net, tokenizer


def _checkpoint_layers(model, config: UpdateConfig) -> None:
    if config.gradient_checkpointing:
        # non-reentrant: works with inputs that need no grad and with FSDP2 (transformers
        # checkpoints each layer's `forward`, so the FSDP hooks on `__call__` run once)
        model.activation_checkpointing_enable({"use_reentrant": False})


def _gather_weights(lm, sharded: bool) -> dict[str, Tensor] | None:
    """FSDP: the full weights on process 0's CPU (every process takes part; the others get {}).
    Unsharded: None, the model saves itself."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not sharded:
        return None
    return get_model_state_dict(
        lm, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


def _gather_optimizer_state(lm, optimizer) -> dict[str, Any]:
    """The full optimizer state keyed by parameter name, on process 0's CPU (`optimizer.pt`'s
    format, `train/checkpoint.py`); every process takes part, the others get {}."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(lm, optimizer, options=options)


def _full_float(norm: Tensor) -> float:
    from torch.distributed.tensor import DTensor

    return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)


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
        "resolved",
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

    adv, keep = keep_mask(
        table["reward"].to_pylist(),
        table["group_id"].to_pylist(),
        table["resolved"].to_pylist() if config.drop_unsolved else None,
        scale_by_std=config.scale_by_std,
        eps=config.adv_eps,
        tol=config.tol,
    )
    # A kept sample must have something to train on.
    masks = table["loss_mask"].to_pylist()
    keep &= torch.tensor([any(m) for m in masks], dtype=torch.bool)
    if not keep.any():
        raise UpdateError(
            f"{source}: every one of the {table.num_rows} trajectories has a zero advantage "
            f"({len(set(table['group_id'].to_pylist()))} groups, each of equal rewards or one "
            "sample"
            + (", or with no resolved sample: drop_unsolved is on" if config.drop_unsolved else "")
            + "): nothing to learn from"
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


def _micro_batches(samples: list[Sample], size: int, passes: int, filler: Sample | None):
    """(micro-batch, is_filler) pairs: this process's samples in `size`s, then fillers up to
    `passes` micro-batches (sharded runs; `filler` None: no padding)."""
    batches = [(samples[i : i + size], False) for i in range(0, len(samples), size)]
    if filler is not None:
        batches += [([filler], True)] * (passes - len(batches))
    return batches


@dataclass
class _Runner:
    """What every forward needs: the model (a `LogprobModel`, sharded or not) and the plumbing."""

    net: Any
    config: UpdateConfig
    tokenizer: Any
    acc: Accelerator
    sharded: bool

    def forward(self, batch: list[Sample], entropy: bool = False):
        import contextlib

        import torch

        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = self.acc.device
        ids = _pad([s.token_ids for s in batch], pad_id).to(device)
        attention = _pad([s.token_ids.new_ones(len(s.token_ids)) for s in batch], 0).to(device)
        mask = _pad([s.loss_mask for s in batch], False).to(device)
        # bf16 under FSDP is its MixedPrecisionPolicy; elsewhere autocast
        autocast = self.config.bf16 and not self.sharded
        with (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if autocast
            else contextlib.nullcontext()
        ):
            out = self.net(
                ids,
                attention,
                chunk_size=self.config.chunk_size,
                temperature=self.config.temperature,
                return_entropy=entropy,
            )
        return out, mask


def _compute_old_logprobs(
    run: _Runner, samples: list[Sample], passes: int, filler: Sample
) -> dict[str, float | None]:
    """Fill `old_logprobs` of this process's samples; return the sampler gap over all processes."""
    import torch

    acc = run.acc
    sums = torch.zeros(3, dtype=torch.float64, device=acc.device)  # tokens, |diff|, k3
    batches = _micro_batches(
        samples, run.config.micro_batch_size, passes, filler if run.sharded else None
    )
    with torch.no_grad():
        for batch, is_filler in batches:
            logp, mask = run.forward(batch)
            if is_filler:
                continue
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


def _even_minibatches(order: list[int], batch_size: int) -> list[list[int]]:
    """`order` cut into ceil(len / batch_size) consecutive minibatches whose sizes differ by at
    most one."""
    steps = math.ceil(len(order) / batch_size)
    bounds = [len(order) * i // steps for i in range(steps + 1)]
    return [order[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _train_minibatch(
    run: _Runner,
    local: list[Sample],
    num_tokens: int,
    passes: int,
    filler: Sample,
) -> dict[str, float]:
    """Backward over this process's micro-batches; gradients hold sum / num_tokens (summed over
    processes: by FSDP's reduce-scatter in backward, else by one all-reduce here)."""
    import torch

    config, acc = run.config, run.acc
    sums = {
        "tokens": 0.0,
        "loss": 0.0,
        "clip_low": 0.0,
        "clip_high": 0.0,
        "ratio": 0.0,
        "entropy": 0.0,
        "ratio_max": 0.0,
    }
    batches = _micro_batches(
        local, config.micro_batch_size, passes, filler if run.sharded else None
    )
    for batch, is_filler in batches:
        (logp, entropy), mask = run.forward(batch, entropy=True)
        if is_filler:  # plumbing: FSDP's collectives need the pass; the step must not see it
            (logp.sum() * 0.0).backward()
            continue
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
    if acc.num_processes > 1 and not run.sharded:
        # plumbing: sum the gradients of every process (the loss already divides by the
        # minibatch's token count, so the sum is the minibatch mean); one flat all-reduce
        params = [p for p in run.net.parameters() if p.requires_grad]
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
