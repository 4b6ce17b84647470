"""End to end: the interactive shell through a pseudo-terminal, the daemon and its remote shells, the helper commands.

Every daemon runs with private paths (BRICKS_RUN_DIR, BRICKS_LOG_FILE under
tmp_path), so tests may run in parallel; the `paths` fixture kills any daemon
a failed test left behind.
"""
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from contextlib import contextmanager

import pexpect
import pytest

from bricks import frames as packets
from bricks import links
from bricks.server import running_pid

pytestmark = pytest.mark.root

from tests.e2e.daemons import PROMPT, WAIT, Paths, alive, bricks, wait_until


def veths_named(prefix):
    return [name for name in os.listdir("/sys/class/net") if name.startswith(prefix)]


def send_flows(testbed, ns_if, count):
    frames = [packets.pad(packets.udp_frame("10.0.0.1", "10.0.1.%d" % (number % 200 + 1), 1000 + number, 53))
              for number in range(count)]
    testbed.send(ns_if, frames, pps=5000)
    return frames


@contextmanager
def ended_by_ctrl_d(shell):
    """The spawned shell for the block; after it, Ctrl-D must end the shell with status 0. Closed even on failure."""
    try:
        yield shell
        shell.sendeof()
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 0


def shut_down_from(shell):
    """Types BRICKS.shutdown() at the shell's prompt: it must say goodbye and exit with status 0."""
    try:
        shell.expect_exact(PROMPT)
        shell.sendline("BRICKS.shutdown()")
        shell.expect_exact("Goodbye!")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 0


# ---------------------------------------------------------------- the local shell

def test_interactive_shell_prompt_completion_multiline_errors_and_ctrl_d(paths):
    with ended_by_ctrl_d(paths.spawn("bricks")) as shell:
        shell.expect_exact(PROMPT)
        shell.send("BRICKS.print_sta\t")
        shell.expect_exact("tus")                   # Tab completed the name in place
        shell.send("()\r")
        shell.expect_exact("BRICKS is offline.")
        shell.expect_exact(PROMPT)
        shell.sendline("function double(x)")
        shell.expect_exact(">> ")
        shell.sendline("  return 2 * x")
        shell.expect_exact(">> ")
        shell.sendline("end")
        shell.expect_exact(PROMPT)
        shell.sendline("=double(21)")
        shell.expect_exact("42")
        shell.expect_exact(PROMPT)
        shell.sendline("no_such_function()")
        shell.expect(r"stdin:1: [^\r\n]*no_such_function[^\r\n]*\r\n")
        assert "Traceback" not in shell.before
        shell.expect_exact(PROMPT)
        shell.sendline("=1+1")
        shell.expect(r"\r\n2\r\n")
        shell.expect_exact(PROMPT)
        shell.sendline("Brick.new(")
        shell.expect_exact(">> ")
        shell.sendline('"NoSuchKind")')
        shell.expect(r"NoSuchKind[^\r\n]*\r\n")
        shell.expect_exact(PROMPT)
    with open(os.path.join(paths.home, ".bricks_history")) as history:
        assert "=double(21)" in history.read().splitlines()


def test_ctrl_d_removes_the_pipes_the_shell_made(paths, testbed):
    host_if, _ = testbed.add_input("in")
    with ended_by_ctrl_d(paths.spawn("bricks")) as shell:
        shell.expect_exact(PROMPT)
        shell.sendline(f'pe = PktEngine.new("e0"); lb = Brick.new("LoadBalancer"); lb:connect_input("{host_if}"); '
                       f'lb:connect_outputs("{host_if}", 2); pe:link(lb); pe:start(); BRICKS.print_status()')
        shell.expect_exact("BRICKS is online.")
        shell.expect_exact(PROMPT)
        assert sorted(veths_named(host_if + "{")) == [host_if + "{0", host_if + "{1"]
    assert veths_named(host_if + "{") == [] and veths_named(host_if + "}") == []


def test_shutdown_leaves_the_local_shell(paths):
    shut_down_from(paths.spawn("bricks"))


def test_piped_stdin_is_a_script(paths):
    result = paths.run("bricks", stdin='x = 20\nprint(x + 1)\nBRICKS.print_status()\n')
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("21\nBRICKS is offline.\nBack-end: packet (")
    result = paths.run("bricks", stdin='print("before")\nerror("broken")\nprint("after")\n')
    assert result.returncode == 1 and result.stdout == "before\n"
    assert result.stderr.strip().splitlines() == ["stdin:2: broken"]


def test_script_then_stdin(paths, tmp_path):
    script = tmp_path / "set.lua"
    script.write_text('greeting = "hello from " .. arg[1]\n')
    result = paths.run("bricks", "-f", str(script), "args", stdin="print(greeting)\n")
    assert (result.returncode, result.stdout) == (0, "hello from args\n"), result.stderr


# ---------------------------------------------------------------- the daemon

def test_daemon_detaches_refuses_a_second_one_and_stops(paths):
    pid = paths.start_daemon()
    assert open(paths.pid_file).read() == f"{pid}\n"
    socket_mode = os.stat(paths.socket)
    assert stat.S_ISSOCK(socket_mode.st_mode) and socket_mode.st_mode & 0o777 == 0o600 and socket_mode.st_uid == 0
    assert os.getsid(pid) not in (pid, os.getsid(0))   # a new session it does not lead: no terminal can own it
    second = paths.run("bricks", "-d")
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"bricks: a daemon is already running (pid {pid}, pid file {paths.pid_file})"]
    assert running_pid(paths.pid_file) == pid
    stopped = paths.run("bricks-kill-server")
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(pid) and not os.path.exists(paths.pid_file) and not os.path.exists(paths.socket)
    with open(paths.log) as log:
        text = log.read()
    assert "started" in text and "stopped" in text


def test_daemon_start_up_script_error_is_reported_by_the_launcher(paths, tmp_path):
    script = tmp_path / "bad.lua"
    script.write_text('PktEngine.new(42)\n')
    result = paths.run("bricks-server", "-f", str(script), timeout=60)
    assert result.returncode == 1
    # Lua shortens long chunk names with "...": match the end of the path only.
    assert re.fullmatch(r"bricks: \S*bad\.lua:1: PktEngine\.new: engine name must be a string, got 42\n",
                        result.stderr), result.stderr
    assert running_pid(paths.pid_file) is None and not os.path.exists(paths.socket)


def test_remote_chunk_exit_codes_and_output(paths):
    paths.start_daemon()
    result = paths.remote('print("one"); print("two")')
    assert (result.returncode, result.stdout, result.stderr) == (0, "one\ntwo\n", "")
    result = paths.remote("=6*7")
    assert (result.returncode, result.stdout) == (0, "42\n")
    result = paths.remote('print("partial"); error("remote failure")')
    assert (result.returncode, result.stdout) == (1, "partial\n")
    assert result.stderr.strip().splitlines() == ["stdin:1: remote failure"]
    result = paths.run("bricks", "-s", stdin="state = 5\nprint(state * 2)\n")
    assert (result.returncode, result.stdout) == (0, "10\n")
    assert paths.remote("print(state)").stdout == "5\n"     # one Lua state, shared by every client


def test_missing_daemon_is_a_one_line_error(paths):
    result = paths.remote("print(1)")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"bricks: no daemon listening on {paths.socket}"]


def test_two_remote_shells_each_see_only_their_own_output(paths):
    paths.start_daemon()
    left, right = paths.spawn("bricks-shell"), paths.spawn("bricks-shell")
    try:
        for shell in (left, right):
            shell.expect_exact(PROMPT)
        for turn in range(5):
            left.sendline(f'bricks_sleep(0.02); print("left-{turn}")')
            right.sendline(f'bricks_sleep(0.02); print("right-{turn}")')
            left.expect_exact(f"left-{turn}\r\n")
            right.expect_exact(f"right-{turn}\r\n")
            left.expect_exact(PROMPT)
            right.expect_exact(PROMPT)
            assert "right-" not in left.before and "left-" not in right.before
        left.send("PktEngine.ret\t")                  # completion through the socket
        left.expect_exact("rieve")
        left.sendline('("none")')
        left.expect(r"\r\nnil\r\n")
        left.sendline("for i = 1, 2 do")               # multi-line through the daemon's incomplete flag
        left.expect_exact(">> ")
        left.sendline('print("loop " .. i) end')
        left.expect_exact("loop 2")
        left.expect_exact(PROMPT)
        left.sendeof()
        left.expect(pexpect.EOF)
        right.sendline('print("daemon still here")')
        right.expect_exact("daemon still here")
    finally:
        left.close(force=True)
        right.close(force=True)
    assert left.exitstatus == 0
    assert paths.remote("BRICKS.print_status()").stdout.startswith("BRICKS is offline.\nBack-end: packet (")


def test_ctrl_c_in_a_remote_shell_keeps_later_output_in_order(paths):
    paths.start_daemon()
    with ended_by_ctrl_d(paths.spawn("bricks-shell")) as shell:
        shell.expect_exact(PROMPT)
        shell.sendline('bricks_sleep(0.5); print("late")')
        time.sleep(0.2)
        shell.sendintr()
        shell.expect_exact("interrupted")
        shell.expect_exact(PROMPT)
        shell.sendline('print("next")')
        shell.expect_exact("next\r\n")
        assert "late" not in shell.before
        shell.expect_exact(PROMPT)


def test_a_client_killed_mid_command_harms_nothing(paths):
    paths.start_daemon()
    chunk = 'print("started"); bricks_sleep(1); print("done"); finished = true'
    client = subprocess.Popen(bricks("bricks-shell") + ["-c", chunk],
                              env=paths.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert client.stdout.readline() == "started\n"     # the chunk runs in the daemon now
    client.kill()
    client.wait(WAIT)
    result = paths.remote("print(finished)")          # waits for the abandoned chunk, which still completes
    assert (result.returncode, result.stdout) == (0, "true\n")


def test_only_root_or_the_group_may_use_the_socket(paths):
    base = tempfile.mkdtemp(prefix="bricks-perm-")
    os.chmod(base, 0o755)                             # others may reach the socket, so only its mode guards it
    try:
        shared = Paths(base)
        shared.start_daemon()
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        command = as_nobody + bricks("bricks-shell") + ["-a", shared.socket, "-c", 'print("in")']
        refused = subprocess.run(command, capture_output=True, text=True, env=shared.env, timeout=WAIT)
        assert refused.returncode == 1 and "permission denied" in refused.stderr and refused.stdout == ""
        # Past the file mode, the daemon's own SO_PEERCRED check still refuses.
        os.chmod(shared.socket, 0o666)
        refused = subprocess.run(command, capture_output=True, text=True, env=shared.env, timeout=WAIT)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.strip() == "bricks: permission denied: only root may use this daemon (you are uid 65534)"
        shared.kill_leftover()

        shared.start_daemon("--group", "nogroup")
        socket_mode = os.stat(shared.socket)
        assert socket_mode.st_mode & 0o777 == 0o660 and socket_mode.st_gid == 65534
        allowed = subprocess.run(command, capture_output=True, text=True, env=shared.env, timeout=WAIT)
        assert (allowed.returncode, allowed.stdout) == (0, "in\n"), allowed.stderr
    finally:
        Paths(base).kill_leftover()
        shutil.rmtree(base, ignore_errors=True)


def stats_total(paths):
    lines = paths.remote("BRICKS.show_stats()").stdout.splitlines()
    total = [line for line in lines if line.startswith("Total")]
    return int(total[0].split()[1]) if total else -1


@pytest.mark.parametrize("how", ["kill-server", "SIGINT"])
def test_signal_stops_engines_removes_pipes_and_flushes_pcap(paths, testbed, tmp_path, how):
    host_if, ns_if = testbed.add_input("in")
    capture = tmp_path / "captured.pcap"
    script = tmp_path / "start.lua"
    script.write_text(f"""
pe = PktEngine.new("e0")
dup = Brick.new("Duplicator")
dup:connect_input("{host_if}")
dup:connect_output("{host_if}{{0", "{host_if}{{1")
writer = Brick.new("PcapWriter")
writer:connect_input("{host_if}}}1")
writer:connect_output("{capture}")
dup:link(writer)
pe:link(dup)
pe:start()
""")
    pid = paths.start_daemon("-f", str(script))
    assert veths_named(host_if + "{") == [host_if + "{0"]       # {1 feeds the writer inside the engine
    assert paths.remote("BRICKS.print_status()").stdout.startswith("BRICKS is online.\nBack-end: packet (")
    frames = send_flows(testbed, ns_if, 200)
    assert wait_until(lambda: stats_total(paths) >= len(frames)), paths.remote("BRICKS.show_stats()").stdout
    if how == "SIGINT":
        os.kill(pid, signal.SIGINT)
        assert wait_until(lambda: not alive(pid), 10)
    else:
        result = paths.run("bricks-kill-server")
        assert result.returncode == 0, result.stderr
        assert not alive(pid)
    assert veths_named(host_if + "{") == [] and veths_named(host_if + "}") == []
    assert not os.path.exists(paths.socket) and not os.path.exists(paths.pid_file)
    read = subprocess.run(["tcpdump", "-r", str(capture), "-n"], capture_output=True, text=True, timeout=WAIT)
    assert read.returncode == 0, read.stderr
    assert len(read.stdout.splitlines()) == len(frames)


def test_shutdown_from_a_remote_shell_stops_the_daemon(paths, testbed):
    host_if, _ = testbed.add_input("in")
    pid = paths.start_daemon()
    paths.remote(f'pe = PktEngine.new("e0"); b = Brick.new("Duplicator"); b:connect_input("{host_if}"); '
                 f'b:connect_outputs("{host_if}", 2); pe:link(b); pe:start()')
    assert len(veths_named(host_if + "{")) == 2
    shut_down_from(paths.spawn("bricks-shell"))
    assert wait_until(lambda: not alive(pid), 10)
    assert veths_named(host_if + "{") == []
    assert not os.path.exists(paths.socket) and not os.path.exists(paths.pid_file)


@pytest.mark.parametrize("command, each_gets_all", [("bricks-load-balance", False), ("bricks-duplicate", True)])
def test_fan_out_helpers_and_kill_server(paths, testbed, command, each_gets_all):
    host_if, ns_if = testbed.add_input("in")
    pid = paths.start_daemon(host_if, "3", command=command)
    consumers = [links.consumer_name(host_if, index) for index in range(3)]
    assert sorted(veths_named(host_if + "}")) == consumers
    readers = [testbed.reader(name, in_namespace=False) for name in consumers]
    frames = send_flows(testbed, ns_if, 300)
    expected = len(frames) * (3 if each_gets_all else 1)
    assert wait_until(lambda: sum(len(reader.read_so_far()) for reader in readers) >= expected)
    counts = [len(reader.read_so_far()) for reader in readers]
    assert counts == [len(frames)] * 3 if each_gets_all else (sum(counts) == len(frames) and min(counts) > 0)
    for reader in readers:
        reader.stop()
    result = paths.run("bricks-kill-server")
    assert result.returncode == 0, result.stderr
    assert not alive(pid) and veths_named(host_if + "{") == []
    again = paths.run("bricks-kill-server")
    assert again.returncode == 1 and "no daemon is running" in again.stderr
