"""The stage flows against a real (temporary) Prefect server: re-runs reuse versions and
`force` makes new ones, a rollout split into 2 shards publishes one complete dataset, the DAPO
loop's dynamic sampling and stage switch without signal, its update branch with signal (replayed
recordings), and bad input that fails before any work."""

from __future__ import annotations

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.dapo import dapo
from flows.filter_tasks import filter_tasks
from flows.rollout import rollout
from swerl.lake import Lake, connect
from swerl.models.tiny import TinySpec, publish_tiny_model
from swerl.swe.toy import publish_toy_suite
from swerl.train.demos import publish_demos

EPISODE = dict(
    backend="local",
    max_turns=3,
    turn_penalty_threshold=2,
    max_context_tokens=4096,
    max_new_tokens=16,
    max_live_sandboxes=2,
)


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=300):
        yield


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("lake"))
    publish_toy_suite(lake, n_train=3, n_eval=1, name="toy")
    publish_tiny_model(lake, TinySpec(vocab_size=400, hidden_size=32, layers=1), name="tiny")
    return lake


def _versions(lake: Lake, dataset: str) -> list[str]:
    return [v.version for v in lake.versions(dataset)]


def test_filter_rerun_reuses_and_force_makes_a_new_version(lake):
    data = str(lake.root)
    first = filter_tasks(tasks="toy", runs=1, backend="local", concurrency=2, data=data)
    again = filter_tasks(tasks="toy", runs=1, backend="local", concurrency=2, data=data)
    assert again == first
    forced = filter_tasks(
        tasks="toy", runs=1, backend="local", concurrency=2, force=True, data=data
    )
    assert forced["task_pool"] != first["task_pool"]
    rows = (
        connect(lake.root)
        .sql("select version from lake_versions where dataset = 'task_pool' order by created_at")
        .fetchall()
    )
    assert [r[0] for r in rows][-2:] == [first["task_pool"], forced["task_pool"]]
    manifest = lake.manifest("task_pool", forced["task_pool"])
    assert manifest["info"]["flow_name"] == "filter-tasks" and manifest["info"]["flow_run_id"]


def test_rollout_in_two_shards_publishes_every_episode_once(lake):
    out = rollout(
        model="tiny", tasks="toy", samples=2, shards=2, seed=3, data=str(lake.root), **EPISODE
    )
    rows = lake.read("trajectories", out["trajectories"]).to_pylist()
    keys = sorted((r["instance_id"], r["sample"]) for r in rows)
    tasks = [r["instance_id"] for r in lake.read("tasks", "toy").to_pylist()]
    assert keys == sorted((t, s) for t in tasks for s in range(2))
    turns = lake.read("turns", out["turns"]).to_pylist()
    assert {t["trajectory_id"] for t in turns} <= {r["trajectory_id"] for r in rows}
    # the same call again: nothing runs, the version is reused
    assert (
        rollout(
            model="tiny", tasks="toy", samples=2, shards=2, seed=3, data=str(lake.root), **EPISODE
        )
        == out
    )


def test_dapo_without_signal_keeps_the_policy_and_refilters_for_stage_2(lake):
    data = str(lake.root)
    pool = filter_tasks(tasks="toy", runs=1, backend="local", concurrency=2, data=data)
    loop = dict(
        policy="tiny",
        pool=pool["task_pool"],
        samples=2,
        tasks_per_batch=2,
        batch_size=2,
        max_rollout_batches=2,
        max_turns=3,
        max_context_tokens=4096,
        max_new_tokens=16,
        backend="local",
        max_live_sandboxes=2,
        turn_penalty_threshold=2,
        data=data,
    )
    out = dapo(iterations=1, **loop)
    (first,) = out["iterations"]
    # random weights solve nothing: no sample has an advantage, both draws happen, no update
    assert first["kept"] == 0 and len(first["trajectories"]) == 2 and first["samples"] == 8
    assert out["policy"] == lake.resolve("models", "tiny").version

    # stage 2 from iteration 1: the pool is re-filtered from iteration 0 (reused, not re-run);
    # every task was never solved, so the re-filtered pool is empty and stage 2 keeps the old one
    out = dapo(
        iterations=2,
        stage2_from=1,
        stage2_max_turns=4,
        stage2_max_context_tokens=4096,
        stage2_batch_size=2,
        stage2_tasks_per_batch=2,
        **loop,
    )
    first_again, second = out["iterations"]
    assert first_again["trajectories"] == first["trajectories"]
    assert second["stage"] == 2 and out["task_pool"] == pool["task_pool"]
    refiltered = lake.read("task_pool").to_pylist()
    assert all(not r["kept"] and "never solved in" in r["reasons"][-1] for r in refiltered)
    config = lake.manifest("trajectories", second["trajectories"][0])["parameters"]["config"]
    assert config["episode"]["max_turns"] == 4 and config["iteration"] == 1


def test_bad_input_fails_before_any_work(lake):
    data = str(lake.root)
    before = {d: _versions(lake, d) for d in lake.datasets()}
    with pytest.raises(Exception, match="no-such-version"):
        filter_tasks(tasks="no-such-version", runs=1, backend="local", data=data)
    with pytest.raises(ValueError, match="stage 2 context .* smaller than stage 1"):
        dapo(
            policy="tiny",
            max_context_tokens=8192,
            stage2_from=1,
            stage2_max_context_tokens=4096,
            data=data,
        )
    with pytest.raises(ValueError, match="batch_size 64 is larger than tasks_per_batch 2"):
        dapo(
            policy="tiny",
            batch_size=64,
            tasks_per_batch=2,
            samples=2,
            max_rollout_batches=1,
            data=data,
        )
    with pytest.raises(Exception, match="no-such-model"):
        dapo(policy="no-such-model", data=data)
    assert {d: _versions(lake, d) for d in lake.datasets()} == before


def test_dapo_with_replayed_signal_updates_the_policy_and_samples_with_the_new_one(lake):
    """The update branch end to end: each group replays one resolved demo (sample 0) and one
    unresolved random episode (sample 1), so every sample carries an advantage."""
    data = str(lake.root)
    pool = filter_tasks(tasks="toy", runs=1, backend="local", concurrency=2, data=data)
    solved, _ = publish_demos(lake, tasks="toy", model="tiny", split=None)
    unsolved = rollout(
        model="tiny", tasks="toy", samples=1, seed=5, data=data, **{**EPISODE, "max_turns": 5}
    )["trajectories"]
    tiny = lake.resolve("models", "tiny").version
    loop = dict(
        policy="tiny",
        pool=pool["task_pool"],
        iterations=2,
        samples=2,
        tasks_per_batch=1,
        batch_size=4,
        max_rollout_batches=3,
        max_turns=5,
        turn_penalty_threshold=4,
        max_context_tokens=8192,
        backend="local",
        max_live_sandboxes=2,
        generator="replay",
        replay=[solved, unsolved],
        lr=1e-3,
        data=data,
    )
    before = {d: _versions(lake, d) for d in lake.datasets()}
    out = dapo(**loop)
    first, second = out["iterations"]

    # dynamic sampling: 2 of each draw's 2 samples carry signal; it stops at batch_size (4)
    assert first["kept"] == 4 and first["samples"] == 4 and len(first["trajectories"]) == 2
    rows = [r for v in first["trajectories"] for r in lake.read("trajectories", v).to_pylist()]
    assert [(r["sample"], r["resolved"]) for r in rows] == [(0, True), (1, False)] * 2
    assert all(r["policy_version"] == tiny and r["sampler_logprobs"] is None for r in rows)
    recorded = lake.manifest("trajectories", first["trajectories"][0])["inputs"]["trajectories"]
    assert recorded == f"{solved},{unsolved}"

    # the update published policy 1 from the policy and exactly this iteration's trajectories
    policy1 = first["policy_out"]
    assert policy1 not in before["models"] and policy1 != tiny
    manifest = lake.manifest("models", policy1)
    assert manifest["stage"] == "update_policy"
    assert manifest["inputs"] == {"models": tiny, "trajectories": ",".join(first["trajectories"])}
    assert_weights_differ(lake, tiny, policy1)

    # iteration 2 rolls out with the new policy, and its update gives the returned policy
    assert second["policy_in"] == policy1 and second["kept"] == 4
    rows = [r for v in second["trajectories"] for r in lake.read("trajectories", v).to_pylist()]
    assert rows and all(r["policy_version"] == policy1 and r["iteration"] == 1 for r in rows)
    assert out["policy"] == second["policy_out"] not in (policy1, tiny)
    assert lake.manifest("models", out["policy"])["inputs"]["models"] == policy1

    # the same call again reuses every rollout and update: no new version anywhere
    after = {d: _versions(lake, d) for d in lake.datasets()}
    assert dapo(**loop) == out
    assert {d: _versions(lake, d) for d in lake.datasets()} == after


def assert_weights_differ(lake: Lake, a: str, b: str) -> None:
    from safetensors.torch import load_file

    def weights(version: str) -> dict:
        path = lake.resolve("models", version).path
        return {k: v for f in sorted(path.glob("*.safetensors")) for k, v in load_file(f).items()}

    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(not wa[k].equal(wb[k]) for k in wa), "every parameter changes in an update step"
