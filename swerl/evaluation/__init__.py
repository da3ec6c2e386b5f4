"""Evaluation: pass@k, Pass@1 with its standard error, reports."""
