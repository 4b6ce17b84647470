"""The classic pcap reader's large blocks: records across block refills, batches of any size, a bad record far in."""
import random
import struct

import pytest

from bricks.frames import pcap_bytes, read_pcap
from bricks._native import ffi, lib
from tests.native import Graph, opened

BLOCK_BYTES = 4 << 20      # PCAP_READ_BLOCK in io_pcap.c


def records_over(total_bytes, seed):
    """Records of 60..9000 captured bytes (some cut short) adding up to more than total_bytes."""
    rng = random.Random(seed)
    records, size = [], 24
    while size <= total_bytes:
        wirelen = rng.choice((60, 61, 576, 1514, 9000, rng.randint(60, 9000)))
        caplen = wirelen if rng.random() < 0.9 else rng.randint(1, wirelen)
        records.append((1_700_000_000 + len(records), len(records) % 1_000_000, wirelen,
                        bytes(rng.getrandbits(8) for _ in range(8)) * (caplen // 8) + bytes(caplen % 8)))
        size += 16 + caplen
    return records


def copy_through_engine(tmp_path, blob, batch):
    """blob as a pcap file through a PcapReader source, a Dummy and a pcap sink: the records written, malformed."""
    (tmp_path / "in.pcap").write_bytes(blob)
    paths = [str(tmp_path / "in.pcap").encode()]
    with Graph(batch=batch) as graph:
        dummy = graph.brick("Dummy")
        graph.sink(dummy, opened(lib.brk_sink_pcap_open, str(tmp_path / "out.pcap").encode(), 0))
        keep = [ffi.new("char[]", path) for path in paths]
        graph.source(opened(lib.brk_source_pcap_open, ffi.new("const char *[]", keep), 1), dummy)
        graph.run()
        malformed = graph.stats().input_malformed
    written = read_pcap((tmp_path / "out.pcap").read_bytes())
    return written.records, malformed


@pytest.mark.parametrize("batch", [1, 7, 1024, 8192])
def test_records_across_many_blocks_come_out_byte_exact(tmp_path, batch):
    records = records_over(3 * BLOCK_BYTES + 12345, seed=batch)
    written, malformed = copy_through_engine(tmp_path, pcap_bytes(records), batch)
    assert malformed == 0
    assert written == records


def test_a_bad_record_past_the_first_block_is_skipped_and_reading_goes_on(tmp_path):
    records = records_over(2 * BLOCK_BYTES, seed=3)
    blob = bytearray(pcap_bytes(records))
    # Spoil the header of the record that starts past 5 MiB: caplen over the maximum.
    offset, index = 24, 0
    while offset < 5 << 20:
        offset += 16 + len(records[index][3])
        index += 1
    struct.pack_into("<I", blob, offset + 8, 0x7FFFFFFF)
    written, malformed = copy_through_engine(tmp_path, bytes(blob), 1024)
    assert malformed == 1
    assert written == records[:index] + records[index + 1:]


def test_a_file_cut_in_its_last_record_keeps_every_whole_record(tmp_path):
    records = records_over(BLOCK_BYTES + 100, seed=4)
    blob = pcap_bytes(records)[:-5]
    written, malformed = copy_through_engine(tmp_path, blob, 512)
    assert malformed == 1 and written == records[:-1]
