"""SWE tasks: the typed task model, ingestion of SWE-bench / SWE-rebench files."""

from swerl.swe.task import Task, load_tasks

__all__ = ["Task", "load_tasks"]
