"""End to end: a daemon's counters as data while real packets flow: `bricks stats --json`, BRICKS.stats() and
pe:stats(), the bricks.status file, Prometheus /metrics scraped by a real Prometheus server, and `bricks top`
driven in tmux.

The daemon runs two engines: "lb", a LoadBalancer from one veth to two pipes,
and "flt", a Filter from another veth to one pipe with a drop rule, so rules
and their hits show too. Every frame sent is accounted for: delivered to a
pipe, or counted where it went.
"""
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from bricks.frames import pad, udp_frame
from bricks.testbed import wait_for_total
from tests.e2e.daemons import WAIT, bricks, wait_until

pytestmark = pytest.mark.root

SCRIPT = """\
local lb = Brick.new("LoadBalancer")
lb:connect_input(arg[1])
lb:connect_outputs(arg[1], 2)
local balancing = PktEngine.new("lb")
balancing:link(lb)
balancing:start()
local filter = Brick.new("Filter")
filter:connect_input(arg[2])
filter:connect_output(arg[2] .. "{0")
local filtering = PktEngine.new("flt")
filtering:link(filter)
filtering:start()
Filter.retrieve(arg[2] .. "{0"):drop{src = "10.0.0.3"}
"""
PASSED, DROPPED = "10.0.0.1", "10.0.0.3"


def flows(source, count, first_port=1000):
    return [pad(udp_frame(source, "10.0.1.%d" % (number % 200 + 1), first_port + number, 53))
            for number in range(count)]


class Broker:
    """The daemon with its two inputs and a reader on each pipe."""

    def __init__(self, paths, testbed, tmp_path, *daemon_args):
        self.paths = paths
        self.testbed = testbed
        self.balanced_if, self.balanced_ns = testbed.add_input("lb")
        self.filtered_if, self.filtered_ns = testbed.add_input("fl")
        script = tmp_path / "metrics.lua"
        script.write_text(SCRIPT)
        paths.start_daemon("-f", str(script), *daemon_args, self.balanced_if, self.filtered_if)
        self.readers = [testbed.reader(f"{self.balanced_if}}}{index}", in_namespace=False) for index in range(2)]
        self.filter_reader = testbed.reader(f"{self.filtered_if}}}0", in_namespace=False)

    @property
    def pipes(self):
        """The LoadBalancer's outputs as the broker names them (the broker's ends, IF{N; readers read IF}N)."""
        return [f"{self.balanced_if}{{{index}" for index in range(2)]

    def send(self, balanced, passed=0, dropped=0, pps=5000, first_port=1000):
        """Frames to the LoadBalancer (all delivered) and to the Filter (passed ones delivered, the others
        dropped by the rule); returns once every delivered one reached its pipe."""
        before = sum(len(reader.read_so_far()) for reader in self.readers)
        filtered_before = len(self.filter_reader.read_so_far())
        if balanced:
            self.testbed.send(self.balanced_ns, flows(PASSED, balanced, first_port), pps=pps)
        if passed or dropped:
            self.testbed.send(self.filtered_ns, flows(PASSED, passed) + flows(DROPPED, dropped), pps=pps)
        assert wait_for_total(self.readers, before + balanced) == before + balanced
        assert wait_for_total([self.filter_reader], filtered_before + passed) == filtered_before + passed

    def stats_json(self):
        result = self.paths.run("bricks", "stats", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def stop(self):
        for reader in self.readers + [self.filter_reader]:
            reader.stop()
        result = self.paths.run("bricks-kill-server")
        assert result.returncode == 0, result.stderr


def engine_named(snapshot, name):
    return next(engine for engine in snapshot["engines"] if engine["name"] == name)


def assert_accounted(engine, expected):
    """received = delivered + every drop + queued, and the engine read exactly the frames sent."""
    outputs = [output for brick in engine["bricks"] for output in brick["outputs"]]
    delivered = sum(output["packets"] for output in outputs)
    filtered = sum(brick.get("rule_dropped", 0) + brick.get("expression_rejected", 0) for brick in engine["bricks"])
    assert engine["packets"] == expected
    assert engine["packets"] == delivered + filtered + engine["drops"] + engine["queued"]


def test_stats_as_json_lua_tables_and_the_status_file(paths, testbed, tmp_path):
    broker = Broker(paths, testbed, tmp_path)
    status_path = os.path.join(paths.run_dir, "bricks.status")
    try:
        # Written as soon as the daemon is ready: the engines, nothing counted yet.
        first = json.load(open(status_path))
        assert [engine["name"] for engine in first["engines"]] == ["lb", "flt"]
        assert engine_named(first, "lb")["rates"]["packets_per_second"] == 0.0
        broker.send(300, passed=40, dropped=25)

        snapshot = broker.stats_json()
        balanced, filtered = engine_named(snapshot, "lb"), engine_named(snapshot, "flt")
        assert_accounted(balanced, 300)
        assert_accounted(filtered, 65)
        assert [output["name"] for output in balanced["bricks"][0]["outputs"]] == broker.pipes
        assert balanced["drops"] == 0 and all(output["full"] == 0 for output in balanced["bricks"][0]["outputs"])
        assert filtered["bricks"][0]["rule_dropped"] == 25 and filtered["bricks"][0]["passed"] == 40
        (rules,) = snapshot["filters"]
        assert rules["filter"] == f"{broker.filtered_if}{{0"
        assert [(rule["action"], rule["src"], rule["hits"]) for rule in rules["rules"]] == [("drop", DROPPED, 25)]

        # As text: the BRICKS.show_stats() table, then each engine's pe:show_stats().
        text = paths.run("bricks", "stats")
        assert text.returncode == 0, text.stderr
        assert "Engine lb: 300 packets, 18000 bytes, 0 dropped" in text.stdout
        assert text.stdout.splitlines()[0].split() == ["Engine", "Packet", "Cnt", "Byte", "Cnt", "Packet", "Drop"]

        # The same counters as Lua tables, from a remote shell.
        chunk = ('local s = PktEngine.retrieve("lb"):stats() '
                 'local o = s.bricks[1].outputs '
                 'local all = BRICKS.stats() '
                 'print(s.packets, #o, o[1].packets + o[2].packets, #all.engines, all.engines[2].name, '
                 'all.filters[1].rules[1].hits, all.backend)')
        result = paths.remote(chunk)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\t") == ["300", "2", "300", "2", "flt", "25", snapshot["backend"] + "\n"]

        # Rewritten every 5 s: the write that first sees the packets carries their rate since the one before.
        def counted():
            written = json.load(open(status_path))
            return written if engine_named(written, "lb")["packets"] == 300 else None
        assert wait_until(counted, 12)
        written = counted()
        lb_rates = engine_named(written, "lb")["rates"]
        assert lb_rates["packets_per_second"] > 0 and written["interval"] == 5.0
        assert lb_rates["bits_per_second"] == pytest.approx(lb_rates["packets_per_second"] * 60 * 8)
        assert engine_named(written, "lb")["bricks"][0]["rates"] == lb_rates
        outputs = engine_named(written, "lb")["bricks"][0]["outputs"]
        assert sum(output["rates"]["packets_per_second"] for output in outputs) == \
            pytest.approx(lb_rates["packets_per_second"])
        # Nothing sent since: the next write's rates are zero, and readers never see a half-written file.
        seen = written["time"]
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            latest = json.load(open(status_path))
            if latest["time"] != seen:
                break
            time.sleep(0.05)
        assert latest["time"] != seen and engine_named(latest, "lb")["rates"]["packets_per_second"] == 0.0
        assert [name for name in os.listdir(paths.run_dir) if name.startswith("bricks.status")] == ["bricks.status"]
        broker.stop()
        # Removed on exit, with the socket and the pid file.
        assert not {"bricks.status", "bricks.sock", "bricks.pid"} & set(os.listdir(paths.run_dir))
    finally:
        paths.kill_leftover()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Prometheus:
    """A real Prometheus server on loopback scraping one target every second, its storage in tmp_path."""

    def __init__(self, tmp_path, target):
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          "scrape_configs:\n  - job_name: bricks\n"
                          f"    static_configs:\n      - targets: ['{target}']\n")
        self.log = open(tmp_path / "prometheus.log", "w")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, expression):
        """The instant vector of expression as {frozenset(labels): value}, or None when the server is not up."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                body = json.load(answer)
        except OSError:
            return None
        assert body["status"] == "success", body
        return {frozenset(item["metric"].items()): float(item["value"][1]) for item in body["data"]["result"]}

    def value_becomes(self, expression, expected, timeout=30):
        """Waits until the query's single value is expected; returns the last value seen."""
        seen = [None]

        def reached():
            result = self.query(expression)
            seen[0] = list(result.values()) if result else result
            return seen[0] == [expected]
        assert wait_until(reached, timeout), f"{expression}: {seen[0]}, expected {expected}"

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.log.close()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package is not installed")
def test_prometheus_scrapes_counters_moving_while_traffic_flows(paths, testbed, tmp_path):
    metrics_port = free_port()
    broker = Broker(paths, testbed, tmp_path, "--metrics", f"127.0.0.1:{metrics_port}")
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{metrics_port}")
    try:
        lb = 'engine="lb"'
        prometheus.value_becomes("bricks_up", 1.0)
        prometheus.value_becomes(f"sum(bricks_output_packets_total{{{lb}}})", 0.0)
        for total in (400, 800):
            broker.send(400, first_port=total)
            prometheus.value_becomes(f"sum(bricks_output_packets_total{{{lb}}})", float(total))
            prometheus.value_becomes(f"bricks_engine_received_packets_total{{{lb}}}", float(total))
            prometheus.value_becomes(f"sum(bricks_output_bytes_total{{{lb}}})", float(total * 60))
        # Per output, with the brick and the output as labels; no drop of any cause.
        per_output = prometheus.query(f"bricks_output_packets_total{{{lb}}}")
        assert sorted(dict(labels)["output"] for labels in per_output) == broker.pipes
        assert {dict(labels)["brick"] for labels in per_output} == {"LoadBalancer#0"}
        assert sum(per_output.values()) == 800
        drops = prometheus.query(f"bricks_output_drops_total{{{lb}}}")
        assert {dict(labels)["cause"] for labels in drops} >= {"full", "too_big", "gone", "kernel_output"}
        assert set(drops.values()) == {0.0}
        # The Filter's rule and its hits.
        broker.send(0, passed=30, dropped=20)
        prometheus.value_becomes('bricks_filter_rule_hits_total{engine="flt",action="drop"}', 20.0)
        prometheus.value_becomes('bricks_filter_rules{engine="flt"}', 1.0)
        prometheus.value_becomes('sum(bricks_output_packets_total{engine="flt"})', 30.0)
        backend = prometheus.query("bricks_backend_info")
        assert [dict(labels)["backend"] for labels in backend] == [broker.stats_json()["backend"]]
        broker.stop()
        # The daemon gone, its port is closed: the scrape fails and Prometheus says so (up == 0).
        prometheus.value_becomes('up{job="bricks"}', 0.0)
    finally:
        prometheus.stop()
        paths.kill_leftover()


@pytest.mark.parametrize("command", [["stats"], ["stats", "--json"], ["top"]])
def test_no_daemon_is_one_line(paths, command):
    result = paths.run("bricks", *command)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"bricks: no daemon listening on {paths.socket}\n"


def test_metrics_port_taken_is_one_line_and_no_daemon(paths, testbed, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = paths.run("bricks-server", "--metrics", f"127.0.0.1:{port}", timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"bricks: cannot serve metrics on 127.0.0.1:{port}: Address already in use\n"
    assert not os.path.exists(paths.socket) and not os.path.exists(paths.pid_file)


class Tmux:
    """A private tmux server (its own socket name) with one pane running a command; killed on close."""

    def __init__(self, command):
        self.server = f"bricks-test-{uuid.uuid4().hex[:8]}"
        # The shell after the command shows how it ended, and keeps the pane to read it.
        shell = f'{command}; echo "top exited with status $?"; sleep 60'
        self.tmux("new-session", "-d", "-x", "150", "-y", "40", shell)

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.server] + list(args), capture_output=True, text=True,
                              timeout=WAIT, check=True).stdout

    def screen(self):
        return self.tmux("capture-pane", "-p")

    def keys(self, *keys):
        self.tmux("send-keys", *keys)

    def close(self):
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=WAIT)


def row_of(screen, output):
    """The cells of output's row in the view: Brick, Output, Mpps, Gbit/s, Drops/s, Packets, Dropped."""
    for line in screen.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 8 and cells[2] == output:
            return cells[1:]
    return None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("quit_keys", [["q"], ["C-c"]])
def test_top_shows_rates_per_output_in_tmux_and_quits_cleanly(paths, testbed, tmp_path, quit_keys):
    broker = Broker(paths, testbed, tmp_path)
    # The pane's own size, not a COLUMNS that the shell tmux starts may export (80 under pytest).
    command = " ".join(["env", "-u", "COLUMNS", "-u", "LINES"] + bricks("bricks") + ["top", "-a", paths.socket])
    view = Tmux(command)
    sender = None
    try:
        assert wait_until(lambda: row_of(view.screen(), broker.pipes[0]) is not None), view.screen()
        # 6,000 frames at 2,000/s: three seconds of traffic, the view redrawn each second meanwhile.
        sender = threading.Thread(target=broker.send, args=(6000,), kwargs={"pps": 2000})
        sender.start()

        def moving():
            rows = [row_of(view.screen(), pipe) for pipe in broker.pipes]
            return rows if all(row and float(row[2]) > 0 and int(row[5]) > 0 for row in rows) else None
        assert wait_until(moving, 10), view.screen()
        rows = moving()
        for row in rows:
            brick, _, mpps, gbits, drops, packets, dropped = row
            assert brick == "LoadBalancer#0" and drops == "0" and dropped == "0"
            assert 0 < float(mpps) < 0.01 and float(gbits) == pytest.approx(float(mpps) * 60 * 8 / 1000, rel=0.01)
        sender.join(30)
        assert not sender.is_alive()
        assert wait_until(lambda: sum(int(row_of(view.screen(), pipe)[5]) for pipe in broker.pipes) == 6000)
        view.keys(*quit_keys)
        assert wait_until(lambda: "top exited with status 0" in view.screen()), view.screen()
        assert row_of(view.screen(), broker.pipes[0]) is None     # the view's screen is gone, the shell's is back
        broker.stop()
    finally:
        if sender is not None:
            sender.join(30)
        view.close()
        paths.kill_leftover()
