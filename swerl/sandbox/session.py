"""A persistent bash session over a byte stream, with sentinel markers: the protocol both backends
share.

The backend starts `bash` as a session leader (`setsid`) with stdin and merged stdout/stderr on a
byte stream (a pipe pair locally, the attached socket of one `docker exec` for containers). For
each command the host writes ONE line:

    eval $'<the command, ANSI-C quoted>' </dev/null; printf '\\n__swerl_done_<nonce>_%d__\\n' $?

and reads until the marker with that command's random nonce comes back. Why this shape:
- one long-lived shell, so `cd` and `export` persist and a command costs one write and one read
  (no process start per command, unlike `docker exec` per command);
- the command travels as a single quoted word, so unbalanced quotes or a heredoc can never leave
  the shell's parser waiting for more input; `eval` reports syntax errors as exit status 2;
- the command's stdin is /dev/null, so nothing it runs can swallow the next protocol line;
- `eval`, `printf` and the marker need no fork: the reply still comes when the process limit is
  exhausted (a fork bomb).

Output is capped while it is read (`max_output` bytes: the first and the last halves are kept,
with a visible marker between), so printing a gigabyte costs time but never memory.

Timeouts are not handled here: `Shell.wait` returns None at its deadline and the caller kills the
session's processes through a second shell (`KILL_FUNCTION`), which uses bash builtins only, so it
works even when no process can be forked.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Protocol


class Stream(Protocol):
    """A bidirectional byte stream to a shell process."""

    def send(self, data: bytes) -> None:
        """Write all of `data`; raises `ShellExited` if the process is gone."""
        ...

    def receive(self, timeout: float) -> bytes | None:
        """Bytes available within `timeout` seconds: None if none came, b"" at end of stream."""
        ...

    def close(self) -> None: ...


class ShellExited(Exception):
    """The shell's stream ended (the shell exited or was killed)."""

    def __init__(self, partial: str):
        super().__init__("the shell exited")
        self.partial = partial
        """Output of the current command read before the end."""


@dataclass(frozen=True)
class Completed:
    output: str
    exit_code: int


# SIGKILL every process of session $1 except its leader (the shell), or the leader too when $2
# is `all`; repeat until none is left, since a process may fork between the scan and the kill.
# Builtins only (read, globs, kill): it must work when the process limit is exhausted.
# Zombies are skipped: they are dead already and go when their parent reaps them.
KILL_FUNCTION = r"""
__swerl_kill() {
  local sid=$1 all=$2 round d pid line pids
  for ((round = 0; round < 500; round++)); do
    pids=()
    for d in /proc/[0-9]*; do
      pid=${d#/proc/}
      read -r line < "$d/stat" 2>/dev/null || continue
      set -- ${line##*) }
      [[ $1 != Z && $4 == "$sid" ]] || continue
      [[ $pid == "$sid" && $all != all ]] && continue
      pids+=("$pid")
    done
    ((${#pids[@]})) || return 0
    kill -9 "${pids[@]}" 2>/dev/null
  done
  return 1
}
"""


def ansi_c_quote(text: str) -> str:
    """`text` as one bash word `$'...'`: printable ASCII as is, every other byte as `\\xHH`."""
    out = []
    for byte in text.encode("utf-8", errors="surrogateescape"):
        char = chr(byte)
        if 32 <= byte < 127 and char not in "\\'":
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "$'" + "".join(out) + "'"


class Shell:
    """One bash process speaking the sentinel protocol; one command at a time."""

    def __init__(self, stream: Stream, max_output: int):
        self.stream = stream
        self.max_output = max_output
        self._pending = bytearray()  # read past the last marker (background jobs' output)
        self._command: _Reading | None = None

    def start(self, command: str) -> None:
        """Send `command`; its output is collected by `wait`."""
        assert self._command is None, "a command is still running in this shell"
        nonce = secrets.token_hex(8)
        line = (
            f"eval {ansi_c_quote(command)} </dev/null; "
            f"printf '\\n__swerl_done_{nonce}_%d__\\n' $?\n"
        )
        self._command = _Reading(nonce, self.max_output)
        if self._pending:
            self._command.feed(bytes(self._pending))
            self._pending.clear()
        self.stream.send(line.encode())

    def wait(self, deadline: float) -> Completed | None:
        """Read until the current command's marker (-> its output and exit code) or the deadline
        (-> None; the command is still running and `wait` may be called again). Raises
        `ShellExited` if the stream ends first."""
        reading = self._command
        assert reading is not None, "no command is running"
        while not reading.done:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self.stream.receive(min(left, 1.0))
            if data is None:
                continue
            if not data:
                self._command = None
                raise ShellExited(reading.output())
            reading.feed(data)
        self._command = None
        self._pending += reading.rest
        return Completed(reading.output(), reading.exit_code)

    def run(self, command: str, timeout: float) -> Completed:
        """Start and wait; for the sandbox's own short commands, where a timeout is a failure."""
        self.start(command)
        done = self.wait(time.monotonic() + timeout)
        if done is None:
            raise TimeoutError(f"shell command ran past {timeout:g} s: {command[:200]!r}")
        return done

    def close(self) -> None:
        self.stream.close()


class _Reading:
    """The output of one command as it arrives: finds the marker, keeps at most `cap` bytes."""

    def __init__(self, nonce: str, cap: int):
        self.marker = re.compile(rb"\n__swerl_done_" + nonce.encode() + rb"_(-?\d+)__\n")
        self.keep_head = cap // 2
        self.keep_tail = cap - self.keep_head
        self.slack = 64  # a marker split across reads stays findable
        self.head = bytearray()
        self.buf = bytearray()  # the part not yet moved to `head` or dropped
        self.dropped = 0
        self.scanned = 0  # no marker starts before this offset of `buf`
        self.done = False
        self.exit_code = -1
        self.rest = b""

    def feed(self, data: bytes) -> None:
        self.buf += data
        match = self.marker.search(self.buf, max(0, self.scanned - self.slack))
        if match:
            self.exit_code = int(match.group(1))
            self.rest = bytes(self.buf[match.end() :])
            del self.buf[match.start() :]
            self.done = True
            return
        self.scanned = len(self.buf)
        if len(self.head) + len(self.buf) > self.keep_head + self.keep_tail + self.slack:
            self._compact()

    def _compact(self) -> None:
        take = self.keep_head - len(self.head)
        if take > 0:
            self.head += self.buf[:take]
            del self.buf[:take]
        excess = len(self.buf) - (self.keep_tail + self.slack)
        if excess > 0:
            del self.buf[:excess]
            self.dropped += excess
            self.scanned = len(self.buf)

    def output(self) -> str:
        take = self.keep_head - len(self.head)  # the whole output may have come in one read
        if take > 0:
            self.head += self.buf[:take]
            del self.buf[:take]
        excess = len(self.head) + len(self.buf) - self.keep_head - self.keep_tail
        if excess > 0:
            del self.buf[:excess]
            self.dropped += excess
        if not self.dropped:
            return (self.head + self.buf).decode("utf-8", errors="replace")
        cut = (
            f"\n[... swerl: {self.dropped} bytes cut from the middle: the output was longer "
            f"than {self.keep_head + self.keep_tail} bytes ...]\n"
        )
        return (
            self.head.decode("utf-8", errors="replace")
            + cut
            + self.buf.decode("utf-8", errors="replace")
        )
