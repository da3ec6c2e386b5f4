"""Hostile commands are contained: the host stays responsive, the sandbox recovers or ends with a
clear error. Docker tests use small limits so each takes seconds; the local backend is tested
where it has a defence (it is not a security boundary: no fork bomb, no network test there).
Network isolation is tested only against the host's loopback and by listing interfaces."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest

from swerl.sandbox import SandboxError, open_sandbox

SMALL = {"memory": "256m", "pids": 64, "cpus": 1.0, "max_output": 10_000}


@pytest.fixture
def small_sandbox(backend, task):
    with open_sandbox(task, backend, timeout=30, **SMALL) as sb:
        yield sb


def _host_responsive() -> float:
    """Time for a host-side sleep of 0.1 s (stays near 0.1 s when the host is not starved)."""
    started = time.monotonic()
    time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.docker
def test_fork_bomb_is_contained_and_the_sandbox_recovers(task_image, task):
    with open_sandbox(task, "docker", timeout=30, **SMALL) as sb:
        started = time.monotonic()
        bomb = sb.run("bomb() { bomb | bomb & }; bomb; sleep 60", timeout=3)
        assert bomb.timed_out
        assert _host_responsive() < 1.0
        after = sb.run("echo alive; ls /proc | grep -c '^[0-9]'")
        # the bomb's last "fork: retry" complaints may still be in the pipe, before or between
        # this command's lines
        lines = [x for x in after.output.splitlines() if "fork: " not in x]
        alive, processes = lines[-2:]
        assert alive == "alive" and after.exit_code == 0
        assert int(processes) < 10  # init, sleep, the two shells, ls, grep
        assert time.monotonic() - started < 30


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_allocating_ten_times_the_memory_limit_fails_the_command_only(backend, task, request):
    if backend == "docker":
        request.getfixturevalue("task_image")
    with open_sandbox(task, backend, timeout=30, **SMALL) as sb:
        sb.run("export KEEP=1")
        hog = sb.run("python3 -c 'x = bytearray(10 * 256 * 2**20); print(len(x))'", timeout=20)
        assert not hog.timed_out
        assert hog.exit_code != 0  # docker: OOM-killed (137); local: MemoryError (1)
        assert sb.run("echo $KEEP").output == "1\n"


def test_printing_a_gigabyte_is_capped(small_sandbox):
    started = time.monotonic()
    result = small_sandbox.run("head -c 1000000000 /dev/zero | tr '\\0' x; echo; echo END", 120)
    assert not result.timed_out and result.exit_code == 0
    assert len(result.output) < 11_000 and result.output.endswith("xxx\nEND\n")
    assert "999990" in result.output.split("[... swerl: ")[1][:20]  # ~1e9 bytes cut
    assert time.monotonic() - started < 60
    assert small_sandbox.run("echo next").output == "next\n"


def test_sleep_far_past_its_timeout(small_sandbox):
    started = time.monotonic()
    result = small_sandbox.run("sleep 3600", timeout=1)
    assert result.timed_out and time.monotonic() - started < 10
    assert small_sandbox.run("echo ok").output == "ok\n"


def test_killing_the_session_shell(small_sandbox):
    result = small_sandbox.run("kill -9 $$")
    assert result.exit_code is None and "new shell" in result.output
    assert small_sandbox.run("echo back").output == "back\n"


@pytest.mark.docker
def test_killing_the_control_shell_is_recovered(task_image, task):
    with open_sandbox(task, "docker", timeout=30, **SMALL) as sb:
        killed = sb.run(  # every bash but this session's shell: the control shell (a process
            # that ends between the glob and the read is skipped quietly)
            "for p in /proc/[0-9]*; do argv0=; { read -r -d '' argv0 < $p/cmdline; } 2>/dev/null; "
            '[ "$argv0" = bash ] && [ ${p#/proc/} != $$ ] && kill -9 ${p#/proc/} && echo x; done'
        )
        assert killed.output == "x\n"
        assert sb.run("sleep 60", timeout=1).timed_out  # a new control shell did the kill
        assert sb.run("echo still").output == "still\n"


@pytest.mark.docker
def test_killing_every_process_in_the_container_ends_it_with_a_clear_error(task_image, task):
    # the container's main process too: the container stops, maybe while this very command still
    # runs; either way a SandboxError that says so
    with (
        open_sandbox(task, "docker", timeout=30, **SMALL) as sb,
        pytest.raises(
            SandboxError, match=r"container \w+ is exited|could not start the control shell"
        ),
    ):
        sb.run("kill -9 -1")
        for _ in range(3):  # the shell may still answer once before the container goes
            sb.run("sleep 1")


@pytest.mark.docker
def test_writing_outside_the_repository_stays_in_the_container(task_image, task):
    marker = f"swerl-escape-{uuid.uuid4().hex}"
    with open_sandbox(task, "docker", timeout=30, **SMALL) as sb:
        wrote = sb.run(f"echo x > /tmp/{marker} && echo x > /{marker} && echo x > /etc/{marker}")
        assert wrote.exit_code == 0
        assert sb.diff() == ""  # outside the repository: not part of the patch
    for path in (f"/tmp/{marker}", f"/{marker}", f"/etc/{marker}"):
        assert not Path(path).exists()
    with open_sandbox(task, "docker", timeout=30, **SMALL) as fresh:  # nor in the next sandbox
        assert fresh.run(f"test -e /tmp/{marker}").exit_code == 1


@pytest.mark.docker
def test_host_loopback_is_unreachable_and_only_lo_exists(task_image, task):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        with open_sandbox(task, "docker", timeout=30, **SMALL) as sb:
            assert sb.run("ls /sys/class/net").output.split() == ["lo"]
            probe = sb.run(
                "python3 -c \"import socket; socket.create_connection(('127.0.0.1', "
                f'{port}), timeout=3)"',
                timeout=20,
            )
            assert probe.exit_code != 0 and "ConnectionRefusedError" in probe.output
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing ever connected
            server.accept()
    finally:
        server.close()
