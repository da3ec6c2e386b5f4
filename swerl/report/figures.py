"""The figures of a run report, as data: each a `Section` with a title, a sentence, and a PNG
(matplotlib, Agg, no pyplot state) and/or table rows. The HTML page (`swerl.report.html`) and
Prefect artifacts (a flow turns `png` into a markdown image and `table` into a table artifact)
are both made from the same list.

A section without data says so ("no data yet: ...") instead of failing: a report of a run in
progress shows what exists.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from swerl.report.run import Run

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
TERMINATION_COLORS = {
    "submitted": "#2ca02c",
    "max_turns": "#ff7f0e",
    "context_limit": "#d62728",
    "generation_error": "#9467bd",
    "sandbox_error": "#7f7f7f",
}


@dataclass(frozen=True)
class Section:
    """One block of the report."""

    key: str
    """Stable id, usable as a Prefect artifact key (lower-case, dashes)."""
    title: str
    text: str
    """What it shows; starts with "No data yet" when there is nothing to show."""
    png: bytes | None = None
    table: list[dict[str, Any]] | None = None

    @property
    def empty(self) -> bool:
        return self.png is None and not self.table


def report_sections(run: Run) -> list[Section]:
    """Every section of the report of `run`, in page order."""
    return [
        stage_table(run),
        eval_plots(run),
        eval_terminations(run),
        eval_by_repo(run),
        rollout_curves(run),
        rollout_terminations(run),
        training_curves(run),
    ]


# ---- evaluation --------------------------------------------------------------------------------


def stage_table(run: Run) -> Section:
    title = "Stage table (evaluation)"
    if not run.evals:
        return Section("stage-table", title, "No data yet: no `evals` version in this run.")
    rows = []
    for e in run.evals:
        s = e.summary
        n = s["attempts"]
        rows.append(
            {
                "model": e.model.label,
                "made by": e.model.stage,
                "models version": _short(e.model.id),
                "tasks": e.tasks + (f" ({e.split})" if e.split else ""),
                "n tasks": s["tasks"],
                "attempts": n,
                "Pass@1 % ± SEM": f"{100 * s['pass_at_1']:.1f} ± {100 * s['pass_at_1_sem']:.1f}",
                f"Pass@{n} %": f"{100 * s['pass_at_k'][str(n)]:.1f}",
                "mean turns": _fmt(s.get("mean_turns")),
                "mean tokens sampled": _fmt(s.get("mean_completion_tokens"), 0),
                "submit %": f"{100 * s['submit_rate']:.0f}",
            }
        )
    text = (
        "One row per `evals` version, ordered base -> RFT -> DAPO. Pass@1 is the mean resolved "
        "rate over runs (run r = attempt r of every task) with its standard error over runs; "
        "Pass@n is solved in at least one of n attempts (unbiased estimator)."
    )
    return Section("stage-table", title, text, table=rows)


def eval_plots(run: Run) -> Section:
    title = "Pass@1 and Pass@k per evaluated model"
    if not run.evals:
        return Section("eval-pass", title, "No data yet: no `evals` version in this run.")
    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    labels = _eval_labels(run)
    p1 = [100 * e.summary["pass_at_1"] for e in run.evals]
    sem = [100 * e.summary["pass_at_1_sem"] for e in run.evals]
    pn = [100 * e.summary["pass_at_k"][str(e.summary["attempts"])] for e in run.evals]
    x = range(len(labels))
    left.bar([i - 0.2 for i in x], p1, 0.4, yerr=sem, capsize=4, label="Pass@1 ± SEM")
    left.bar([i + 0.2 for i in x], pn, 0.4, alpha=0.5, label="Pass@n")
    left.set_xticks(list(x), labels, rotation=20, ha="right")
    left.set_xlim(-0.7, max(len(labels), 4) - 0.3)  # a lone bar stays bar-sized
    left.set_ylabel("% of tasks resolved")
    left.set_ylim(0, max(100.0, *pn) * 1.05 if pn else 100)
    left.set_title("Pass@1 (error bars: SEM over runs) and Pass@n")
    left.legend(loc="upper left")
    for i, e in enumerate(run.evals):
        ks = sorted(int(k) for k in e.summary["pass_at_k"])
        right.plot(
            ks,
            [100 * e.summary["pass_at_k"][str(k)] for k in ks],
            marker="o",
            color=COLORS[i % len(COLORS)],
            label=labels[i],
        )
    right.set_xlabel("k")
    right.set_xticks(sorted({int(k) for e in run.evals for k in e.summary["pass_at_k"]}))
    right.set_ylabel("Pass@k %")
    right.set_title("Pass@k for every k <= n")
    right.set_ylim(0, 100)
    right.legend(loc="lower right", fontsize="small")
    return Section("eval-pass", title, "Resolved rates of each evaluated model.", png=_png(fig))


def eval_terminations(run: Run) -> Section:
    title = "How evaluation attempts ended"
    if not run.evals:
        return Section("eval-terminations", title, "No data yet: no `evals` version in this run.")
    shares = [_shares(e.summary["terminations"]) for e in run.evals]
    fig = Figure(figsize=(11, 3.5))
    ax = fig.subplots()
    labels = _eval_labels(run)
    _stacked(ax, labels, shares)
    ax.set_ylabel("share of attempts")
    ax.set_title("Termination reasons per evaluated model")
    rows = [
        {"model": label, **{k: v for k, v in sorted(e.summary["terminations"].items())}}
        for label, e in zip(labels, run.evals, strict=True)
    ]
    text = "submitted: the agent ran `submit`; max_turns / context_limit: cut by a limit."
    return Section("eval-terminations", title, text, png=_png(fig), table=rows)


def eval_by_repo(run: Run) -> Section:
    title = "Resolved rate by repository"
    if not run.evals:
        return Section("eval-by-repo", title, "No data yet: no `evals` version in this run.")
    rows = []
    for label, e in zip(_eval_labels(run), run.evals, strict=True):
        n = str(e.summary["attempts"])
        for repo, r in e.summary["by_repo"].items():
            rows.append(
                {
                    "model": label,
                    "repository": repo,
                    "tasks": r["tasks"],
                    "Pass@1 % ± SEM": f"{100 * r['pass_at_1']:.1f} ± {100 * r['pass_at_1_sem']:.1f}",
                    f"Pass@{n} %": f"{100 * r['pass_at_k'][n]:.1f}",
                }
            )
    return Section("eval-by-repo", title, "Per repository, per evaluated model.", table=rows)


# ---- rollouts (trajectories) -------------------------------------------------------------------


def _by_iteration(run: Run) -> dict[int, list[dict[str, Any]]]:
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in run.trajectories:
        if r["stage"] == "dapo" and r["iteration"] is not None:
            groups[r["iteration"]].append(r)
    return dict(sorted(groups.items()))


def rollout_curves(run: Run) -> Section:
    title = "Rollouts per DAPO iteration"
    groups = _by_iteration(run)
    if not groups:
        return Section(
            "rollouts", title, "No data yet: no DAPO rollouts (`trajectories`, stage dapo)."
        )
    its = list(groups)

    def mean(key: str) -> list[float | None]:
        return [_mean([r[key] for r in groups[i]]) for i in its]

    resolved, reward = mean("resolved"), mean("reward")
    tokens, turns = mean("completion_tokens"), mean("turns")
    fig = Figure(figsize=(11, 7))
    (a, b), (c, d) = fig.subplots(2, 2)
    _line(a, its, [100 * v if v is not None else None for v in resolved], "resolved %", "rollouts")
    evals = _evals_by_sampling_iteration(run)
    if evals:
        xs = list(evals)
        a.errorbar(
            xs,
            [100 * evals[x].summary["pass_at_1"] for x in xs],
            yerr=[100 * evals[x].summary["pass_at_1_sem"] for x in xs],
            fmt="s--",
            capsize=4,
            label="eval Pass@1 ± SEM",
        )
        a.set_xticks(sorted(set(its) | set(xs)))
    a.legend(fontsize="small")
    _line(b, its, reward, "mean reward")
    _line(c, its, tokens, "mean sampled tokens per episode")
    _line(d, its, turns, "mean turns per episode")
    for ax in (c, d):
        ax.set_xlabel("DAPO iteration")
    fig.tight_layout()
    rows = [
        {
            "iteration": i,
            "episodes": len(groups[i]),
            "resolved %": _fmt(100 * resolved[k] if resolved[k] is not None else None),
            "mean reward": _fmt(reward[k], 3),
            "mean sampled tokens": _fmt(tokens[k], 0),
            "mean turns": _fmt(turns[k]),
        }
        for k, i in enumerate(its)
    ]
    rft = [r for r in run.trajectories if r["stage"] == "rft"]
    text = (
        "Training rollouts of each iteration (sampled by the policy of that iteration): resolved "
        "rate (the training pass@1), mean reward (resolved + turn penalty), response length "
        "(tokens the policy sampled over the whole episode) and turns. Squares: the evaluation "
        "Pass@1 ± SEM of the policy that sampled that iteration (RFT at 0, the update on "
        "iteration k at k + 1), where one was evaluated."
    )
    if rft:
        text += (
            f" RFT collection: {len(rft)} episodes, "
            f"{100 * (_mean([r['resolved'] for r in rft]) or 0):.1f}% resolved."
        )
    return Section("rollouts", title, text, png=_png(fig), table=rows)


def rollout_terminations(run: Run) -> Section:
    title = "How rollouts ended, per DAPO iteration"
    groups = _by_iteration(run)
    if not groups:
        return Section("rollout-terminations", title, "No data yet: no DAPO rollouts.")
    shares = [_shares(Counter(r["termination"] or "unknown" for r in g)) for g in groups.values()]
    fig = Figure(figsize=(11, 3.5))
    ax = fig.subplots()
    _stacked(ax, [str(i) for i in groups], shares)
    ax.set_xlabel("DAPO iteration")
    ax.set_ylabel("share of episodes")
    return Section(
        "rollout-terminations", title, "Termination reasons of training rollouts.", png=_png(fig)
    )


# ---- training (train_metrics) ------------------------------------------------------------------


def training_curves(run: Run) -> Section:
    title = "DAPO updates per iteration"
    rows = [r for r in run.train_metrics if r["stage"] == "update_policy"]
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["iteration"] if r["iteration"] is not None else -1].append(r)
    groups = dict(sorted(groups.items()))
    if not groups:
        return Section(
            "training", title, "No data yet: no DAPO update steps (`train_metrics`, update_policy)."
        )
    its = list(groups)

    def mean(key: str) -> list[float | None]:
        return [_mean([r[key] for r in groups[i]]) for i in its]

    fig = Figure(figsize=(11, 7))
    (a, b), (c, d) = fig.subplots(2, 2)
    _line(a, its, [_pct(v) for v in mean("clip_frac_low")], "", label="low (1 - eps_low)")
    _line(a, its, [_pct(v) for v in mean("clip_frac_high")], "", label="high (1 + eps_high)")
    a.set_title("clipped action tokens %")
    a.legend(fontsize="small")
    _line(b, its, mean("entropy"), "policy entropy (nats / token)")
    _line(c, its, mean("sampler_gap_abs"), "sampler-trainer gap", label="mean |dlogp| (left)")
    kl = c.twinx()
    kl.plot(its, mean("sampler_kl"), marker="s", color="#ff7f0e", label="k3 KL (right)")
    kl.set_ylim(bottom=0)
    c.set_ylim(bottom=0)
    c.legend(
        c.get_lines() + kl.get_lines(),
        [line.get_label() for line in c.get_lines() + kl.get_lines()],
        fontsize="small",
    )
    _line(d, its, mean("loss"), "loss (-J)")
    for ax in (c, d):
        ax.set_xlabel("DAPO iteration")
    fig.tight_layout()
    table = []
    for i in its:
        g = groups[i]
        kept = sum(r["kept_samples"] or 0 for r in g)
        dropped = g[0]["dropped_samples"] or 0
        table.append(
            {
                "iteration": i,
                "steps": len(g),
                "kept samples": kept,
                "dropped (no signal) %": _fmt(
                    100 * dropped / (kept + dropped) if kept + dropped else None
                ),
                "clip low %": _fmt(_pct(_mean([r["clip_frac_low"] for r in g])), 2),
                "clip high %": _fmt(_pct(_mean([r["clip_frac_high"] for r in g])), 2),
                "entropy": _fmt(_mean([r["entropy"] for r in g]), 3),
                "sampler gap": _sci(_mean([r["sampler_gap_abs"] for r in g])),
                "sampler KL": _sci(_mean([r["sampler_kl"] for r in g])),
            }
        )
    text = (
        "Means over the optimizer steps of each update round: clip fractions of the token ratio, "
        "entropy of the policy on action tokens, and the gap between the sampler's log-probs and "
        "the trainer's recomputation (near 0 means the rollouts came from pi_old). Dropped: "
        "samples with a zero advantage and, where the update ran with drop_unsolved, samples "
        "of groups with no resolved episode."
    )
    return Section("training", title, text, png=_png(fig), table=table)


# ---- helpers -----------------------------------------------------------------------------------


def _evals_by_sampling_iteration(run: Run) -> dict[int, Any]:
    """Iteration -> the (latest) evaluation of the policy that sampled it."""
    out = {}
    for e in run.evals:
        if e.model.stage == "train_rft":
            out[0] = e
        elif e.model.stage == "update_policy" and e.model.iteration is not None:
            out[e.model.iteration + 1] = e
    return dict(sorted(out.items()))


def _eval_label(e) -> str:
    return e.model.label + (f" [{e.split}]" if e.split else "")


def _eval_labels(run: Run) -> list[str]:
    """A label per evaluation; a model evaluated on several task sets gets the set's name too."""
    labels = [_eval_label(e) for e in run.evals]
    counts = Counter(labels)
    return [
        f"{label} ({e.tasks})" if counts[label] > 1 else label
        for label, e in zip(labels, run.evals, strict=True)
    ]


def _line(ax, xs: Sequence[int], ys: Sequence[float | None], title: str, label: str | None = None):
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(xs) <= 20:
        ax.set_xticks(list(xs))


def _stacked(ax, labels: list[str], shares: list[dict[str, float]]) -> None:
    reasons = sorted({k for s in shares for k in s}, key=_reason_order)
    bottom = [0.0] * len(labels)
    for reason in reasons:
        values = [s.get(reason, 0.0) for s in shares]
        ax.bar(
            labels, values, 0.6, bottom=bottom, label=reason, color=TERMINATION_COLORS.get(reason)
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.7, max(len(labels), 4) - 0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    ax.figure.subplots_adjust(right=0.82)


def _reason_order(reason: str) -> tuple[int, str]:
    order = list(TERMINATION_COLORS)
    return (order.index(reason) if reason in order else len(order), reason)


def _shares(counts: dict[str, int] | Counter) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def _mean(values: Sequence[Any]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _short(model_id: str) -> str:
    return model_id if len(model_id) <= 40 else "..." + model_id[-37:]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()
