"""The daemon under a service manager's protocol: READY=1 on $NOTIFY_SOCKET only once the start-up script has
started its engines, STOPPING=1 on SIGTERM with the pipes removed; none when the script fails; IFACE:N instances."""
import os
import signal
import socket
import subprocess
import time

import pytest

from tests.e2e.daemons import WAIT, alive, bricks, wait_until
from tests.e2e.test_shell_daemon import send_flows, veths_named

pytestmark = pytest.mark.root


class NotifySocket:
    """The service manager's end: a datagram socket whose messages are kept with the time they came."""

    def __init__(self, path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.server.bind(path)

    def next(self, timeout=WAIT):
        """The next message as (monotonic time, text), or None after timeout seconds."""
        self.server.settimeout(timeout)
        try:
            text = self.server.recv(4096).decode()
        except socket.timeout:
            return None
        return time.monotonic(), text

    def close(self):
        self.server.close()


@pytest.fixture
def notify_socket(tmp_path):
    made = NotifySocket(str(tmp_path / "notify.sock"))
    yield made
    made.close()


def foreground_daemon(paths, notify_socket, command, *args):
    env = dict(paths.env, NOTIFY_SOCKET=notify_socket.path)
    return subprocess.Popen(bricks(command) + ["--foreground"] + list(args), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def stopped(process):
    try:
        return process.wait(WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ready_only_once_the_script_started_its_engines_then_stopping_on_sigterm(paths, testbed, tmp_path,
                                                                                 notify_socket):
    host_if, ns_if = testbed.add_input("in")
    marker = tmp_path / "script-done"
    script = tmp_path / "start.lua"
    # The engine starts, then the script goes on for a second: READY=1 must wait for all of it.
    script.write_text(f"""
pe = PktEngine.new("e0")
lb = Brick.new("LoadBalancer")
lb:connect_input("{host_if}")
lb:connect_outputs("{host_if}", 2)
pe:link(lb)
pe:start()
os.execute("sleep 1")
io.open("{marker}", "w"):close()
""")
    began = time.monotonic()
    process = foreground_daemon(paths, notify_socket, "bricks-server", "-f", str(script))
    try:
        message = notify_socket.next()
        assert message is not None, process.stderr.read() if process.poll() is not None else "no READY=1"
        received, text = message
        assert text.splitlines()[0] == "READY=1" and f"MAINPID={process.pid}" in text.splitlines()
        assert received - began >= 1.0 and marker.exists()
        assert sorted(veths_named(host_if + "{")) == [host_if + "{0", host_if + "{1"]
        # The engine is running at READY: what is sent now arrives at the pipes, counted.
        readers = [testbed.reader(f"{host_if}}}{index}", in_namespace=False) for index in range(2)]
        frames = send_flows(testbed, ns_if, 200)
        assert wait_until(lambda: sum(len(reader.read_so_far()) for reader in readers) == len(frames))
        for reader in readers:
            reader.stop()
        process.send_signal(signal.SIGTERM)
        message = notify_socket.next()
        assert message is not None and message[1] == "STOPPING=1"
        assert stopped(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert veths_named(host_if + "{") == [] and veths_named(host_if + "}") == []
    assert not os.path.exists(paths.socket) and not os.path.exists(paths.pid_file)


def test_no_ready_when_the_start_up_script_fails(paths, tmp_path, notify_socket):
    script = tmp_path / "bad.lua"
    script.write_text('error("no such interface, say")\n')
    process = foreground_daemon(paths, notify_socket, "bricks-server", "-f", str(script))
    assert stopped(process) == 1
    assert "no such interface, say" in process.stderr.read()
    assert notify_socket.next(timeout=0.5) is None


def test_load_balance_instance_is_ready_with_its_pipes(paths, testbed, notify_socket):
    host_if, _ = testbed.add_input("in")
    process = foreground_daemon(paths, notify_socket, "bricks-load-balance", f"{host_if}:3")
    try:
        message = notify_socket.next()
        assert message is not None and message[1].startswith("READY=1\n"), process.stderr
        assert sorted(veths_named(host_if + "{")) == [f"{host_if}{{{index}" for index in range(3)]
        process.send_signal(signal.SIGTERM)
        assert stopped(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert veths_named(host_if + "{") == []
    assert not alive(process.pid)
