"""Nothing lost, nothing miscounted (issue 8.2, 8.3, 8.4, 8.6): real veths and a small tmpfs.

Every packet received is delivered, dropped under its true cause (output gone, too big for the output, write
error) or still queued; inputs and outputs that go away are noticed, logged once, shown in the status lines, and
taken up again when an interface of the same name returns.
"""
import logging
import subprocess
import tempfile
import time

import pytest

from bricks import engine as engine_module
from bricks import links
from bricks.engine import Brick, PktEngine
from bricks.frames import flow_frames, pcap_bytes, read_pcap, udp_frame
from tests.e2e import daemons
from tests.e2e.daemons import alive

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("engines_removed")]

SEND_RATE = 20000
NOTICE_TIMEOUT_S = 5.0


def wait_until(condition):
    return daemons.wait_until(condition, NOTICE_TIMEOUT_S)


def wait_for_packets(engine, count):
    assert wait_until(lambda: engine.stats()["packets"] >= count), engine.stats_text()


def delete_link(name):
    subprocess.run(["ip", "link", "del", name], check=True)


def logged(caplog, words):
    return [record.getMessage() for record in caplog.records if words in record.getMessage()]


def assert_accounted(output, offered):
    causes = output["full"] + output["too_big"] + output["too_short"] + output["gone"] + output["write_errors"]
    assert output["drops"] == causes, output
    assert output["packets"] + output["drops"] + output["queued"] == offered, output


def test_packets_to_a_deleted_pipe_are_dropped_as_output_gone(testbed, caplog):
    host_if, ns_if = testbed.add_input("in")
    engine = PktEngine.new("gone")
    engine.link(Brick("Duplicator").connect_input(host_if).connect_outputs(host_if, 2))
    live = testbed.reader(links.consumer_name(host_if, 0), in_namespace=False)
    before, after, again = flow_frames(100, seed=1), flow_frames(150, seed=2), flow_frames(80, seed=3)
    caplog.set_level(logging.INFO, logger="bricks")
    engine.start()
    testbed.send(ns_if, before, pps=SEND_RATE)
    wait_for_packets(engine, len(before))
    delete_link(links.consumer_name(host_if, 1))          # takes its broker end with it
    testbed.send(ns_if, after, pps=SEND_RATE)
    wait_for_packets(engine, len(before) + len(after))
    assert wait_until(lambda: any("is gone" in line for line in engine_module.status_lines()))
    stats = engine.stats()
    dead = stats["bricks"][0]["outputs"][1]
    assert (dead["packets"], dead["gone"], dead["queued"]) == (len(before), len(after), 0), dead
    # The engine's sums are refreshed every 100 ms.
    assert wait_until(lambda: engine.stats()["output_gone"] == len(after)), engine.stats_text()
    assert f"{len(after)} output gone" in engine.stats_text()
    assert len(logged(caplog, "is gone")) == 1, caplog.text

    # The pipe comes back (its consumer made it again): the output is taken up again.
    links.create_pipe(host_if, 1, 1500)
    assert wait_until(lambda: not engine_module.status_lines()), engine_module.status_lines()
    revived = testbed.reader(links.consumer_name(host_if, 1), in_namespace=False)
    testbed.send(ns_if, again, pps=SEND_RATE)
    assert sorted(revived.wait_for(len(again))) == sorted(again)
    got = live.wait_for(len(before) + len(after) + len(again))
    engine.stop()
    assert sorted(got) == sorted(before + after + again)
    stats = engine.stats()
    outputs = stats["bricks"][0]["outputs"]
    total = len(before) + len(after) + len(again)
    assert outputs[0]["packets"] == total and outputs[0]["drops"] == 0
    assert outputs[1]["packets"] == len(before) + len(again) and outputs[1]["gone"] == len(after)
    for output in outputs:
        assert_accounted(output, total)
    assert len(logged(caplog, "is back")) == 1, caplog.text


def test_frames_over_the_output_mtu_are_too_big_not_full(testbed):
    host_if, ns_if = testbed.add_input("in", mtu=9000)
    egress, consumer = testbed.add_egress("out", mtu=1500)
    engine = PktEngine.new("jumbo")
    engine.link(Brick("Dummy").connect_input(host_if).connect_output(egress))
    reader = testbed.reader(consumer)
    big = [udp_frame("10.0.0.1", "10.0.0.2", 1000 + n, 53, b"j" * 7000) for n in range(20)]
    small = [udp_frame("10.0.0.1", "10.0.0.2", 2000 + n, 53, b"s" * 500) for n in range(30)]
    engine.start()
    testbed.send(ns_if, big + small, pps=SEND_RATE)
    got = reader.wait_for(len(small))
    wait_for_packets(engine, len(big) + len(small))
    engine.stop()
    assert sorted(got) == sorted(small)
    stats = engine.stats()
    output = stats["bricks"][0]["outputs"][0]
    assert (output["packets"], output["too_big"], output["full"]) == (len(small), len(big), 0), output
    assert_accounted(output, len(big) + len(small))
    assert stats["output_too_big"] == len(big) and stats["output_full"] == 0
    assert f"{len(big)} too big for the output" in engine.stats_text()


def test_an_input_that_vanishes_is_noticed_and_taken_up_when_it_returns(testbed, caplog):
    host_if, ns_if = testbed.add_input("in")
    other_if, other_ns_if = testbed.add_input("othr")
    vanishing, steady = PktEngine.new("vanishing"), PktEngine.new("steady")
    vanishing.link(Brick("Dummy").connect_input(host_if).connect_outputs(host_if, 1))
    steady.link(Brick("Dummy").connect_input(other_if).connect_outputs(other_if, 1))
    caplog.set_level(logging.INFO, logger="bricks")
    vanishing.start()
    steady.start()
    first, second = flow_frames(50, seed=4), flow_frames(60, seed=5)
    testbed.send(ns_if, first, pps=SEND_RATE)
    wait_for_packets(vanishing, len(first))

    delete_link(host_if)
    assert wait_until(lambda: any(f"input {host_if} is gone" in line for line in engine_module.status_lines()))
    assert len(logged(caplog, f"input {host_if} is gone")) == 1, caplog.text
    assert vanishing.running and steady.running
    testbed.send(other_ns_if, second, pps=SEND_RATE)
    wait_for_packets(steady, len(second))
    assert f"input {host_if} is gone" in vanishing.stats_text()

    # The interface returns under the same name: read again.
    host_if_again, ns_if_again = testbed.add_input("in")
    assert host_if_again == host_if
    assert wait_until(lambda: not vanishing.status_lines()), vanishing.status_lines()
    reader = testbed.reader(links.consumer_name(host_if, 0), in_namespace=False)
    testbed.send(ns_if_again, second, pps=SEND_RATE)
    assert sorted(reader.wait_for(len(second))) == sorted(second)
    vanishing.stop()
    steady.stop()
    assert vanishing.stats()["packets"] == len(first) + len(second)
    assert len(logged(caplog, f"input {host_if} is back")) == 1, caplog.text


def test_a_vanished_input_of_a_busy_engine_is_noticed(testbed, caplog):
    """A Merge of two inputs: one goes away while the other keeps the engine busy; the rest goes on, counted."""
    gone_if, gone_ns_if = testbed.add_input("gone")
    busy_if, busy_ns_if = testbed.add_input("busy")
    engine = PktEngine.new("merge")
    engine.link(Brick("Merge").connect_input(gone_if, busy_if).connect_output(f"{busy_if}{{0"))
    caplog.set_level(logging.WARNING, logger="bricks")
    engine.start()
    first = flow_frames(30, seed=7)
    testbed.send(gone_ns_if, first, pps=SEND_RATE)
    wait_for_packets(engine, len(first))
    delete_link(gone_if)
    steady = flow_frames(2000, seed=8)
    testbed.send(busy_ns_if, steady, pps=SEND_RATE)
    assert wait_until(lambda: any(f"input {gone_if} is gone" in line for line in engine.status_lines()))
    wait_for_packets(engine, len(first) + len(steady))
    engine.stop()
    assert engine.stats()["packets"] == len(first) + len(steady)
    assert len(logged(caplog, f"input {gone_if} is gone")) == 1, caplog.text


def test_the_daemon_reports_a_vanished_input_and_pipe_and_serves_on(paths, testbed):
    """bricks-server with two engines: one's input and the other's pipe are deleted; the daemon logs each once,
    print_status and show_stats name them, and it answers as before."""
    first_if, _ = testbed.add_input("one")
    second_if, second_ns_if = testbed.add_input("two")
    pid = paths.start_daemon()
    for name, interface in (("a", first_if), ("b", second_if)):
        result = paths.remote(f'pe = PktEngine.new("{name}"); d = Brick.new("Dummy"); '
                              f'd:connect_input("{interface}"); d:connect_outputs("{interface}", 1); '
                              f'pe:link(d); pe:start()')
        assert result.returncode == 0, result.stderr
    delete_link(first_if)
    delete_link(links.consumer_name(second_if, 0))
    testbed.send(second_ns_if, flow_frames(20, seed=9), pps=SEND_RATE)
    said = {f"input {first_if} is gone", f"output {second_if}{{0 is gone"}

    def reported(chunk):
        output = paths.remote(chunk).stdout
        return all(any(words in line and line.startswith("Engine ") for line in output.splitlines())
                   for words in said)

    assert wait_until(lambda: reported("BRICKS.print_status()")), paths.remote("BRICKS.print_status()").stdout
    assert reported("BRICKS.show_stats()")
    assert paths.remote("BRICKS.print_status()").stdout.startswith("BRICKS is online.")
    assert alive(pid)
    with open(paths.log) as log:
        text = log.read()
    for words in said:
        assert text.count(words) == 1, text


@pytest.fixture
def small_tmpfs():
    directory = tempfile.mkdtemp(prefix="bricks-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", directory], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", directory], check=True)
        subprocess.run(["rmdir", directory], check=True)


def test_pcap_writer_on_a_full_disk_counts_write_errors_and_keeps_the_file_readable(tmp_path, small_tmpfs, caplog):
    frames = [udp_frame("10.0.0.1", "10.0.0.2", 1000 + n % 5000, 53, bytes([n % 251]) * 550) for n in range(2000)]
    source = tmp_path / "in.pcap"
    source.write_bytes(pcap_bytes([(1_700_000_000 + n, n, len(frame), frame) for n, frame in enumerate(frames)]))
    output = f"{small_tmpfs}/out.pcap"
    engine = PktEngine.new("full")
    reader = Brick("PcapReader").connect_input(str(source)).connect_output("x{0")
    reader.link(Brick("PcapWriter").connect_input("x}0").connect_output(output))
    engine.link(reader)
    with caplog.at_level(logging.WARNING, logger="bricks"):
        engine.start()
        assert engine.wait(20)
        stats = engine.stats()
    written = stats["bricks"][1]["outputs"][0]
    capture = read_pcap(open(output, "rb").read())
    assert capture.cut_bytes == 0                                    # no half record at the end
    assert written["packets"] == len(capture.records) > 0
    assert written["write_errors"] == written["drops"] == len(frames) - written["packets"] > 0
    assert_accounted(written, len(frames))
    assert [record[3] for record in capture.records] == frames[:written["packets"]]
    assert any("write error" in line for line in stats["problems"])
    assert len(logged(caplog, "write error")) == 1, caplog.text
    engine.delete()


def test_a_down_consumer_keeps_a_ring_queued_and_retries_are_not_drops(testbed):
    """A refused frame stays requested (the kernel puts it back to SEND_REQUEST) and is retried at every flush;
    each retry bumps the pipe's tx_dropped but loses nothing: the ring's frames are queued, then delivered."""
    host_if, ns_if = testbed.add_input("in")
    engine = PktEngine.new("down", 64)
    engine.link(Brick("Dummy").connect_input(host_if).connect_outputs(host_if, 1))
    consumer = links.consumer_name(host_if, 0)
    subprocess.run(["ip", "link", "set", consumer, "down"], check=True)
    frames = flow_frames(100, seed=6)
    engine.start()
    testbed.send(ns_if, frames, pps=SEND_RATE)
    wait_for_packets(engine, len(frames))
    time.sleep(0.5)                                  # ~10 idle retries of the refused frame
    output = engine.stats()["bricks"][0]["outputs"][0]
    assert (output["packets"], output["queued"], output["kernel_drops"]) == (0, 64, 0), output
    assert output["full"] == len(frames) - 64
    assert_accounted(output, len(frames))
    assert engine.stats()["drops"] == len(frames) - 64
    subprocess.run(["ip", "link", "set", consumer, "up"], check=True)
    assert wait_until(lambda: engine.stats()["bricks"][0]["outputs"][0]["packets"] == 64)
    with open(f"/sys/class/net/{consumer}/statistics/rx_packets") as received:
        assert int(received.read()) >= 64
    engine.stop()
    output = engine.stats()["bricks"][0]["outputs"][0]
    assert (output["packets"], output["queued"], output["kernel_drops"]) == (64, 0, 0), output
    assert_accounted(output, len(frames))
