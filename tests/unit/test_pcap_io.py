"""The pcap back-end through the C engine: files in, files out, errors, truncation, flushing."""
import random
import struct
from contextlib import contextmanager

import pytest

from bricks._native import ffi, lib
from bricks.frames import (LINKTYPE_ETHERNET, PCAP_MICROSECOND_MAGIC, PCAP_NANOSECOND_MAGIC, PCAP_SNAPLEN,
                           pcap_bytes, read_pcap)
from tests.native import Graph, memory_source, output_counters

LINKTYPE_RAW = 101
RUN_TIMEOUT_S = 20


def parse_pcap(blob):
    """(magic, snaplen, linktype, records) of a whole pcap file."""
    capture = read_pcap(blob)
    assert capture.cut_bytes == 0, "trailing partial record"
    return capture.magic, capture.snaplen, capture.linktype, capture.records


def varied_records(count, seed, start_second=1_700_000_000, fraction_limit=1_000_000):
    """Frames of 60..1514 bytes (both ends included), every 97th cut short (caplen < len)."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        wirelen = (60, 1514)[i] if i < 2 else rng.randint(60, 1514)
        caplen = wirelen // 2 if i % 97 == 5 else wirelen
        data = bytes(rng.getrandbits(8) for _ in range(caplen))
        records.append((start_second + i // 100, rng.randrange(fraction_limit), wirelen, data))
    return records


def error_buffer():
    return ffi.new("char[512]")


def message(error):
    text = ffi.string(error).decode()
    assert text and "\n" not in text
    return text


def open_source(paths):
    keep = [ffi.new("char[]", str(path).encode()) for path in paths]
    array = ffi.new("const char *[]", keep)
    error = error_buffer()
    source = lib.brk_source_pcap_open(array, len(paths), error, len(error))
    return source, error


def open_sink(path, snaplen=PCAP_SNAPLEN):
    error = error_buffer()
    sink = lib.brk_sink_pcap_open(str(path).encode(), snaplen, error, len(error))
    return sink, error


@contextmanager
def ran_to_end(source, sink, batch):
    """source -> Dummy -> sink, run until the source is exhausted (bounded in time), then all freed on exit.

    Yields (engine stats, output counters) while the sink is still open.
    """
    assert source != ffi.NULL and sink != ffi.NULL
    with Graph(batch) as graph:
        dummy = graph.brick("Dummy")
        graph.sink(dummy, sink)
        graph.source(source, dummy)
        if not graph.start().finished(RUN_TIMEOUT_S):
            pytest.fail("engine did not finish on an exhausted source")
        yield graph.stats(), output_counters(dummy)


def copy_through_engine(inputs, output, batch=256):
    """Runs the given pcap files into output; returns (engine stats, output counters)."""
    source, error = open_source(inputs)
    assert source != ffi.NULL, message(error)
    sink, error = open_sink(output)
    assert sink != ffi.NULL, message(error)
    with ran_to_end(source, sink, batch) as (stats, counters):
        return stats, counters


@pytest.mark.parametrize("batch", [1, 37, 1024])
def test_copy_is_byte_identical(tmp_path, batch):
    records = varied_records(3000, seed=1)
    assert any(len(data) < wirelen for _, _, wirelen, data in records)
    blob = pcap_bytes(records)
    (tmp_path / "in.pcap").write_bytes(blob)

    stats, counters = copy_through_engine([tmp_path / "in.pcap"], tmp_path / "out.pcap", batch)

    assert (tmp_path / "out.pcap").read_bytes() == blob
    assert stats.finished == 1
    assert stats.received_packets == counters.packets == 3000
    assert stats.received_bytes == counters.bytes == sum(r[2] for r in records)
    assert counters.drops == 0 and stats.output_drops == 0 and stats.kernel_drops == 0


def test_batch_larger_than_the_initial_arena(tmp_path):
    rng = random.Random(2)
    records = [(i, i, 9000, rng.randbytes(9000)) for i in range(400)]   # 3.6 MB in one batch
    blob = pcap_bytes(records)
    (tmp_path / "in.pcap").write_bytes(blob)

    stats, _ = copy_through_engine([tmp_path / "in.pcap"], tmp_path / "out.pcap", batch=1024)

    assert (tmp_path / "out.pcap").read_bytes() == blob
    assert stats.received_packets == 400 and stats.batches <= 2


def test_several_files_are_read_in_order(tmp_path):
    parts = [varied_records(n, seed=10 + n, start_second=1000 * n) for n in (5, 700, 1, 300)]
    paths = []
    for index, records in enumerate(parts):
        paths.append(tmp_path / f"part{index}.pcap")
        paths[-1].write_bytes(pcap_bytes(records))

    stats, counters = copy_through_engine(paths, tmp_path / "out.pcap", batch=64)

    expected = [record for records in parts for record in records]
    assert parse_pcap((tmp_path / "out.pcap").read_bytes())[3] == expected
    assert stats.received_packets == counters.packets == len(expected)


def test_nanosecond_input_keeps_microseconds(tmp_path):
    records = varied_records(500, seed=3, fraction_limit=1_000_000_000)
    (tmp_path / "in.pcap").write_bytes(pcap_bytes(records, magic=PCAP_NANOSECOND_MAGIC))

    copy_through_engine([tmp_path / "in.pcap"], tmp_path / "out.pcap")

    magic, snaplen, linktype, written = parse_pcap((tmp_path / "out.pcap").read_bytes())
    assert (magic, snaplen, linktype) == (PCAP_MICROSECOND_MAGIC, PCAP_SNAPLEN, LINKTYPE_ETHERNET)
    assert written == [(s, nsec // 1000, wirelen, data) for s, nsec, wirelen, data in records]


def test_sink_cuts_packets_to_its_snaplen(tmp_path):
    records = varied_records(200, seed=4)
    (tmp_path / "in.pcap").write_bytes(pcap_bytes(records))
    source, _ = open_source([tmp_path / "in.pcap"])
    sink, _ = open_sink(tmp_path / "out.pcap", snaplen=128)
    with ran_to_end(source, sink, 64):
        pass
    _, snaplen, _, written = parse_pcap((tmp_path / "out.pcap").read_bytes())
    assert snaplen == 128
    assert written == [(s, us, wirelen, data[:128]) for s, us, wirelen, data in records]


def test_missing_input_file(tmp_path):
    good = tmp_path / "good.pcap"
    good.write_bytes(pcap_bytes(varied_records(3, seed=5)))
    missing = tmp_path / "missing.pcap"
    source, error = open_source([good, missing])
    assert source == ffi.NULL
    text = message(error)
    assert text.startswith(str(missing)) and "No such file or directory" in text


def test_non_ethernet_input_file(tmp_path):
    raw = tmp_path / "x.pcap"
    raw.write_bytes(pcap_bytes([(0, 0, 20, bytes(20))], linktype=LINKTYPE_RAW))
    source, error = open_source([raw])
    assert source == ffi.NULL
    assert message(error) == f"{raw}: link type RAW is not Ethernet"


def test_garbage_input_file(tmp_path):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture file at all")
    source, error = open_source([garbage])
    assert source == ffi.NULL
    text = message(error)
    assert text.startswith(f"{garbage}: ") and len(text) > len(f"{garbage}: ")


def test_unwritable_output_path(tmp_path):
    target = tmp_path / "no-such-directory" / "out.pcap"
    sink, error = open_sink(target)
    assert sink == ffi.NULL
    text = message(error)
    assert text.startswith(str(target)) and "No such file or directory" in text


def test_truncated_record_ends_only_its_file(tmp_path):
    first = varied_records(400, seed=6)
    second = varied_records(50, seed=7, start_second=5000)
    truncated = tmp_path / "a-truncated.pcap"
    truncated.write_bytes(pcap_bytes(first)[:-10])
    intact = tmp_path / "b-intact.pcap"
    intact.write_bytes(pcap_bytes(second))

    stats, counters = copy_through_engine([truncated, intact], tmp_path / "out.pcap", batch=32)

    assert parse_pcap((tmp_path / "out.pcap").read_bytes())[3] == first[:-1] + second
    assert stats.finished == 1 and counters.packets == len(first) - 1 + len(second)


def test_truncated_header_of_last_record(tmp_path):
    records = varied_records(100, seed=8)
    path = tmp_path / "in.pcap"
    path.write_bytes(pcap_bytes(records) + struct.pack("<II", 1, 2))

    copy_through_engine([path], tmp_path / "out.pcap")

    assert parse_pcap((tmp_path / "out.pcap").read_bytes())[3] == records


def test_output_is_valid_after_each_batch_before_close(tmp_path):
    frames = [bytes([i]) * length for i, length in enumerate((60, 1514, 300, 61, 999))]
    rounds, batch = 700, 64   # 3500 packets: the stdio buffer alone would not hold them
    blob = b"".join(frames)
    output = tmp_path / "out.pcap"
    sink, error = open_sink(output)
    assert sink != ffi.NULL, message(error)
    with ran_to_end(memory_source(frames, rounds), sink, batch) as (stats, counters):
        written = parse_pcap(output.read_bytes())[3]   # the sink is still open

    assert written == [(0, 0, len(frame), frame) for frame in frames] * rounds
    assert stats.received_packets == counters.packets == len(frames) * rounds
    assert counters.bytes == len(blob) * rounds and counters.drops == 0


def test_write_errors_count_as_drops(tmp_path):
    records = varied_records(2000, seed=9)
    (tmp_path / "in.pcap").write_bytes(pcap_bytes(records))

    stats, counters = copy_through_engine([tmp_path / "in.pcap"], "/dev/full", batch=128)

    assert stats.finished == 1 and stats.received_packets == len(records)
    assert counters.drops > 0 and stats.output_drops == counters.drops
    assert counters.packets + counters.drops == len(records)
