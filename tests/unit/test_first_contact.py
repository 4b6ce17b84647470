"""A newcomer's first commands: each failure is one line naming the fix (issue 9 items 11 and 13) — a refused
capability, an unwritable run directory, a missing tool, no .venv, bin/setup without root or with apt locked — and
bricks-demo -h works. Unprivileged runs use uid 65534 without capabilities when the suite runs as root."""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bricks.errors import BricksError, PRIVILEGES
from bricks.frames import random_tcp_frames, write_pcap

REPOSITORY = Path(__file__).resolve().parents[2]
LAUNCHERS = ["bricks", "bricks-demo", "bricks-duplicate", "bricks-kill-server", "bricks-load-balance",
             "bricks-server", "bricks-shell"]
NOBODY = 65534
TIMEOUT = 60


@pytest.fixture
def shared_directory():
    """A temporary directory an unprivileged user can read (pytest's tmp_path is private); removed afterwards."""
    path = tempfile.mkdtemp(prefix="bricks-first-contact-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path)


def unprivileged(command):
    """command run without privileges: as nobody, with no capability, when we are root; else as ourselves."""
    if os.geteuid() == 0:
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all"] + command
    return command


def environment(**changes):
    """Our environment without the BRICKS_ paths a test run may set, plus changes."""
    kept = {name: value for name, value in os.environ.items()
            if name not in ("BRICKS_RUN_DIR", "BRICKS_SOCKET", "BRICKS_PID_FILE", "BRICKS_LOG_FILE")}
    return {**kept, "PYTHONDONTWRITEBYTECODE": "1", **changes}


def run(command, **options):
    options.setdefault("env", environment())
    return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=options.pop("cwd", REPOSITORY), **options)


def one_line(text):
    assert text.count("\n") == 1 and text.endswith("\n") and "Traceback" not in text, text
    return text.rstrip("\n")


def write_program(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)


def path_without(directory, hidden):
    """A PATH directory of links to every command on PATH but those in hidden."""
    directory.mkdir()
    for entry in os.environ["PATH"].split(os.pathsep):
        if os.path.isdir(entry):
            for name in os.listdir(entry):
                if name not in hidden and not (directory / name).exists():
                    (directory / name).symlink_to(os.path.join(entry, name))
    return str(directory)


# ---------------------------------------------------------------- privileges

def test_a_refused_capability_is_named_once():
    message = str(BricksError("lo: cannot change offloads: Operation not permitted"))
    assert message == f"lo: cannot change offloads: Operation not permitted: {PRIVILEGES}"
    assert "CAP_NET_ADMIN" in message and "CAP_NET_RAW" in message
    assert str(BricksError(message)) == message                       # wrapped again: not repeated
    assert str(BricksError("x.pcap: Permission denied")) == "x.pcap: Permission denied"   # a file: no capability


def test_unprivileged_bricks_names_the_capabilities_it_lacks(shared_directory):
    script = shared_directory / "balance.lua"
    script.write_text('local pe = PktEngine.new("e0")\n'
                      'pe:link(Brick.new("LoadBalancer"):connect_input("lo"):connect_outputs("lo", 2))\n')
    script.chmod(0o644)
    done = run(unprivileged([sys.executable, "-m", "bricks", "-f", str(script)]))
    assert done.returncode == 1
    # Lua shortens a long chunk name from the left: the path's end, then the message.
    assert one_line(done.stderr).endswith(f"{script.name}:2: lo: cannot change offloads: Operation not permitted: "
                                          f"{PRIVILEGES}")


def test_unprivileged_daemon_names_the_run_directory():
    if os.access("/run", os.W_OK) and os.geteuid() != 0:
        pytest.skip("this user may write /run")
    done = run(unprivileged([sys.executable, "-m", "bricks", "-d"]))
    assert done.returncode == 1
    message = one_line(done.stderr)
    assert message.startswith("bricks: cannot create the pid file /run/bricks/bricks.pid: Permission denied on /run")
    assert message.endswith(": run as root, or set BRICKS_RUN_DIR to a directory you can write")


# ---------------------------------------------------------------- the demo

def test_demo_help():
    done = run([sys.executable, "-m", "bricks.demo", "-h"])
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("Usage: bricks-demo [OPTIONS]") and "needs root" in done.stdout


def test_demo_names_the_missing_tools_and_their_packages(tmp_path):
    done = run([sys.executable, "-m", "bricks.demo"],
               env=environment(PATH=path_without(tmp_path / "bin", {"ip", "sysctl"})))
    assert done.returncode == 1 and done.stdout == ""
    if os.geteuid() != 0:
        assert one_line(done.stderr).startswith("bricks-demo: a testbed creates a network namespace")
        return
    assert one_line(done.stderr) == ("bricks-demo: ip, sysctl: command not found: apt-get install iproute2 procps "
                                     "(bin/setup, run as root, installs them)")


def test_unprivileged_demo_says_to_run_as_root():
    done = run(unprivileged([sys.executable, "-m", "bricks.demo"]))
    assert done.returncode == 1
    assert one_line(done.stderr) == ("bricks-demo: a testbed creates a network namespace and veth pairs: run as root "
                                     "(it needs CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_NET_RAW)")


# ---------------------------------------------------------------- bin/

@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_launchers_without_a_venv_say_to_run_setup(tmp_path, launcher):
    checkout = Path(os.path.realpath(tmp_path))
    (checkout / "bin").mkdir()
    shutil.copy2(REPOSITORY / "bin" / launcher, checkout / "bin" / launcher)
    done = run([str(checkout / "bin" / launcher), "-h"], cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert one_line(done.stderr) == f"{launcher}: {checkout}/.venv is missing: run {checkout}/bin/setup first (as root)"


def fake_checkout(directory, apt_get_says=None, installed=False):
    """A copy of bin/setup beside a PATH where dpkg-query reports every package missing (or installed) and
    apt-get, if given, prints apt_get_says and fails (recording its arguments in apt-get.args)."""
    (directory / "bin").mkdir()
    shutil.copy2(REPOSITORY / "bin" / "setup", directory / "bin" / "setup")
    fake = directory / "fake-bin"
    fake.mkdir()
    answer = "echo 'install ok installed'" if installed else "exit 1"
    write_program(fake / "dpkg-query", f"#!/bin/sh\n{answer}\n")
    if apt_get_says is not None:
        write_program(fake / "apt-get", f'#!/bin/sh\necho "$@" >> {directory}/apt-get.args\n'
                                        f'echo "{apt_get_says}" >&2\nexit 100\n')
    return environment(PATH=f"{fake}:{os.environ['PATH']}", TMPDIR=str(directory))


def test_setup_without_root_names_the_missing_packages(shared_directory):
    done = run(unprivileged([str(shared_directory / "bin" / "setup")]), env=fake_checkout(shared_directory))
    assert done.returncode == 1 and done.stdout == ""
    message = one_line(done.stderr)
    assert message.startswith("bin/setup: Debian packages missing: build-essential python3-dev ")
    assert message.endswith(": run bin/setup as root (or apt-get install them first)")
    assert not (shared_directory / ".venv").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a checkout another user owns: run as root")
def test_setup_in_a_checkout_it_cannot_write_says_so(shared_directory):
    done = run(unprivileged([str(shared_directory / "bin" / "setup")]),
               env=fake_checkout(shared_directory, installed=True))
    assert done.returncode == 1
    assert done.stdout == "bin/setup: Debian packages: all present\n"
    assert one_line(done.stderr) == (f"bin/setup: cannot write {shared_directory} (for .venv and the native "
                                     f"module): run bin/setup as root or as its owner")


@pytest.mark.skipif(os.geteuid() != 0, reason="bin/setup runs apt-get only as root")
def test_setup_waits_for_then_reports_an_apt_lock(tmp_path):
    lock = "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)"
    done = run([str(tmp_path / "bin" / "setup")], env=fake_checkout(tmp_path, apt_get_says=lock))
    assert done.returncode == 1
    assert done.stdout == "bin/setup: updating the apt package lists\n"      # says what it does, step by step
    assert one_line(done.stderr) == ("bin/setup: apt is locked by another process (unattended-upgrades, another "
                                     "apt-get): wait for it, then run bin/setup again")
    assert "DPkg::Lock::Timeout=" in (tmp_path / "apt-get.args").read_text()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["apt-get.args", "bin", "fake-bin"]   # no log left


@pytest.mark.root
def test_an_unprivileged_user_cannot_stop_or_drive_roots_daemon_and_is_told_so(shared_directory):
    from tests.e2e.daemons import Paths, bricks

    paths = Paths(str(shared_directory))
    pid = paths.start_daemon()
    try:
        stop = run(unprivileged(bricks("bricks-kill-server")), env=paths.env)
        assert stop.returncode == 1
        assert one_line(stop.stderr) == (f"bricks: not allowed to stop the daemon (pid {pid}): run this as root, "
                                         f"or as the user the daemon runs as")
        shell = run(unprivileged(bricks("bricks-shell") + ["-c", "print(1)"]), env=paths.env)
        assert shell.returncode == 1
        assert one_line(shell.stderr) == (f"bricks: permission denied on {paths.socket}: only root or the daemon's "
                                          f"group may use it")
    finally:
        paths.kill_leftover()


@pytest.mark.skipif(os.geteuid() != 0, reason="bin/setup runs apt-get only as root")
def test_setup_names_apts_error_and_keeps_its_output(tmp_path):
    done = run([str(tmp_path / "bin" / "setup")],
               env=fake_checkout(tmp_path, apt_get_says="E: The repository 'x' does not have a Release file."))
    assert done.returncode == 1
    message = one_line(done.stderr)
    prefix = "bin/setup: apt-get update failed: E: The repository 'x' does not have a Release file. (full output: "
    assert message.startswith(prefix) and message.endswith(")")
    log = Path(message[len(prefix):-1])
    assert log.parent == tmp_path and "does not have a Release file" in log.read_text()


def test_unprivileged_real_time_engine_names_its_capability(shared_directory):
    script = shared_directory / "realtime.lua"
    source = shared_directory / "in.pcap"
    write_pcap(source, random_tcp_frames(3, seed=1))
    source.chmod(0o644)
    script.write_text(f'local pe = PktEngine.new("e0")\n'
                      f'pe:link(Brick.new("PcapReader"):connect_input("{source}"):connect_output("{source}.out"))\n'
                      f'pe:start()\n')
    script.chmod(0o644)
    os.chmod(shared_directory, 0o777)     # the unprivileged engine writes its output there
    done = run(unprivileged([sys.executable, "-m", "bricks", "--realtime", "5", "-f", str(script)]))
    assert done.returncode == 1
    assert one_line(done.stderr).endswith("realtime.lua:3: engine e0: cannot run at real-time priority 5: "
                                          "Operation not permitted (it needs root or CAP_SYS_NICE)")


CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")


@pytest.mark.root
@pytest.mark.skipif(not (CPU_CGROUPS / "cpu.rt_runtime_us").exists(),
                    reason="no cgroup v1 cpu hierarchy with RT group scheduling (CONFIG_RT_GROUP_SCHED)")
def test_real_time_refused_by_a_cpu_cgroup_names_the_cgroup(tmp_path):
    """Root, with CAP_SYS_NICE, in a cpu cgroup without real-time runtime (a new one has cpu.rt_runtime_us 0, as a
    service's under systemd on such kernels): the kernel refuses SCHED_FIFO; the error names the cgroup, not a
    capability."""
    source = tmp_path / "in.pcap"
    write_pcap(source, random_tcp_frames(3, seed=1))
    script = tmp_path / "realtime.lua"
    script.write_text(f'local pe = PktEngine.new("e0")\n'
                      f'pe:link(Brick.new("PcapReader"):connect_input("{source}"):connect_output("{source}.out"))\n'
                      f'pe:start()\n')
    group = CPU_CGROUPS / f"bricks-test-{os.getpid()}"
    group.mkdir()
    try:
        assert (group / "cpu.rt_runtime_us").read_text().strip() == "0"
        joined = f'echo $$ > {group / "cgroup.procs"} && exec "$@"'
        done = run(["sh", "-c", joined, "sh", sys.executable, "-m", "bricks", "--realtime", "5", "-f", str(script)])
    finally:
        group.rmdir()
    assert done.returncode == 1
    assert one_line(done.stderr).endswith(f"realtime.lua:3: engine e0: cannot run at real-time priority 5: Operation "
                                          f"not permitted (its cpu cgroup /{group.name} has no real-time runtime: "
                                          "cpu.rt_runtime_us)")


def test_a_refused_testbed_leaves_nothing_behind(monkeypatch):
    from bricks import testbed

    def refuse(name):
        raise PermissionError(1, "Operation not permitted", f"/run/netns/{name}")
    monkeypatch.setattr(testbed, "require_privileges", lambda: None)     # as root in a container that forbids it
    monkeypatch.setattr(testbed.netns, "create", refuse)
    bed = testbed.Testbed()
    assert os.path.isdir(bed.directory)
    with pytest.raises(PermissionError):
        with bed:
            pass
    assert not os.path.exists(bed.directory)
