"""The scaffold's tools (PAPER.md section 2), working through the Sandbox interface so they behave
the same in every backend.

The file viewer keeps an open file and a window (100 lines, the SWE-agent default); `edit`,
`create` and `replace` answer with the numbered window around the change. Every wrong use gets a
clear observation and the episode goes on. Observations end with the prompt line
`(Current directory: DIR, current file: FILE) bash-$`.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Protocol

from swerl.agent.parse import Call, UsageError, parse_call

TRUNCATED = "\n[... {n} characters cut: the output was longer than {limit} characters ...]\n"


class RunResult(Protocol):
    output: str
    exit_code: int | None
    timed_out: bool


class Sandbox(Protocol):
    """What the tools need from a sandbox (see `swerl.sandbox`)."""

    def run(self, command: str, timeout: float | None = None) -> RunResult: ...
    def read_file(self, path: str) -> str: ...
    def write_file(self, path: str, text: str) -> None: ...
    def diff(self) -> str: ...


@dataclass(frozen=True)
class ToolConfig:
    """Knobs of the tools, recorded with every trajectory."""

    window: int = 100
    """Lines the file viewer shows."""
    command_timeout: float = 60.0
    """Seconds a command may run before it is killed (reported to the agent)."""
    max_observation_chars: int = 10_000
    """Observations longer than this are cut in the middle with a visible marker."""
    max_search_matches: int = 100
    """`search_file` lists at most this many matching lines."""
    relative_paths: bool = False
    """Show paths under the repository root relative to it (`src/app.py`, directory `.`) in the
    viewer, the prompt line, messages, search hits and command output, instead of absolute
    (`/testbed/src/app.py`).
    Commands take either form. Fewer tokens per observation (a local sandbox's root is a long temp
    path): for a tiny model, 69 -> 21 tokens per prompt line."""


@dataclass
class Observation:
    text: str
    submitted: bool = False
    tool_error: bool = False  # the tool was used wrongly (the turn is flagged, the episode goes on)
    timed_out: bool = False


class Tools:
    """Executes parsed calls in one sandbox, keeping the viewer's state between turns."""

    def __init__(self, sandbox: Sandbox, config: ToolConfig = ToolConfig()):
        self.sandbox = sandbox
        self.config = config
        self.open_file: str | None = None  # absolute path
        self.first_line = 1  # top line of the viewer's window
        self.root: str | None = getattr(sandbox, "workdir", None)  # the repository root

    def show(self, path: str) -> str:
        """`path` as the agent sees it: relative to the repository root with `relative_paths`
        (`.` for the root itself; paths outside it stay absolute), else unchanged."""
        return self.show_in_text(path) if path.startswith("/") else path

    def show_in_text(self, text: str) -> str:
        """`text` (a command's output) with every path under the repository root made relative
        to it, as `show` does, and the root itself as `.`: a traceback names `pkg/core.py`. A
        local sandbox's root holds a random temp name, which would otherwise make two runs'
        observations differ (and the tiny model's demonstrations with them)."""
        root = (self.root or "").rstrip("/")
        if not self.config.relative_paths or not root:
            return text
        pattern = re.compile(re.escape(root) + r"(/|(?![\w.-]))")  # the root, not root2/
        return pattern.sub(lambda m: "" if m.group(1) == "/" else ".", text)

    # ---- entry point ---------------------------------------------------------------------------

    def execute(self, call: Call) -> Observation:
        try:
            handler = getattr(self, f"_tool_{call.tool}")
            obs = handler(call)
        except UsageError as e:
            obs = Observation(str(e), tool_error=True)
        if not obs.submitted:
            text = self.truncate(obs.text)
            if text and not text.endswith("\n"):
                text += "\n"
            obs.text = text + self.prompt_line()
        return obs

    def run(self, command: str) -> Observation:
        """Parse and execute one command (the text of a ```command block)."""
        try:
            call = parse_call(command)
        except UsageError as e:  # a call that does not even parse
            return self.execute_error(str(e))
        return self.execute(call)

    def execute_error(self, message: str) -> Observation:
        """The observation for a command that could not be parsed."""
        return Observation(message + "\n" + self.prompt_line(), tool_error=True)

    def truncate(self, text: str) -> str:
        limit = self.config.max_observation_chars
        if len(text) <= limit:
            return text
        head, tail = text[: limit // 2], text[-(limit // 2) :]
        return head + TRUNCATED.format(n=len(text) - len(head) - len(tail), limit=limit) + tail

    def cwd(self) -> str:
        return self.sandbox.run("pwd", timeout=10).output.strip() or "/"

    def prompt_line(self) -> str:
        shown = self.show(self.open_file) if self.open_file else "n/a"
        return f"(Current directory: {self.show(self.cwd())}, current file: {shown}) bash-$"

    # ---- tools ---------------------------------------------------------------------------------

    def _tool_bash(self, call: Call) -> Observation:
        result = self.sandbox.run(call.raw, timeout=self.config.command_timeout)
        text = self.show_in_text(result.output)
        if result.timed_out:  # the sandbox appends its own note with the limit; add the advice
            text += "\nRun long jobs on a smaller input, or in the background with a time limit."
        elif not text.strip():
            text = "(no output" + (f", exit code {result.exit_code})" if result.exit_code else ")")
        return Observation(text, timed_out=result.timed_out)

    def _tool_submit(self, call: Call) -> Observation:
        if call.args:
            raise UsageError("submit takes no arguments: your answer is the repository's diff")
        return Observation("", submitted=True)

    def _tool_open(self, call: Call) -> Observation:
        if not 1 <= len(call.args) <= 2:
            raise UsageError("usage: open FILE [LINE]")
        path = self._path(call.args[0])
        lines = self._read_lines(path)
        self.open_file = path
        line = _line_number(call.args[1], "open") if len(call.args) == 2 else 1
        if lines and not 1 <= line <= len(lines):
            raise UsageError(f"open: line {line} is outside {self.show(path)} (1-{len(lines)})")
        self.first_line = max(1, line - self.config.window // 2) if len(call.args) == 2 else 1
        return Observation(self._window(lines))

    def _tool_goto(self, call: Call) -> Observation:
        if len(call.args) != 1:
            raise UsageError("usage: goto LINE")
        lines = self._read_lines(self._require_open("goto"))
        line = _line_number(call.args[0], "goto")
        if not 1 <= line <= max(1, len(lines)):
            raise UsageError(
                f"goto: line {line} is outside {self.show(self.open_file)} (1-{len(lines)})"
            )
        self.first_line = max(1, line - self.config.window // 2)
        return Observation(self._window(lines))

    def _tool_scroll_down(self, call: Call) -> Observation:
        lines = self._read_lines(self._require_open("scroll_down"))
        if self.first_line + self.config.window > len(lines):
            raise UsageError("scroll_down: already at the end of the file")
        self.first_line += self.config.window
        return Observation(self._window(lines))

    def _tool_scroll_up(self, call: Call) -> Observation:
        lines = self._read_lines(self._require_open("scroll_up"))
        if self.first_line <= 1:
            raise UsageError("scroll_up: already at the top of the file")
        self.first_line = max(1, self.first_line - self.config.window)
        return Observation(self._window(lines))

    def _tool_create(self, call: Call) -> Observation:
        if len(call.args) != 1:
            raise UsageError("usage: create FILE")
        path = self._path(call.args[0])
        if self._exists(path):
            raise UsageError(
                f"create: {self.show(path)} already exists; use open and edit to change it"
            )
        self._write(path, call.text or "")  # parents are created
        self.open_file, self.first_line = path, 1
        return Observation(self._window(self._read_lines(path)))

    def _tool_edit(self, call: Call) -> Observation:
        args = list(call.args)
        path = None
        if args[:1] == ["--file"]:
            if len(args) < 2:
                raise UsageError("edit: --file needs a path")
            path = self._path(args[1])
            args = args[2:]
        if len(args) != 1 or ":" not in args[0]:
            raise UsageError("usage: edit [--file PATH] START:END <<'EOF' ... EOF")
        if call.text is None:
            raise UsageError("edit: give the replacement text as a heredoc (<<'EOF' ... EOF)")
        path = path or self._require_open("edit")
        start_s, end_s = args[0].split(":", 1)
        start, end = _line_number(start_s, "edit"), _line_number(end_s, "edit", allow_zero=True)
        lines = self._read_lines(path)
        if not 1 <= start <= len(lines) + 1 or not start - 1 <= end <= len(lines):
            raise UsageError(
                f"edit: range {start}:{end} is outside {self.show(path)} ({len(lines)} lines; use "
                "START:START-1 to insert before START)"
            )
        new = call.text.splitlines(keepends=True)
        if start > 1 and lines[start - 2] and not lines[start - 2].endswith("\n"):
            lines[start - 2] += "\n"  # inserting after a last line without a newline
        updated = lines[: start - 1] + new + lines[end:]
        self._write(path, "".join(updated))
        self.open_file = path
        self.first_line = max(1, start - self.config.window // 4)
        return Observation(self._window(updated))

    def _tool_replace(self, call: Call) -> Observation:
        args = list(call.args)
        replace_all = args[:1] == ["--replace-all"]
        args = args[1:] if replace_all else args
        if len(args) != 2:
            raise UsageError("usage: replace [--replace-all] SEARCH REPLACE (quote both)")
        search, replacement = args
        if not search:
            raise UsageError("replace: SEARCH is empty")
        path = self._require_open("replace")
        text = self.sandbox.read_file(path)
        n = text.count(search)
        if n == 0:
            raise UsageError(f"replace: no match for {search!r} in {self.show(path)}")
        if n > 1 and not replace_all:
            raise UsageError(
                f"replace: {n} matches for {search!r} in {self.show(path)}; make SEARCH longer so it is "
                "unique, or use --replace-all"
            )
        at = text[: text.index(search)].count("\n") + 1
        updated = (
            text.replace(search, replacement)
            if replace_all
            else text.replace(search, replacement, 1)
        )
        self._write(path, updated)
        self.first_line = max(1, at - self.config.window // 4)
        note = f"Replaced {n if replace_all else 1} occurrence(s).\n"
        return Observation(note + self._window(updated.splitlines(keepends=True)))

    def _tool_search_file(self, call: Call) -> Observation:
        if not 1 <= len(call.args) <= 2:
            raise UsageError("usage: search_file TERM [FILE or DIRECTORY]")
        term = call.args[0]
        if not term:
            raise UsageError("search_file: TERM is empty")
        path = (
            self._path(call.args[1]) if len(call.args) == 2 else self._require_open("search_file")
        )
        if self._kind(path) == "dir":
            hits = self._grep_dir(term, path)
        else:
            lines = self._read_lines(path)
            hits = [
                f"{i}:{line.rstrip(chr(10))}" for i, line in enumerate(lines, 1) if term in line
            ]
        if not hits:
            return Observation(f'No matches for "{term}" in {self.show(path)}\n')
        shown = hits[: self.config.max_search_matches]
        out = [f'Found {len(hits)} matches for "{term}" in {self.show(path)}:', *shown]
        if len(hits) > len(shown):
            out.append(f"[{len(hits) - len(shown)} more matches not shown; refine the term]")
        return Observation("\n".join(out) + "\n")

    def _grep_dir(self, term: str, path: str) -> list[str]:
        """`FILE:LINE:TEXT` for every line holding `term` under directory `path` (not .git)."""
        result = self.sandbox.run(
            f"grep -rnIF --exclude-dir=.git -e {shlex.quote(term)} {shlex.quote(path)} "
            f"| head -n {self.config.max_search_matches * 10 + 1}",
            timeout=self.config.command_timeout,
        )
        return [self.show(line) for line in result.output.splitlines() if line]

    # ---- helpers -------------------------------------------------------------------------------

    def _path(self, path: str) -> str:
        return posixpath.normpath(
            path if path.startswith("/") else posixpath.join(self.cwd(), path)
        )

    def _exists(self, path: str) -> bool:
        return self.sandbox.run(f"test -e {shlex.quote(path)}", timeout=10).exit_code == 0

    def _kind(self, path: str) -> str:
        """`file`, `dir` or `missing`."""
        q = shlex.quote(path)
        return self.sandbox.run(
            f"if [ -d {q} ]; then echo dir; elif [ -f {q} ]; then echo file; else echo missing; fi",
            timeout=10,
        ).output.strip()

    def _read_lines(self, path: str) -> list[str]:
        check = self._kind(path)
        if check == "missing":
            raise UsageError(f"File {self.show(path)} not found")
        if check == "dir":
            raise UsageError(f"{self.show(path)} is a directory; use ls to list it")
        return self.sandbox.read_file(path).splitlines(keepends=True)

    def _write(self, path: str, text: str) -> None:
        try:
            self.sandbox.write_file(path, text)
        except PermissionError:  # the agent's own doing (chmod): its problem, not the sandbox's
            raise UsageError(f"cannot write {self.show(path)}: permission denied") from None

    def _require_open(self, tool: str) -> str:
        if self.open_file is None:
            raise UsageError(f"{tool}: no file is open; use open FILE first")
        return self.open_file

    def _window(self, lines: list[str]) -> str:
        total = len(lines)
        first = min(self.first_line, max(1, total - self.config.window + 1))
        self.first_line = first
        last = min(total, first + self.config.window - 1)
        out = [f"[File: {self.show(self.open_file)} ({total} lines total)]"]
        if first > 1:
            out.append(f"({first - 1} more lines above)")
        out += [f"{i}:{lines[i - 1].rstrip(chr(10))}" for i in range(first, last + 1)]
        if last < total:
            out.append(f"({total - last} more lines below)")
        return "\n".join(out) + "\n"


def _line_number(text: str, tool: str, allow_zero: bool = False) -> int:
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"{tool}: {text!r} is not a line number") from None
    if n < (0 if allow_zero else 1):
        raise UsageError(f"{tool}: line numbers start at 1, got {n}")
    return n
