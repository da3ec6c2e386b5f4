"""Which data a report shows: "a run", read from the lake.

A run is selected by its final model, or is the whole lake:
- `model=None`: every `evals`, `trajectories` and `train_metrics` version under the lake root.
  Right for a lake that holds one run (the benchmark's, the demo's); with several runs in one
  root, their DAPO iterations are pooled by iteration number.
- `model=<models version id or name, or a model directory>`: that model and its ancestors,
  followed through each `models` manifest's `info.parent` (RFT -> base, DAPO k -> DAPO k-1 ->
  ... -> RFT -> base). Only evaluations of those models, training steps that produced them
  (`model_version`) and rollouts they sampled (`policy_version`) are shown - less the rollouts
  that only models outside the lineage trained on - so a side run in the same lake (a
  sign-flipped control, another seed) stays out, including the first rollout it drew from a
  shared ancestor.
Trajectories count the policy's own episodes once: versions of the sampling stage (`rollout`)
only, never scripted demonstrations or derived copies (the control's reward-flipped batches).

Models are labelled by their version name when they have one (`rft`, `dapo-stage1`, ...), else
by the stage that made them: `base` (no parent: a directory, `tiny_model`), `RFT` (`train_rft`),
`DAPO it. k` (`update_policy` on the trajectories of iteration k).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swerl.lake import Lake, LakeError, Version

SAMPLING_STAGE = "rollout"
"""The stage that writes the policy's own episodes (`swerl.agent.rollout`)."""

TRAJECTORY_COLUMNS = [
    "stage",
    "iteration",
    "policy_version",
    "resolved",
    "reward",
    "turns",
    "completion_tokens",
    "termination",
]


@dataclass(frozen=True)
class ModelInfo:
    """A model of the run: its id (`models` version or `path:<dir>`), label, the stage that made
    it, depth (number of ancestors: base 0, RFT 1, ...) and, for a DAPO update, the iteration
    whose rollouts trained it."""

    id: str
    label: str
    stage: str
    depth: int
    iteration: int | None = None


@dataclass(frozen=True)
class EvalEntry:
    """One `evals` version: which model, which tasks, and its summary."""

    version: str
    created_at: str
    model: ModelInfo
    tasks: str
    split: str | None
    summary: dict[str, Any]


@dataclass
class Run:
    """Everything a report draws, already filtered to the run."""

    root: Path
    selection: str
    evals: list[EvalEntry] = field(default_factory=list)
    trajectories: list[dict[str, Any]] = field(default_factory=list)
    train_metrics: list[dict[str, Any]] = field(default_factory=list)
    datasets: dict[str, list[str]] = field(default_factory=dict)
    """Dataset -> the versions read (shown in the report's footer)."""


def load_run(lake: Lake, model: str | None = None) -> Run:
    """The run ending in `model` (see the module docstring), or the whole lake for None."""
    if model is None:
        lineage = None
        selection = f"everything under {lake.root}"
    else:
        lineage = _lineage(lake, model)
        chain = " <- ".join(m.label for m in sorted(lineage.values(), key=lambda m: -m.depth))
        selection = f"model {model} and its ancestors ({chain})"
    run = Run(root=lake.root, selection=selection)
    models: dict[str, ModelInfo] = dict(lineage or {})

    for v in lake.versions("evals"):
        model_id = v.manifest["inputs"]["models"]
        if lineage is not None and model_id not in lineage:
            continue
        info = models.setdefault(model_id, describe_model(lake, model_id))
        tasks_id = v.manifest["inputs"]["tasks"]
        run.evals.append(
            EvalEntry(
                version=v.version,
                created_at=v.manifest["created_at"],
                model=info,
                tasks=_tasks_label(lake, tasks_id),
                split=v.manifest["parameters"].get("split"),
                summary=v.manifest["info"]["summary"],
            )
        )
        run.datasets.setdefault("evals", []).append(v.version)
    run.evals.sort(key=lambda e: (e.model.depth, e.created_at))

    for v in _sampled_trajectories(lake, lineage):
        rows = lake.read("trajectories", v.version, columns=TRAJECTORY_COLUMNS).to_pylist()
        if lineage is not None:
            rows = [r for r in rows if r["policy_version"] in lineage]
        if rows:
            run.trajectories += rows
            run.datasets.setdefault("trajectories", []).append(v.version)

    for v in lake.versions("train_metrics"):
        rows = lake.read("train_metrics", v.version).to_pylist()
        if lineage is not None:
            rows = [r for r in rows if r["model_version"] in lineage]
        if rows:
            run.train_metrics += rows
            run.datasets.setdefault("train_metrics", []).append(v.version)
    return run


def _sampled_trajectories(lake: Lake, lineage: dict[str, ModelInfo] | None) -> list[Version]:
    """The `trajectories` versions whose episodes a report counts: those the policy sampled
    (stage `rollout`), each once. Scripted demonstrations (`demos`) and derived copies of
    sampled episodes (the control's reward-flipped batches, any version without a sampling
    model) are left out. With a lineage, a sampled version also stays out when it was trained
    on - directly or through a derived copy - only by models outside the lineage: the rollout
    a side run (the sign-flipped control) drew from a shared ancestor is the side run's."""
    versions = lake.versions("trajectories")
    sampled = [v for v in versions if v.manifest.get("stage") == SAMPLING_STAGE]
    if lineage is None:
        return sampled
    # derived version -> what it was made from; a sampled version is a root even when it has
    # inputs (a replay rollout re-plays recorded episodes and grades them afresh)
    # (versions only name earlier versions as inputs, so this walk ends)
    sampled_ids = {v.version for v in sampled}
    sources = {v.version: _trajectory_inputs(v) for v in versions if v.version not in sampled_ids}

    def roots(version: str) -> set[str]:
        parents = sources.get(version)
        return set().union(*map(roots, parents)) if parents else {version}

    trained_by: dict[str, set[str]] = {}
    for m in lake.versions("models"):
        for t in _trajectory_inputs(m):
            for root in roots(t):
                trained_by.setdefault(root, set()).add(m.version)
    return [
        v
        for v in sampled
        if not trained_by.get(v.version) or trained_by[v.version] & lineage.keys()
    ]


def _trajectory_inputs(v: Version) -> list[str]:
    """The `trajectories` versions a version was made from (its `inputs.trajectories`, a
    comma-separated list)."""
    return [t for t in v.manifest.get("inputs", {}).get("trajectories", "").split(",") if t]


def describe_model(lake: Lake, model_id: str, depth: int | None = None) -> ModelInfo:
    """Label and stage of a model id as recorded in `evals` inputs (`path:<dir>` or a `models`
    version id). `depth` defaults to the length of its parent chain."""
    if model_id.startswith("path:"):
        return ModelInfo(model_id, f"base ({Path(model_id[5:]).name})", "directory", depth or 0)
    try:
        v = lake.resolve("models", model_id)
    except LakeError:  # a served model name, or a version since deleted
        return ModelInfo(model_id, model_id, "unknown", depth or 0)
    m = v.manifest
    stage = m.get("stage") or "unknown"
    parent = m.get("info", {}).get("parent")
    if m.get("name"):
        label = m["name"]
    elif stage == "train_rft":
        label = "RFT"
    elif stage == "update_policy":
        label = f"DAPO it. {m['parameters'].get('iteration')}"
    elif parent is None:
        label = "base"
    else:
        label = stage
    if depth is None:
        depth = len(_chain(lake, model_id)) - 1
    iteration = m["parameters"].get("iteration") if stage == "update_policy" else None
    return ModelInfo(model_id, label, stage, depth, iteration)


def _lineage(lake: Lake, model: str) -> dict[str, ModelInfo]:
    """The model and its ancestors, id -> info."""
    path = Path(model)
    start = f"path:{path.resolve()}" if path.is_dir() else lake.resolve("models", model).version
    chain = _chain(lake, start)
    return {
        model_id: describe_model(lake, model_id, depth=len(chain) - 1 - i)
        for i, model_id in enumerate(chain)
    }


def _chain(lake: Lake, model_id: str) -> list[str]:
    """[model_id, parent, grandparent, ...] through `info.parent`."""
    chain = [model_id]
    while not chain[-1].startswith("path:"):
        try:
            v = lake.resolve("models", chain[-1])
        except LakeError:
            break
        parent = v.manifest.get("info", {}).get("parent")
        if parent is None or parent in chain:
            break
        chain.append(parent)
    return chain


def _tasks_label(lake: Lake, tasks_id: str) -> str:
    """A `tasks` version's name (or id), with the parent's name for a split version."""
    try:
        v = lake.resolve("tasks", tasks_id)
    except LakeError:
        return tasks_id
    name = v.manifest.get("name") or v.version
    parent = v.manifest.get("inputs", {}).get("tasks")
    if parent and not v.manifest.get("name"):
        with contextlib.suppress(LakeError):
            name = lake.resolve("tasks", parent).manifest.get("name") or name
    return name
