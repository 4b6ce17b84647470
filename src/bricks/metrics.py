"""Counters for machines: the daemon's snapshot as data, rates, the status file and the Prometheus exporter.

Everything here reads the snapshots stats.py publishes (`engine.stats()`, read
under each engine's lock); nothing runs per packet, and nothing updates a gauge
in the background: a scrape, a status write or a `bricks stats` request reads
the counters at that moment.

The daemon snapshot (`daemon_snapshot`, what `bricks stats --json`,
BRICKS.stats() and the status file carry):

    {"time", "pid", "backend", "backend_detail",
     "engines": [stats.engine_snapshot(...), ...],
     "filters": [{"engine", "filter" (its first output's name), "rules": [f:rules() entries]}]}

`add_rates(snapshot, previous)` adds a "rates" dict (packets_per_second,
bits_per_second, drops_per_second) to every engine, brick (what it received,
what its outputs lost) and output, from the counters' growth since `previous`.
"""
import json
import os
import threading
import time

from . import engine, stats
from .errors import BricksError

STATUS_FILE_NAME = "bricks.status"
STATUS_INTERVAL = 5.0             # seconds between two writes of the status file (the original's period)
DEFAULT_METRICS_HOST = "127.0.0.1"   # --metrics PORT alone: loopback, never every interface by surprise


def brick_label(index, brick):
    """How a brick is named in labels and the live view: its kind and its place in the engine (bricks have no
    names of their own)."""
    return f"{brick['kind']}#{index}"


def _filters_of(known):
    """[(filter name, FilterRules)] for the Filter bricks linked in an engine."""
    with known.lock:
        bricks = [brick for linked in known.linked for brick in linked.bricks]
    return [(brick.outputs[0].name if brick.outputs else f"Filter#{index}", brick.argument)
            for index, brick in enumerate(bricks) if brick.kind.name == "Filter"]


def daemon_snapshot():
    """Every engine's snapshot, the back-end and each linked Filter's rules with their hits (see the docstring)."""
    engines = engine.engines()
    filters = [{"engine": known.name, "filter": name,
                "rules": rules.rules()}
               for known in engines for name, rules in _filters_of(known)]
    return {"time": time.time(), "pid": os.getpid(), "backend": engine.backend_name(),
            "backend_detail": engine.backend_detail(), "engines": [known.stats() for known in engines],
            "filters": filters}


def output_drops(output):
    """Every packet an output lost: the broker's drops (by cause) and the kernel's on transmit."""
    return output["drops"] + output["kernel_drops"]


def _rates(now, before, seconds):
    """packets/s, bits/s and drops/s between two counter dicts with packets, bytes and drops."""
    if before is None or seconds <= 0:
        return {"packets_per_second": 0.0, "bits_per_second": 0.0, "drops_per_second": 0.0}
    # A counter that went back (an engine deleted and made anew under the same name) restarts from zero.
    grown = {key: now[key] - before[key] if now[key] >= before[key] else now[key]
             for key in ("packets", "bytes", "drops")}
    return {"packets_per_second": grown["packets"] / seconds, "bits_per_second": grown["bytes"] * 8 / seconds,
            "drops_per_second": grown["drops"] / seconds}


def _output_counters(output):
    return {"packets": output["packets"], "bytes": output["bytes"], "drops": output_drops(output)}


def _brick_counters(brick):
    return {"packets": brick["received"], "bytes": brick["received_bytes"],
            "drops": sum(output_drops(output) for output in brick["outputs"])}


def brick_rows(snapshot):
    """(engine, brick label) and the brick's snapshot, for every brick of every engine."""
    for known in snapshot["engines"]:
        for index, brick in enumerate(known["bricks"]):
            yield (known["name"], brick_label(index, brick)), brick


def output_rows(snapshot):
    """(engine, brick label, output) and the output's snapshot, for every output of every engine."""
    for known in snapshot["engines"]:
        for index, brick in enumerate(known["bricks"]):
            for output in brick["outputs"]:
                yield (known["name"], brick_label(index, brick), output["name"]), output


def add_rates(snapshot, previous):
    """snapshot, with "rates" in each engine and each output: the growth since previous (None: zeros)."""
    seconds = snapshot["time"] - previous["time"] if previous else 0.0
    engines_before = {known["name"]: known for known in previous["engines"]} if previous else {}
    bricks_before = dict(brick_rows(previous)) if previous else {}
    outputs_before = dict(output_rows(previous)) if previous else {}
    for known in snapshot["engines"]:
        before = engines_before.get(known["name"])
        known["rates"] = _rates(known, before, seconds)
    for key, brick in brick_rows(snapshot):
        before = bricks_before.get(key)
        brick["rates"] = _rates(_brick_counters(brick), before and _brick_counters(before), seconds)
    for key, output in output_rows(snapshot):
        before = outputs_before.get(key)
        output["rates"] = _rates(_output_counters(output), before and _output_counters(before), seconds)
    return snapshot


# ---------------------------------------------------------------- the status file

def status_path(socket_path):
    """bricks.status beside the daemon's socket, in its run directory."""
    return os.path.join(os.path.dirname(os.path.abspath(socket_path)), STATUS_FILE_NAME)


def write_atomically(path, text):
    """A reader sees the old file or the new one, never half of one: a temporary file renamed over it."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


class StatusFile:
    """The daemon's bricks.status (JSON, the daemon snapshot with rates), rewritten every `interval` seconds by a
    thread until stop(), which removes it."""

    def __init__(self, path, interval=STATUS_INTERVAL, log=None):
        self.path = path
        self.interval = interval
        self.log = log
        self.previous = None
        self.stopping = threading.Event()
        self.thread = None
        self.failing = False          # logged once, not every 5 s

    def write(self):
        try:
            snapshot = add_rates(daemon_snapshot(), self.previous)
            snapshot["interval"] = self.interval
            write_atomically(self.path, json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
        except Exception as error:      # the thread must live on: the next write may succeed
            if not self.failing and self.log is not None:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else error
                self.log.warning("cannot write the status file %s: %s", self.path, reason)
            self.failing = True
            return
        self.failing = False
        self.previous = snapshot

    def start(self):
        self.write()      # there from the moment the daemon is ready
        self.thread = threading.Thread(target=self._run, name="bricks-status", daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.wait(self.interval):
            self.write()

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------- Prometheus

# The engine's drop counters by cause: (snapshot key, cause label).
ENGINE_DROP_CAUSES = (("kernel_drops", "kernel_input"),) + tuple(
    (f"output_{cause}", cause) for cause, _ in stats.DROP_CAUSES) + (("transmit_drops", "kernel_output"),)
OUTPUT_DROP_CAUSES = tuple((cause, cause) for cause, _ in stats.DROP_CAUSES) + (("kernel_drops", "kernel_output"),)


class SnapshotCollector:
    """A prometheus_client collector: at each scrape, the daemon snapshot as metric families."""

    def __init__(self, snapshot=daemon_snapshot):
        self.snapshot = snapshot

    def describe(self):
        return []     # nothing at registration: the families depend on the engines of the moment

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
        snapshot = self.snapshot()
        up = GaugeMetricFamily("bricks_up", "1 while the bricks daemon answers")
        up.add_metric([], 1)
        yield up
        backend = InfoMetricFamily("bricks_backend", "The packet I/O back-end in use")
        backend.add_metric([], {"backend": snapshot["backend"], "detail": snapshot["backend_detail"]})
        yield backend

        def counter(name, text, labels):
            return CounterMetricFamily(name, text, labels=labels)

        running = GaugeMetricFamily("bricks_engine_running", "1 while the engine runs", labels=["engine"])
        received = counter("bricks_engine_received_packets", "Packets the engine read", ["engine"])
        received_bytes = counter("bricks_engine_received_bytes", "Bytes the engine read", ["engine"])
        engine_drops = counter("bricks_engine_drops", "Packets the engine lost, by cause", ["engine", "cause"])
        queued = GaugeMetricFamily("bricks_engine_queued_packets", "Packets waiting for room at an output",
                                   labels=["engine"])
        brick_received = counter("bricks_brick_received_packets", "Packets a brick received", ["engine", "brick"])
        brick_events = counter("bricks_brick_events", "A brick's own counters (malformed, filtered, "
                               "rule_dropped, ...)", ["engine", "brick", "counter"])
        packets = counter("bricks_output_packets", "Packets delivered to an output", ["engine", "brick", "output"])
        size = counter("bricks_output_bytes", "Bytes delivered to an output", ["engine", "brick", "output"])
        drops = counter("bricks_output_drops", "Packets an output lost, by cause",
                        ["engine", "brick", "output", "cause"])
        for known in snapshot["engines"]:
            name = known["name"]
            running.add_metric([name], 1 if known["running"] else 0)
            received.add_metric([name], known["packets"])
            received_bytes.add_metric([name], known["bytes"])
            queued.add_metric([name], known["queued"])
            for key, cause in ENGINE_DROP_CAUSES:
                engine_drops.add_metric([name, cause], known[key])
            for index, brick in enumerate(known["bricks"]):
                label = brick_label(index, brick)
                brick_received.add_metric([name, label], brick["received"])
                for key, value in brick.items():
                    if key not in ("kind", "received", "received_bytes", "outputs") and isinstance(value, int):
                        brick_events.add_metric([name, label, key], value)
                for output in brick["outputs"]:
                    labels = [name, label, output["name"]]
                    packets.add_metric(labels, output["packets"])
                    size.add_metric(labels, output["bytes"])
                    for key, cause in OUTPUT_DROP_CAUSES:
                        drops.add_metric(labels + [cause], output[key])
        yield from (running, received, received_bytes, engine_drops, queued, brick_received, brick_events,
                    packets, size, drops)
        rules = GaugeMetricFamily("bricks_filter_rules", "Live rules of a Filter", labels=["engine", "filter"])
        hits = counter("bricks_filter_rule_hits", "Packets a Filter rule matched",
                       ["engine", "filter", "rule", "action"])
        hit_bytes = counter("bricks_filter_rule_bytes", "Bytes a Filter rule matched",
                            ["engine", "filter", "rule", "action"])
        for listed in snapshot["filters"]:
            rules.add_metric([listed["engine"], listed["filter"]], len(listed["rules"]))
            for rule in listed["rules"]:
                labels = [listed["engine"], listed["filter"], str(rule["id"]), rule["action"]]
                hits.add_metric(labels, rule["hits"])
                hit_bytes.add_metric(labels, rule["bytes"])
        yield from (rules, hits, hit_bytes)


def parse_address(text):
    """--metrics ADDRESS: "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" -> (host, port); loopback when no host."""
    host, separator, port = text.rpartition(":")
    if not separator:
        host, port = "", text
    host = host.strip("[]") or DEFAULT_METRICS_HOST
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BricksError(f"--metrics {text}: expected [HOST:]PORT with PORT 1..65535")
    return host, int(port)


class MetricsServer:
    """/metrics over HTTP (prometheus_client's own server thread), collecting at each scrape."""

    def __init__(self, address, snapshot=daemon_snapshot):
        from prometheus_client import CollectorRegistry, start_http_server
        self.host, self.port = parse_address(address)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(snapshot))
        try:
            self.server, self.thread = start_http_server(self.port, self.host, registry=registry)
        except OSError as error:
            raise BricksError(f"cannot serve metrics on {self.host}:{self.port}: "
                              f"{error.strerror or error}") from None

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
