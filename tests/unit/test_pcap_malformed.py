"""Malformed pcap input (issue 8.5): a bad record is reported (file, record number, reason) in one line, counted as
malformed, never passed on, and the good records after it are still read. Every file is written by the test."""
import logging
import struct

import pytest

from bricks._native import ffi, lib
from bricks.engine import PktEngine, Brick
from bricks.frames import PCAP_RECORD, pcap_bytes, read_pcap, udp_frame
from tests.native import Graph, output_counters
from tests.sanitized.build import build, run
from tests.unit.test_lua_api import Console

RUN_TIMEOUT_S = 20
FIRST_SECOND = 1_700_000_000


def good_records(count, first=0):
    """count pcap records of 100-byte UDP frames, the n-th stamped FIRST_SECOND + first + n."""
    frames = [udp_frame("10.0.0.1", "10.0.0.2", 1000 + first + i, 53).ljust(100, b"\0") for i in range(count)]
    return [(FIRST_SECOND + first + i, i, len(frame), frame) for i, frame in enumerate(frames)]


def record_bytes(caplen, wirelen, data=b""):
    return struct.pack("<" + PCAP_RECORD.format, FIRST_SECOND, 0, caplen, wirelen) + data


def read_through_engine(path):
    """Runs one pcap file through a Dummy into a null sink: (engine stats, packets delivered, source state)."""
    keep = ffi.new("char[]", str(path).encode())
    error = ffi.new("char[512]")
    source = lib.brk_source_pcap_open(ffi.new("const char *[]", [keep]), 1, error, len(error))
    assert source != ffi.NULL, ffi.string(error).decode()
    with Graph(batch=4) as graph:
        dummy = graph.brick("Dummy")
        graph.null_sinks(dummy, 1)
        graph.source(source, dummy)
        assert graph.start().finished(RUN_TIMEOUT_S)
        state = ffi.new("struct brk_io_state *")
        lib.brk_source_state(source, state)
        return graph.stats(), output_counters(dummy).packets, ffi.string(state.reason).decode()


def pcapng_block(block_type, body):
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def pcapng_file(frames, bad_block):
    section = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    interface = pcapng_block(1, struct.pack("<HHI", 1, 0, 262144))
    packets = b""
    for frame in frames:
        padded = frame + b"\0" * (-len(frame) % 4)
        packets += pcapng_block(6, struct.pack("<IIIII", 0, 0, 0, len(frame), len(frame)) + padded)
    return section + interface + packets + bad_block + packets


BIG = 300 * 1024
NG_FRAMES = [udp_frame("10.0.0.1", "10.0.0.2", 2000 + i, 53) for i in range(3)]

# name: (file contents, packets read, malformed records, words the one-line report holds)
CASES = {
    "caplen-300k.pcap": (pcap_bytes(good_records(5)) + record_bytes(BIG, BIG, b"\x55" * BIG)
                         + pcap_bytes(good_records(5, 5))[24:],
                         10, 1, ["record 6", "caplen 307200", "skipped to the next record"]),
    "huge-caplen.pcap": (pcap_bytes(good_records(3)) + record_bytes(0xFFFFFFF0, 0xFFFFFFF0, b"garbage!" * 3)
                         + pcap_bytes(good_records(4, 3))[24:],
                         7, 1, ["record 4", "over the maximum"]),
    "caplen-over-len.pcap": (pcap_bytes(good_records(2)) + record_bytes(100, 60, b"\x01" * 100)
                             + pcap_bytes(good_records(2, 2))[24:],
                             4, 1, ["record 3", "over the length on the wire"]),
    "nothing-after.pcap": (pcap_bytes(good_records(2)) + record_bytes(0x7FFFFFFF, 0x7FFFFFFF) + b"\0" * 40,
                           2, 1, ["record 3", "rest of the file skipped"]),
    "cut-at-end.pcap": (pcap_bytes(good_records(3)) + record_bytes(100, 100, b"\2" * 40),
                        3, 1, ["record 4", "cut short"]),
    # An enhanced packet block whose total length is not a multiple of 4.
    "bad-block.pcapng": (pcapng_file(NG_FRAMES, struct.pack("<II", 6, 37) + b"\0" * 29),
                         3, 1, ["record 4", "not a multiple of 4", "rest of the file skipped"]),
    "good.pcapng": (pcapng_file(NG_FRAMES, b""), 6, 0, []),
}


@pytest.mark.parametrize("name", CASES)
def test_malformed_record_is_reported_counted_and_skipped(tmp_path, name):
    contents, packets, malformed, said = CASES[name]
    path = tmp_path / name
    path.write_bytes(contents)
    stats, delivered, reason = read_through_engine(path)
    assert stats.finished and stats.received_packets == delivered == packets
    assert stats.input_malformed == malformed
    if said:
        assert reason.startswith(f"{path}: ") and "\n" not in reason, reason
    for words in said:
        assert words in reason, reason


def test_every_case_reads_the_same_under_address_sanitizer(tmp_path):
    binary = build("pcap_read.c", ["engine.c", "brick_dummy.c", "io_pcap.c", "io_memory.c"], tmp_path)
    for name, (contents, _, _, _) in CASES.items():
        (tmp_path / name).write_bytes(contents)
    lines = run(binary, *(tmp_path / name for name in CASES))
    assert lines == [f"{packets} {malformed}" for _, packets, malformed, _ in CASES.values()]


def test_engine_logs_the_bad_record_and_counts_it(tmp_path, caplog):
    source, output = tmp_path / "in.pcap", tmp_path / "out.pcap"
    source.write_bytes(pcap_bytes(good_records(5)) + record_bytes(0xFFFFFFF0, 60, b"xyz")
                       + pcap_bytes(good_records(5, 5))[24:])
    engine = PktEngine.new("malformed")
    try:
        reader = Brick("PcapReader").connect_input(str(source)).connect_output("x{0")
        reader.link(Brick("PcapWriter").connect_input("x}0").connect_output(str(output)))
        engine.link(reader)
        with caplog.at_level(logging.WARNING, logger="bricks"):
            engine.start()
            assert engine.wait(RUN_TIMEOUT_S)
            stats = engine.stats()
        assert stats["packets"] == 10 and stats["input_malformed"] == 1 and stats["drops"] == 0
        assert "1 malformed input records skipped" in engine.stats_text()
        assert any(f"input {source}" in line or str(source) in line for line in stats["problems"])
        logged = [record.getMessage() for record in caplog.records if "record 6" in record.getMessage()]
        assert len(logged) == 1, caplog.text
        # The Lua shell's status and stats say it too.
        console = Console()
        for chunk in ("BRICKS.print_status()", "BRICKS.show_stats()"):
            console.run(chunk)
            said = [line for line in console.output().splitlines() if "record 6" in line]
            assert len(said) == 1 and said[0].startswith("Engine malformed: ") and str(source) in said[0], said
    finally:
        engine.delete()
    assert len(read_pcap(output.read_bytes()).records) == 10

