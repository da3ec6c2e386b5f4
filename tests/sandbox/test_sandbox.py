"""The Sandbox interface, the same assertions on both backends (docker ones marked `docker`)."""

from __future__ import annotations

import secrets
import time

import pytest

from swerl.sandbox import SandboxError, open_sandbox
from swerl.sandbox.session import _Reading


def test_shell_state_persists_between_commands(sandbox):
    first = sandbox.run("cd calc && export GREETING=hello && x=1")
    assert (first.exit_code, first.timed_out) == (0, False)
    second = sandbox.run("pwd; echo $GREETING $x")
    assert second.output == f"{sandbox.workdir}/calc\nhello 1\n"


def test_exit_code_and_merged_output(sandbox):
    result = sandbox.run("echo out; echo err >&2; exit_with() { return $1; }; exit_with 7")
    assert result.output == "out\nerr\n"
    assert result.exit_code == 7


def test_output_without_trailing_newline_is_exact(sandbox):
    assert sandbox.run("printf 'no newline'").output == "no newline"
    assert sandbox.run("true").output == ""


def test_commands_that_would_confuse_a_shell_parser(sandbox):
    broken = sandbox.run("echo 'unbalanced")
    assert broken.exit_code == 2 and "unexpected EOF" in broken.output
    heredoc = sandbox.run("cat <<'EOF'\nline one\n  $NOT_EXPANDED\nEOF")
    assert heredoc.output == "line one\n  $NOT_EXPANDED\n"
    unicode = sandbox.run("echo 'héllo ✓'")
    assert unicode.output == "héllo ✓\n"
    # stdin is /dev/null: a command reading it ends at once instead of eating the protocol
    assert sandbox.run("cat; echo done", timeout=5).output == "done\n"
    assert sandbox.run("echo still here").output == "still here\n"


def test_output_is_capped_in_the_middle_with_a_marker(sandbox):
    # max_output=10_000 in the fixture: 5000 bytes of head, 5000 of tail
    result = sandbox.run("echo START; head -c 200000 /dev/zero | tr '\\0' x; echo; echo END")
    assert result.output.startswith("START\nxxx")
    assert result.output.endswith("xxx\nEND\n")
    assert "bytes cut from the middle" in result.output
    assert len(result.output) < 10_300
    assert sandbox.run("echo small").output == "small\n"


@pytest.mark.parametrize("chunk", [1_000_000, 4096, 7])
def test_capping_keeps_head_and_tail_however_the_output_arrives(chunk):
    # one read holding the whole output and its end marker (a loaded machine) kept no head once
    nonce = "abc"
    data = b"START\n" + b"x" * 200_000 + b"\nEND\n" + f"\n__swerl_done_{nonce}_0__\n".encode()
    reading = _Reading(nonce, cap=10_000)
    for i in range(0, len(data), chunk):
        reading.feed(data[i : i + chunk])
        if reading.done:
            break
    out = reading.output()
    assert reading.done and reading.exit_code == 0
    assert out.startswith("START\nxxx") and out.endswith("xxx\nEND\n")
    assert "190011 bytes cut from the middle" in out  # 200,011 bytes, 10,000 kept
    assert len(out) < 10_300


def test_timeout_kills_the_command_and_its_children_and_the_session_goes_on(sandbox):
    sandbox.run("cd calc && export KEEP=1")
    started = time.monotonic()
    # a duration of its own: the local backend sees every process of the host (other sandboxes'
    # `sleep`s included, e.g. a docker variant's container still being torn down)
    n = 300 + secrets.randbelow(10_000)
    result = sandbox.run(f"(sleep {n} &) ; sleep {n} | cat", timeout=1)
    assert result.timed_out and time.monotonic() - started < 15
    assert "timeout" in result.output
    after = sandbox.run(
        "echo $KEEP; pwd; for p in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $p; echo; done"
    )
    assert after.exit_code == 0 and not after.timed_out
    assert after.output.startswith(f"1\n{sandbox.workdir}/calc\n")
    assert f"sleep {n}" not in after.output  # the background child died too


def test_timeout_of_a_busy_shell_restarts_it(sandbox):
    result = sandbox.run("while :; do :; done", timeout=1)  # builtins only: the shell is busy
    assert result.timed_out and result.exit_code is None
    assert "new shell" in result.output
    assert sandbox.run("echo ok; pwd").output == f"ok\n{sandbox.workdir}\n"


@pytest.mark.parametrize("command", ["kill -9 $$", "exit 3", "set -e; false"])
def test_the_shell_dying_is_recovered_with_a_note(sandbox, command):
    sandbox.run("cd calc && export GONE=1")
    result = sandbox.run(command)
    assert result.exit_code is None and not result.timed_out
    assert "cwd, environment variables and background jobs were reset" in result.output
    assert sandbox.run("pwd; echo ${GONE:-unset}").output == f"{sandbox.workdir}\nunset\n"


def test_files_relative_to_the_repository_root(sandbox):
    sandbox.run("cd tests")  # the shell's cwd does not matter to file calls
    assert sandbox.read_file("calc/ops.py").startswith("def add(a, b):")
    sandbox.write_file("calc/new/deep.py", "X = 'é'\n")
    assert sandbox.run("cat ../calc/new/deep.py").output == "X = 'é'\n"
    sandbox.write_file(f"{sandbox.workdir}/abs.txt", "absolute\n")
    assert sandbox.read_file("abs.txt") == "absolute\n"
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("no/such/file.py")


def test_diff_has_edits_deletions_and_new_files_and_leaves_the_index_alone(sandbox, task):
    assert sandbox.diff() == ""
    sandbox.write_file("calc/ops.py", "def add(a, b):\n    return a + b\n")
    sandbox.write_file("calc/extra.py", "Y = 2\n")
    sandbox.run("git rm -q README.md && git add calc/extra.py")
    patch = sandbox.diff()
    assert "-    return a - b\n+    return a + b\n" in patch
    assert "diff --git a/calc/extra.py b/calc/extra.py\nnew file mode 100644" in patch
    assert "diff --git a/README.md b/README.md\ndeleted file mode 100644" in patch
    assert sorted(sandbox.run("git status --porcelain").output.splitlines()) == [
        " M calc/ops.py",
        "A  calc/extra.py",
        "D  README.md",
    ]
    # the patch is what grading applies: it applies cleanly to a fresh checkout at base_commit
    with open_sandbox(task, "local") as fresh:
        fresh.write_file("agent.patch", patch)
        applied = fresh.run("git apply agent.patch && rm agent.patch && python -m pytest -q")
        assert applied.exit_code == 0, applied.output


def test_a_closed_sandbox_refuses_calls(backend, task):
    sb = open_sandbox(task, backend)
    sb.close()
    sb.close()  # idempotent
    with pytest.raises(SandboxError, match="closed"):
        sb.run("true")


def test_repository_holds_only_base_commit(sandbox, task):
    log = sandbox.run("git rev-list --all; git for-each-ref; git stash list; git remote; git tag")
    assert log.output.splitlines() == [
        task.base_commit,
        f"{task.base_commit} commit\trefs/heads/main",
    ]
