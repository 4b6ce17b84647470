"""End to end: a control plane that cannot be wedged or broken by its clients (issue 8, items 8-11).

A runaway chunk stops on Ctrl+C (remote and local shell), SIGTERM and the
daemon's --chunk-timeout while other clients get answers; output of any size
arrives whole; malformed messages and bursts of connections are handled; a
--restricted daemon gives non-root group members Lua without os/io.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pexpect
import pytest

from bricks import server
from tests.e2e.daemons import PROMPT, WAIT, Paths, alive, bricks, wait_until

pytestmark = pytest.mark.root

RUNAWAY = "while true do end"
# A chunk that catches the interrupt and loops on: it must still end.
STUBBORN = "while true do pcall(function() while true do end end) end"


def veths_named(prefix):
    return [name for name in os.listdir("/sys/class/net") if name.startswith(prefix)]


def connect(paths):
    """A raw protocol connection to the daemon, past its greeting."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(WAIT)
    connection.connect(paths.socket)
    assert server.receive_message(connection)["hello"] == "bricks"
    return connection


def run_raw(connection, chunk, mode="line"):
    """(printed text, final message) of one chunk over a raw connection."""
    server.send_message(connection, {"op": "run", "chunk": chunk, "mode": mode})
    printed = ""
    while True:
        message = server.receive_message(connection)
        if "output" not in message:
            return printed, message
        printed += message["output"]


def timed_remote(paths, chunk):
    started = time.monotonic()
    result = paths.remote(chunk)
    return result, time.monotonic() - started


# ---------------------------------------------------------------- 8.8 runaway chunks

def test_runaway_chunk_stops_on_ctrl_c_while_other_clients_get_answers(paths):
    paths.start_daemon()
    shell = paths.spawn("bricks-shell")
    try:
        shell.expect_exact(PROMPT)
        shell.sendline(RUNAWAY)
        time.sleep(0.5)
        # Another client is told, in one line and in bounded time, that the daemon is busy: never a hang.
        busy, took = timed_remote(paths, 'print("served")')
        assert busy.returncode == 1 and busy.stdout == ""
        assert busy.stderr.startswith("busy: another client's chunk has been running for ")
        assert len(busy.stderr.splitlines()) == 1
        assert took < server.BUSY_WAIT + 5
        # Tab completion does not wait behind it either.
        with connect(paths) as other:
            server.send_message(other, {"op": "complete", "prefix": "BRICKS.sh"})
            assert server.receive_message(other) == {"completions": []}
        shell.sendintr()
        shell.expect_exact("interrupted\r\n")
        shell.expect_exact(PROMPT)
        served, took = timed_remote(paths, 'print("served")')
        assert (served.returncode, served.stdout, served.stderr) == (0, "served\n", "")
        shell.sendline(STUBBORN)
        time.sleep(0.5)
        shell.sendintr()
        shell.expect_exact("interrupted\r\n")
        shell.expect_exact(PROMPT)
        shell.sendline('print("shell goes on")')
        shell.expect_exact("shell goes on\r\n")
        shell.expect_exact(PROMPT)
        assert "Traceback" not in open(paths.log).read()
    finally:
        shell.close(force=True)


def test_ctrl_c_of_a_one_chunk_client_stops_its_chunk(paths):
    paths.start_daemon()
    client = subprocess.Popen(bricks("bricks-shell") + ["-c", 'print("started"); ' + RUNAWAY], env=paths.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline() == "started\n"
        client.send_signal(signal.SIGINT)
        _, errors = client.communicate(timeout=WAIT)
    finally:
        client.kill()
    assert (client.returncode, errors) == (1, "interrupted\n")
    assert paths.remote('print("next")').stdout == "next\n"


def test_chunk_time_limit(paths):
    paths.start_daemon("--chunk-timeout", "1")
    for chunk in (RUNAWAY, STUBBORN, "bricks_sleep(30)"):
        result, took = timed_remote(paths, chunk)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", "chunk exceeded 1 s\n"), chunk
        assert 1 <= took < 5, chunk
    result = paths.remote('bricks_sleep(0.2); print("within the limit")')
    assert (result.returncode, result.stdout) == (0, "within the limit\n")


def test_sigterm_stops_a_daemon_busy_in_a_runaway_chunk(paths):
    pid = paths.start_daemon()
    client = subprocess.Popen(bricks("bricks-shell") + ["-c", 'print("started"); ' + RUNAWAY], env=paths.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline() == "started\n"
        started = time.monotonic()
        assert paths.run("bricks-kill-server").returncode == 0
        assert time.monotonic() - started < server.SHUTDOWN_LOCK_TIMEOUT    # interrupted, not waited out
        _, errors = client.communicate(timeout=WAIT)
    finally:
        client.kill()
    assert errors == "interrupted: the daemon is stopping\n"
    assert not os.path.exists(paths.socket) and not alive(pid)


def test_sigterm_stops_a_runaway_start_up_script(paths, tmp_path):
    script = tmp_path / "runaway.lua"
    script.write_text(RUNAWAY + "\n")
    launcher = subprocess.Popen(bricks("bricks-server") + ["-f", str(script)], env=paths.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: server.running_pid(paths.pid_file) is not None)
        time.sleep(0.3)
        assert paths.run("bricks-kill-server").returncode == 0
        _, errors = launcher.communicate(timeout=WAIT)
    finally:
        launcher.kill()
    assert (launcher.returncode, errors) == (1, "bricks: interrupted: the daemon is stopping\n")
    assert not os.path.exists(paths.socket)


@pytest.mark.parametrize("quit_signal", [signal.SIGTERM, signal.SIGQUIT])
def test_local_shell_sigint_interrupts_and_sigterm_cleans_up(paths, testbed, quit_signal):
    host_if, _ = testbed.add_input("in")
    shell = paths.spawn("bricks")
    try:
        shell.expect_exact(PROMPT)
        shell.sendline(RUNAWAY)
        time.sleep(0.5)
        shell.sendintr()
        shell.expect_exact("interrupted\r\n")
        shell.expect_exact(PROMPT)
        shell.sendline(f'pe = PktEngine.new("e0"); lb = Brick.new("LoadBalancer"); lb:connect_input("{host_if}"); '
                       f'lb:connect_outputs("{host_if}", 2); pe:link(lb); pe:start(); print("linked")')
        shell.expect_exact("linked\r\n")
        shell.expect_exact(PROMPT)
        assert sorted(veths_named(host_if + "{")) == [host_if + "{0", host_if + "{1"]
        shell.sendline(STUBBORN)
        time.sleep(0.5)
        shell.kill(quit_signal)
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 128 + quit_signal
    assert veths_named(host_if + "{") == [] and veths_named(host_if + "}") == []


# ---------------------------------------------------------------- 8.9 output of any size

def test_output_over_16_mib_arrives_whole(paths):
    paths.start_daemon()
    text = "é" * (6 << 20) + "x" * (8 << 20)      # 20 MiB of UTF-8, cut into messages mid-way through the é's
    result = paths.run("bricks-shell", "-c", 'print(string.rep("é", 6 * 2^20) .. string.rep("x", 8 * 2^20))',
                       timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert len(result.stdout) == len(text) + 1 and result.stdout == text + "\n"


# ---------------------------------------------------------------- 8.10 malformed messages, bursts

def test_deeply_nested_json_is_refused_in_one_line_and_the_daemon_serves_on(paths):
    paths.start_daemon()
    with connect(paths) as connection:
        deep = b"[" * 100_000 + b"]" * 100_000
        connection.sendall(struct.pack(">I", len(deep)) + deep)
        answer = server.receive_message(connection)
        assert answer["error"] == "bad request: message nested too deeply" and answer["done"] is True
        not_json = b"{nope"
        connection.sendall(struct.pack(">I", len(not_json)) + not_json)
        assert server.receive_message(connection)["error"].startswith("bad request: message is not JSON")
        assert run_raw(connection, 'print("same connection")')[0] == "same connection\n"
    assert paths.remote('print("still serving")').stdout == "still serving\n"
    log = open(paths.log).read()
    assert "Traceback" not in log and "RecursionError" not in log
    assert "bad message from a client: message nested too deeply" in log


def test_a_burst_of_200_connections_all_get_in(paths):
    paths.start_daemon()
    count = 200
    ready = threading.Barrier(count)
    answers, failures = [], []

    def client():
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(WAIT)     # a non-blocking connect: a full backlog is EAGAIN, not a wait
                ready.wait(WAIT)
                connection.connect(paths.socket)
                answers.append(server.receive_message(connection))
        except Exception as error:     # every failure is counted, not lost in a thread
            failures.append(repr(error))

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert failures == []
    assert answers == [{"hello": "bricks", "version": server.PROTOCOL_VERSION}] * count
    assert paths.remote('print("after the burst")').stdout == "after the burst\n"


# ---------------------------------------------------------------- 8.11 --restricted

def test_restricted_daemon_gives_group_members_no_os_and_root_full_lua():
    base = tempfile.mkdtemp(prefix="bricks-restricted-")
    os.chmod(base, 0o755)                 # uid 65534 must reach the socket
    shared = Paths(base)
    try:
        shared.start_daemon("--group", "nogroup", "--restricted")
        as_member = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

        def member(chunk):
            return subprocess.run(as_member + bricks("bricks-shell") + ["-a", shared.socket, "-c", chunk],
                                  capture_output=True, text=True, env=shared.env, timeout=WAIT)

        refused = member('os.execute("touch /tmp/bricks-restricted-escape")')
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr == "stdin:1: os is for root only (this client is restricted)\n"
        assert not os.path.exists("/tmp/bricks-restricted-escape")
        for escape in ('io.open("/etc/shadow")', 'dofile("/etc/shadow")', 'require("ffi")', "debug.getinfo(1)",
                       'loadstring("return os")()', "getfenv(0).os.execute('true')", "jit.on()"):
            refused = member(escape)
            assert refused.returncode == 1 and refused.stderr.endswith(" is for root only (this client is "
                                                                       "restricted)\n"), escape
        refused = member('Brick.new("LoadBalancer"):connect_output("/etc/cron.d/x.pcap")')
        assert refused.returncode == 1 and "files are for root only" in refused.stderr
        # The broker API is there; its own globals stay its own.
        allowed = member('mine = 7; print(PktEngine.retrieve("none"), string.format("%d", mine)); '
                         'BRICKS.print_status()')
        assert allowed.returncode == 0 and allowed.stdout.startswith("nil\t7\nBRICKS is offline."), allowed.stderr
        assert member("print(mine)").stdout == "nil\n"       # a new client, a new environment
        root = shared.remote('print(type(os.execute), type(io.open), mine)')
        assert (root.returncode, root.stdout) == (0, "function\tfunction\tnil\n")
        # A member connecting while root's chunk runs is greeted at once and told the daemon is busy.
        runaway = subprocess.Popen(bricks("bricks-shell") + ["-a", shared.socket, "-c", 'print("started"); ' + RUNAWAY],
                                   env=shared.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert runaway.stdout.readline() == "started\n"
            busy = member('print("in")')
            assert busy.returncode == 1 and busy.stderr.startswith("busy: ")
            runaway.send_signal(signal.SIGINT)
            assert runaway.communicate(timeout=WAIT)[1] == "interrupted\n"
        finally:
            runaway.kill()
        assert member('print("in")').stdout == "in\n"
        assert "(restricted)" in open(shared.log).read()
    finally:
        shared.kill_leftover()
        shutil.rmtree(base, ignore_errors=True)
        if os.path.exists("/tmp/bricks-restricted-escape"):
            os.unlink("/tmp/bricks-restricted-escape")
