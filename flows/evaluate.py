"""evaluate: n attempts per task with one model -> `evals` (one row per attempt), a summary
(Pass@1 +- SEM, Pass@k, by repository, terminations) and predictions JSONL for the official
SWE-bench harness.

    prefect deployment run 'evaluate/dev-tiny' --param model=<models version> --watch
    python -m flows.evaluate --config dev-tiny --model tiny

API models: `--param generator='"openai-chat"' --param server_url='"https://<endpoint>"'
--param model='"<the endpoint's model name>"'` (the key from the worker's `OPENAI_API_KEY`, never
stored). Thin over `swerl.evaluation.evaluate.evaluate`; finished attempts survive a kill.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from swerl.config import evaluate_config
from swerl.evaluation.evaluate import evaluate as evaluate_lib
from swerl.lake import Lake
from swerl.sandbox import resolve_backend
from tasks.params import settings
from tasks.reporting import Progress, report_stage, run_info


@flow(name="evaluate")
def evaluate(
    model: str | None = None,
    tasks: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    attempts: int | None = None,
    max_turns: int | None = None,
    max_context_tokens: int | None = None,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    backend: str | None = None,
    max_live_sandboxes: int | None = None,
    grade_unsubmitted: bool | None = None,
    turn_penalty_threshold: int | None = None,
    command_timeout: float | None = None,
    relative_paths: bool | None = None,
    grading_timeout: float | None = None,
    prompts_dir: str | None = None,
    generator: str | None = None,
    server_url: str | None = None,
    device: str | None = None,
    seed: int | None = None,
    name: str | None = None,
    force: bool = False,
    data: str | None = None,
    config: str | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on `tasks` (optionally one `split` of it, the first `limit` tasks) with
    `attempts` attempts per task; returns the `evals` version, its summary and predictions."""
    s = settings("evaluate", locals())
    logger = get_run_logger()
    lake = Lake(data)
    if not s.get("model"):
        raise ValueError("evaluate: no `model` given (a models version or name, or a directory)")
    backend = resolve_backend(s.get("backend", "auto"))
    out = evaluate_lib(
        lake,
        model=s["model"],
        tasks=s.get("tasks", "latest"),
        split=s.get("split"),
        limit=s.get("limit"),
        attempts=s.get("attempts", 10),
        **evaluate_config({**s, "backend": backend}),
        generator=s.get("generator", "hf"),
        server_url=s.get("server_url"),
        device=s.get("device", "cpu"),
        seed=s.get("seed", 0),
        name=s.get("name"),
        force=force,
        info=run_info(),
        progress=Progress("evaluate-progress", "evaluation attempts"),
    )
    sm = out.summary
    logger.info(
        "%s evals %s: Pass@1 %.3f +- %.3f over %d tasks x %d attempts; predictions in %s",
        "reused" if out.reused else "published",
        out.evals,
        sm["pass_at_1"],
        sm.get("pass_at_1_sem") or 0.0,
        sm["tasks"],
        sm["attempts"],
        out.predictions,
    )
    report_stage(
        "evaluate",
        inputs={"model": s["model"], "tasks": s.get("tasks", "latest")},
        outputs={"evals": out.evals},
        figures={
            "Pass@1": sm["pass_at_1"],
            "Pass@1 SEM": sm.get("pass_at_1_sem"),
            **{f"Pass@{k}": v for k, v in (sm.get("pass_at_k") or {}).items()},
            "tasks": sm["tasks"],
            "attempts": sm["attempts"],
            "mean turns": sm.get("mean_turns"),
            "terminations": ", ".join(f"{k} {v}" for k, v in sm["terminations"].items()),
            "predictions": str(out.predictions),
        },
        query=(
            "select repo, avg(resolved::int) resolved, count(*) attempts from evals "
            "group by 1 order by 2 desc"
        ),
        reused=out.reused,
    )
    return {"evals": out.evals, "summary": sm, "predictions": str(out.predictions)}
