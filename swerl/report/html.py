"""A report as one self-contained HTML page: inline CSS, plots as base64 PNG `<img>`s, tables as
HTML tables. No scripts, no external files: it opens from disk, from an e-mail, from an
artifact store."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime

from swerl.report.figures import Section
from swerl.report.run import Run

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1200px; color: #222; line-height: 1.45; padding: 0 16px; }
h1 { font-size: 26px; margin-bottom: 4px; }
h2 { font-size: 20px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
p.meta { color: #555; margin-top: 0; }
p.empty { color: #8a6d3b; background: #fcf8e3; border: 1px solid #faebcc; padding: 8px 12px;
          border-radius: 4px; }
img { max-width: 100%; display: block; margin: 12px 0; }
table { border-collapse: collapse; margin: 12px 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
td { white-space: nowrap; }
th { background: #f0f3f7; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f4f4f4; padding: 1px 4px; border-radius: 3px; }
footer { margin-top: 40px; color: #777; font-size: 13px; }
"""


def render_html(run: Run, sections: list[Section], title: str) -> str:
    """The page for `sections` of `run`."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Run: {_e(run.selection)}. Generated {now}.</p>',
    ]
    for s in sections:
        parts.append(f'<section id="{_e(s.key)}"><h2>{_e(s.title)}</h2>')
        cls = ' class="empty"' if s.empty else ""
        parts.append(f"<p{cls}>{_inline_code(s.text)}</p>")
        if s.png is not None:
            data = base64.b64encode(s.png).decode()
            parts.append(f'<img alt="{_e(s.title)}" src="data:image/png;base64,{data}">')
        if s.table:
            parts.append(_table(s.table))
        parts.append("</section>")
    read = "; ".join(f"{d}: {len(vs)} version(s)" for d, vs in sorted(run.datasets.items()))
    parts.append(
        f"<footer>Lake root <code>{_e(str(run.root))}</code>. Read: {_e(read or 'nothing')}. "
        'Inspect with <code>swerl sql "select * from evals_all limit 10"</code>.</footer>'
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_cell(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _inline_code(text: str) -> str:
    """Escape, then turn `x` into <code>x</code>."""
    pieces = _e(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _e(text: str) -> str:
    return html.escape(text, quote=True)
