"""Named configs (`configs/*.yaml`) and the deployments that name them (`prefect.yaml`).

Every shipped config is loaded and checked against the flows it configures: each key of a stage
section is a parameter of that stage's flow, with a value of the parameter's type (a YAML `1e-6`
is a string, not a float), and each `defaults` key is taken by some flow. Then the precedence of
`stage_settings` (given > section > defaults) and its errors on tmp files, and the deployments:
every stage and the pipeline for every config, each pointing at a flow of the right name.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from pathlib import Path

import pydantic
import pytest
import yaml

from swerl.config import CONFIGS_DIR, STAGES, ConfigError, config_path, load_config, stage_settings

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))
NOT_SETTINGS = {"config", "data", "force"}  # flow parameters a config section may not set


def flow_of(stage: str):
    """The flow of `flows/<stage>.py`, or a skip naming the missing file."""
    if not (ROOT / "flows" / f"{stage}.py").is_file():
        pytest.skip(f"flows/{stage}.py does not exist yet")
    import flows

    where = Path(flows.__file__).resolve().parent
    if where != ROOT / "flows":  # tests/flows imported as `flows` (no tests/__init__.py)
        pytest.fail(
            f"the package `flows` is {where}, not the repository's flows/: an empty "
            "tests/__init__.py makes pytest put the repository root on sys.path, not tests/"
        )
    return getattr(importlib.import_module(f"flows.{stage}"), stage)


def settings_of(stage: str) -> dict[str, object]:
    """The parameters of a stage's flow that a config may set, with their type hints."""
    fn = flow_of(stage).fn
    hints = typing.get_type_hints(fn)
    return {n: hints[n] for n in inspect.signature(fn).parameters if n not in NOT_SETTINGS}


def test_the_three_configs_ship():
    assert {"dev-tiny", "paper", "single-node"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_and_heads_with_its_commands(name):
    config = load_config(name)
    assert config["_path"]["path"] == str(CONFIGS_DIR / f"{name}.yaml")
    lines = (CONFIGS_DIR / f"{name}.yaml").read_text().splitlines()
    header = "\n".join(
        line for line in lines[: next(i for i, x in enumerate(lines) if not x.startswith("#"))]
    )
    for command in (
        "prefect work-pool create",
        "prefect --no-prompt deploy",
        "prefect deployment run",
    ):
        assert command in header, f"configs/{name}.yaml: its opening comment lacks `{command}`"


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("name", CONFIGS)
def test_every_key_is_a_parameter_of_the_flow(name, stage):
    config = load_config(name)
    section = config.get(stage) or {}
    params = settings_of(stage)
    unknown = sorted(set(section) - set(params))
    assert not unknown, f"configs/{name}.yaml [{stage}]: {unknown} are not parameters of the flow"
    for key, value in section.items():
        try:
            pydantic.TypeAdapter(params[key]).validate_python(value, strict=True)
        except pydantic.ValidationError as e:
            pytest.fail(f"configs/{name}.yaml [{stage}] {key}={value!r}: not {params[key]}: {e}")
    # what the flow does with its first line: no error, and the section's values arrive
    merged = stage_settings(name, stage, {k: None for k in params})
    assert {k: merged[k] for k in section} == section
    for key, value in (config.get("defaults") or {}).items():
        if key in params and key not in section:
            assert merged[key] == value


@pytest.mark.parametrize("name", CONFIGS)
def test_every_default_is_taken_by_some_flow(name):
    defaults = load_config(name).get("defaults") or {}
    takers: dict[str, list[str]] = {k: [] for k in defaults}
    for stage in STAGES:
        try:
            params = settings_of(stage)
        except pytest.skip.Exception:
            continue
        for key in defaults:
            if key in params:
                takers[key].append(stage)
                hint = params[key]
                pydantic.TypeAdapter(hint).validate_python(defaults[key], strict=True)
    unused = sorted(k for k, stages in takers.items() if not stages)
    assert not unused, f"configs/{name}.yaml defaults {unused}: no flow takes them"


# ---- stage_settings on tmp configs ---------------------------------------------------------------


def write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_precedence_given_over_section_over_defaults(tmp_path):
    path = write(
        tmp_path,
        "mine",
        {
            "defaults": {"samples": 3, "seed": 7, "backend": "local", "epochs": 9},
            "rollout": {"samples": 5, "max_turns": 12},
        },
    )
    given = {"samples": None, "max_turns": 20, "seed": None, "backend": None, "temperature": None}
    s = stage_settings(str(path), "rollout", given)
    # max_turns: given wins; samples: the section over defaults; seed, backend: defaults;
    # temperature: given as None and absent everywhere -> absent; epochs: not a rollout parameter
    assert s == {"samples": 5, "max_turns": 20, "seed": 7, "backend": "local"}


def test_a_config_is_found_by_name_in_swerl_configs(tmp_path, monkeypatch):
    path = write(tmp_path, "mine", {"filter_tasks": {"runs": 4}})
    monkeypatch.setenv("SWERL_CONFIGS", str(tmp_path))
    assert config_path("mine") == path
    assert stage_settings("mine", "filter_tasks", {"runs": None}) == {"runs": 4}
    assert config_path("dev-tiny") == CONFIGS_DIR / "dev-tiny.yaml"  # the repository's still


def test_unknown_config_names_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("SWERL_CONFIGS", str(tmp_path))
    with pytest.raises(ConfigError, match=r"no config named 'nope'; known: .*dev-tiny"):
        load_config("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_unknown_section_names_file_and_key(tmp_path):
    path = write(tmp_path, "typo", {"filter-tasks": {"runs": 2}})  # dash: the flow's name, not
    with pytest.raises(ConfigError) as e:  # the section's
        stage_settings(str(path), "filter_tasks", {"runs": None})
    assert str(path) in str(e.value) and "unknown section 'filter-tasks'" in str(e.value)


def test_unknown_parameter_names_file_section_and_key(tmp_path):
    path = write(tmp_path, "typo", {"filter_tasks": {"runs": 2, "run": 3}})
    with pytest.raises(ConfigError) as e:
        stage_settings(str(path), "filter_tasks", {"runs": None, "tasks": None})
    message = str(e.value)
    assert str(path) in message and "'filter_tasks'" in message and "sets run," in message
    assert "it takes runs, tasks" in message


def test_a_section_must_be_a_mapping_and_yaml_valid(tmp_path):
    path = write(tmp_path, "flat", {"rollout": [1, 2]})
    with pytest.raises(ConfigError, match="section 'rollout' must be a mapping"):
        load_config(str(path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout: {samples: 2\n")
    with pytest.raises(ConfigError, match=f"config {bad}: not valid YAML"):
        load_config(str(bad))


# ---- prefect.yaml ----------------------------------------------------------------------------


def deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_every_stage_and_the_pipeline_is_deployed_for_every_config():
    names = [(d["entrypoint"].split(":")[1].replace("_", "-"), d["name"]) for d in deployments()]
    assert len(names) == len(set(names)), "two deployments share a <flow>/<name>"
    expected = {(s.replace("_", "-"), c) for s in STAGES for c in CONFIGS}
    assert set(names) == expected


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: d["entrypoint"] + d["name"])
def test_a_deployment_runs_the_flow_it_is_named_after_with_its_config(deployment):
    path, function = deployment["entrypoint"].split(":")
    assert (ROOT / path).is_file()
    stage = Path(path).stem
    assert function == stage
    assert flow_of(stage).name == stage.replace("_", "-")
    assert deployment["parameters"] == {"config": deployment["name"]}
    load_config(deployment["parameters"]["config"])
    assert deployment["work_pool"]["name"] in {"swerl-dev", "swerl-gpu", "swerl-cpu"}
    assert (deployment["work_pool"]["name"] == "swerl-dev") == (deployment["name"] == "dev-tiny")


# ---- flat parameters -> RolloutConfig (flows and CLI) ----------------------------------------

EPISODE_STAGES = ("collect_rft", "rollout", "dapo", "evaluate")
NON_DEFAULT = {  # a value for every flat name, none of them the library default
    "samples": 3,
    "max_turns": 7,
    "max_context_tokens": 1234,
    "max_new_tokens": 56,
    "temperature": 0.5,
    "top_p": 0.9,
    "backend": "local",
    "max_live_sandboxes": 2,
    "grade_unsubmitted": False,
    "turn_penalty_threshold": 3,
    "command_timeout": 9.0,
    "relative_paths": True,
    "grading_timeout": 99.0,
    "prompts_dir": "tiny",
}


@pytest.mark.parametrize("stage", EPISODE_STAGES)
def test_every_episode_stage_takes_every_rollout_parameter(stage):
    from swerl.config import ROLLOUT_PARAMETERS

    missing = set(ROLLOUT_PARAMETERS) - {"samples"} - set(settings_of(stage))
    assert not missing, f"flows/{stage}.py lacks {sorted(missing)}"


def test_rollout_config_maps_every_flat_name():
    from swerl.agent.rollout import RolloutConfig
    from swerl.config import ROLLOUT_PARAMETERS, rollout_config

    assert set(NON_DEFAULT) == set(ROLLOUT_PARAMETERS)
    c = rollout_config(NON_DEFAULT, stage="rft", iteration=2, demonstration=True)
    e = c.episode
    got = {
        "samples": c.samples,
        "max_turns": e.max_turns,
        "max_context_tokens": e.max_context_tokens,
        "max_new_tokens": e.max_turn_tokens,
        "temperature": e.sampling.temperature,
        "top_p": e.sampling.top_p,
        "backend": c.backend,
        "max_live_sandboxes": c.max_live_sandboxes,
        "grade_unsubmitted": c.grade_unsubmitted,
        "turn_penalty_threshold": c.turn_penalty_threshold,
        "command_timeout": e.tools.command_timeout,
        "relative_paths": e.tools.relative_paths,
        "grading_timeout": c.grading_timeout,
        "prompts_dir": c.prompts_dir,
    }
    assert got == NON_DEFAULT
    assert (c.stage, c.iteration, c.demonstration) == ("rft", 2, True)
    # None means "not given": the library defaults
    assert rollout_config(dict.fromkeys(NON_DEFAULT), stage="dapo") == RolloutConfig()


def test_evaluate_config_fits_evaluate_and_carries_every_setting():
    from swerl.config import evaluate_config, rollout_config
    from swerl.evaluation.evaluate import evaluate

    args = evaluate_config(NON_DEFAULT)
    params = inspect.signature(evaluate).parameters
    assert set(args) <= set(params), "evaluate() lacks a RolloutConfig field"
    config = rollout_config(NON_DEFAULT, stage="eval")
    assert args["episode"] == config.episode and args["prompts_dir"] == "tiny"
    assert {k: args[k] for k in ("backend", "grade_unsubmitted", "grading_timeout")} == {
        "backend": "local",
        "grade_unsubmitted": False,
        "grading_timeout": 99.0,
    }


def test_prompts_dir_relative_is_under_configs_prompts_absolute_as_is(tmp_path):
    from swerl.agent.rollout import PROMPTS_DIR, RolloutConfig

    assert RolloutConfig().prompts_path() == PROMPTS_DIR == CONFIGS_DIR / "prompts"
    tiny = RolloutConfig(prompts_dir="tiny")
    assert tiny.prompts_path() == PROMPTS_DIR / "tiny"
    assert tiny.prompts().system == (PROMPTS_DIR / "tiny" / "system.md").read_text()
    (tmp_path / "system.md").write_text("mine")
    (tmp_path / "instance.md").write_text("{problem_statement}")
    assert RolloutConfig(prompts_dir=str(tmp_path)).prompts().system == "mine"
    # a folder without the files fails when the config is built, naming what it looked for
    with pytest.raises(ValueError, match=r"prompts_dir 'nope': .*/configs/prompts/nope lacks"):
        RolloutConfig(prompts_dir="nope")
    with pytest.raises(ValueError, match="lacks demonstration.md"):
        RolloutConfig(prompts_dir=str(tmp_path), demonstration=True)
