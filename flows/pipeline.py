"""pipeline: every stage end to end, from task files (or the toy-SWE suite) and a base model to
an evaluated DAPO policy:

    import_tasks -> images -> filter_tasks -> collect_rft -> train_rft -> dapo -> evaluate
                                                         (base, RFT and DAPO policies)

    make demo                                             # dev-tiny, Prefect ephemeral mode
    prefect deployment run 'pipeline/dev-tiny' --watch
    python -m flows.pipeline --config dev-tiny

Each stage runs as a sub-flow with the same config; every output is a dataset version, and a
re-run reuses every stage whose inputs, parameters and code are unchanged (`force=true` redoes
them all). When RFT collection resolves nothing (a random-weight model), RFT is skipped and says
so: DAPO then starts from the base model.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.collect_rft import collect_rft
from flows.dapo import dapo
from flows.evaluate import evaluate
from flows.filter_tasks import filter_tasks
from flows.import_tasks import import_tasks
from flows.train_rft import train_rft
from swerl.lake import Lake
from tasks.images import build_images
from tasks.params import settings
from tasks.reporting import publish_report, report_stage


def base_policy(lake: Lake, base_model: str) -> str:
    """`base_model` as given, or for `tiny` (absent from the lake) the tiny model built into it."""
    from swerl.train.checkpoint import CheckpointError, resolve_model

    try:
        return resolve_model(lake, base_model).id
    except CheckpointError:
        if base_model != "tiny":
            raise
    from swerl.models.tiny import publish_tiny_model

    return publish_tiny_model(lake, name="tiny")


@flow(name="pipeline")
def pipeline(
    base_model: str | None = None,
    base_image: str | None = None,
    force: bool = False,
    data: str | None = None,
    config: str | None = None,
) -> dict[str, Any]:
    """The whole pipeline with the settings of `config` for every stage."""
    s = settings("pipeline", locals())
    logger = get_run_logger()
    lake = Lake(data)
    common = {"force": force, "data": data, "config": config}
    tasks = import_tasks(**common)
    if "train" not in tasks:
        raise ValueError(
            "pipeline: the imported tasks carry no train/eval split; run the stages one by one "
            "with your own task sets (see the README)"
        )
    backend = build_images(lake, [tasks["train"], tasks["eval"]], s.get("base_image"))
    pool = filter_tasks(tasks=tasks["train"], backend=backend, **common)["task_pool"]
    base = base_policy(lake, s.get("base_model", "tiny"))
    rft_data = collect_rft(model=base, pool=pool, backend=backend, **common)
    resolved = lake.read("trajectories", rft_data["trajectories"], columns=["resolved"])
    if any(resolved["resolved"].to_pylist()):
        rft = train_rft(model=base, trajectories=[rft_data["trajectories"]], **common)["models"]
    else:
        logger.warning(
            "RFT skipped: none of the %d RFT trajectories resolved its task; DAPO starts from "
            "the base model",
            resolved.num_rows,
        )
        rft = None
    loop = dapo(policy=rft or base, pool=pool, backend=backend, **common)
    policies = {"base": base, **({"RFT": rft} if rft else {}), "DAPO": loop["policy"]}
    results = {}
    for stage, model in policies.items():
        out = evaluate(model=model, tasks=tasks["eval"], backend=backend, **common)
        results[stage] = {"model": model, "evals": out["evals"], **_figures(out["summary"])}
    for stage, r in results.items():
        logger.info("%-5s Pass@1 %.3f +- %.3f (%s)", stage, r["pass@1"], r["sem"], r["model"])
    from swerl.report import build_report, report_figures

    report = build_report(
        lake,
        lake.root / "reports" / f"pipeline-{loop['policy']}.html",
        model=loop["policy"],
        title=f"swerl pipeline ({config or 'defaults'})",
    )
    publish_report(report_figures(lake, loop["policy"]))
    logger.info("report: %s", report)
    report_stage(
        "pipeline",
        inputs={"tasks": tasks["tasks"], "base model": base},
        outputs={f"{k} evals": v["evals"] for k, v in results.items()},
        figures={f"{k} Pass@1": f"{v['pass@1']:.3f} +- {v['sem']:.3f}" for k, v in results.items()},
        query="select version, avg(resolved::int) pass1, count(*) n from evals_all group by 1",
    )
    return {
        "tasks": tasks,
        "task_pool": pool,
        "rft_trajectories": rft_data["trajectories"],
        "policies": policies,
        "dapo": loop,
        "results": results,
        "report": str(report),
    }


def _figures(summary: dict[str, Any]) -> dict[str, float]:
    return {"pass@1": summary["pass_at_1"], "sem": summary.get("pass_at_1_sem") or 0.0}


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-model")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--config", default="dev-tiny")
    a = ap.parse_args()
    print(
        json.dumps(
            pipeline(base_model=a.base_model, force=a.force, config=a.config), indent=2, default=str
        )
    )
