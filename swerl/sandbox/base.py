"""What every sandbox is: the result of a command, the error, the settings.

The Sandbox object itself (`swerl.sandbox.sandbox.Sandbox`) is one class shared by both backends;
a backend only supplies a `Host` (where processes run and files live).
"""

from __future__ import annotations

from dataclasses import dataclass


class SandboxError(Exception):
    """The sandbox cannot do what was asked: image missing, engine unreachable, container gone.
    The message names the task. A command that fails or times out is NOT an error: it is a
    `RunResult`."""


@dataclass(frozen=True)
class RunResult:
    """What one command did, as the agent sees it."""

    output: str
    """stdout and stderr merged in order, capped in the middle with a visible marker; notes from
    the sandbox itself (timeout, shell restarted) are appended as `[swerl: ...]` lines."""
    exit_code: int | None
    """The command's exit status; None when unknown (the shell had to be restarted)."""
    timed_out: bool = False
    """The command ran past its timeout and its processes were killed."""


@dataclass(frozen=True)
class SandboxConfig:
    """Settings of one sandbox. Limits apply to the docker backend as cgroup limits; the local
    backend applies what `ulimit` can (see `swerl.sandbox.local`)."""

    timeout: float = 300.0
    """Seconds a command may run when `run` is given no timeout."""
    max_output: int = 1_000_000
    """Bytes of output kept per command: the first and last halves, with a marker between."""
    memory: str = "2g"
    """Memory limit (docker units: `512m`, `2g`); swap is not allowed on top of it."""
    pids: int = 512
    """Most processes (and threads) alive at once."""
    cpus: float = 1.0
    """CPU cores' worth of time (docker only)."""

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        if self.max_output < 1024:
            raise ValueError(f"max_output must be >= 1024 bytes, got {self.max_output}")
        if self.pids < 16:
            raise ValueError(f"pids must be >= 16, got {self.pids}")
        if self.cpus <= 0:
            raise ValueError(f"cpus must be > 0, got {self.cpus}")
        memory_bytes(self.memory)  # raises on a bad value


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def memory_bytes(value: str) -> int:
    """`512m` -> 536870912 (the docker notation)."""
    text = value.strip().lower()
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "")
    try:
        size = int(float(number) * _UNITS[unit])
    except ValueError:
        raise ValueError(f"memory must look like 512m or 2g, got {value!r}") from None
    if size < 16 << 20:
        raise ValueError(f"memory must be at least 16m, got {value!r}")
    return size
