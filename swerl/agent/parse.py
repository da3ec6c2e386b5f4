"""Parse an assistant turn: free-text reasoning plus exactly one fenced ```command block.

The paper's scaffold (PAPER.md section 2) uses no native function calling: the model writes its
reasoning and one block whose info string is `command`. No block or several blocks are format
errors; the environment answers with an error observation and the episode goes on.

A command is one of the scaffold's tools (`open`, `goto`, `scroll_up`, `scroll_down`, `create`,
`edit`, `replace`, `search_file`, `submit`) or, failing that, a shell command. Multi-line text for
`edit` and `create` comes as a heredoc, kept exactly:

    edit 12:14 <<'EOF'
        return a + b
    EOF
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

FENCE = re.compile(r"^```command[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1\s*$")
NO_COMMAND = (
    "Format error: cannot extract a command. End your reply with exactly one block:\n"
    "```command\n<one command>\n```"
)
MANY_COMMANDS = (
    "Format error: your reply has {n} command blocks; write exactly one ```command block per turn."
)


@dataclass(frozen=True)
class Turn:
    """What an assistant message asks for: the command text, or the format error."""

    command: str | None
    format_error: str | None


def extract_command(message: str) -> Turn:
    blocks = FENCE.findall(message)
    if not blocks:
        return Turn(None, NO_COMMAND)
    if len(blocks) > 1:
        return Turn(None, MANY_COMMANDS.format(n=len(blocks)))
    command = blocks[0].rstrip("\n")
    if not command.strip():
        return Turn(None, NO_COMMAND)
    return Turn(command, None)


@dataclass(frozen=True)
class Call:
    """A parsed command: `tool` is a scaffold tool's name or `bash`; `args` its arguments;
    `text` the heredoc body (for `edit`/`create`), kept byte for byte."""

    tool: str
    args: tuple[str, ...] = ()
    text: str | None = None
    raw: str = ""


class UsageError(ValueError):
    """A tool used wrongly; the message is the observation the agent sees."""


TOOLS = {
    "open",
    "goto",
    "scroll_up",
    "scroll_down",
    "create",
    "edit",
    "replace",
    "search_file",
    "submit",
}


def parse_call(command: str) -> Call:
    """Split a command into a tool call. Shell commands come back as `Call("bash", raw=...)`."""
    first_line, _, rest = command.partition("\n")
    name = first_line.strip().split(maxsplit=1)[0] if first_line.strip() else ""
    if name not in TOOLS:
        return Call("bash", raw=command)
    text = None
    heredoc = HEREDOC.search(first_line)
    if heredoc:
        first_line = first_line[: heredoc.start()]
        text = _heredoc_body(rest, heredoc.group(2), name)
    elif rest.strip() and name not in ("replace",):
        raise UsageError(
            f"{name}: unexpected text after the first line; multi-line text must be a heredoc, "
            f"e.g. {name} ... <<'EOF' ... EOF"
        )
    else:
        first_line = command if name == "replace" else first_line
    try:
        words = shlex.split(first_line)
    except ValueError as e:
        raise UsageError(f"{name}: cannot parse arguments ({e})") from e
    return Call(name, tuple(words[1:]), text, raw=command)


def _heredoc_body(rest: str, marker: str, name: str) -> str:
    lines = rest.split("\n")
    for i, line in enumerate(lines):
        if line == marker:
            if any(x.strip() for x in lines[i + 1 :]):
                raise UsageError(f"{name}: text after the heredoc's closing {marker}")
            return "".join(x + "\n" for x in lines[:i])
    raise UsageError(
        f"{name}: heredoc is not closed: end the text with a line holding only {marker}"
    )
