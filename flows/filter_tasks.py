"""filter_tasks: tasks -> task_runs (every validation run) + task_pool (kept ids, reasons for drops).

    prefect deployment run 'filter-tasks/dev-tiny' --param runs=5 --watch
    python -m flows.filter_tasks --tasks toy-swe --runs 3

Static rules (gold patch size, LLM score, decontamination) and execution rules (gold patch must
resolve, no patch must fail, no flaky results, no ImportError/AttributeError before the fix);
see `swerl.swe.pool` and `swerl.swe.validate`. Thin over `swerl.swe.validate.filter_tasks`.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from swerl.lake import Lake, connect
from swerl.sandbox import resolve_backend
from swerl.swe.pool import PoolFilter
from swerl.swe.validate import ValidationConfig
from swerl.swe.validate import filter_tasks as filter_tasks_lib
from tasks.reporting import report_stage, run_info


@flow(name="filter-tasks")
def filter_tasks(
    tasks: str = "latest",
    runs: int = 3,
    backend: str = "auto",
    concurrency: int = 2,
    timeout: float = 1800.0,
    max_patch_files: int = 7,
    max_changed_lines: int = 500,
    drop_llm_score: int | None = 3,
    drop_import_errors: bool = True,
    eval_sets: list[str] | None = None,
    decontaminate_by: str = "instance",
    force: bool = False,
    data: str | None = None,
) -> dict[str, str]:
    """Validate and filter a `tasks` version (a version id, a name, or `latest`)."""
    logger = get_run_logger()
    lake = Lake(data)
    rules = PoolFilter(max_patch_files, max_changed_lines, drop_llm_score, drop_import_errors)
    validation = ValidationConfig(runs, resolve_backend(backend), timeout, concurrency)
    tasks_version = lake.resolve("tasks", tasks).version  # fails here, before any work
    for name in eval_sets or []:
        lake.resolve("tasks", name)
    before = {v.version for v in lake.versions("task_pool")}

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            logger.info("validation runs: %d/%d", done, total)

    runs_v, pool_v = filter_tasks_lib(
        lake,
        tasks=tasks_version,
        rules=rules,
        validation=validation,
        eval_sets=tuple(eval_sets or ()),
        decontaminate_by=decontaminate_by,
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
            "runs per task": runs,
            "backend": validation.backend,
        },
        query="select reasons, count(*) from task_pool, unnest(reasons) r(reasons) group by 1 order by 2 desc",
        reused=reused,
    )
    return {"task_runs": runs_v, "task_pool": pool_v}
