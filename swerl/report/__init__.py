"""Reports of a run: one self-contained HTML page, and the same figures as data for Prefect.

    swerl report --out report.html [--model <final models version>]
    build_report(Lake("data"), "report.html", model="dapo-final")
    for s in report_figures(Lake("data")):       # Section(key, title, text, png, table)
        ...                                      # e.g. publish as Prefect artifacts

What the page shows: the stage table (base / RFT / each DAPO checkpoint, Pass@1 +- SEM and
Pass@n from `evals`), Pass@k curves, termination reasons, the breakdown by repository; per DAPO
iteration, from `trajectories`: resolved rate (training pass@1), mean reward, response length,
turns, terminations; from `train_metrics`: clip fractions, entropy, sampler-trainer gap, loss and
the share of samples dropped for zero advantage. A missing dataset leaves its sections saying
"No data yet". Which data is "the run": see `swerl.report.run`.
"""

from __future__ import annotations

from pathlib import Path

from swerl.lake import Lake
from swerl.report.figures import Section, report_sections
from swerl.report.html import render_html
from swerl.report.run import Run, load_run

__all__ = ["Run", "Section", "build_report", "load_run", "report_figures"]


def report_figures(lake: Lake, model: str | None = None) -> list[Section]:
    """The report's sections (title, text, PNG bytes and/or table rows), in page order."""
    return report_sections(load_run(lake, model))


def build_report(
    lake: Lake, out_path: str | Path, *, model: str | None = None, title: str | None = None
) -> Path:
    """Write the HTML report of the run ending in `model` (all of the lake for None) to
    `out_path`; returns the path."""
    run = load_run(lake, model)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    page = render_html(run, report_sections(run), title or "swerl run report")
    out.write_text(page, encoding="utf-8")
    return out
