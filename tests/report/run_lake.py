"""A small lake holding a whole run, written with the lake's own writers and the datasets'
registered schemas: a base model, scripted demonstrations, RFT, four DAPO update rounds, a side
run (a sign-flipped control branching off RFT: its own first rollout from RFT, a reward-flipped
copy of it, an update on the copy, then its own rollouts), their rollouts and update metrics,
and evaluations of base, RFT, two DAPO checkpoints and the control. Each model records the
`trajectories` it trained on, as the training stages do. Numbers are made up but shaped like a
run that learns."""

from __future__ import annotations

import random

from swerl.evaluation.summary import summarize
from swerl.lake import Lake

TERMINATIONS = ["submitted", "max_turns", "context_limit"]


def _model(
    lake: Lake, stage: str, *, parent: str | None, name=None, iteration=None, trained_on=None
) -> str:
    parameters = {} if iteration is None else {"iteration": iteration}
    info = {} if parent is None else {"parent": parent}
    inputs = {} if trained_on is None else {"trajectories": trained_on, "models": parent}
    with lake.directory(
        "models", stage=stage, parameters=parameters, inputs=inputs, name=name, info=info
    ) as w:
        (w.path / "config.json").write_text("{}")
    return w.version


def _trajectories(rng, policy: str, stage: str, iteration: int, skill: float) -> list[dict]:
    rows = []
    for t in range(6):
        for s in range(4):
            resolved = rng.random() < skill
            turns = rng.randint(3, 8) if resolved else rng.randint(8, 12)
            term = "submitted" if resolved else rng.choice(TERMINATIONS)
            rows.append(
                {
                    "trajectory_id": f"{stage}/{iteration}/task-{t}/{s}",
                    "instance_id": f"task-{t}",
                    "repo": f"toy/pkg{t % 2}",
                    "stage": stage,
                    "iteration": iteration,
                    "sample": s,
                    "policy_version": policy,
                    "resolved": resolved,
                    "reward": float(resolved) - 0.1 * max(0, turns - 6),
                    "turns": turns,
                    "termination": term,
                    "completion_tokens": 60 * turns + rng.randint(0, 50),
                }
            )
    return rows


def _metrics(rng, model: str, iteration: int) -> list[dict]:
    return [
        {
            "model_version": model,
            "stage": "update_policy",
            "iteration": iteration,
            "step": step,
            "loss": rng.uniform(-0.05, 0.05),
            "clip_frac_low": rng.uniform(0.001, 0.01),
            "clip_frac_high": rng.uniform(0.01, 0.03),
            "entropy": 1.5 - 0.1 * iteration + rng.uniform(-0.02, 0.02),
            "kept_samples": 8,
            "dropped_samples": 4 + iteration,
            "sampler_gap_abs": 0.002 + rng.uniform(0, 0.001),
            "sampler_kl": 1e-5 * (1 + rng.random()),
            "tokens": 4000,
        }
        for step in range(2)
    ]


def _evaluate(lake: Lake, rng, tasks: str, model: str, skill: float) -> str:
    rows = []
    for t in range(8):
        p = min(1.0, max(0.0, skill + (0.2 if t % 2 else -0.2)))
        for a in range(5):
            resolved = rng.random() < p
            rows.append(
                {
                    "instance_id": f"eval-{t}",
                    "repo": f"toy/pkg{t % 3}",
                    "attempt": a,
                    "model_version": model,
                    "resolved": resolved,
                    "termination": "submitted" if resolved else rng.choice(TERMINATIONS),
                    "submitted": resolved,
                    "turns": rng.randint(3, 12),
                    "completion_tokens": rng.randint(100, 800),
                    "total_tokens": rng.randint(2000, 4000),
                    "reward": float(resolved),
                    "patch": "diff --git a/x b/x\n" if resolved else "",
                }
            )
    return lake.write(
        "evals",
        rows,
        stage="evaluate",
        parameters={"split": "eval", "attempts": 5},
        inputs={"tasks": tasks, "models": model},
        info={"summary": summarize(rows), "predictions": "predictions"},
    )


def populate(lake: Lake, seed: int = 0) -> dict[str, str]:
    """Write the run; returns the ids of its models by label."""
    rng = random.Random(seed)
    tasks = lake.write(
        "tasks",
        [
            {
                "instance_id": f"eval-{t}",
                "repo": "toy/x",
                "base_commit": "0",
                "problem_statement": ".",
            }
            for t in range(8)
        ],
        stage="toy_build",
        name="toy-swe",
    )
    ids = {"base": _model(lake, "tiny_model", parent=None, name="base")}
    # scripted demonstrations (all resolved): not the policy's samples, never counted
    lake.write(
        "trajectories",
        _trajectories(rng, ids["base"], "rft", 0, 1.0),
        stage="demos",
        inputs={"models": ids["base"]},
    )
    collected = lake.write(
        "trajectories",
        _trajectories(rng, ids["base"], "rft", 0, 0.15),
        stage="rollout",
        parameters={"stage": "rft"},
        inputs={"models": ids["base"]},
    )
    ids["rft"] = _model(lake, "train_rft", parent=ids["base"], trained_on=collected)
    policy = ids["rft"]
    for k in range(4):
        batch = lake.write(
            "trajectories",
            _trajectories(rng, policy, "dapo", k, 0.3 + 0.1 * k),
            stage="rollout",
            parameters={"iteration": k},
            inputs={"models": policy},
        )
        policy = _model(lake, "update_policy", parent=policy, iteration=k, trained_on=batch)
        ids[f"dapo{k}"] = policy
        lake.write(
            "train_metrics",
            _metrics(rng, policy, k),
            stage="update_policy",
            inputs={"models": policy},
        )
    # the control: its own iteration-0 rollout from RFT, trained on a reward-flipped copy of it,
    # then its own iteration-1 rollouts
    first = lake.write(
        "trajectories",
        _trajectories(rng, ids["rft"], "dapo", 0, 0.3),
        stage="rollout",
        parameters={"iteration": 0, "seed": 1},
        inputs={"models": ids["rft"]},
    )
    rows = lake.read("trajectories", first).to_pylist()
    flipped = lake.write(
        "trajectories",
        [{**r, "reward": -r["reward"]} for r in rows],
        stage="flip_rewards",
        inputs={"trajectories": first},
    )
    ids["flipped"] = _model(
        lake, "update_policy", parent=ids["rft"], name="flipped", iteration=0, trained_on=flipped
    )
    lake.write(
        "train_metrics",
        _metrics(rng, ids["flipped"], 0),
        stage="update_policy",
        inputs={"models": ids["flipped"]},
    )
    lake.write(
        "trajectories",
        _trajectories(rng, ids["flipped"], "dapo", 1, 0.99),
        stage="rollout",
        parameters={"iteration": 1},
        inputs={"models": ids["flipped"]},
    )

    for label, skill in [("base", 0.1), ("rft", 0.25), ("dapo1", 0.4), ("dapo3", 0.55)]:
        _evaluate(lake, rng, tasks, ids[label], skill)
    _evaluate(lake, rng, tasks, ids["flipped"], 0.05)
    return ids
