"""Model versions: where a policy comes from, checks before training on it, and how one is saved.

    ref = resolve_model(lake, "20261124T...-ab12cd")       # a `models` version (id or name)
    ref = resolve_model(lake, "models/tiny")               # or any Hugging Face model directory
    model, tokenizer = load_model(ref)                     # weights=False: on the meta device
    check_token_ids(ref, trajectories, "trajectories 2026...")   # ids inside the vocabulary,
                                                            # and the sampler's tokenizer is ours
    save_model(writer.path, model, tokenizer)              # in `lake.directory("models", ...)`
    save_optimizer_state(writer.path, optimizer_state)      # named, full: see below
    state = read_optimizer_state(ref, model)              # the next round continues the moments
    load_optimizer_state(model, optimizer, state, sharded=False, source=str(ref))

A `models` version is a Hugging Face directory (config, weights, tokenizer) plus, after an update
round, `optimizer.pt` (the AdamW state the next round continues).

`optimizer.pt` is the full (unsharded) optimizer state keyed by parameter name, in the format of
`torch.distributed.checkpoint.state_dict.get_optimizer_state_dict(..., full_state_dict=True)`:
{"state": {"model.layers.0.mlp.up_proj.weight": {"step", "exp_avg", "exp_avg_sq"}, ...},
"param_groups": [{"params": [names...], "lr", ...}]}. Being full and named, it loads into any
layout: one process, data parallel, or FSDP over any number of processes (there only process 0
reads the file and `set_optimizer_state_dict` scatters the shards). The cost: process 0 holds the
whole state in CPU memory while saving or loading (8 bytes per parameter for AdamW's two float32
moments: about 580 GB for 72B; a sharded `torch.distributed.checkpoint` directory would avoid
that and is the next step if that memory is short). Files written before this format (keyed by
parameter index, `optimizer.state_dict()`) are read too: the index is the position in
`model.named_parameters()`, which is how the optimizer was built. Its manifest names the parent
model, the data versions and the hyperparameters, and `info.tokenizer_fingerprint`.

The tokenizer fingerprint is a hash of the vocabulary (token -> id) and the special tokens, not of
`tokenizer.json`'s bytes: re-saving a tokenizer may reformat the file without changing one id.
It does not cover normalizer or pre-tokenizer changes that keep the vocabulary; the chat template
is covered by `chat_template_fingerprint` separately (a different template keeps ids valid but
changes what the model saw, so it is recorded, not refused).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swerl.lake import Lake, LakeError

if TYPE_CHECKING:
    import pyarrow as pa
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

OPTIMIZER_FILE = "optimizer.pt"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A model directory or version that cannot be trained on; the message names it."""


@dataclass(frozen=True)
class ModelRef:
    """A policy: its directory, and its `models` version when it came from the lake."""

    path: Path
    version: str | None
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        """The `models` version id, else `path:<absolute directory>`; recorded as an input."""
        return self.version or f"path:{self.path.resolve()}"

    @property
    def has_optimizer(self) -> bool:
        return (self.path / OPTIMIZER_FILE).is_file()

    def __str__(self) -> str:
        return f"models version {self.version} ({self.path})" if self.version else str(self.path)


def resolve_model(lake: Lake, version_or_path: str | Path) -> ModelRef:
    """An existing directory is used as is; anything else must be a `models` version id or name.
    Checks that the directory holds a config, weights and a tokenizer (not that they load)."""
    path = Path(version_or_path)
    if path.is_dir():
        ref = ModelRef(path, None, {})
    else:
        try:
            v = lake.resolve("models", str(version_or_path))
        except LakeError as e:
            raise CheckpointError(
                f"model {str(version_or_path)!r} is neither a directory nor a models version: {e}"
            ) from e
        if v.kind != "directory":
            raise CheckpointError(f"models version {v.version} is not a directory ({v.path})")
        ref = ModelRef(v.path, v.version, v.manifest)
    missing = []
    if not (ref.path / "config.json").is_file():
        missing.append("config.json")
    if not any((ref.path / f).is_file() for f in WEIGHT_FILES):
        missing.append("weights (" + " or ".join(WEIGHT_FILES) + ")")
    if not any((ref.path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        missing.append("tokenizer (tokenizer.json)")
    if missing:
        raise CheckpointError(f"model {ref}: missing {', '.join(missing)}")
    return ref


def load_model(
    ref: ModelRef, dtype: torch.dtype | None = None, *, weights: bool = True
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The causal LM (float32 unless `dtype`) and its tokenizer; a load failure names the path.

    `weights=False` builds the architecture from `config.json` on the meta device (no memory, no
    weight file read): the FSDP processes that receive their shards from process 0."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.path)
        if weights:
            model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=dtype or torch.float32)
        else:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(
                    AutoConfig.from_pretrained(ref.path), dtype=dtype or torch.float32
                )
    except Exception as e:  # corrupt files surface as many exception types
        raise CheckpointError(f"model {ref} does not load: {type(e).__name__}: {e}") from e
    recorded = ref.manifest.get("info", {}).get("tokenizer_fingerprint")
    if recorded and recorded != tokenizer_fingerprint(tokenizer):
        raise CheckpointError(
            f"model {ref}: its tokenizer's fingerprint {tokenizer_fingerprint(tokenizer)} differs "
            f"from the one recorded in its manifest ({recorded}); the directory was modified"
        )
    return model, tokenizer


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """16 hex digits of a hash of the vocabulary (token -> id) and the special tokens."""
    payload = {
        "vocab": sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]),
        "special": sorted(str(t) for t in tokenizer.all_special_tokens),
    }
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def chat_template_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str | None:
    template = tokenizer.chat_template
    return None if template is None else hashlib.sha256(str(template).encode()).hexdigest()[:16]


def model_info(tokenizer: PreTrainedTokenizerBase, parent: ModelRef) -> dict[str, Any]:
    """Manifest `info` every trained `models` version carries."""
    return {
        "parent": parent.id,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "chat_template_fingerprint": chat_template_fingerprint(tokenizer),
        "vocab_size": len(tokenizer),
    }


def check_token_ids(
    lake: Lake,
    policy_tokenizer: PreTrainedTokenizerBase,
    model_vocab_size: int,
    trajectories: pa.Table,
    source: str,
) -> None:
    """Refuse trajectories the policy cannot have produced with its tokenizer.

    Always: every token id must be < the model's and the tokenizer's vocabulary size. Then, for
    each distinct `policy_version` of the trajectories that names a `models` version with a
    recorded tokenizer fingerprint, or an existing model directory, that fingerprint must equal
    the policy's. A `policy_version` that resolves to neither (a served model name) is checked by
    the id range only.
    """
    import pyarrow.compute as pc

    limit = min(model_vocab_size, len(policy_tokenizer))
    flat = pc.list_flatten(trajectories.column("token_ids"))
    if len(flat):
        top = pc.max(flat).as_py()
        if top is not None and (top >= limit or pc.min(flat).as_py() < 0):
            ids = trajectories.column("trajectory_id").to_pylist()
            bad = [
                tid
                for tid, row in zip(ids, trajectories.column("token_ids").to_pylist(), strict=True)
                if row and (max(row) >= limit or min(row) < 0)
            ]
            raise CheckpointError(
                f"{source}: token ids outside the policy's vocabulary (size {limit}, max id seen "
                f"{top}) in {len(bad)} trajectories, e.g. {bad[:3]}: they were sampled with "
                "another tokenizer"
            )
    ours = tokenizer_fingerprint(policy_tokenizer)
    for version in _distinct(trajectories.column("policy_version").to_pylist()):
        theirs = _recorded_fingerprint(lake, version)
        if theirs is not None and theirs != ours:
            raise CheckpointError(
                f"{source}: trajectories sampled by {version!r} (tokenizer {theirs}) do not match "
                f"the policy's tokenizer ({ours})"
            )


def _distinct(values: Iterable[str | None]) -> list[str]:
    return sorted({v for v in values if v})


def _recorded_fingerprint(lake: Lake, policy_version: str) -> str | None:
    path = Path(policy_version.removeprefix("path:"))
    if path.is_dir() and (path / "config.json").is_file():
        from transformers import AutoTokenizer

        return tokenizer_fingerprint(AutoTokenizer.from_pretrained(path))
    try:
        v = lake.resolve("models", policy_version)
    except LakeError:
        return None
    return v.manifest.get("info", {}).get("tokenizer_fingerprint")


def save_model(
    out: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """Hugging Face files (safetensors) and the tokenizer into `out`.

    `state_dict`: the full weights gathered from a sharded `model` (FSDP), on the CPU; they are
    saved through a fresh unsharded model of the same config, so the directory is the same as
    an unsharded save."""
    import torch

    if state_dict is None:
        model.save_pretrained(out, safe_serialization=True)
    else:
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            plain = AutoModelForCausalLM.from_config(model.config)
        plain.load_state_dict(state_dict, assign=True)
        plain.tie_weights()  # assign=True replaced the tied tensors one by one
        plain.generation_config = model.generation_config
        plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def save_optimizer_state(out: Path, state: dict[str, Any]) -> None:
    """`optimizer.pt` (the named full format of the module docstring) into `out`."""
    import torch

    torch.save(state, out / OPTIMIZER_FILE)


def read_optimizer_state(ref: ModelRef, model: torch.nn.Module) -> dict[str, Any]:
    """`optimizer.pt` of `ref` in the named format (older index-keyed files are converted)."""
    import torch

    try:
        state = torch.load(ref.path / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
        groups, per_param = state["param_groups"], state["state"]
    except Exception as e:  # a truncated or foreign file surfaces as many exception types
        raise CheckpointError(
            f"model {ref}: {OPTIMIZER_FILE} does not load: {type(e).__name__}: {e}"
        ) from e
    if all(isinstance(p, int) for g in groups for p in g["params"]):
        names = [n for n, _ in model.named_parameters()]
        if max((p for g in groups for p in g["params"]), default=-1) >= len(names):
            raise CheckpointError(
                f"model {ref}: {OPTIMIZER_FILE} has more parameters than the model ({len(names)})"
            )
        groups = [{**g, "params": [names[p] for p in g["params"]]} for g in groups]
        per_param = {names[p]: v for p, v in per_param.items()}
    return {"state": per_param, "param_groups": groups}


def load_optimizer_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    *,
    sharded: bool,
    source: str,
) -> None:
    """Put a named optimizer state (from `read_optimizer_state`) into `optimizer`.

    Unsharded: every process passes the whole state. Sharded (FSDP2): every process calls this,
    process 0 with the state and the others with {}; process 0's tensors are broadcast and each
    process keeps its shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=sharded, broadcast_from_rank0=sharded)
    try:
        set_optimizer_state_dict(model, optimizer, state, options=options)
    except (ValueError, KeyError, RuntimeError, AssertionError) as e:
        raise CheckpointError(f"{source}: {OPTIMIZER_FILE} does not fit the model: {e}") from e
