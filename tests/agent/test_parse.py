"""Turn parsing: exactly one ```command block, tools vs shell, heredocs kept byte for byte."""

from __future__ import annotations

import pytest

from swerl.agent.parse import Call, UsageError, extract_command, parse_call


def test_one_block_is_the_command_and_reasoning_is_ignored():
    turn = extract_command("I will look.\n```command\nls -la src\n```\n")
    assert (turn.command, turn.format_error) == ("ls -la src", None)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("no block at all", "cannot extract a command"),
        ("```bash\nls\n```", "cannot extract a command"),
        ("```command\n\n```", "cannot extract a command"),
        ("```command\nls\n```\nthen\n```command\npwd\n```", "has 2 command blocks"),
    ],
)
def test_format_errors(message, error):
    turn = extract_command(message)
    assert turn.command is None and error in turn.format_error


def test_shell_commands_pass_through_whole():
    assert parse_call("python -m pytest -q tests/ | tail -5") == Call(
        "bash", raw="python -m pytest -q tests/ | tail -5"
    )
    multi = "cat > /tmp/x.py <<'EOF'\nprint(1)\nEOF\npython /tmp/x.py"
    assert parse_call(multi).tool == "bash" and parse_call(multi).raw == multi


def test_tools_and_arguments():
    assert parse_call("open src/pkg/core.py 40") == Call(
        "open", ("src/pkg/core.py", "40"), raw="open src/pkg/core.py 40"
    )
    assert parse_call("goto 10").args == ("10",)
    assert parse_call("scroll_down").tool == "scroll_down"
    assert parse_call('search_file "def add" core.py').args == ("def add", "core.py")
    assert parse_call("submit") == Call("submit", (), raw="submit")


def test_edit_heredoc_keeps_whitespace_exactly():
    body = "    return a + b  \n\n\tpass\n"
    call = parse_call(f"edit --file src/core.py 3:4 <<'EOF'\n{body}EOF")
    assert call.tool == "edit" and call.args == ("--file", "src/core.py", "3:4")
    assert call.text == body
    assert parse_call("edit 3:3 <<EOF\nEOF").text == ""  # deleting lines


def test_replace_with_quoted_multiline_arguments():
    call = parse_call("replace --replace-all 'a - b' \"a + b\"")
    assert call.args == ("--replace-all", "a - b", "a + b")
    call = parse_call("replace 'x = 1\ny = 2' 'x = 2\ny = 1'")
    assert call.args == ("x = 1\ny = 2", "x = 2\ny = 1")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("edit 1:2 <<'EOF'\nfoo\n", "heredoc is not closed"),
        ("edit 1:2 <<'EOF'\nfoo\nEOF\nmore", "text after the heredoc"),
        ("edit 1:2\nfoo", "multi-line text must be a heredoc"),
        ("replace 'unclosed", "cannot parse arguments"),
    ],
)
def test_usage_errors_are_messages_for_the_agent(command, message):
    with pytest.raises(UsageError, match=message):
        parse_call(command)
