"""Dedup and Slice bricks in C, through the memory source: which copies Dedup takes for the same frame (each ignored
field) and which it does not (any other byte), its window on a fake clock, a full table degrading to forwarding;
Slice's cut lengths, the wire length kept, and its optional IP length fix."""
import struct

import pytest

from bricks import catalog
from bricks import engine as engine_module
from bricks._native import ffi, lib
from bricks.engine import PktEngine
from bricks.frames import (ETHERTYPE_IPV4, UDP, checksum, ether, ip_frame, ipv4, ipv6, pad, pcap_bytes, read_pcap,
                           tcp_frame, udp, udp_frame)
from bricks.lua import LuaError, LuaRuntime
from tests.native import Graph, brick_stats, memory_source, output_counters

PAYLOAD = b"payload-bytes-" * 4


def dedup_config(**options):
    return catalog.KINDS["Dedup"].check_argument(options or None)


def udp4(ttl=64, vlans=(), source_mac="02:00:00:00:00:01", payload=PAYLOAD):
    packet = ipv4("10.0.0.1", "10.0.0.2", UDP, udp(1000, 2000, payload), ttl=ttl)
    return ether(packet, ETHERTYPE_IPV4, source=source_mac, vlans=vlans)


def run_dedup(frames, clock=None, **options):
    """Pushes frames through one Dedup brick: (packets delivered, its counters)."""
    with Graph() as graph:
        brick = graph.brick("Dedup", **dedup_config(**options))
        if clock is not None:
            assert lib.brk_dedup_set_clock(brick, clock) == 0
        graph.null_sinks(brick, 1)
        graph.source(memory_source(frames), brick)
        graph.run()
        delivered = output_counters(brick).packets
        counted = brick_stats(brick)
    assert counted.received_packets == len(frames) == delivered + counted.deduplicated
    assert counted.unique == delivered
    return delivered, counted


ORIGINAL = udp4()
COPIES_DIFFERING_IN = {
    "ttl": udp4(ttl=63)[:24] + ORIGINAL[24:],     # TTL only: the checksum left as it was
    "checksum": ORIGINAL[:24] + b"\xbe\xef" + ORIGINAL[26:],
    "vlan": udp4(vlans=[(0x8100, 42)]),
    "mac": udp4(source_mac="02:00:00:00:00:99"),
    "dscp": ORIGINAL[:15] + bytes([0x2c << 2 | (ORIGINAL[15] & 3)]) + ORIGINAL[16:],   # ECN kept
}


@pytest.mark.parametrize("field", sorted(COPIES_DIFFERING_IN))
def test_a_copy_differing_only_in_an_ignored_field_is_a_duplicate(field):
    copy = COPIES_DIFFERING_IN[field]
    assert copy != ORIGINAL
    delivered, counted = run_dedup([ORIGINAL, copy], ignore=[field])
    assert (delivered, counted.deduplicated) == (1, 1)
    # Not ignored, it is a different frame.
    others = [name for name in catalog.DEDUP_IGNORABLE if name != field]
    assert run_dedup([ORIGINAL, copy], ignore=others)[0] == 2


def test_the_default_ignores_ttl_checksum_and_vlan_together():
    router_copy = udp4(ttl=63, vlans=[(0x8100, 7)])    # its checksum differs too
    assert run_dedup([ORIGINAL, router_copy, router_copy])[0] == 1
    assert run_dedup([ORIGINAL, udp4(source_mac="02:00:00:00:00:99")])[0] == 2   # MAC not ignored by default


def test_ipv6_hop_limit_ignored():
    first = ip_frame(ipv6("2001:db8::1", "2001:db8::2", UDP, udp(1, 2, PAYLOAD), hop_limit=64))
    second = ip_frame(ipv6("2001:db8::1", "2001:db8::2", UDP, udp(1, 2, PAYLOAD), hop_limit=60))
    assert run_dedup([first, second])[0] == 1


def test_any_other_byte_differing_is_not_a_duplicate():
    # Every byte of the frame in turn (payload included): only the ignored ones may make a copy.
    ignored = {14 + 1, 14 + 8, 14 + 10, 14 + 11} | set(range(12))   # DSCP, TTL, checksum, MACs
    frames = [ORIGINAL]
    for index in range(len(ORIGINAL)):
        if index not in ignored:
            frames.append(ORIGINAL[:index] + bytes([ORIGINAL[index] ^ 0x80]) + ORIGINAL[index + 1:])
    delivered, counted = run_dedup(frames, ignore=list(catalog.DEDUP_IGNORABLE))
    assert (delivered, counted.deduplicated) == (len(frames), 0)
    assert run_dedup([ORIGINAL, ORIGINAL + b"x"])[0] == 2          # one byte longer
    assert run_dedup([ORIGINAL, ORIGINAL[:-1]])[0] == 2


def test_non_ip_frames_are_compared_whole():
    arp = pad(ether(b"\x00\x01\x08\x00\x06\x04\x00\x01" + bytes(20), 0x0806))
    tagged_arp = pad(ether(b"\x00\x01\x08\x00\x06\x04\x00\x01" + bytes(20), 0x0806, vlans=[(0x8100, 5)]))
    assert run_dedup([arp, arp, tagged_arp, b"\x01\x02", b"\x01\x02", b""])[0] == 4


def test_window_expiry_on_a_fake_clock():
    window_ns = 1000 * 1000
    # One engine per clock step, all on one brick: its table outlives them.
    delivered = []
    with Graph() as graph:
        brick = graph.brick("Dedup", **dedup_config(window_us=1000))
        graph.null_sinks(brick, 1)
        for now, frames in ((10 ** 9, [ORIGINAL]), (10 ** 9 + window_ns, [ORIGINAL]),
                            (10 ** 9 + window_ns + 1, [ORIGINAL, ORIGINAL])):
            assert lib.brk_dedup_set_clock(brick, now) == 0
            engine = lib.brk_engine_new(16, -1)
            source = memory_source(frames)
            assert lib.brk_engine_add_source(engine, source, brick) == 0
            assert lib.brk_engine_run(engine) == 0
            lib.brk_engine_free(engine)
            lib.brk_source_close(source)
            delivered.append(output_counters(brick).packets)
        counted = brick_stats(brick)
    assert delivered == [1, 1, 2]
    assert (counted.received_packets, counted.deduplicated, counted.table_full) == (4, 2, 0)


def test_a_full_table_degrades_to_forwarding_counted():
    frames = [udp4(payload=b"frame %d" % number) for number in range(8)]
    # The last 4 are remembered, the first 4 forgotten early (counted): copies of the last 4 are found...
    delivered, counted = run_dedup(frames + frames[4:], clock=10 ** 9, size=4)
    assert (delivered, counted.deduplicated, counted.table_full) == (8, 4, 4)
    # ... copies of the first 4 pass (each one, remembered, pushes out one of the last 4: counted too).
    delivered, counted = run_dedup(frames + frames[:4], clock=10 ** 9, size=4)
    assert (delivered, counted.deduplicated, counted.table_full) == (12, 0, 8)
    # A byte store too small for two frames: each one pushes the one before out.
    delivered, counted = run_dedup([ORIGINAL, udp4(payload=b"other"), ORIGINAL], clock=10 ** 9,
                                   bytes=128)   # ORIGINAL is 98 bytes
    assert (delivered, counted.deduplicated, counted.table_full) == (3, 0, 2)


def test_bad_options_are_one_line_errors():
    for options, message in (({"ignore": ["tll"]}, "cannot ignore 'tll'"), ({"window": 5}, "no option 'window'"),
                             ({"size": 0}, "size must be")):
        with pytest.raises(Exception, match=message):
            catalog.KINDS["Dedup"].check_argument(options)


def run_slice(tmp_path, frames, argument):
    """Frames through Slice into a pcap file: the records read back, and Slice's counters."""
    path = tmp_path / "out.pcap"
    with Graph() as graph:
        brick = graph.brick("Slice", **catalog.KINDS["Slice"].check_argument(argument))
        error = ffi.new("char[]", 256)
        sink = lib.brk_sink_pcap_open(str(path).encode(), 0, error, len(error))
        assert sink != ffi.NULL, ffi.string(error)
        graph.sink(brick, sink)
        graph.source(memory_source(frames), brick)
        graph.run()
        counted = brick_stats(brick)
    return read_pcap(path.read_bytes()).records, counted


LONG_TCP = tcp_frame("10.0.0.1", "10.0.0.2", 1, 2, bytes(range(256)) * 4)


def test_slice_cuts_to_n_bytes_and_keeps_the_wire_length(tmp_path):
    frames = [LONG_TCP, pad(udp_frame("10.0.0.1", "10.0.0.2", 1, 2))]
    records, counted = run_slice(tmp_path, frames, 128)
    assert [(len(record[3]), record[2]) for record in records] == [(128, len(LONG_TCP)), (60, 60)]
    assert records[0][3] == LONG_TCP[:128]          # lengths as on the wire: untouched bytes
    assert (counted.sliced, counted.lengths_fixed) == (1, 0)


def test_slice_after_the_l4_header(tmp_path):
    udp6 = ip_frame(ipv6("2001:db8::1", "2001:db8::2", UDP, udp(1, 2, bytes(300))))
    tagged = tcp_frame("10.0.0.1", "10.0.0.2", 1, 2, bytes(500), vlans=[(0x8100, 3)])
    records, _ = run_slice(tmp_path, [LONG_TCP, udp6, tagged], {"payload": 10})
    assert [len(record[3]) for record in records] == [14 + 20 + 20 + 10, 14 + 40 + 8 + 10, 18 + 20 + 20 + 10]


def test_slice_fixes_ip_lengths_and_checksum_when_asked(tmp_path):
    records, counted = run_slice(tmp_path, [LONG_TCP], {"length": 100, "fix_lengths": True})
    data = records[0][3]
    assert len(data) == 100 and records[0][2] == len(LONG_TCP)
    assert struct.unpack("!H", data[16:18])[0] == 100 - 14
    assert checksum(data[14:34]) == 0                 # a valid header checksum
    assert data[34:] == LONG_TCP[34:100]
    assert (counted.sliced, counted.lengths_fixed) == (1, 1)


def test_lua_dedup_then_slice_over_pcap_files(tmp_path):
    """The Lua spelling of the issue: Dedup's options table, Slice's length; PcapReader -> Dedup -> Slice -> file."""
    stream = [udp4(payload=PAYLOAD + b"%04d" % number) for number in range(20)]
    copies = [udp4(ttl=63, vlans=[(0x8100, 9)], payload=PAYLOAD + b"%04d" % number) for number in range(20)]
    # Capture times are the clock: each copy 100 us after its original, frames 10 ms apart; one more copy of the
    # last frame 2 ms after it, out of the 1 ms window, passes.
    records = [record for number, (frame, copy) in enumerate(zip(stream, copies))
               for record in ((1, number * 10_000, len(frame), frame), (1, number * 10_000 + 100, len(copy), copy))]
    records.append((1, 19 * 10_000 + 2_000, len(copies[-1]), copies[-1]))
    (tmp_path / "in.pcap").write_bytes(pcap_bytes(records))
    printed = []
    runtime = LuaRuntime(output=printed.append)
    try:
        runtime.execute(f"""
            local reader = Brick.new("PcapReader")
            reader:connect_input("{tmp_path / 'in.pcap'}"):connect_output("cap{{0")
            local dedup = Brick.new("Dedup", {{window_us = 1000, ignore = {{"ttl", "vlan", "mac", "dscp", "checksum"}}}})
            dedup:connect_input("cap}}0"):connect_output("cap{{1")
            local slice = Brick.new("Slice", 64)
            slice:connect_input("cap}}1"):connect_output("{tmp_path / 'out.pcap'}")
            reader:link(dedup)
            dedup:link(slice)
            local pe = PktEngine.new("dedup-lua")
            pe:link(reader)
            pe:start()
        """)
        engine = PktEngine.retrieve("dedup-lua")
        assert engine.wait(10)
        bricks = engine.stats()["bricks"]
        assert [(brick["kind"], brick["received"]) for brick in bricks] == \
            [("PcapReader", 41), ("Dedup", 41), ("Slice", 21)]
        assert (bricks[1]["deduplicated"], bricks[2]["sliced"]) == (20, 21)
        written = read_pcap((tmp_path / "out.pcap").read_bytes()).records
        assert [(data, original) for _, _, original, data in written] == \
            [(frame[:64], len(frame)) for frame in stream + copies[-1:]]
        with pytest.raises(LuaError, match="Dedup cannot ignore 'tll'"):
            runtime.execute('Brick.new("Dedup", {ignore = {"tll"}})')
        with pytest.raises(LuaError, match="Slice takes one of length"):
            runtime.execute('Brick.new("Slice", {payload = 8, length = 64})')
    finally:
        engine_module.shutdown_all()
