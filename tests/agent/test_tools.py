"""The scaffold's tools in both sandbox backends: every tool, every wrong use, the prompt line,
truncation and timeouts. One sandbox per backend for the whole module; each test works on its
own files and starts from the repository root with a fresh viewer."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from swerl.agent.tools import ToolConfig, Tools
from swerl.sandbox import open_sandbox
from swerl.swe.repo import commit_files
from swerl.swe.task import Task

LONG = "".join(f"line {i}\n" for i in range(1, 251))  # 250 lines: three viewer pages
FILES = {
    "pkg/__init__.py": "",
    "pkg/core.py": "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n",
    "pkg/long.txt": LONG,
    "README.md": "pkg\n",
}
PROMPT = re.compile(r"\(Current directory: (\S+), current file: (\S+)\) bash-\$$")
BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]
CONFIG = ToolConfig(command_timeout=2, max_observation_chars=2_000)


def make_task() -> Task:
    with tempfile.TemporaryDirectory() as tmp:
        base = commit_files(FILES, Path(tmp) / "repo")
    return Task(
        instance_id="agent__tools-1",
        repo="swerl/tools",
        base_commit=base,
        problem_statement="add() subtracts",
        repo_files=FILES,
    )


@pytest.fixture(scope="module", params=BACKENDS)
def sandbox(request):
    task = make_task()
    if request.param == "docker":
        from swerl.sandbox.images import build_images

        client = request.getfixturevalue("docker_client")
        build_images([task], request.getfixturevalue("base_image"), client)
    with open_sandbox(task, request.param, timeout=30) as sb:
        yield sb


@pytest.fixture
def tools(sandbox) -> Tools:
    sandbox.run(f"cd {sandbox.workdir}")
    return Tools(sandbox, CONFIG)


@pytest.fixture
def root(sandbox) -> str:
    return sandbox.workdir


def run(tools: Tools, command: str):
    obs = tools.run(command)
    assert not obs.submitted
    body, _, last = obs.text.rpartition("\n")
    assert PROMPT.fullmatch(last), f"no prompt line at the end of {obs.text!r}"
    return obs, body


def new_file(sandbox, name: str, text: str) -> str:
    path = f"{sandbox.workdir}/scratch/{name}"
    sandbox.write_file(path, text)
    return path


# ---- the prompt line --------------------------------------------------------------------------


def test_prompt_line_names_directory_and_open_file(tools, root):
    obs, _ = run(tools, "echo hi")
    assert obs.text.endswith(f"(Current directory: {root}, current file: n/a) bash-$")
    run(tools, "cd pkg")
    obs, _ = run(tools, "open core.py")
    assert obs.text.endswith(
        f"(Current directory: {root}/pkg, current file: {root}/pkg/core.py) bash-$"
    )


# ---- shell commands ---------------------------------------------------------------------------


def test_shell_command_output_and_silent_commands(tools):
    obs, body = run(tools, "echo one; echo two >&2")
    assert body == "one\ntwo" and not obs.tool_error
    _, body = run(tools, "true")
    assert body == "(no output)"
    _, body = run(tools, "false")
    assert body == "(no output, exit code 1)"
    _, body = run(tools, "ls does-not-exist")
    assert "No such file or directory" in body


def test_a_command_past_its_timeout_is_killed_and_reported(tools):
    obs, body = run(tools, "echo started; sleep 30 && echo never")
    assert obs.timed_out and "started" in body and "never" not in body
    assert "2 s timeout" in body  # the configured limit is reported to the agent
    obs, body = run(tools, "echo alive")  # the shell goes on
    assert body == "alive" and not obs.timed_out


def test_long_output_is_cut_in_the_middle_with_a_marker(tools):
    obs, body = run(tools, "seq 1 5000")
    assert body.startswith("1\n2\n3\n") and body.endswith("\n4999\n5000")
    assert "characters cut: the output was longer than 2000 characters" in body
    assert len(body) < 2_200
    assert "2500\n" not in body


# ---- the viewer -------------------------------------------------------------------------------


def test_open_shows_a_numbered_window(tools, root):
    obs, body = run(tools, "open pkg/core.py")
    assert not obs.tool_error
    assert body.splitlines() == [
        f"[File: {root}/pkg/core.py (6 lines total)]",
        "1:def add(a, b):",
        "2:    return a - b",
        "3:",
        "4:",
        "5:def sub(a, b):",
        "6:    return a - b",
    ]


def test_open_at_a_line_and_scrolling_move_a_100_line_window(tools):
    _, body = run(tools, "open pkg/long.txt 120")
    lines = body.splitlines()
    assert lines[1] == "(69 more lines above)" and lines[2] == "70:line 70"
    assert lines[-2] == "169:line 169" and lines[-1] == "(81 more lines below)"
    _, body = run(tools, "scroll_down")
    assert body.splitlines()[2] == "151:line 151" and body.splitlines()[-1] == "250:line 250"
    obs, body = run(tools, "scroll_down")
    assert obs.tool_error and "already at the end" in body
    _, body = run(tools, "scroll_up")
    assert body.splitlines()[2] == "51:line 51"
    _, body = run(tools, "goto 1")
    assert body.splitlines()[1] == "1:line 1" and body.splitlines()[-2] == "100:line 100"
    obs, body = run(tools, "scroll_up")
    assert obs.tool_error and "already at the top" in body
    _, body = run(tools, "goto 250")
    assert body.splitlines()[-1] == "250:line 250"


@pytest.mark.parametrize(
    "command, message",
    [
        ("open", "usage: open FILE [LINE]"),
        ("open pkg/missing.py", "pkg/missing.py not found"),
        ("open pkg", "pkg is a directory"),
        ("open pkg/core.py 7", "line 7 is outside"),
        ("open pkg/core.py x", "'x' is not a line number"),
        ("goto 3", "goto: no file is open"),
        ("scroll_down", "scroll_down: no file is open"),
        ("scroll_up", "scroll_up: no file is open"),
        ("edit 1:1 <<'EOF'\nx\nEOF", "edit: no file is open"),
        ("replace a b", "replace: no file is open"),
        ("search_file add", "search_file: no file is open"),
    ],
)
def test_wrong_use_of_the_viewer(tools, command, message):
    obs, body = run(tools, command)
    assert obs.tool_error and message in body, body


def test_goto_outside_the_file(tools):
    run(tools, "open pkg/core.py")
    for line in ("0", "7"):
        obs, body = run(tools, f"goto {line}")
        assert obs.tool_error and ("outside" in body or "start at 1" in body), body
    obs, body = run(tools, "goto")
    assert obs.tool_error and "usage: goto LINE" in body


# ---- create -----------------------------------------------------------------------------------


def test_create_makes_and_opens_a_new_file_with_parents(tools, sandbox, root):
    obs, body = run(tools, "create scratch/new/deep.py")
    assert not obs.tool_error
    assert body.splitlines()[0] == f"[File: {root}/scratch/new/deep.py (0 lines total)]"
    assert sandbox.read_file(f"{root}/scratch/new/deep.py") == ""
    assert obs.text.endswith(f"current file: {root}/scratch/new/deep.py) bash-$")
    _, body = run(tools, "create scratch/new/text.py <<'EOF'\nx = 1\n\ty = 2  \nEOF")
    assert sandbox.read_file(f"{root}/scratch/new/text.py") == "x = 1\n\ty = 2  \n"


def test_create_refuses_an_existing_file(tools, sandbox):
    obs, body = run(tools, "create pkg/core.py")
    assert obs.tool_error and "already exists" in body
    assert sandbox.read_file(f"{sandbox.workdir}/pkg/core.py") == FILES["pkg/core.py"]
    obs, body = run(tools, "create")
    assert obs.tool_error and "usage: create FILE" in body


# ---- edit -------------------------------------------------------------------------------------


def test_edit_keeps_whitespace_exactly(tools, sandbox):
    path = new_file(sandbox, "ws.py", "a\nb\nc\nd\n")
    run(tools, f"open {path}")
    text = "\tif x:  \n        return '  two  spaces'\n\n    \n\t \tmixed\n"
    obs, body = run(tools, f"edit 2:3 <<'EOF'\n{text}EOF")
    assert not obs.tool_error
    assert sandbox.read_file(path) == "a\n" + text + "d\n"
    assert "2:\tif x:  " in body.splitlines() and "7:d" in body.splitlines()


def test_edit_inserts_appends_and_deletes(tools, sandbox):
    path = new_file(sandbox, "ins.py", "a\nb\nc\n")
    run(tools, f"open {path}")
    run(tools, "edit 2:1 <<'EOF'\ninserted\nEOF")  # END = START - 1 inserts before START
    assert sandbox.read_file(path) == "a\ninserted\nb\nc\n"
    run(tools, "edit 5:4 <<'EOF'\nappended\nEOF")
    assert sandbox.read_file(path) == "a\ninserted\nb\nc\nappended\n"
    run(tools, "edit 2:3 <<'EOF'\nEOF")  # an empty heredoc deletes the range
    assert sandbox.read_file(path) == "a\nc\nappended\n"


def test_edit_after_a_last_line_without_newline(tools, sandbox):
    path = new_file(sandbox, "nonl.py", "a\nb")
    run(tools, f"open {path}")
    run(tools, "edit 3:2 <<'EOF'\nc\nEOF")
    assert sandbox.read_file(path) == "a\nb\nc\n"


def test_edit_another_file_with_file_option(tools, sandbox, root):
    path = new_file(sandbox, "other.py", "x = 1\ny = 2\n")
    run(tools, "open pkg/core.py")
    obs, body = run(tools, "edit --file scratch/other.py 2:2 <<'EOF'\ny = 3\nEOF")
    assert not obs.tool_error and sandbox.read_file(path) == "x = 1\ny = 3\n"
    assert obs.text.endswith(f"current file: {path}) bash-$")  # the edited file is now open
    assert body.splitlines()[0] == f"[File: {path} (2 lines total)]"


@pytest.mark.parametrize(
    "command, message",
    [
        ("edit 4:4 <<'EOF'\nx\nEOF", "range 4:4 is outside"),
        ("edit 2:5 <<'EOF'\nx\nEOF", "range 2:5 is outside"),
        ("edit 3:1 <<'EOF'\nx\nEOF", "range 3:1 is outside"),
        ("edit 0:1 <<'EOF'\nx\nEOF", "line numbers start at 1"),
        ("edit 2 <<'EOF'\nx\nEOF", "usage: edit [--file PATH] START:END"),
        ("edit a:b <<'EOF'\nx\nEOF", "'a' is not a line number"),
        ("edit 1:1", "give the replacement text as a heredoc"),
        ("edit 1:1\nx = 1", "multi-line text must be a heredoc"),
        ("edit 1:1 <<'EOF'\nx = 1\n", "heredoc is not closed"),
        ("edit 1:1 <<'EOF'\nx\nEOF\nmore", "text after the heredoc's closing EOF"),
        ("edit --file <<'EOF'\nx\nEOF", "--file needs a path"),
        ("edit --file scratch/none.py 1:1 <<'EOF'\nx\nEOF", "not found"),
    ],
)
def test_wrong_edits_change_nothing(tools, sandbox, command, message):
    path = new_file(sandbox, "bad.py", "a\nb\n")
    run(tools, f"open {path}")
    obs, body = run(tools, command)
    assert obs.tool_error and message in body, body
    assert sandbox.read_file(path) == "a\nb\n"


# ---- replace ----------------------------------------------------------------------------------


def test_replace_a_unique_match_and_all_matches(tools, sandbox):
    path = new_file(sandbox, "rep.py", FILES["pkg/core.py"])
    run(tools, f"open {path}")
    obs, body = run(
        tools, "replace 'def add(a, b):\n    return a - b' 'def add(a, b):\n    return a + b'"
    )
    assert not obs.tool_error and body.startswith("Replaced 1 occurrence(s).")
    assert sandbox.read_file(path).startswith("def add(a, b):\n    return a + b\n")
    obs, body = run(tools, "replace --replace-all 'a, b' 'x, y'")
    assert not obs.tool_error and body.startswith("Replaced 2 occurrence(s).")
    assert sandbox.read_file(path).count("x, y") == 2


@pytest.mark.parametrize(
    "command, message",
    [
        ("replace 'return a - b' 'return a + b'", "2 matches for 'return a - b'"),
        ("replace 'nowhere' 'x'", "no match for 'nowhere'"),
        ("replace '' 'x'", "SEARCH is empty"),
        ("replace onlyone", "usage: replace [--replace-all] SEARCH REPLACE"),
        ("replace 'unclosed x", "cannot parse arguments"),
    ],
)
def test_wrong_replaces_change_nothing(tools, sandbox, command, message):
    path = new_file(sandbox, "rep_bad.py", FILES["pkg/core.py"])
    run(tools, f"open {path}")
    obs, body = run(tools, command)
    assert obs.tool_error and message in body, body
    assert sandbox.read_file(path) == FILES["pkg/core.py"]


# ---- search_file ------------------------------------------------------------------------------


def test_search_in_the_open_file_a_named_file_and_a_directory(tools, root):
    run(tools, "open pkg/core.py")
    _, body = run(tools, "search_file 'return a'")
    assert body.splitlines() == [
        f'Found 2 matches for "return a" in {root}/pkg/core.py:',
        "2:    return a - b",
        "6:    return a - b",
    ]
    _, body = run(tools, "search_file 'line 25' pkg/long.txt")
    assert body.splitlines()[0] == f'Found 2 matches for "line 25" in {root}/pkg/long.txt:'
    _, body = run(tools, "search_file 'def sub' pkg")
    assert body.splitlines() == [
        f'Found 1 matches for "def sub" in {root}/pkg:',
        f"{root}/pkg/core.py:5:def sub(a, b):",
    ]
    obs, body = run(tools, "search_file nothing-like-this pkg/core.py")
    assert (
        not obs.tool_error and body == f'No matches for "nothing-like-this" in {root}/pkg/core.py'
    )


def test_search_lists_at_most_the_configured_matches(tools):
    _, body = run(tools, "search_file line pkg/long.txt")
    lines = body.splitlines()
    assert lines[0].startswith("Found 250 matches") and len(lines) == 1 + 100 + 1
    assert lines[-1] == "[150 more matches not shown; refine the term]"


def test_wrong_searches(tools):
    for command, message in [
        ("search_file", "usage: search_file TERM"),
        ("search_file x pkg/none.py", "not found"),
        ("search_file a b c", "usage: search_file TERM"),
    ]:
        obs, body = run(tools, command)
        assert obs.tool_error and message in body, body


# ---- submit -----------------------------------------------------------------------------------


def test_submit_ends_without_an_observation_and_takes_no_arguments(tools):
    obs = tools.run("submit")
    assert obs.submitted and obs.text == ""
    obs, body = run(tools, "submit now")
    assert obs.tool_error and "submit takes no arguments" in body


# ---- relative paths ---------------------------------------------------------------------------


def test_relative_paths_show_paths_under_the_root_relative_to_it(sandbox, root):
    sandbox.run(f"cd {root}")
    tools = Tools(sandbox, ToolConfig(command_timeout=2, relative_paths=True))
    obs, body = run(tools, "echo hi")
    assert obs.text.endswith("(Current directory: ., current file: n/a) bash-$")
    obs, body = run(tools, f"open {root}/pkg/core.py")  # an absolute path is taken as well
    assert body.splitlines()[0] == "[File: pkg/core.py (6 lines total)]"
    assert obs.text.endswith("(Current directory: ., current file: pkg/core.py) bash-$")
    _, body = run(tools, "search_file 'def sub' pkg")
    assert body.splitlines() == [
        'Found 1 matches for "def sub" in pkg:',
        "pkg/core.py:5:def sub(a, b):",
    ]
    obs, body = run(tools, "replace 'no such text' 'x'")
    assert obs.tool_error and body == "replace: no match for 'no such text' in pkg/core.py"
    obs, body = run(tools, "open pkg/none.py")
    assert obs.tool_error and body == "File pkg/none.py not found"
    run(tools, "cd pkg")
    obs, _ = run(tools, "open core.py")
    assert obs.text.endswith("(Current directory: pkg, current file: pkg/core.py) bash-$")
    # outside the root, paths stay absolute
    obs, _ = run(tools, "cd /")
    assert obs.text.endswith("(Current directory: /, current file: pkg/core.py) bash-$")
    sandbox.run(f"cd {root}")


def test_relative_paths_in_command_output(sandbox, root):
    sandbox.run(f"cd {root}")
    tools = Tools(sandbox, ToolConfig(command_timeout=2, relative_paths=True))
    _, body = run(tools, 'python3 -c "import pkg.core; pkg.core.nope"')
    assert 'File "<string>"' in body and root not in body
    _, body = run(tools, f"pwd; ls -d {root}/pkg; echo {root}-other {root}x")
    assert body.splitlines() == [".", "pkg", f"{root}-other {root}x"]
    plain = Tools(sandbox, ToolConfig(command_timeout=2))
    _, body = run(plain, "pwd")
    assert body == root


def test_show_leaves_paths_alone_without_relative_paths(tools, root):
    assert tools.show(f"{root}/pkg/core.py") == f"{root}/pkg/core.py"
    relative = Tools(tools.sandbox, ToolConfig(relative_paths=True))
    assert relative.show(f"{root}/pkg/core.py") == "pkg/core.py"
    assert relative.show(root) == "."
    assert relative.show(f"{root}-other/x.py") == f"{root}-other/x.py"  # a sibling, not under it
    assert relative.show("/etc/hosts") == "/etc/hosts"
