"""Control-plane latency: remote-shell round trip of BRICKS.print_status() and engine start/stop, on a real daemon.

Run (root): .venv/bin/python bench/bench_control.py [--calls 200] [--cycles 20]
Starts a daemon with private paths, talks to it over its Unix socket with the
remote shell's protocol, and times, on a namespace testbed interface balanced
to 4 veth pipes: pe:start(), pe:stop(), and a whole link + start + stop +
delete cycle (pipes created and removed). Also times `bricks-shell -c`, the
whole command, Python start-up included.
"""
import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bricks.protocol import receive_message, send_message  # noqa: E402
from bricks.testbed import Testbed  # noqa: E402

ROUND_TRIP_TARGET_MS = 5.0
ENGINE_TARGET_MS = 100.0
PIPES = 4


class Connection:
    """A raw protocol connection to the daemon (what bricks-shell does, minus the terminal)."""

    def __init__(self, path):
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.connect(path)
        greeting = receive_message(self.socket)
        if "hello" not in greeting:
            raise SystemExit(f"bench: refused by the daemon: {greeting}")

    def run(self, chunk):
        send_message(self.socket, {"op": "run", "chunk": chunk, "mode": "line"})
        output = ""
        while True:
            message = receive_message(self.socket)
            if "output" in message:
                output += message["output"]
            elif message.get("error"):
                raise SystemExit(f"bench: {chunk!r} failed: {message['error']}")
            else:
                return output

    def timed(self, chunk):
        start = time.perf_counter()
        self.run(chunk)
        return (time.perf_counter() - start) * 1000.0


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def machine_facts():
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from bricks.lua import LuaRuntime
    lua = LuaRuntime(output=lambda text: None).lua_implementation
    return [("CPU", f"{model}, {os.cpu_count()} cores"), ("kernel", platform.release()),
            ("Python", platform.python_version()), ("Lua", lua)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="print_status round trips")
    parser.add_argument("--cycles", type=int, default=20, help="engine start/stop cycles")
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (veth pipes, namespaces)")

    base = tempfile.mkdtemp(prefix="bricks-bench-")
    environment = dict(os.environ, BRICKS_RUN_DIR=base, BRICKS_LOG_FILE=os.path.join(base, "bricks.log"))
    command = [sys.executable, "-m", "bricks"]
    rows = []
    try:
        with Testbed() as bed:
            host_if, _ = bed.add_input("in")
            subprocess.run(command + ["bricks-server"], env=environment, check=True, timeout=60)
            try:
                connection = Connection(os.path.join(base, "bricks.sock"))
                for _ in range(10):
                    connection.run("BRICKS.print_status()")      # warm-up
                trips = [connection.timed("BRICKS.print_status()") for _ in range(arguments.calls)]
                rows.append(("print_status() round trip", trips, ROUND_TRIP_TARGET_MS))

                connection.run(f'pe = PktEngine.new("bench"); lb = Brick.new("LoadBalancer"); '
                               f'lb:connect_input("{host_if}"); lb:connect_outputs("{host_if}", {PIPES}); '
                               f'pe:link(lb)')
                starts, stops = [], []
                for _ in range(arguments.cycles):
                    starts.append(connection.timed("pe:start()"))
                    stops.append(connection.timed("pe:stop()"))
                rows.append(("pe:start()", starts, ENGINE_TARGET_MS))
                rows.append(("pe:stop()", stops, ENGINE_TARGET_MS))
                connection.run("pe:delete()")

                cycles = []
                for number in range(min(arguments.cycles, 10)):
                    cycles.append(connection.timed(
                        f'local e = PktEngine.new("cycle{number}"); local b = Brick.new("LoadBalancer"); '
                        f'b:connect_input("{host_if}"); b:connect_outputs("{host_if}", {PIPES}); '
                        f'e:link(b); e:start(); e:stop(); e:delete()'))
                rows.append((f"link+start+stop+delete, {PIPES} pipes", cycles, None))

                shells = []
                for _ in range(10):
                    start = time.perf_counter()
                    subprocess.run(command + ["bricks-shell", "-c", "BRICKS.print_status()"], env=environment,
                                   check=True, capture_output=True, timeout=30)
                    shells.append((time.perf_counter() - start) * 1000.0)
                rows.append(("bricks-shell -c (whole command)", shells, None))
            finally:
                subprocess.run(command + ["bricks-kill-server"], env=environment, timeout=30)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    for name, value in machine_facts():
        print(f"{name:<8} {value}")
    print()
    print(f"{'measure':<38} {'n':>4} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}  target")
    for name, values, target in rows:
        median, p99 = statistics.median(values), percentile(values, 0.99)
        verdict = "" if target is None else f"< {target:g} ms median: {'ok' if median < target else 'MISSED'}"
        print(f"{name:<38} {len(values):>4} {median:>10.3f} {p99:>8.3f} {max(values):>8.3f}  {verdict}")


if __name__ == "__main__":
    main()
