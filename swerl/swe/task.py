"""The SWE task as the rest of the library sees it: one row of the `tasks` dataset, typed.

Column names follow the SWE-bench schema (`FAIL_TO_PASS`, ...) in the lake, so rows can be handed
to the official `swebench` code unchanged; here they become snake_case attributes, and the JSON
columns (`install_config`, `meta`, `repo_files`, `extra`) are decoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Task:
    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str
    patch: str | None = None
    test_patch: str | None = None
    hints_text: str | None = None
    created_at: datetime | None = None
    version: str | None = None
    fail_to_pass: list[str] | None = None
    pass_to_pass: list[str] | None = None
    fail_to_fail: list[str] | None = None
    pass_to_fail: list[str] | None = None
    environment_setup_commit: str | None = None
    install_config: dict[str, Any] | None = None
    docker_image: str | None = None
    image_name: str | None = None
    meta: dict[str, Any] | None = None
    requirements: str | None = None
    environment: str | None = None
    license_name: str | None = None
    repo_files: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        """Build from a `tasks` row (as `pyarrow.Table.to_pylist()` gives it)."""
        return cls(
            instance_id=row["instance_id"],
            repo=row["repo"],
            base_commit=row["base_commit"],
            problem_statement=row["problem_statement"],
            patch=row.get("patch"),
            test_patch=row.get("test_patch"),
            hints_text=row.get("hints_text"),
            created_at=row.get("created_at"),
            version=row.get("version"),
            fail_to_pass=row.get("FAIL_TO_PASS"),
            pass_to_pass=row.get("PASS_TO_PASS"),
            fail_to_fail=row.get("FAIL_TO_FAIL"),
            pass_to_fail=row.get("PASS_TO_FAIL"),
            environment_setup_commit=row.get("environment_setup_commit"),
            install_config=_json(row.get("install_config")),
            docker_image=row.get("docker_image"),
            image_name=row.get("image_name"),
            meta=_json(row.get("meta")),
            requirements=row.get("requirements"),
            environment=row.get("environment"),
            license_name=row.get("license_name"),
            repo_files=_json(row.get("repo_files")),
            extra=_json(row.get("extra")) or {},
            source=row.get("source"),
        )

    def to_row(self) -> dict[str, Any]:
        """The `tasks` row for this task (inverse of `from_row`)."""
        return {
            "instance_id": self.instance_id,
            "repo": self.repo,
            "base_commit": self.base_commit,
            "problem_statement": self.problem_statement,
            "patch": self.patch,
            "test_patch": self.test_patch,
            "hints_text": self.hints_text,
            "created_at": self.created_at,
            "version": self.version,
            "FAIL_TO_PASS": self.fail_to_pass,
            "PASS_TO_PASS": self.pass_to_pass,
            "FAIL_TO_FAIL": self.fail_to_fail,
            "PASS_TO_FAIL": self.pass_to_fail,
            "environment_setup_commit": self.environment_setup_commit,
            "install_config": _dump(self.install_config),
            "docker_image": self.docker_image,
            "image_name": self.image_name,
            "meta": _dump(self.meta),
            "requirements": self.requirements,
            "environment": self.environment,
            "license_name": self.license_name,
            "repo_files": _dump(self.repo_files),
            "extra": _dump(self.extra) if self.extra else None,
            "source": self.source,
        }


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def load_tasks(
    version: str = "latest", *, root: Any = None, ids: list[str] | None = None
) -> list[Task]:
    """Tasks of one `tasks` version (an id, a name such as `toy-swe`, or `latest`)."""
    from swerl.lake import Lake

    rows = Lake(root).read("tasks", version).to_pylist()
    tasks = [Task.from_row(r) for r in rows]
    if ids is not None:
        wanted = set(ids)
        tasks = [t for t in tasks if t.instance_id in wanted]
        missing = wanted - {t.instance_id for t in tasks}
        if missing:
            raise KeyError(f"tasks version {version!r} has no instance(s) {sorted(missing)[:20]}")
    return tasks
