"""End to end: Dedup behind a Merge of two taps (two veths) replaying the same stream, and Slice to a pipe read by
tcpdump and to a pcap file, on real veths. Every frame is accounted for: received = delivered + dropped +
deduplicated, and the consumer sees each frame exactly once."""
import struct
import threading

import pytest

from bricks import links
from bricks.engine import Brick, PktEngine
from bricks.frames import ETHERTYPE_VLAN, checksum, pad, read_pcap, tcp_frame, udp_frame
from bricks.testbed import wait_for_total

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("engines_removed")]

SEND_RATE = 20000
STREAM = 10000
WINDOW_US = 5_000_000   # the two replays start up to a process start apart (tens of ms): far inside it


def numbered(number):
    """A distinct frame: its payload carries number."""
    return pad(udp_frame("10.1.0.1", "10.1.0.2", 4000, 5000, payload=b"d" * 12 + struct.pack("!I", number)))


def number_of(frame):
    """The number of a numbered frame, tagged or not (the payload is at the end)."""
    return struct.unpack("!I", frame[14 + 20 + 8 + 12 + (4 if frame[12:14] == b"\x81\x00" else 0):][:4])[0]


def routed_and_tagged(frame):
    """The copy a second tap sees: TTL one lower (checksum redone) and a VLAN tag."""
    header = bytearray(frame[14:34])
    header[8] -= 1
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return frame[:12] + struct.pack("!HH", ETHERTYPE_VLAN, 7) + frame[12:14] + bytes(header) + frame[34:]


def test_two_taps_merged_into_dedup_deliver_each_frame_once(testbed):
    first_host, first_ns = testbed.add_input("a")
    second_host, second_ns = testbed.add_input("b")
    merge = Brick("Merge").connect_input(first_host, second_host).connect_output(f"{first_host}{{0")
    dedup = Brick("Dedup", {"window_us": WINDOW_US}).connect_input(f"{first_host}}}0")
    dedup.connect_output(f"{first_host}{{1")
    merge.link(dedup)
    engine = PktEngine.new("dedup")
    engine.link(merge)
    reader = testbed.reader(links.consumer_name(first_host, 1), in_namespace=False)
    stream = [numbered(number) for number in range(STREAM)]
    copies = [routed_and_tagged(frame) for frame in stream]
    engine.start()
    senders = [threading.Thread(target=testbed.send, args=(namespace_if, frames), kwargs={"pps": SEND_RATE})
               for namespace_if, frames in ((first_ns, stream), (second_ns, copies))]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(60)
    wait_for_total([reader], STREAM, timeout=20)
    got = reader.wait_for(STREAM + 1, timeout=0.5)     # one more would show now
    engine.stop()
    assert sorted(number_of(frame) for frame in got) == list(range(STREAM))
    assert all(frame in (stream[number_of(frame)], copies[number_of(frame)]) for frame in got)
    stats = engine.stats()
    merged, deduplicated = stats["bricks"]
    assert stats["packets"] == merged["received"] == 2 * STREAM
    assert stats["drops"] == 0
    assert (deduplicated["kind"], deduplicated["received"]) == ("Dedup", 2 * STREAM)
    output = deduplicated["outputs"][0]
    assert (output["packets"], deduplicated["deduplicated"], deduplicated["unique"]) == (STREAM, STREAM, STREAM)
    assert deduplicated["table_full"] == 0
    assert deduplicated["received"] == output["packets"] + output["drops"] + deduplicated["deduplicated"]
    assert f"{STREAM} deduplicated" in engine.stats_text()


def test_slice_to_a_pipe_and_to_a_pcap_file(testbed, tmp_path):
    """Duplicator -> Slice(100) -> pipe (tcpdump), Duplicator -> Slice{payload = 8} -> PcapWriter -> file."""
    host_if, ns_if = testbed.add_input("in")
    path = tmp_path / "sliced.pcap"
    duplicator = Brick("Duplicator").connect_input(host_if).connect_output(f"{host_if}{{0", f"{host_if}{{1")
    to_pipe = Brick("Slice", 100).connect_input(f"{host_if}}}0").connect_output(f"{host_if}{{2")
    to_file = Brick("Slice", {"payload": 8}).connect_input(f"{host_if}}}1").connect_output(f"{host_if}{{3")
    writer = Brick("PcapWriter").connect_input(f"{host_if}}}3").connect_output(str(path))
    duplicator.link(to_pipe, to_file)
    to_file.link(writer)
    engine = PktEngine.new("slice")
    engine.link(duplicator)
    reader = testbed.reader(links.consumer_name(host_if, 2), in_namespace=False)
    frames = [tcp_frame("10.2.0.1", "10.2.0.2", 1000 + number, 80, payload=bytes(range(200)) * 3)
              for number in range(50)] + [pad(udp_frame("10.2.0.1", "10.2.0.2", 1, 2))]
    engine.start()
    testbed.send(ns_if, frames, pps=SEND_RATE)
    got = reader.wait_for(len(frames), timeout=10)
    engine.stop()
    # tcpdump reads the cut frames: 100 bytes of the long ones, the short one whole.
    assert sorted(got) == sorted(frame[:100] for frame in frames)
    records = read_pcap(path.read_bytes()).records
    # Past the TCP (UDP) header plus 8 bytes, each with its length on the wire as orig_len.
    assert [(len(data), original) for _, _, original, data in records] == \
        [(14 + 20 + 20 + 8, len(frames[0]))] * 50 + [(14 + 20 + 8 + 8, 60)]
    assert [data for _, _, _, data in records] == [frame[:len(data)] for frame, (_, _, _, data) in
                                                   zip(frames, records)]
    stats = engine.stats()
    assert stats["drops"] == 0
    sliced = [brick for brick in stats["bricks"] if brick["kind"] == "Slice"]
    assert [(brick["received"], brick["sliced"]) for brick in sliced] == [(51, 50), (51, 51)]
