"""Private daemons and shells for end-to-end tests: run paths, spawning, bounded waits."""
import os
import signal
import subprocess
import sys
import time

import pexpect

from bricks.server import running_pid

WAIT = 15
PROMPT = "bricks> "


def bricks(name="bricks"):
    return [sys.executable, "-m", "bricks", name]


class Paths:
    """A private run directory, log file and home for one test's daemons and shells."""

    def __init__(self, base):
        self.run_dir = os.path.join(base, "run")
        self.log = os.path.join(base, "bricks.log")
        self.home = base
        self.env = dict(os.environ, BRICKS_RUN_DIR=self.run_dir, BRICKS_LOG_FILE=self.log, HOME=base,
                        PYTHONUNBUFFERED="1")
        for name in ("BRICKS_SOCKET", "BRICKS_PID_FILE", "BRICKS_GROUP", "BRICKS_RESTRICTED", "BRICKS_CHUNK_TIMEOUT",
                     "BRICKS_METRICS"):
            self.env.pop(name, None)

    @property
    def socket(self):
        return os.path.join(self.run_dir, "bricks.sock")

    @property
    def pid_file(self):
        return os.path.join(self.run_dir, "bricks.pid")

    def run(self, command, *args, stdin=None, timeout=WAIT, **kwargs):
        return subprocess.run(bricks(command) + list(args), input=stdin, capture_output=True, text=True,
                              env=self.env, timeout=timeout, **kwargs)

    def start_daemon(self, *args, command="bricks-server"):
        result = self.run(command, *args, timeout=60)
        assert result.returncode == 0, result.stderr
        assert running_pid(self.pid_file) is not None
        return running_pid(self.pid_file)

    def remote(self, chunk):
        return self.run("bricks-shell", "-c", chunk)

    def spawn(self, command, *args):
        return pexpect.spawn(bricks(command)[0], bricks(command)[1:] + list(args), env=self.env,
                             encoding="utf-8", timeout=WAIT, dimensions=(24, 200))

    def kill_leftover(self):
        pid = running_pid(self.pid_file)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: not alive(pid), 10):
            os.kill(pid, signal.SIGKILL)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as status:
        return status.read().rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
