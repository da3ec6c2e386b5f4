"""filter_tasks: tasks -> task_runs (every validation run) + task_pool (kept ids, reasons for drops).

    prefect deployment run 'filter-tasks/dev-tiny' --param runs=5 --watch
    python -m flows.filter_tasks --tasks toy-swe --runs 3

Static rules (gold patch size, LLM score, decontamination) and execution rules (gold patch must
resolve, no patch must fail, no flaky results, no ImportError/AttributeError before the fix);
see `swerl.swe.pool` and `swerl.swe.validate`. Thin over `swerl.swe.validate.filter_tasks`.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from swerl.config import dataclass_from
from swerl.lake import Lake, connect
from swerl.swe.pool import PoolFilter
from swerl.swe.validate import ValidationConfig
from swerl.swe.validate import filter_tasks as filter_tasks_lib
from tasks.images import build_images
from tasks.params import settings
from tasks.reporting import Progress, report_stage, run_info


@flow(name="filter-tasks")
def filter_tasks(
    tasks: str | None = None,
    runs: int | None = None,
    backend: str | None = None,
    concurrency: int | None = None,
    timeout: float | None = None,
    max_patch_files: int | None = None,
    max_changed_lines: int | None = None,
    drop_llm_score: int | None = None,
    drop_import_errors: bool | None = None,
    eval_sets: list[str] | None = None,
    decontaminate_by: str | None = None,
    force: bool = False,
    data: str | None = None,
    config: str | None = None,
) -> dict[str, str]:
    """Validate and filter a `tasks` version (a version id, a name, or `latest`)."""
    s = settings("filter_tasks", locals())
    logger = get_run_logger()
    lake = Lake(data)
    rules = dataclass_from(PoolFilter, s)
    tasks_version = lake.resolve("tasks", s.get("tasks", "latest")).version  # fails before work
    backend = build_images(lake, [tasks_version], backend=s.get("backend", "auto"))
    validation = dataclass_from(ValidationConfig, {**s, "backend": backend})
    eval_sets = s.get("eval_sets") or []
    for name in eval_sets:
        lake.resolve("tasks", name)
    before = {v.version for v in lake.versions("task_pool")}
    progress = Progress("filter-tasks-progress", "validation runs")

    runs_v, pool_v = filter_tasks_lib(
        lake,
        tasks=tasks_version,
        rules=rules,
        validation=validation,
        eval_sets=tuple(eval_sets),
        decontaminate_by=s.get("decontaminate_by", "instance"),
        force=force,
        progress=progress,
        info=run_info(),
    )
    reused = pool_v in before
    con = connect(lake.root)
    kept, dropped = con.sql(
        f"select count(*) filter (where kept), count(*) filter (where not kept) "
        f"from task_pool_all where version = '{pool_v}'"
    ).fetchall()[0]
    logger.info(
        "task_pool %s: %d kept, %d dropped%s", pool_v, kept, dropped, " (reused)" if reused else ""
    )
    report_stage(
        "filter_tasks",
        inputs={"tasks": tasks_version},
        outputs={"task_runs": runs_v, "task_pool": pool_v},
        figures={
            "tasks": kept + dropped,
            "kept": kept,
            "dropped": dropped,
            "runs per task": validation.runs,
            "backend": validation.backend,
        },
        query="select reasons, count(*) from task_pool, unnest(reasons) r(reasons) group by 1 order by 2 desc",
        reused=reused,
    )
    return {"task_runs": runs_v, "task_pool": pool_v}
