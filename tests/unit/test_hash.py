"""The flow hash (SPEC §6) against a bit-loop reference: vectors, symmetry, parsing, truncation, fragments, cascades."""
import ctypes
import ipaddress
import mmap
import random

import pytest

from bricks._native import ffi, lib
from bricks.frames import (
    AH, DESTINATION_OPTIONS, ETHERTYPE_ARP, ETHERTYPE_QINQ, ETHERTYPE_VLAN, FRAGMENT, GRE, HOP_BY_HOP, ICMP,
    IPIP, IPV6, ROUTING, TCP, UDP, ether, fragment_header_body, garbage_frame, ip_frame,
    ipv4, ipv4_fragments, ipv6, ipv6_fragments, pad, random_flows, random_tcp_frames, tcp, tcp_frame, udp,
    udp_frame,
)
from tests.native import Graph, memory_source, output_packets

NON_IP = lib.BRK_HASH_NON_IP
TRUNCATED = lib.BRK_HASH_TRUNCATED
FRAGMENTED = lib.BRK_HASH_FRAGMENT
FALLBACK = lib.BRK_HASH_FRAG_FALLBACK

ADDRESS_PAIR_PORTS = (0xFDFF, 0xFEFF)
KEY_128 = int("506d" * 8, 16)


def toeplitz_reference(sip, dip, sp, dp):
    """SPEC §6 literally: 96 input bits MSB first, XOR the key window at every set bit."""
    data = sip << 64 | dip << 32 | sp << 16 | dp
    result = 0
    for i in range(96):
        if data >> (95 - i) & 1:
            result ^= KEY_128 >> (128 - 32 - i) & 0xFFFFFFFF
    return result


def original_depth0(source, destination, ports):
    """The original's value for an IPv4 flow hashed by the brick linked to the engine (+1 on each port)."""
    sip, dip = int(ipaddress.IPv4Address(source)), int(ipaddress.IPv4Address(destination))
    return toeplitz_reference(sip, dip, (ports[0] + 1) & 0xFFFF, (ports[1] + 1) & 0xFFFF)


def flow_hash(frame, split=4, depth=0, frags=ffi.NULL, caplen=None):
    """(hash, flags) of one frame."""
    flags = ffi.new("uint32_t *")
    value = lib.brk_flow_hash(frame, len(frame) if caplen is None else caplen, split, depth, frags, flags)
    return value, flags[0]


@pytest.fixture
def frag_table():
    table = lib.brk_frag_table_new(1024)
    assert table != ffi.NULL
    yield table
    lib.brk_frag_table_free(table)


def swapped(frame_builder, source, destination, source_port, destination_port, **options):
    """The frames of both directions of one flow."""
    return (frame_builder(source, destination, source_port, destination_port, **options),
            frame_builder(destination, source, destination_port, source_port, **options))


# --- depth 0: bit for bit the original on IPv4 ---------------------------------------------------

def test_table_driven_toeplitz_equals_the_bit_loop():
    rng = random.Random(6)
    tuples = [(0, 0, 0, 0), (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF, 0xFFFF), (0x80000000, 0, 0, 1)]
    tuples += [(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(16))
               for _ in range(3000)]
    tuples += [(1 << bit, 0, 0, 0) for bit in range(32)] + [(0, 0, 1 << bit, 0) for bit in range(16)]
    for sip, dip, sp, dp in tuples:
        assert lib.brk_toeplitz_ipv4(sip, dip, sp, dp) == toeplitz_reference(sip, dip, sp, dp)


@pytest.mark.parametrize("builder", [tcp_frame, udp_frame])
def test_ipv4_split4_ports_plus_one_at_depth0(builder):
    rng = random.Random(7)
    for source, destination, sport, dport in random_flows(rng, 500) + [("1.2.3.4", "5.6.7.8", 65535, 0)]:
        value, flags = flow_hash(builder(source, destination, sport, dport), split=4)
        assert flags == 0
        assert value == original_depth0(source, destination, (sport, dport))


@pytest.mark.parametrize("builder", [tcp_frame, udp_frame])
def test_ipv4_split2_hashes_the_address_pair(builder):
    rng = random.Random(8)
    for source, destination, sport, dport in random_flows(rng, 500):
        value, flags = flow_hash(builder(source, destination, sport, dport), split=2)
        assert flags == 0
        assert value == original_depth0(source, destination, ADDRESS_PAIR_PORTS)


@pytest.mark.parametrize("protocol", [ICMP, GRE, 132])
def test_ipv4_other_protocols_use_the_stand_in_ports_under_split4(protocol):
    rng = random.Random(protocol)
    for source, destination, _, _ in random_flows(rng, 200):
        frame = ip_frame(ipv4(source, destination, protocol, b"\x08\x00" + bytes(30)))
        assert flow_hash(frame, split=4) == (original_depth0(source, destination, ADDRESS_PAIR_PORTS), 0)


def test_ipv4_header_options_are_skipped():
    frame = ip_frame(ipv4("10.1.2.3", "10.9.8.7", TCP, tcp(4000, 443), options=b"\x01" * 12))
    assert flow_hash(frame) == (original_depth0("10.1.2.3", "10.9.8.7", (4000, 443)), 0)


@pytest.mark.parametrize("depth", [0, 1])
def test_dont_fragment_is_no_fragment(depth):
    frame = bytearray(tcp_frame("10.1.2.3", "10.9.8.7", 4000, 443))
    frame[14 + 6] |= 0x40   # DF, as Linux sets on most TCP traffic
    assert flow_hash(bytes(frame), depth=depth) == flow_hash(tcp_frame("10.1.2.3", "10.9.8.7", 4000, 443),
                                                             depth=depth)
    assert flow_hash(bytes(frame), depth=depth)[1] == 0


@pytest.mark.parametrize("vlans", [
    [(ETHERTYPE_VLAN, 5)],
    [(ETHERTYPE_QINQ, 100), (ETHERTYPE_VLAN, 5)],
    [(ETHERTYPE_VLAN, 100), (ETHERTYPE_VLAN, 5)],
    [(ETHERTYPE_QINQ, 1), (ETHERTYPE_VLAN, 2), (ETHERTYPE_VLAN, 3)],
])
@pytest.mark.parametrize("depth", [0, 1])
def test_vlan_tags_are_skipped(vlans, depth):
    for flow in random_flows(random.Random(9), 50) + random_flows(random.Random(9), 50, version=6):
        assert flow_hash(tcp_frame(*flow, vlans=vlans), depth=depth) == flow_hash(tcp_frame(*flow), depth=depth)


# --- symmetry ------------------------------------------------------------------------------------

def tunnel_4in4(source, destination, sport, dport):
    inner = ipv4(source, destination, TCP, tcp(sport, dport))
    return ip_frame(ipv4("192.0.2.1", "192.0.2.2", IPIP, inner))


def tunnel_6in6(source, destination, sport, dport):
    inner = ipv6(source, destination, UDP, udp(sport, dport))
    return ip_frame(ipv6("2001:db8::a", "2001:db8::b", IPV6, inner))


def tunnel_6in4(source, destination, sport, dport):
    return ip_frame(ipv4("192.0.2.1", "192.0.2.2", IPV6, ipv6(source, destination, TCP, tcp(sport, dport))))


def tunnel_4in6(source, destination, sport, dport):
    return ip_frame(ipv6("2001:db8::a", "2001:db8::b", IPIP, ipv4(source, destination, UDP, udp(sport, dport))))


def qinq_tcp(source, destination, sport, dport):
    return tcp_frame(source, destination, sport, dport, vlans=[(ETHERTYPE_QINQ, 7), (ETHERTYPE_VLAN, 8)])


def dot1q_udp(source, destination, sport, dport):
    return udp_frame(source, destination, sport, dport, vlans=[(ETHERTYPE_VLAN, 8)])


def ipv6_with_extensions(source, destination, sport, dport):
    extensions = [(HOP_BY_HOP, b""), (ROUTING, b"\0\0"), (AH, b""), (DESTINATION_OPTIONS, b"\1\2")]
    return ip_frame(ipv6(source, destination, TCP, tcp(sport, dport), extensions=extensions))


def arp_between(source_mac, destination_mac, *_):
    return pad(ether(bytes(28), ETHERTYPE_ARP, destination=destination_mac, source=source_mac))


SYMMETRY_CASES = [
    (tcp_frame, 4), (udp_frame, 4), (tcp_frame, 6), (udp_frame, 6), (qinq_tcp, 4), (qinq_tcp, 6),
    (dot1q_udp, 4), (tunnel_4in4, 4), (tunnel_6in6, 6), (tunnel_6in4, 6), (tunnel_4in6, 4),
    (ipv6_with_extensions, 6),
]


@pytest.mark.parametrize("builder,version", SYMMETRY_CASES,
                         ids=[f"{builder.__name__}-v{version}" for builder, version in SYMMETRY_CASES])
@pytest.mark.parametrize("split", [2, 4])
@pytest.mark.parametrize("depth", [0, 1, 3])
def test_every_hash_is_symmetric(builder, version, split, depth):
    for flow in random_flows(random.Random(10), 200, version=version):
        forward, backward = swapped(builder, *flow)
        assert flow_hash(forward, split, depth) == flow_hash(backward, split, depth)


@pytest.mark.parametrize("depth", [0, 1])
def test_non_ip_hashes_on_the_ethernet_addresses_symmetrically(depth):
    rng = random.Random(11)
    values = set()
    for _ in range(200):
        a, b = rng.getrandbits(48).to_bytes(6, "big"), rng.getrandbits(48).to_bytes(6, "big")
        forward, forward_flags = flow_hash(arp_between(a, b), depth=depth)
        backward, backward_flags = flow_hash(arp_between(b, a), depth=depth)
        assert forward == backward
        assert forward_flags == backward_flags == NON_IP
        values.add(forward)
    assert len(values) > 190   # the addresses matter


def original_non_ip(source_mac, destination_mac):
    """The original's value for a non-IP frame: bytes 2..5 of each MAC as a little-endian word, stand-in ports."""
    sip, dip = int.from_bytes(source_mac[2:6], "little"), int.from_bytes(destination_mac[2:6], "little")
    return toeplitz_reference(sip, dip, ADDRESS_PAIR_PORTS[0] + 1, ADDRESS_PAIR_PORTS[1] + 1)


@pytest.mark.parametrize("vlans", [(), [(ETHERTYPE_VLAN, 5)]], ids=["untagged", "dot1q"])
def test_non_ip_at_depth0_is_the_original_mac_hash(vlans):
    rng = random.Random(12)
    for _ in range(200):
        a, b = rng.getrandbits(48).to_bytes(6, "big"), rng.getrandbits(48).to_bytes(6, "big")
        frame = pad(ether(bytes(28), ETHERTYPE_ARP, destination=b, source=a, vlans=vlans))
        assert flow_hash(frame) == (original_non_ip(a, b), NON_IP)


# --- what is hashed ------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [0, 1])
def test_ipv6_uses_all_128_bits_of_both_addresses(depth):
    rng = random.Random(12)
    for source, destination, sport, dport in random_flows(rng, 40, version=6):
        base = flow_hash(tcp_frame(source, destination, sport, dport), depth=depth)
        for bit in range(128):
            changed = str(ipaddress.IPv6Address(int(ipaddress.IPv6Address(source)) ^ (1 << bit)))
            assert flow_hash(tcp_frame(changed, destination, sport, dport), depth=depth) != base
            changed = str(ipaddress.IPv6Address(int(ipaddress.IPv6Address(destination)) ^ (1 << bit)))
            assert flow_hash(tcp_frame(source, changed, sport, dport), depth=depth) != base


@pytest.mark.parametrize("depth", [0, 1])
def test_ipv6_ports_count_under_split4_only(depth):
    rng = random.Random(13)
    for source, destination, sport, dport in random_flows(rng, 200, version=6):
        other_port = (sport + rng.randrange(1, 65535)) % 65536
        base, moved = tcp_frame(source, destination, sport, dport), tcp_frame(source, destination, other_port, dport)
        assert flow_hash(base, 4, depth) != flow_hash(moved, 4, depth)
        assert flow_hash(base, 2, depth) == flow_hash(moved, 2, depth)


@pytest.mark.parametrize("depth", [0, 2])
def test_ipv6_extension_headers_are_skipped(depth):
    for flow in random_flows(random.Random(14), 100, version=6):
        assert flow_hash(ipv6_with_extensions(*flow), depth=depth) == flow_hash(tcp_frame(*flow), depth=depth)


@pytest.mark.parametrize("tunnel,version", [(tunnel_4in4, 4), (tunnel_6in6, 6), (tunnel_6in4, 6), (tunnel_4in6, 4)])
@pytest.mark.parametrize("depth", [0, 1])
def test_tunnels_split4_hash_the_inner_flow_split2_the_outer_pair(tunnel, version, depth):
    inner_builder = udp_frame if tunnel in (tunnel_6in6, tunnel_4in6) else tcp_frame
    outer_flows = set()
    for flow in random_flows(random.Random(15), 100, version=version):
        frame = tunnel(*flow)
        assert flow_hash(frame, 4, depth) == flow_hash(inner_builder(*flow), 4, depth)
        outer_flows.add(flow_hash(frame, 2, depth))
    assert len(outer_flows) == 1   # every flow shares the outer address pair


def test_depth0_ipv4_in_ipv4_is_the_original_on_the_inner_header():
    frame = tunnel_4in4("172.16.0.1", "172.16.0.2", 5353, 53)
    assert flow_hash(frame, 4) == (original_depth0("172.16.0.1", "172.16.0.2", (5353, 53)), 0)
    assert flow_hash(frame, 2) == (original_depth0("192.0.2.1", "192.0.2.2", ADDRESS_PAIR_PORTS), 0)


# --- truncated frames and garbage ----------------------------------------------------------------

class GuardedBuffer:
    """A page followed by an inaccessible one: a frame placed at the end of the first page makes
    any read past its last byte fault, so an overread is a crash rather than silent luck."""

    def __init__(self):
        self.page = mmap.PAGESIZE
        self.map = mmap.mmap(-1, 2 * self.page)
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        assert libc.mprotect(self.address + self.page, self.page, 0) == 0

    def place(self, data):
        start = self.page - len(data)
        self.map[start:self.page] = data
        return ffi.cast("uint8_t *", self.address + start)


@pytest.fixture(scope="module")
def guarded():
    return GuardedBuffer()


def hash_guarded(guarded, data, split=4, depth=0, frags=ffi.NULL):
    flags = ffi.new("uint32_t *")
    value = lib.brk_flow_hash(guarded.place(data), len(data), split, depth, frags, flags)
    return value, flags[0]


EXT_V6 = ipv6_with_extensions("2001:db8::1", "2001:db8::2", 1000, 2000)
TRUNCATION_CASES = [
    # (frame, bytes needed for a full split-4 parse)
    (tcp_frame("10.0.0.1", "10.0.0.2", 1000, 2000, b"x" * 10), 14 + 20 + 4),
    (qinq_tcp("10.0.0.1", "10.0.0.2", 1000, 2000), 14 + 8 + 20 + 4),
    (tcp_frame("2001:db8::1", "2001:db8::2", 1000, 2000), 14 + 40 + 4),
    (EXT_V6, len(EXT_V6) - 20 + 4),
    (tunnel_4in4("10.0.0.1", "10.0.0.2", 1000, 2000), 14 + 20 + 20 + 4),
    (tunnel_6in6("2001:db8::1", "2001:db8::2", 1000, 2000), 14 + 40 + 40 + 4),
]


@pytest.mark.parametrize("frame,needed", TRUNCATION_CASES)
@pytest.mark.parametrize("depth", [0, 1])
def test_every_prefix_is_safe_and_flagged_iff_a_header_is_cut(guarded, frame, needed, depth):
    for length in range(len(frame) + 1):
        _, flags = hash_guarded(guarded, frame[:length], 4, depth)
        assert bool(flags & TRUNCATED) == (length < needed), length


def test_a_cut_header_hashes_on_what_came_before():
    frame = tcp_frame("10.0.0.1", "10.0.0.2", 1000, 2000)
    macs_only = arp_between(frame[6:12], frame[0:6])
    for length in range(12, 14 + 20):
        assert flow_hash(frame[:length])[0] == flow_hash(macs_only)[0]
    for length in range(14 + 20, 14 + 20 + 4):
        assert flow_hash(frame[:length]) == (flow_hash(frame, split=2)[0], TRUNCATED)


@pytest.mark.parametrize("depth", [0, 1])
def test_random_garbage_never_reads_past_caplen(guarded, depth):
    rng = random.Random(16)
    for _ in range(20000):
        _, flags = hash_guarded(guarded, garbage_frame(rng), rng.choice([2, 4]), depth)
        assert flags < 16


# --- fragments -----------------------------------------------------------------------------------

def datagram_fragments(version, ident, source=None, destination=None, ports=(5000, 53)):
    if version == 4:
        return [ip_frame(f) for f in ipv4_fragments(source or "10.0.0.1", destination or "10.0.0.2", UDP,
                                                     udp(*ports, b"q" * 60), ident)]
    return [ip_frame(f) for f in ipv6_fragments(source or "2001:db8::1", destination or "2001:db8::2", UDP,
                                                 udp(*ports, b"q" * 60), ident)]


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("depth", [0, 1])
def test_fragments_follow_their_first_fragment(frag_table, version, depth):
    rng = random.Random(17)
    datagrams = []
    for ident, flow in enumerate(random_flows(rng, 100, version=version)):
        fragments = datagram_fragments(version, 1000 + ident, flow[0], flow[1], flow[2:])
        whole = udp_frame(*flow, b"q" * 60)
        datagrams.append((fragments, flow_hash(whole, 4, depth)[0]))
    for fragments, _ in datagrams:
        flow_hash(fragments[0], 4, depth, frag_table)
    for fragments, expected in datagrams:
        assert len(fragments) > 3
        for fragment in fragments:
            assert flow_hash(fragment, 4, depth, frag_table) == (expected, FRAGMENTED)


@pytest.mark.parametrize("version", [4, 6])
def test_a_later_fragment_before_its_first_falls_back_to_the_address_pair(frag_table, version):
    fragments = datagram_fragments(version, 77)
    address_pair = flow_hash(fragments[0], split=2)[0]
    assert flow_hash(fragments[2], 4, 0, frag_table) == (address_pair, FRAGMENTED | FALLBACK)
    first, _ = flow_hash(fragments[0], 4, 0, frag_table)
    assert first != address_pair
    assert flow_hash(fragments[2], 4, 0, frag_table) == (first, FRAGMENTED)


@pytest.mark.parametrize("version", [4, 6])
def test_without_a_table_every_fragment_hashes_on_the_address_pair(version):
    fragments = datagram_fragments(version, 78)
    address_pair = flow_hash(fragments[0], split=2)[0]
    for fragment in fragments:
        assert flow_hash(fragment, 4, 0) == (address_pair, FRAGMENTED)


def test_an_atomic_ipv6_fragment_is_a_whole_packet():
    frame = ip_frame(ipv6("2001:db8::1", "2001:db8::2", TCP, tcp(1, 2),
                          extensions=[(FRAGMENT, fragment_header_body(5, 0, False))]))
    assert flow_hash(frame) == flow_hash(tcp_frame("2001:db8::1", "2001:db8::2", 1, 2))


def test_a_small_table_forgets_old_datagrams_but_keeps_recent_ones():
    table = lib.brk_frag_table_new(4)
    try:
        datagrams = [datagram_fragments(4, ident) for ident in range(64)]
        for fragments in datagrams:
            flow_hash(fragments[0], 4, 0, table)
        results = [flow_hash(fragments[1], 4, 0, table)[1] for fragments in datagrams]
        assert results[-1] == FRAGMENTED
        assert results.count(FRAGMENTED | FALLBACK) >= 56
    finally:
        lib.brk_frag_table_free(table)


# --- cascades: LB(4) -> LB(2) --------------------------------------------------------------------

def assert_halves(counts, total):
    for count in counts:
        assert abs(count / total - 0.5) <= 0.05, counts


def assert_split_in_half(members, split, depth):
    """The hash at `depth` sends half of `members` to each of two outputs."""
    halves = [0, 0]
    for frame in members:
        halves[flow_hash(frame, split, depth)[0] % 2] += 1
    assert_halves(halves, len(members))


@pytest.mark.parametrize("version", [4, 6])
def test_second_level_splits_each_first_level_output_in_half(version):
    frames = random_tcp_frames(4000, seed=18, version=version)
    groups = {output: [] for output in range(4)}
    for frame in frames:
        groups[flow_hash(frame, 4, 0)[0] % 4].append(frame)
    for output, members in groups.items():
        assert abs(len(members) / len(frames) - 0.25) <= 0.05
        assert_split_in_half(members, 2, 1)


def test_third_level_is_decorrelated_from_the_second():
    frames = random_tcp_frames(4000, seed=19)
    for second in range(2):
        members = [f for f in frames if flow_hash(f, 4, 1)[0] % 2 == second]
        assert_split_in_half(members, 4, 2)


def test_engine_cascade_lb4_then_lb2_on_each_output():
    frames = random_tcp_frames(2000, seed=20)
    rounds = 3
    with Graph() as graph:
        root = graph.brick("LoadBalancer", split=4, depth=0, frag_slots=256)
        children = [graph.child(root, "LoadBalancer", split=4, depth=1, frag_slots=256) for _ in range(4)]
        for child in children:
            graph.null_sinks(child, 2)
        graph.source(memory_source(frames, rounds), root)
        graph.run()

        sent = len(frames) * rounds
        delivered = 0
        for child in children:
            halves = output_packets(child, 2)
            assert_halves(halves, sum(halves))
            delivered += sum(halves)
        assert delivered == sent
        assert graph.stats().received_packets == sent
