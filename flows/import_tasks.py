"""import_tasks: task files (or the bundled toy-SWE suite) -> a `tasks` version, plus one version
per split (`<name>-train`, `<name>-eval`) when the tasks carry splits.

    prefect deployment run 'import-tasks/dev-tiny' --watch
    python -m flows.import_tasks ../shared/fixtures/swebench/lite_rows.jsonl --name swe-bench-lite
    python -m flows.import_tasks --toy --config dev-tiny

Thin over `swerl.swe.ingest.import_tasks` (files), `swerl.swe.toy.publish_toy_suite` (toy) and
`swerl.swe.splits.select_tasks` (splits).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from swerl.lake import Lake
from swerl.swe.ingest import import_tasks as import_tasks_lib
from swerl.swe.splits import select_tasks
from tasks.params import settings
from tasks.reporting import report_stage, run_info


@flow(name="import-tasks")
def import_tasks(
    paths: list[str] | None = None,
    name: str | None = None,
    skip_invalid: bool | None = None,
    toy: bool | None = None,
    toy_seed: int | None = None,
    toy_train: int | None = None,
    toy_eval: int | None = None,
    force: bool = False,
    data: str | None = None,
    config: str | None = None,
) -> dict[str, str | None]:
    """Import task files (JSONL/JSON/Parquet, SWE-bench or SWE-rebench rows) or, with `toy`, the
    toy-SWE suite (`toy_train` + `toy_eval` tasks of seed `toy_seed`) into the lake at `data`."""
    s = settings("import_tasks", locals())
    logger = get_run_logger()
    lake = Lake(data)
    if bool(s.get("paths")) == bool(s.get("toy")):
        raise ValueError("import_tasks: give either `paths` (task files) or `toy=true`, not both")
    out: dict[str, str | None] = {}
    if s.get("toy"):
        from swerl.swe.toy import publish_toy_suite

        name = s.get("name") or "toy-swe"
        out["tasks"] = publish_toy_suite(
            lake,
            seed=s.get("toy_seed", 0),
            n_train=s.get("toy_train", 48),
            n_eval=s.get("toy_eval", 16),
            name=name,
        )
        for split in ("train", "eval"):
            out[split] = select_tasks(
                lake, out["tasks"], split=split, name=f"{name}-{split}", force=force
            )
        logger.info("toy-SWE suite: tasks %s (train %s, eval %s)", *out.values())
    else:
        result = import_tasks_lib(
            s["paths"],
            name=s.get("name"),
            skip_invalid=bool(s.get("skip_invalid")),
            force=force,
            lake=lake,
            info=run_info(),
        )
        verb = "reused" if result.reused else "published"
        logger.info("%s tasks version %s (%d rows)", verb, result.version, result.rows)
        if result.rejected:
            logger.warning(
                "%d invalid rows -> tasks_rejected %s", result.rejected, result.rejected_version
            )
        out = {"tasks": result.version, "tasks_rejected": result.rejected_version}
    report_stage(
        "import_tasks",
        inputs={"files": ", ".join(s.get("paths") or ["toy-SWE suite"])},
        outputs={k: v for k, v in out.items() if v},
        figures={"tasks": lake.resolve("tasks", out["tasks"]).rows},
        query="select repo, count(*) n from tasks group by repo order by n desc",
    )
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--name")
    ap.add_argument("--skip-invalid", action="store_true", default=None)
    ap.add_argument("--toy", action="store_true", default=None)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--config")
    args = ap.parse_args()
    print(
        import_tasks(
            args.paths or None,
            name=args.name,
            skip_invalid=args.skip_invalid,
            toy=args.toy,
            force=args.force,
            config=args.config,
        )
    )
