"""Evaluation: pass@k, Pass@1 with its standard error, the evaluate stage's summary.

    from swerl.evaluation import pass_at_k, summarize
    from swerl.evaluation.evaluate import evaluate      # the stage (imports the agent)

Reports (HTML pages and figures of a run) live in `swerl.report`.
"""

from swerl.evaluation.metrics import mean_pass_at_k, pass_at_1_runs, pass_at_k
from swerl.evaluation.summary import summarize

__all__ = ["mean_pass_at_k", "pass_at_1_runs", "pass_at_k", "summarize"]
