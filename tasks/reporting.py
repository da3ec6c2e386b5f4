"""How every stage reports itself in Prefect: a table artifact of its key figures, a markdown
artifact saying what ran (inputs -> outputs) with a ready DuckDB query, and the flow run's
identity for the output manifests."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import deployment, flow_run


def run_info() -> dict[str, Any]:
    """Goes into the `info` of every manifest a flow writes: which flow run made it."""
    return {
        "flow_run_id": str(flow_run.id) if flow_run.id else None,
        "flow_run_name": flow_run.name,
        "flow_name": flow_run.flow_name,
        "deployment": deployment.name,
    }


def report_stage(
    stage: str,
    *,
    inputs: dict[str, str],
    outputs: dict[str, str],
    figures: dict[str, Any],
    query: str,
    reused: bool = False,
) -> None:
    """Publish the stage's two artifacts; keys use the stage's name (`filter-tasks`, ...)."""
    key = stage.replace("_", "-")
    create_table_artifact(
        key=f"{key}-figures",
        table=[{"figure": k, "value": v} for k, v in figures.items()],
        description=f"{stage}: key figures",
    )
    lines = [f"## {stage}", ""]
    if reused:
        lines += [
            "The same inputs, parameters and code ran before: the existing output was reused "
            "(`force=true` makes a new version).",
            "",
        ]
    lines += ["| | dataset | version |", "|---|---|---|"]
    lines += [f"| input | {d} | `{v}` |" for d, v in inputs.items()]
    lines += [f"| output | {d} | `{v}` |" for d, v in outputs.items()]
    lines += ["", "Inspect it:", "", "```bash", f'swerl sql "{query}"', "```"]
    create_markdown_artifact(key=f"{key}-summary", markdown="\n".join(lines), description=stage)


class Progress:
    """A Prefect progress artifact (percent) plus a log line every ~10%: `Progress(key, what)`,
    then call it with (done, total). Safe to call from worker threads."""

    def __init__(self, key: str, what: str):
        from prefect import get_run_logger
        from prefect.artifacts import create_progress_artifact

        self.what = what
        self.logger = get_run_logger()
        self.id = create_progress_artifact(0.0, key=key, description=what)
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        from prefect.artifacts import update_progress_artifact

        percent = 100.0 * done / max(total, 1)
        step = int(percent // 10)
        if step != self.last or done == total:
            self.last = step
            update_progress_artifact(self.id, percent)
            self.logger.info("%s: %d/%d", self.what, done, total)


def publish_report(sections) -> None:
    """The run report's figures (`swerl.report.report_figures`) as Prefect artifacts: per section
    a markdown artifact (title, text, the plot inline as a PNG data URI) and a table artifact."""
    import base64

    for s in sections:
        md = f"## {s.title}\n\n{s.text}\n"
        if s.png is not None:
            md += f"\n![{s.title}](data:image/png;base64,{base64.b64encode(s.png).decode()})\n"
        create_markdown_artifact(key=f"report-{s.key}", markdown=md, description=s.title)
        if s.table:
            create_table_artifact(key=f"report-{s.key}-table", table=s.table, description=s.title)
