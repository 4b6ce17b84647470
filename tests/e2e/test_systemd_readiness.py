"""The daemon under a service manager's protocol: READY=1 on $NOTIFY_SOCKET only once the start-up script has
started its engines, STOPPING=1 on SIGTERM with the pipes removed; none when the script fails; IFACE:N instances."""
import os
import signal
import socket
import subprocess
import time

import pytest

from bricks.engine import DEFAULT_REALTIME_PRIORITY
from bricks.systemd import UNIT_SOURCES
from tests.e2e.daemons import WAIT, alive, bricks, wait_until
from tests.e2e.test_shell_daemon import send_flows, veths_named

pytestmark = pytest.mark.root

UNIT = UNIT_SOURCES / "bricks-load-balance@.service"


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


def unit_capabilities():
    """The capability names of the units' CapabilityBoundingSet (both units have the same)."""
    line = next(line for line in UNIT.read_text().splitlines() if line.startswith("CapabilityBoundingSet="))
    return line.split("=", 1)[1].split()


def run_instance_with_capabilities(paths, testbed, notify_socket, capabilities, *options, realtime=None):
    """Runs a load-balance instance as the unit does, its capabilities cut to `capabilities` (setpriv does what
    CapabilityBoundingSet and NoNewPrivileges do), with BRICKS_REALTIME=`realtime` (None: unset, the default);
    checks it gets ready, makes its pipes and balances traffic, then stops it with SIGTERM.
    Returns the (policy, priority) of its threads not scheduled normally while it ran, and its stderr lines."""
    host_if, ns_if = testbed.add_input("in")
    bounding = ",".join(["-all"] + ["+" + name.lower().removeprefix("cap_") for name in capabilities])
    env = {name: value for name, value in paths.env.items() if name != "BRICKS_REALTIME"}
    env.update(NOTIFY_SOCKET=notify_socket.path, **({} if realtime is None else {"BRICKS_REALTIME": realtime}))
    process = subprocess.Popen(["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", "--no-new-privs"]
                               + bricks("bricks-load-balance") + ["--foreground", *options, f"{host_if}:3"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        message = notify_socket.next()
        assert message is not None and message[1].startswith("READY=1\n"), process.stderr
        with open(f"/proc/{process.pid}/status") as status:
            bounding_mask = next(line for line in status if line.startswith("CapBnd:")).split()[1]
        assert bin(int(bounding_mask, 16)).count("1") == len(capabilities)
        consumers = [f"{host_if}}}{index}" for index in range(3)]
        assert sorted(veths_named(host_if + "}")) == consumers
        real_time = threads_not_scheduled_normally(process.pid)
        readers = [testbed.reader(name, in_namespace=False) for name in consumers]
        frames = send_flows(testbed, ns_if, 300)
        assert wait_until(lambda: sum(len(reader.read_so_far()) for reader in readers) == len(frames))
        assert min(len(reader.stop()) for reader in readers) > 0
        process.send_signal(signal.SIGTERM)
        assert notify_socket.next()[1] == "STOPPING=1"
        assert stopped(process) == 0
        stderr_lines = process.stderr.read().splitlines()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert veths_named(host_if + "{") == [] and veths_named(host_if + "}") == []
    assert not alive(process.pid)
    return real_time, stderr_lines


def threads_not_scheduled_normally(pid):
    """(policy, priority) of each thread of process pid whose policy is not SCHED_OTHER."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        policy = os.sched_getscheduler(int(task))
        if policy != os.SCHED_OTHER:
            found.append((policy, os.sched_getparam(int(task)).sched_priority))
    return found


def realtime_lines(lines):
    return [line for line in lines if "priority" in line]


def test_load_balance_instance_works_with_only_the_units_capabilities(paths, testbed, notify_socket):
    """Ready, pipes made, traffic balanced at the real-time priority asked for."""
    real_time, lines = run_instance_with_capabilities(paths, testbed, notify_socket, unit_capabilities(),
                                                      "--realtime", "5")
    assert real_time == [(os.SCHED_FIFO, 5)]
    assert realtime_lines(lines) == []


def test_load_balance_instance_runs_its_engine_real_time_by_default(paths, testbed, notify_socket):
    """No --realtime, no BRICKS_REALTIME: the unit's CAP_SYS_NICE lets the engine thread (and only it) run
    SCHED_FIFO at the default priority, said in one log line."""
    real_time, lines = run_instance_with_capabilities(paths, testbed, notify_socket, unit_capabilities())
    assert real_time == [(os.SCHED_FIFO, DEFAULT_REALTIME_PRIORITY)]
    assert realtime_lines(lines) == [f"engine threads run SCHED_FIFO at priority {DEFAULT_REALTIME_PRIORITY} by "
                                     "default, so that other work on their CPUs cannot make input rings overflow; "
                                     "--realtime 0 (BRICKS_REALTIME=0) turns it off"]


def test_load_balance_instance_without_cap_sys_nice_warns_once_and_balances(paths, testbed, notify_socket):
    """The default refused (no CAP_SYS_NICE, as a unit whose bounding set lacks it): one warning, normal priority,
    every other part as usual."""
    capabilities = [name for name in unit_capabilities() if name != "CAP_SYS_NICE"]
    real_time, lines = run_instance_with_capabilities(paths, testbed, notify_socket, capabilities)
    assert real_time == []
    assert realtime_lines(lines) == [f"engine threads run at normal priority: the default real-time priority "
                                     f"{DEFAULT_REALTIME_PRIORITY} was refused: Operation not permitted (it needs "
                                     "root or CAP_SYS_NICE); other work on their CPUs can make input rings "
                                     "overflow; --realtime 0 (BRICKS_REALTIME=0) runs them normally without this "
                                     "warning"]


@pytest.mark.parametrize("realtime", ["0", "off"])
def test_load_balance_instance_with_realtime_off_runs_normally_and_quietly(paths, testbed, notify_socket, realtime):
    real_time, lines = run_instance_with_capabilities(paths, testbed, notify_socket, unit_capabilities(),
                                                      realtime=realtime)
    assert real_time == [] and realtime_lines(lines) == []
