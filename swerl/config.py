"""Named run configurations: `configs/<name>.yaml` holds the parameters of every stage for one
setup (`dev-tiny`, `single-node`, `paper`), so a deployment only names its config and a user
overrides single values.

    settings = stage_settings("dev-tiny", "rollout", {"samples": 8, "max_turns": None})
    # -> the `rollout` section of configs/dev-tiny.yaml, `defaults` under it, then the values
    #    the caller gave (None means "not given")

A config file is a mapping of stage (flow) names to mappings of that flow's parameter names; the
`defaults` section applies to every stage that takes the parameter. Unknown stages and unknown
parameters are errors that name the file and the key, so a typo never silently falls back to a
default. A config is found by name in `$SWERL_CONFIGS`, then in the repository's `configs/`; a
path to a YAML file works too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"

STAGES = (
    "import_tasks",
    "filter_tasks",
    "collect_rft",
    "train_rft",
    "rollout",
    "update_policy",
    "evaluate",
    "dapo",
    "pipeline",
)


class ConfigError(ValueError):
    """A config that does not exist or does not fit the flows' parameters."""


def config_path(name: str) -> Path:
    """The file of config `name` (a name like `dev-tiny` or a path to a .yaml file)."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    dirs = [Path(d) for d in os.environ.get("SWERL_CONFIGS", "").split(os.pathsep) if d]
    for directory in [*dirs, CONFIGS_DIR]:
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    known = sorted(p.stem for d in [*dirs, CONFIGS_DIR] if d.is_dir() for p in d.glob("*.yaml"))
    raise ConfigError(f"no config named {name!r}; known: {', '.join(known) or 'none'}")


def load_config(name: str) -> dict[str, dict[str, Any]]:
    """The config's sections, checked: every top-level key is `defaults` or a stage name."""
    path = config_path(name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping of stage names")
    for key, section in data.items():
        if key != "defaults" and key not in STAGES:
            raise ConfigError(
                f"config {path}: unknown section {key!r}; sections are defaults, "
                + ", ".join(STAGES)
            )
        if not isinstance(section, dict):
            raise ConfigError(f"config {path}: section {key!r} must be a mapping")
    return {"_path": {"path": str(path)}, **data}


def stage_settings(
    config: str | Mapping[str, Any] | None,
    stage: str,
    given: Mapping[str, Any],
    *,
    accepts: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The parameters of `stage`: the config's `defaults` (those the stage accepts), then its
    stage section, then every value in `given` that is not None. `accepts` is the set of
    parameter names the stage takes (default: the keys of `given`); a config key outside it in
    the stage section is an error."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}")
    names = set(accepts if accepts is not None else given)
    loaded = load_config(config) if isinstance(config, str) else dict(config or {})
    where = loaded.get("_path", {}).get("path", "the config")
    section = loaded.get(stage) or {}
    unknown = sorted(set(section) - names)
    if unknown:
        raise ConfigError(
            f"{where}: section {stage!r} sets {', '.join(unknown)}, which the {stage} stage does "
            f"not take; it takes {', '.join(sorted(names))}"
        )
    merged = {k: v for k, v in (loaded.get("defaults") or {}).items() if k in names}
    merged.update(section)
    merged.update({k: v for k, v in given.items() if v is not None})
    return merged


# ---- flat parameters -> the library's config objects ---------------------------------------------

ROLLOUT_PARAMETERS = (
    "samples",
    "max_turns",
    "max_context_tokens",
    "max_new_tokens",
    "temperature",
    "top_p",
    "backend",
    "max_live_sandboxes",
    "grade_unsubmitted",
    "turn_penalty_threshold",
    "command_timeout",
    "relative_paths",
    "grading_timeout",
    "prompts_dir",
)
"""The flat parameters every episode-running stage (collect_rft, rollout, dapo, evaluate) takes;
the `swerl rollout` and `swerl evaluate` commands build their configs from them too."""


def rollout_config(settings: Mapping[str, Any], *, stage: str, iteration: int = 0, **fixed: Any):
    """A `RolloutConfig` from flat settings (names in ROLLOUT_PARAMETERS; absent or None ones keep
    the library defaults), with `fixed` fields set last (e.g. `demonstration=True`). `backend`
    must already be resolved (docker or local)."""
    from dataclasses import replace

    from swerl.agent.episode import EpisodeConfig
    from swerl.agent.rollout import RolloutConfig
    from swerl.agent.tools import ToolConfig
    from swerl.inference.base import SamplingParams

    s = {k: v for k, v in settings.items() if v is not None}
    sampling = SamplingParams(**{k: s[k] for k in ("temperature", "top_p") if k in s})
    tools = ToolConfig(**{k: s[k] for k in ("command_timeout", "relative_paths") if k in s})
    episode = EpisodeConfig(
        **{k: s[k] for k in ("max_turns", "max_context_tokens") if k in s},
        max_turn_tokens=s.get("max_new_tokens"),
        sampling=sampling,
        tools=tools,
    )
    top = (
        "samples",
        "backend",
        "max_live_sandboxes",
        "grade_unsubmitted",
        "turn_penalty_threshold",
        "grading_timeout",
        "prompts_dir",
    )
    config = RolloutConfig(
        **{k: s[k] for k in top if k in s}, stage=stage, iteration=iteration, episode=episode
    )
    return replace(config, **fixed) if fixed else config


EVALUATE_OWN = ("samples", "stage", "iteration", "demonstration")
"""`RolloutConfig` fields that `evaluate` does not take as such (`attempts` is its `samples`)."""


def evaluate_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The episode keyword arguments of `swerl.evaluation.evaluate.evaluate` (every
    `RolloutConfig` field but EVALUATE_OWN, named as the fields) from flat settings, by way of
    `rollout_config`: the evaluate flow and `swerl evaluate` map their settings like the rollout
    stages do."""
    from dataclasses import fields

    config = rollout_config(settings, stage="eval")
    return {f.name: getattr(config, f.name) for f in fields(config) if f.name not in EVALUATE_OWN}


def dataclass_from(cls: type, settings: Mapping[str, Any], **renames: str):
    """`cls(**settings)` restricted to the dataclass's fields (after renaming flat names to field
    names: `renames={"flat": "field"}`); None values keep the defaults."""
    from dataclasses import fields

    names = {f.name for f in fields(cls)}
    values = {renames.get(k, k): v for k, v in settings.items() if v is not None}
    return cls(**{k: v for k, v in values.items() if k in names})
