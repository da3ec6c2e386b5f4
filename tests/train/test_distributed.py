"""The update round with two CPU processes (torchrun + accelerate, gloo), data parallel and FSDP2,
gives the same model, optimizer state and metrics as one process, to float rounding."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from swerl.lake import Lake
from swerl.models.tiny import build_tiny_model
from swerl.train.update import update_policy

from .test_update import CONFIG, CORPUS, MIXED, SPEC, trajectory_rows, write_trajectories

# Two steps of 3 trajectories: the processes get 2 and 1 of each minibatch (uneven shares).
TWO_STEPS = replace(CONFIG, batch_size=3, micro_batch_size=1)

# Each process writes what it returned to its own file: two processes printing to one stdout pipe
# can interleave their lines (CI once read "VERSIONS a bc d" from two such prints).
REPORT = """
import os, pathlib
def report(*versions):
    out = pathlib.Path(os.environ["SWERL_TEST_OUT"]) / f"rank{os.environ['RANK']}"
    out.write_text(" ".join(versions))
"""


def launch_two(tmp_path, name, script, args, timeout=240, env=None):
    """Run `script` in two processes under torchrun; return what each reported, by rank."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(REPORT) + textwrap.dedent(script))
    out = tmp_path / f"{name}-out"
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(path), *map(str, args)]  # fmt: skip
    env = {**os.environ, **(env or {}), "SWERL_TEST_OUT": str(out)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    reported = [(out / f"rank{rank}").read_text().split() for rank in range(2)]
    assert reported[0] == reported[1], reported  # both processes return the same versions
    return reported[0]


SCRIPT = """
import json, sys
from swerl.lake import Lake
from swerl.train.update import UpdateConfig, update_policy
root, model, trajectories, config = sys.argv[1:5]
config = json.loads(config)
config["betas"] = tuple(config["betas"])
version = update_policy(Lake(root), model, trajectories, 0, UpdateConfig(**config))
report(version.version)
"""


def test_two_processes_match_one(tmp_path):
    tiny = build_tiny_model(tmp_path / "tiny", SPEC, CORPUS)
    one = Lake(tmp_path / "one")
    tv = write_trajectories(one, trajectory_rows(tiny, MIXED))
    shutil.copytree(one.root, tmp_path / "two")
    two = Lake(tmp_path / "two")

    single = update_policy(one, str(tiny), tv, 0, TWO_STEPS)

    # torchrun sets RANK / WORLD_SIZE, and accelerate's Accelerator picks MULTI_CPU (gloo) from
    # them; `accelerate launch --cpu --num_processes 2` would start one process (it needs MPI).
    args = [two.root, tiny, tv, json.dumps(asdict(TWO_STEPS))]
    (version,) = launch_two(tmp_path, "run_update", SCRIPT, args)
    assert len(two.versions("models")) == 1
    double = two.resolve("models", version)
    assert double.manifest["info"]["processes"] == 2
    assert double.manifest["fingerprint"] == single.manifest["fingerprint"]

    a = AutoModelForCausalLM.from_pretrained(single.path).state_dict()
    b = AutoModelForCausalLM.from_pretrained(double.path).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    for k in a:
        assert not torch.equal(a[k], base[k]), k
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)
    oa = torch.load(single.path / "optimizer.pt", weights_only=True)["state"]
    ob = torch.load(double.path / "optimizer.pt", weights_only=True)["state"]
    for k in oa:
        torch.testing.assert_close(oa[k]["exp_avg"], ob[k]["exp_avg"], atol=1e-6, rtol=1e-4)

    ma = one.read("train_metrics").to_pylist()
    mb = two.read("train_metrics").to_pylist()
    assert len(ma) == len(mb) == 2
    for ra, rb in zip(ma, mb, strict=True):
        for key in ("loss", "grad_norm", "ratio_mean", "entropy", "tokens", "kept_samples"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), key


FSDP_SCRIPT = """
import json, sys
from dataclasses import replace
from swerl.lake import Lake
from swerl.train.update import UpdateConfig, update_policy
root, model, trajectories, config = sys.argv[1:5]
config = json.loads(config)
config["betas"] = tuple(config["betas"])
config = UpdateConfig(**config)
first = update_policy(Lake(root), model, trajectories, 0, config)
second = update_policy(Lake(root), first.version, trajectories, 1, config)  # optimizer continued
bf16 = replace(config, bf16=True, gradient_checkpointing=True)
bf16 = update_policy(Lake(root), model, trajectories, 0, bf16)
report(first.version, second.version, bf16.version)
"""


def test_fsdp_two_processes_match_one(tmp_path):
    """FSDP2 over two CPU processes (ACCELERATE_USE_FSDP=true, as `accelerate launch` sets it):
    sharded load from process 0, uneven shares with filler passes, summed gradients, gathered
    save, and a second round that continues the gathered optimizer state; plus a bf16 round
    (MixedPrecisionPolicy) with gradient checkpointing, close to the float32 one."""

    tiny = build_tiny_model(tmp_path / "tiny", SPEC, CORPUS)
    one = Lake(tmp_path / "one")
    rows = trajectory_rows(tiny, MIXED) + trajectory_rows(tiny, MIXED, iteration=1)
    tv = write_trajectories(one, rows)
    shutil.copytree(one.root, tmp_path / "two")
    two = Lake(tmp_path / "two")

    single = [update_policy(one, str(tiny), tv, 0, TWO_STEPS)]
    single.append(update_policy(one, single[0].version, tv, 1, TWO_STEPS))

    args = [two.root, tiny, tv, json.dumps(asdict(TWO_STEPS))]
    reported = launch_two(tmp_path, "run_fsdp", FSDP_SCRIPT, args, timeout=300,
                          env={"ACCELERATE_USE_FSDP": "true"})  # fmt: skip
    *sharded, bf16 = (two.resolve("models", v) for v in reported)
    assert len(two.versions("models")) == 3

    base = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    for a, b in zip(single, sharded, strict=True):
        assert b.manifest["info"]["sharded"] and b.manifest["info"]["processes"] == 2
        assert not a.manifest["info"]["sharded"]
        wa = AutoModelForCausalLM.from_pretrained(a.path).state_dict()
        wb = AutoModelForCausalLM.from_pretrained(b.path).state_dict()
        assert wa.keys() == wb.keys()
        for k in wa:
            assert not torch.equal(wa[k], base[k]), k
            torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=0)
        oa = torch.load(a.path / "optimizer.pt", weights_only=True)
        ob = torch.load(b.path / "optimizer.pt", weights_only=True)
        assert oa["param_groups"][0]["params"] == ob["param_groups"][0]["params"]
        for k in oa["state"]:
            assert oa["state"][k]["step"] == ob["state"][k]["step"]
            for moment in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(
                    oa["state"][k][moment], ob["state"][k][moment], atol=1e-6, rtol=1e-4
                )
        ma = one.read("train_metrics", a.manifest["info"]["train_metrics"]).to_pylist()
        mb = two.read("train_metrics", b.manifest["info"]["train_metrics"]).to_pylist()
        assert len(ma) == len(mb) == 2
        for ra, rb in zip(ma, mb, strict=True):
            for key in ("loss", "grad_norm", "ratio_mean", "entropy", "tokens", "kept_samples"):
                assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), key
    assert {float(s["step"]) for s in ob["state"].values()} == {4.0}  # 2 + 2 steps

    ma = one.read("train_metrics", single[0].manifest["info"]["train_metrics"]).to_pylist()
    mb = two.read("train_metrics", bf16.manifest["info"]["train_metrics"]).to_pylist()
    assert bf16.manifest["info"]["sharded"]
    assert (
        bf16.manifest["parameters"]["bf16"]
        and bf16.manifest["parameters"]["gradient_checkpointing"]
    )
    for ra, rb in zip(ma, mb, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=2e-3)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-2)
    assert bf16.manifest["info"]["sampler_gap"]["sampler_gap_abs"] > 1e-5  # bf16 did run
    weights = AutoModelForCausalLM.from_pretrained(bf16.path).state_dict()
    assert all(t.dtype == torch.float32 for t in weights.values())


RFT_SCRIPT = """
import sys
from swerl.lake import Lake
from swerl.train.rft import RFTConfig, train_rft
root, model, trajectories = sys.argv[1:4]
config = RFTConfig(batch_size=2, micro_batch_size=1, lr=3e-3, warmup_steps=0, epochs=3)
version = train_rft(Lake(root), model, [trajectories], config)
report(version.version)
"""


@pytest.mark.slow  # ~20 s: a second two-process launch; the update's one runs by default
def test_rft_in_two_processes(tmp_path):
    """SFTTrainer under DDP (gloo): one version, published once, trained by both processes."""
    tiny = build_tiny_model(tmp_path / "tiny", SPEC, CORPUS)
    lake = Lake(tmp_path / "lake")
    rows = trajectory_rows(tiny, {"t1": [1.0, 1.0], "t2": [1.0, 0.0]}, stage="rft")
    tv = lake.write("trajectories", rows, stage="collect_rft")
    (version,) = launch_two(tmp_path, "run_rft", RFT_SCRIPT, [lake.root, tiny, tv])
    assert len(lake.versions("models")) == 1
    version = lake.resolve("models", version)
    assert version.manifest["info"]["processes"] == 2
    # 3 resolved trajectories, 2 per step over 2 processes, 3 epochs: 2 steps per epoch
    metrics = lake.read("train_metrics").to_pylist()
    assert len(metrics) == version.manifest["info"]["steps"] == 6
    assert metrics[-1]["loss"] < metrics[0]["loss"]


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    root = Path(__file__).resolve().parents[2]
    config = load_config_from_file(str(root / "configs" / "accelerate" / f"{name}.yaml"))
    assert (
        config.distributed_type.name
        == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}[name]
    )
    assert config.num_processes >= 1 and config.mixed_precision == "bf16"


def test_fsdp_config_launches_fsdp2(monkeypatch):
    """What `accelerate launch --config_file configs/accelerate/fsdp.yaml` exports gives an FSDP2
    plugin wrapping Qwen2 decoder layers (the launch itself needs GPUs)."""
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    root = Path(__file__).resolve().parents[2]
    args = launch_command_parser().parse_args(
        ["--config_file", str(root / "configs" / "accelerate" / "fsdp.yaml"), "train.py"]
    )
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true"  # what update_policy shards on
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.transformer_cls_names_to_wrap == ["Qwen2DecoderLayer"]
