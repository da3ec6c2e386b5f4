"""Finished episodes kept on disk while a stage runs, so a crashed or killed stage resumes
without running them again (the rollout and evaluate stages; the folder is the lake's work
folder of the stage's fingerprint, `Lake.work_dir`).

    store = EpisodeStore(lake.work_dir("rollout", fp))
    skip = store.keys()                 # (instance_id, sample) pairs already done
    store.save(("task-1", 0), rows)     # as each episode finishes
    finished = store.load_all()         # {key: obj}, to publish; then store.clear()

One pickle file per key, `<instance_id>.<sample>.pkl`, written to a temporary file and renamed
into place: a kill leaves either the whole file or none (a power loss is not covered: no fsync).
The store has one writer per key: the stages hold `Lake.work_lock` (per fingerprint and shard)
while they use the folder, so a second process running the same stage waits for the first.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

SUFFIX = ".pkl"


class EpisodeStore:
    """Objects keyed by (instance_id, sample) in one folder."""

    def __init__(self, work_dir: Path):
        self.work_dir = Path(work_dir)

    def save(self, key: tuple[str, int], obj: Any) -> None:
        """Keep `obj` as the finished episode `key`, replacing an earlier one of that key."""
        target = self._path(key)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(obj))
        os.replace(tmp, target)

    def keys(self) -> set[tuple[str, int]]:
        """The keys saved so far (read from the file names: no episode is loaded)."""
        out = set()
        for f in self.work_dir.glob(f"*{SUFFIX}"):
            instance, _, sample = f.name.removesuffix(SUFFIX).rpartition(".")
            out.add((instance, int(sample)))
        return out

    def load_all(self) -> dict[tuple[str, int], Any]:
        """Every saved episode by key."""
        return {key: pickle.loads(self._path(key).read_bytes()) for key in sorted(self.keys())}

    def clear(self) -> None:
        """Remove the folder (after the stage has published its episodes)."""
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def _path(self, key: tuple[str, int]) -> Path:
        instance, sample = key
        if not instance or "/" in instance or instance.startswith("."):
            raise ValueError(f"instance_id {instance!r} cannot name a file of the episode store")
        return self.work_dir / f"{instance}.{int(sample)}{SUFFIX}"
