"""The pure parts of metrics.py and top.py: rates between snapshots, the status file's atomic rewrite and removal,
the Prometheus families a snapshot becomes, --metrics addresses, and the live view's rows."""
import io
import json
import os
import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from bricks import metrics, top
from bricks.errors import BricksError
from bricks.stats import DROP_CAUSES


def output(name, packets, size, full=0, kernel_drops=0):
    made = {"name": name, "packets": packets, "bytes": size, "drops": full, "kernel_drops": kernel_drops,
            "queued": 0}
    made.update((cause, 0) for cause, _ in DROP_CAUSES)
    made["full"] = full
    return made


def snapshot(at, delivered, full=0, rules=()):
    """One engine "lb", a LoadBalancer with outputs p0 and p1 (delivered packets each, 60 bytes a packet)."""
    outputs = [output("p0", delivered, 60 * delivered, full), output("p1", delivered, 60 * delivered)]
    engine = {"name": "lb", "time": at, "running": True, "finished": False, "packets": 2 * delivered + full,
              "bytes": 60 * (2 * delivered + full), "drops": full, "kernel_drops": 0, "output_drops": full,
              "transmit_drops": 0, "queued": 0, "input_malformed": 0, "problems": [],
              "bricks": [{"kind": "LoadBalancer", "received": 2 * delivered + full,
                          "received_bytes": 60 * (2 * delivered + full), "malformed": 0, "fragment_fallbacks": 0,
                          "filtered": 0, "outputs": outputs}]}
    engine.update((f"output_{cause}", 0) for cause, _ in DROP_CAUSES)
    engine["output_full"] = full
    return {"time": at, "pid": 1, "backend": "packet", "backend_detail": "auto", "engines": [engine],
            "filters": [{"engine": "lb", "filter": "f{0", "rules": list(rules)}]}


def test_rates_are_the_growth_over_the_seconds_between_snapshots():
    before, now = snapshot(100.0, 1000), snapshot(102.0, 3000, full=400)
    metrics.add_rates(now, before)
    engine = now["engines"][0]
    assert engine["rates"] == {"packets_per_second": 2200.0, "bits_per_second": 2200 * 480.0,
                               "drops_per_second": 200.0}
    assert engine["bricks"][0]["rates"] == engine["rates"]     # the one brick received all the engine read
    p0, p1 = engine["bricks"][0]["outputs"]
    assert p0["rates"] == {"packets_per_second": 1000.0, "bits_per_second": 480000.0, "drops_per_second": 200.0}
    assert p1["rates"]["drops_per_second"] == 0.0


def test_first_snapshot_has_zero_rates_and_a_restarted_engine_counts_from_zero():
    first = metrics.add_rates(snapshot(1.0, 50), None)
    assert first["engines"][0]["rates"]["packets_per_second"] == 0.0
    restarted = metrics.add_rates(snapshot(2.0, 10), snapshot(1.0, 50))   # deleted and made anew: counters fell
    assert restarted["engines"][0]["rates"]["packets_per_second"] == 20.0


def test_status_file_is_replaced_whole_and_removed_on_stop(tmp_path, monkeypatch):
    made = iter([snapshot(10.0, 5), snapshot(15.0, 505)])
    monkeypatch.setattr(metrics, "daemon_snapshot", lambda: next(made))
    path = tmp_path / "bricks.status"
    status = metrics.StatusFile(str(path), interval=5.0)
    status.write()
    assert json.loads(path.read_text())["engines"][0]["packets"] == 10
    inode = path.stat().st_ino
    status.write()
    written = json.loads(path.read_text())
    assert written["engines"][0]["rates"]["packets_per_second"] == 200.0 and written["interval"] == 5.0
    assert path.stat().st_ino != inode                  # renamed over, never rewritten in place
    assert sorted(os.listdir(tmp_path)) == ["bricks.status"]    # no temporary file left
    status.stop()
    assert not path.exists()


def test_status_file_thread_stops_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "daemon_snapshot", lambda: snapshot(1.0, 1))
    status = metrics.StatusFile(str(tmp_path / "bricks.status"), interval=3600)
    status.start()
    stopper = threading.Thread(target=status.stop)
    stopper.start()
    stopper.join(5)
    assert not stopper.is_alive() and not (tmp_path / "bricks.status").exists()


def scraped(snap):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.SnapshotCollector(lambda: snap))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_collector_labels_engine_brick_output_cause_and_filter_rules():
    rule = {"id": 3, "action": "drop", "src": "10.0.0.3", "hits": 7, "bytes": 420}
    samples = scraped(snapshot(1.0, 1000, full=4, rules=[rule]))
    assert samples[("bricks_up", ())] == 1
    assert samples[("bricks_backend_info", (("backend", "packet"), ("detail", "auto")))] == 1
    output = (("brick", "LoadBalancer#0"), ("engine", "lb"), ("output", "p0"))
    assert samples[("bricks_output_packets_total", output)] == 1000
    assert samples[("bricks_output_bytes_total", output)] == 60000
    assert samples[("bricks_output_drops_total", tuple(sorted(output + (("cause", "full"),))))] == 4
    assert samples[("bricks_output_drops_total", tuple(sorted(output + (("cause", "kernel_output"),))))] == 0
    assert samples[("bricks_engine_drops_total", (("cause", "full"), ("engine", "lb")))] == 4
    assert samples[("bricks_engine_received_packets_total", (("engine", "lb"),))] == 2004
    assert samples[("bricks_filter_rules", (("engine", "lb"), ("filter", "f{0")))] == 1
    assert samples[("bricks_filter_rule_hits_total", (("action", "drop"), ("engine", "lb"), ("filter", "f{0"),
                                                      ("rule", "3")))] == 7


@pytest.mark.parametrize("text, address", [("9477", ("127.0.0.1", 9477)), (":9477", ("127.0.0.1", 9477)),
                                           ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:9100", ("::1", 9100))])
def test_metrics_address(text, address):
    assert metrics.parse_address(text) == address


@pytest.mark.parametrize("text", ["", "host:", "host:http", "70000", "127.0.0.1:0"])
def test_bad_metrics_address_is_one_line(text):
    with pytest.raises(BricksError, match=r"^--metrics .*: expected \[HOST:\]PORT with PORT 1\.\.65535$"):
        metrics.parse_address(text)


def test_live_view_shows_each_output_with_mpps_gbits_and_drops_per_second():
    now = metrics.add_rates(snapshot(3.0, 2001000, full=2000), snapshot(2.0, 1000))
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(top.render(now, "/run/bricks/bricks.sock"))
    lines = console.export_text().splitlines()
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│")]
    header = next(line for line in lines if "Engine" in line)
    assert header.split()[1::2] == ["Engine", "Brick", "Output", "Mpps", "Gbit/s", "Drops/s", "Packets", "Dropped"]
    # 2,000,000 packets of 60 bytes in one second on p0: 2 Mpps, 0.96 Gbit/s, and its 2,000 full drops.
    assert rows[0] == ["lb", "", "(received)", "4.002", "1.921", "2000", "4004000", "2000"]
    assert rows[1] == ["", "LoadBalancer#0", "p0", "2", "0.96", "2000", "2001000", "2000"]
    assert rows[2] == ["", "LoadBalancer#0", "p1", "2", "0.96", "0", "2001000", "0"]
