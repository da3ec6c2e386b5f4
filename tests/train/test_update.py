"""The DAPO update round on a tiny model: learning direction, every parameter moves, optimizer state
carried over, re-runs reuse the version, bad input stops with a message and publishes nothing."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from swerl.lake import Lake
from swerl.models.tiny import TinySpec, build_tiny_model
from swerl.train.checkpoint import CheckpointError, tokenizer_fingerprint
from swerl.train.logprobs import sequence_logprobs
from swerl.train.update import UpdateConfig, UpdateError, update_policy

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "Fix the failing test in utils.py by editing the function.\n",
    "```bash\ncat utils.py\n```\n```bash\nsubmit\n```\n",
    "THOUGHT: I will look at the file first, then patch it.\n",
] * 20
SPEC = TinySpec(
    vocab_size=400,
    hidden_size=32,
    layers=2,
    heads=4,
    kv_heads=2,
    intermediate_size=64,
    max_positions=512,
)
ANSWERS = [
    "THOUGHT: look first.\n```bash\ncat utils.py\n```",
    "```bash\nsubmit\n```",
    "I will patch it.\n```bash\nsed -i s/a/b/ utils.py\n```",
    "def add(a, b): return a + b",
]
# Tiny runs: one optimizer step over every kept sample, a learning rate that moves a random model.
CONFIG = UpdateConfig(batch_size=8, micro_batch_size=2, lr=1e-3, eps_high=0.3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny", SPEC, CORPUS)


def conversation(i: int, good: bool) -> list[dict[str, str]]:
    """Good (rewarded) episodes answer with ANSWERS[0, 1], bad ones with ANSWERS[2, 3]."""
    first = 0 if good else 2
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"Fix the failing test, case {i}."},
        {"role": "assistant", "content": ANSWERS[first]},
        {"role": "user", "content": "OBSERVATION: ok"},
        {"role": "assistant", "content": ANSWERS[first + 1]},
    ]


def trajectory_rows(
    model_dir: Path,
    rewards: dict[str, list[float]],
    *,
    iteration: int = 0,
    stage: str = "dapo",
    policy_version: str | None = None,
    resolved: list[bool] | None = None,
) -> list[dict]:
    """`trajectories` rows: token ids from the chat template, loss mask from the assistant spans,
    sampler log-probs from the model itself (an exact sampler)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows, i = [], 0
    for group, group_rewards in rewards.items():
        for sample, reward in enumerate(group_rewards):
            out = tokenizer.apply_chat_template(
                conversation(i, reward > 0.5),
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
            )
            ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
            with torch.no_grad():
                logp = sequence_logprobs(model, torch.tensor([ids]))[0]
            logp = torch.where(torch.tensor(mask, dtype=torch.bool), logp, 0.0)
            rows.append(
                {
                    "trajectory_id": f"{stage}/{iteration}/{group}/{sample}",
                    "instance_id": group,
                    "stage": stage,
                    "iteration": iteration,
                    "group_id": f"{iteration}/{group}",
                    "sample": sample,
                    "policy_version": policy_version or f"path:{model_dir.resolve()}",
                    "generator": "hf",
                    "token_ids": ids,
                    "loss_mask": mask,
                    "sampler_logprobs": logp.tolist(),
                    "reward": reward,
                    "resolved": reward > 0 if resolved is None else resolved[i],
                    "turns": 2,
                    "format_errors": 0,
                }
            )
            i += 1
    return rows


def write_trajectories(lake: Lake, rows: list[dict]) -> str:
    ids = [r["trajectory_id"] for r in rows]
    return lake.write("trajectories", rows, stage="rollout", parameters={"ids": ids}, force=True)


def mean_logprob(model_dir: Path, row: dict) -> float:
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        logp = sequence_logprobs(model, torch.tensor([row["token_ids"]]))[0]
    return float(logp[torch.tensor(row["loss_mask"], dtype=torch.bool)].mean())


MIXED = {"a": [1.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [1.0, 1.0]}  # group c: no signal


def test_update_learns_in_the_direction_of_the_advantage(tiny, tmp_path):
    lake = Lake(tmp_path / "lake")
    rows = trajectory_rows(tiny, MIXED)
    tv = write_trajectories(lake, rows)
    version = update_policy(lake, str(tiny), tv, 0, CONFIG)

    # every parameter changed
    before = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    after = AutoModelForCausalLM.from_pretrained(version.path).state_dict()
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged
    # positive advantage up, negative down; the dropped group c is not trained on directly
    for row in rows[:5]:
        delta = mean_logprob(version.path, row) - mean_logprob(tiny, row)
        assert (delta > 0) == (row["reward"] > 0.5), (row["trajectory_id"], delta)

    # the manifest says what trained it; the optimizer state travels with the weights
    m = version.manifest
    assert m["inputs"] == {"trajectories": tv, "models": f"path:{tiny.resolve()}"}
    assert m["parameters"]["eps_high"] == 0.3 and m["parameters"]["iteration"] == 0
    assert m["info"]["kept_samples"] == 5 and m["info"]["dropped_samples"] == 2
    assert m["info"]["tokenizer_fingerprint"] == tokenizer_fingerprint(
        AutoTokenizer.from_pretrained(tiny)
    )
    assert (version.path / "optimizer.pt").is_file()
    trained = (version.path / "trajectory_ids.txt").read_text().split()
    assert sorted(trained) == sorted(r["trajectory_id"] for r in rows[:5])
    assert m["info"]["sampler_gap"]["sampler_gap_abs"] < 1e-4  # the sampler was the model itself

    # one train_metrics row per optimizer step
    metrics = lake.read("train_metrics", m["info"]["train_metrics"]).to_pylist()
    assert [r["step"] for r in metrics] == [0]
    r = metrics[0]
    assert r["model_version"] == version.version and r["kept_samples"] == 5
    assert r["tokens"] == sum(sum(x["loss_mask"]) for x in rows[:5])
    assert r["ratio_mean"] == pytest.approx(1.0, abs=1e-4) and r["clip_frac_high"] == 0
    assert r["grad_norm"] > 0 and r["entropy"] > 0

    # re-running is a no-op that returns the same version
    again = update_policy(lake, str(tiny), tv, 0, CONFIG)
    assert again.version == version.version and len(lake.versions("models")) == 1

    # the next round continues from the version (and its optimizer state), two steps this time:
    # 5 kept samples with batch 4 are two near-equal minibatches (2 and 3), not 4 and a lone 1
    rows1 = trajectory_rows(tiny, MIXED, iteration=1, policy_version=version.version)
    tv1 = write_trajectories(lake, rows1)
    v2 = update_policy(lake, version.version, tv1, 1, replace(CONFIG, batch_size=4))
    state = torch.load(v2.path / "optimizer.pt", weights_only=True)
    assert {s["step"].item() for s in state["state"].values()} == {3.0}  # 1 + 2 steps
    steps = lake.read("train_metrics", v2.manifest["info"]["train_metrics"]).to_pylist()
    assert sorted(r["kept_samples"] for r in steps) == [2, 3]
    assert v2.manifest["info"]["parent"] == version.version


def test_micro_batches_do_not_change_the_step(tiny, tmp_path):
    lake = Lake(tmp_path / "lake")
    tv = write_trajectories(lake, trajectory_rows(tiny, MIXED))
    one = update_policy(lake, str(tiny), tv, 0, replace(CONFIG, micro_batch_size=1))
    five = update_policy(lake, str(tiny), tv, 0, replace(CONFIG, micro_batch_size=5))
    a = AutoModelForCausalLM.from_pretrained(one.path).state_dict()
    b = AutoModelForCausalLM.from_pretrained(five.path).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-6, rtol=0)


def test_gradient_checkpointing_does_not_change_the_step(tiny, tmp_path):
    lake = Lake(tmp_path / "lake")
    tv = write_trajectories(lake, trajectory_rows(tiny, MIXED))
    plain = update_policy(lake, str(tiny), tv, 0, CONFIG)
    recomputed = update_policy(lake, str(tiny), tv, 0, replace(CONFIG, gradient_checkpointing=True))
    a = AutoModelForCausalLM.from_pretrained(plain.path).state_dict()
    b = AutoModelForCausalLM.from_pretrained(recomputed.path).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    # and the option does recompute: far fewer activations are kept for backward
    from swerl.train.update import _checkpoint_layers

    ids = torch.tensor([trajectory_rows(tiny, {"a": [1.0]})[0]["token_ids"]])
    kept = {False: [], True: []}
    for on, sizes in kept.items():
        model = AutoModelForCausalLM.from_pretrained(tiny).train()
        _checkpoint_layers(model, replace(CONFIG, gradient_checkpointing=on))
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t, sizes=sizes: sizes.append(t.numel()) or t, lambda t: t
        ):
            sequence_logprobs(model, ids)
    assert sum(kept[True]) < sum(kept[False]) / 3


def _nothing_published(lake: Lake) -> bool:
    return not lake.versions("models") and not lake.versions("train_metrics")


def test_text_only_and_tokenless_trajectories_are_refused(tiny, tmp_path):
    lake = Lake(tmp_path / "lake")
    rows = trajectory_rows(tiny, {"a": [1.0, 0.0]})
    rows[0]["generator"] = "openai-chat"
    rows[1]["token_ids"] = None
    tv = write_trajectories(lake, rows)
    with pytest.raises(
        UpdateError, match=rf"trajectories version\(s\) {tv}.*openai-chat.*no token_ids"
    ):
        update_policy(lake, str(tiny), tv, 0, CONFIG)
    assert _nothing_published(lake)


def test_episodes_that_never_started_are_left_out(tiny, tmp_path):
    """A sandbox that failed to start leaves a row with no tokens and no reward: the round trains
    on the rest (here a group of two with a spread), in two versions read as one set."""
    lake = Lake(tmp_path / "lake")
    rows = trajectory_rows(tiny, {"a": [1.0, 0.0, 0.0]})
    rows[2].update(token_ids=None, loss_mask=None, sampler_logprobs=None, reward=None)
    first = write_trajectories(lake, rows[:2])
    second = write_trajectories(lake, rows[2:])
    version = update_policy(lake, str(tiny), [first, second], 0, CONFIG)
    info = version.manifest["info"]
    assert info["kept_samples"] == 2 and info["dropped_samples"] == 0
    assert version.manifest["inputs"]["trajectories"] == ",".join(sorted([first, second]))


def test_token_ids_of_another_tokenizer_are_refused(tiny, tmp_path):
    lake = Lake(tmp_path / "lake")
    rows = trajectory_rows(tiny, {"a": [1.0, 0.0]})
    rows[0]["token_ids"][3] = 50_000
    tv = write_trajectories(lake, rows)
    with pytest.raises(CheckpointError, match=rf"{tv}.*outside the policy's vocabulary"):
        update_policy(lake, str(tiny), tv, 0, CONFIG)
    # a sampler whose recorded tokenizer differs from the policy's
    other = build_tiny_model(tmp_path / "other", SPEC, ["completely different text 123"] * 50)
    rows = trajectory_rows(tiny, {"a": [1.0, 0.0]}, policy_version=f"path:{other}")
    tv = write_trajectories(lake, rows)
    with pytest.raises(CheckpointError, match="do not match the policy's tokenizer"):
        update_policy(lake, str(tiny), tv, 0, CONFIG)
    assert _nothing_published(lake)


def test_all_zero_advantage_is_refused(tiny, tmp_path):
    lake = Lake(tmp_path / "lake")
    tv = write_trajectories(lake, trajectory_rows(tiny, {"a": [1.0, 1.0], "b": [0.0, 0.0]}))
    with pytest.raises(UpdateError, match=rf"{tv} iteration 0: every one of the 4 .* zero"):
        update_policy(lake, str(tiny), tv, 0, CONFIG)
    with pytest.raises(UpdateError, match="no trajectories of that iteration"):
        update_policy(lake, str(tiny), tv, 7, CONFIG)
    assert _nothing_published(lake)


def test_drop_unsolved_drops_groups_without_a_success(tiny, tmp_path):
    lake = Lake(tmp_path / "lake")
    # group b: no success, but a spread (the turn penalty): kept unless drop_unsolved
    rows = trajectory_rows(tiny, {"a": [1.0, 0.0], "b": [0.0, -1.0]})
    tv = write_trajectories(lake, rows)
    info = update_policy(lake, str(tiny), tv, 0, CONFIG).manifest["info"]
    assert (info["kept_samples"], info["dropped_samples"]) == (4, 0)
    dropping = replace(CONFIG, drop_unsolved=True)
    version = update_policy(lake, str(tiny), tv, 0, dropping)
    assert version.manifest["parameters"]["drop_unsolved"] is True
    info = version.manifest["info"]
    assert (info["kept_samples"], info["dropped_samples"]) == (2, 2)
    unsolved = write_trajectories(lake, trajectory_rows(tiny, {"b": [0.0, -1.0]}))
    with pytest.raises(UpdateError, match="no resolved sample: drop_unsolved is on"):
        update_policy(lake, str(tiny), unsolved, 0, dropping)


def test_missing_or_corrupt_model_is_refused(tiny, tmp_path):
    lake = Lake(tmp_path / "lake")
    tv = write_trajectories(lake, trajectory_rows(tiny, MIXED))
    with pytest.raises(CheckpointError, match="no-such-model.*neither a directory"):
        update_policy(lake, "no-such-model", tv, 0, CONFIG)
    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=rf"{broken}: missing weights"):
        update_policy(lake, str(broken), tv, 0, CONFIG)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=rf"{broken} does not load"):
        update_policy(lake, str(broken), tv, 0, CONFIG)
    assert _nothing_published(lake)


def test_a_crash_mid_round_publishes_nothing_and_a_rerun_works(tiny, tmp_path, monkeypatch):
    lake = Lake(tmp_path / "lake")
    tv = write_trajectories(lake, trajectory_rows(tiny, MIXED))

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("swerl.train.update.save_model", disk_full)
    with pytest.raises(OSError, match="No space left"):
        update_policy(lake, str(tiny), tv, 0, CONFIG)
    assert _nothing_published(lake)
    assert not any((lake.root / "_staging").iterdir())
    monkeypatch.undo()
    assert update_policy(lake, str(tiny), tv, 0, CONFIG).path.is_dir()


def test_config_cross_field_checks():
    with pytest.raises(ValueError, match="micro_batch_size 8 > batch_size 4"):
        UpdateConfig(batch_size=4, micro_batch_size=8)
    with pytest.raises(ValueError, match="tis_cap"):
        UpdateConfig(tis_cap=0.5)
    with pytest.raises(ValueError, match="eps_low"):
        UpdateConfig(eps_low=1.5)
    assert json.dumps(UpdateConfig().__dict__)  # parameters go into the manifest as JSON


def test_sampler_gap_is_measured_and_tis_runs(tiny, tmp_path):
    lake = Lake(tmp_path / "lake")
    rows = trajectory_rows(tiny, MIXED)
    for r in rows:  # a sampler that is off by 0.1 nats on every sampled token
        r["sampler_logprobs"] = [
            lp - 0.1 if m else 0.0
            for lp, m in zip(r["sampler_logprobs"], r["loss_mask"], strict=True)
        ]
    tv = write_trajectories(lake, rows)
    version = update_policy(lake, str(tiny), tv, 0, replace(CONFIG, tis_cap=2.0))
    gap = version.manifest["info"]["sampler_gap"]
    assert gap["sampler_gap_abs"] == pytest.approx(0.1, abs=1e-4)
    # k3 = (r - 1) - log r with r = pi_trainer / pi_sampler = e^0.1
    assert gap["sampler_kl"] == pytest.approx(math.expm1(0.1) - 0.1, rel=1e-3)
    metrics = lake.read("train_metrics").to_pylist()
    assert metrics[0]["sampler_gap_abs"] == pytest.approx(0.1, abs=1e-4)


def test_bf16_runs_close_to_fp32(tiny, tmp_path):
    """Mixed precision (autocast bf16 forward, float32 weights and AdamW state) follows the
    float32 round closely; pi_old is recomputed in bf16 too, so the first ratio is exactly 1."""
    lake = Lake(tmp_path / "lake")
    tv = write_trajectories(lake, trajectory_rows(tiny, MIXED))
    two_steps = replace(CONFIG, batch_size=3)
    fp32 = update_policy(lake, str(tiny), tv, 0, two_steps)
    bf16 = update_policy(lake, str(tiny), tv, 0, replace(two_steps, bf16=True))
    assert bf16.version != fp32.version and bf16.manifest["parameters"]["bf16"] is True
    a = lake.read("train_metrics", fp32.manifest["info"]["train_metrics"]).to_pylist()
    b = lake.read("train_metrics", bf16.manifest["info"]["train_metrics"]).to_pylist()
    # each round has its own metrics (same parent and trajectories, other parameters)
    assert {r["model_version"] for r in a} == {fp32.version}
    assert {r["model_version"] for r in b} == {bf16.version}
    assert len(a) == len(b) == 2
    assert b[0]["ratio_mean"] == 1.0
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=2e-3)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-2)
        assert rb["entropy"] == pytest.approx(ra["entropy"], rel=1e-3)
    # bf16 really ran: the trainer's log-probs now differ from the (float32) sampler's, a little
    gap = bf16.manifest["info"]["sampler_gap"]["sampler_gap_abs"]
    assert 1e-5 < gap < 1e-2 and fp32.manifest["info"]["sampler_gap"]["sampler_gap_abs"] < 1e-5
    # the same step: Adam moves each weight by about lr, in (nearly) the same direction
    w0 = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    wa = AutoModelForCausalLM.from_pretrained(fp32.path).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(bf16.path).state_dict()
    assert all(t.dtype == torch.float32 for t in wb.values())  # master weights stay float32
    da = torch.cat([(wa[k] - w0[k]).flatten() for k in w0])
    db = torch.cat([(wb[k] - w0[k]).flatten() for k in w0])
    assert torch.nn.functional.cosine_similarity(da, db, dim=0) > 0.99


def test_an_index_keyed_optimizer_file_is_continued(tiny, tmp_path):
    """optimizer.pt written as `optimizer.state_dict()` (before the named format) still loads:
    the next round gives the same model as from the named file."""
    lake = Lake(tmp_path / "lake")
    rows = trajectory_rows(tiny, MIXED) + trajectory_rows(tiny, MIXED, iteration=1)
    tv = write_trajectories(lake, rows)
    first = update_policy(lake, str(tiny), tv, 0, CONFIG)
    named = torch.load(first.path / "optimizer.pt", weights_only=True)
    old = tmp_path / "old"
    shutil.copytree(first.path, old)
    names = [n for n, _ in AutoModelForCausalLM.from_pretrained(tiny).named_parameters()]
    index = {n: i for i, n in enumerate(names)}
    torch.save(
        {
            "state": {index[n]: v for n, v in named["state"].items()},
            "param_groups": [
                {**g, "params": [index[n] for n in g["params"]]} for g in named["param_groups"]
            ],
        },
        old / "optimizer.pt",
    )
    a = update_policy(lake, first.version, tv, 1, CONFIG)
    b = update_policy(lake, str(old), tv, 1, CONFIG)
    wa = AutoModelForCausalLM.from_pretrained(a.path).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b.path).state_dict()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    (old / "optimizer.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=rf"{old}: optimizer.pt does not load"):
        update_policy(lake, str(old), tv, 1, replace(CONFIG, seed=1))
