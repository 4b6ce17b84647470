"""The one dissector (csrc/dissect.h) and the key's portable flow hash (csrc/flow_hash.h) against hash.c.

The XDP program hashes with the same dissector and portable hash: these tests show that, on the hash vectors of
test_hash.py, on every prefix of them and on random garbage, the dissector's key hashes to exactly what hash.c
computes and reports the same flags, and that the key holds the layers it claims (tags, tunnels, fragments).
"""
import random
import struct

import pytest

from bricks._native import ffi, lib
from bricks.frames import (
    AH, DESTINATION_OPTIONS, ETHERTYPE_IPV4, ETHERTYPE_QINQ, ETHERTYPE_VLAN, ICMP, TCP, UDP, garbage_frame,
    ip_frame, ipv4, random_flows, tcp, tcp_frame, udp, udp_frame,
)
from tests.fuzz.test_fuzz_findings import ipv6_fragment
from tests.unit.test_hash import (
    SYMMETRY_CASES, TRUNCATION_CASES, arp_between, datagram_fragments, ipv6_with_extensions, tunnel_4in4,
    tunnel_6in6,
)

PARSE_FIRST_FRAGMENT = lib.BRK_DISSECT_PARSE_FIRST_FRAGMENT
SPLITS_AND_DEPTHS = [(split, depth) for split in (2, 4) for depth in (0, 1, 3)]


def dissect(frame, options=0, caplen=None):
    keys = ffi.new("struct brk_flow_keys *")
    lib.brk_dissect_frame(frame, len(frame) if caplen is None else caplen, options, keys)
    return keys


def hash_c(frame, split, depth, frags=ffi.NULL):
    flags = ffi.new("uint32_t *")
    value = lib.brk_flow_hash(frame, len(frame), split, depth, frags, flags)
    return value, flags[0]


def hash_dissected(frame, split, depth):
    """(hash, flags) from the dissector's key, without a fragment table, as hash.c reports them."""
    keys = dissect(frame)
    flags = keys.flow_result if split == 4 else keys.address_result
    return lib.brk_dissect_flow_hash(keys, split, depth), flags


def vector_frames():
    """The frames of the hash vectors: every builder of test_hash.py, IPv4 and IPv6, plus odd ones."""
    rng = random.Random(30)
    frames = []
    for builder, version in SYMMETRY_CASES:
        for flow in random_flows(rng, 40, version=version):
            frames.append(builder(*flow))
    for _ in range(40):
        frames.append(arp_between(rng.getrandbits(48).to_bytes(6, "big"), rng.getrandbits(48).to_bytes(6, "big")))
    for protocol in (ICMP, 47, 132):
        frames.append(ip_frame(ipv4("10.1.1.1", "10.2.2.2", protocol, bytes(32))))
    frames.append(tcp_frame("10.1.2.3", "10.9.8.7", 1, 2, vlans=[(ETHERTYPE_VLAN, n) for n in range(5)]))
    frames.append(tcp_frame("10.1.2.3", "10.9.8.7", 1, 2, vlans=[(ETHERTYPE_QINQ, n) for n in range(4)]))
    frames.append(ip_frame(ipv4("10.1.2.3", "10.9.8.7", TCP, bytes(20), options=b"\x01" * 12)))
    for version in (4, 6):
        for fragment in datagram_fragments(version, 99):
            frames.append(fragment)
    return frames


@pytest.mark.parametrize("split,depth", SPLITS_AND_DEPTHS)
def test_the_key_hashes_to_hash_c_on_every_vector(split, depth):
    frames = vector_frames()
    assert len(frames) > 500
    for frame in frames:
        assert hash_dissected(frame, split, depth) == hash_c(frame, split, depth), frame.hex()


@pytest.mark.parametrize("frame,_needed", TRUNCATION_CASES)
@pytest.mark.parametrize("split,depth", SPLITS_AND_DEPTHS)
def test_every_prefix_hashes_to_hash_c(frame, _needed, split, depth):
    for length in range(len(frame) + 1):
        assert hash_dissected(frame[:length], split, depth) == hash_c(frame[:length], split, depth), length


def test_random_garbage_hashes_to_hash_c():
    rng = random.Random(31)
    for _ in range(20000):
        data = garbage_frame(rng, protocols=[TCP, UDP, 4, 41, 44, 0, 43, 51, 60])
        split, depth = rng.choice(SPLITS_AND_DEPTHS)
        assert hash_dissected(data, split, depth) == hash_c(data, split, depth), data.hex()


class FragmentMemory:
    """What a caller of the dissector keeps for split 4 (the XDP program's LRU map): a first fragment's hash
    under its datagram, looked up by the later ones."""

    def __init__(self):
        self.hashes = {}

    @staticmethod
    def datagram(fragment):
        size = fragment.address_size
        return bytes(fragment.source)[:size], bytes(fragment.destination)[:size], fragment.protocol, fragment.id

    def hash(self, frame, depth):
        keys = dissect(frame, PARSE_FIRST_FRAGMENT)
        flags = keys.flow_result
        value = lib.brk_dissect_flow_hash(keys, 4, depth)
        if keys.later_fragment.address_size:
            found = self.hashes.get(self.datagram(keys.later_fragment))
            if found is None:
                flags |= lib.BRK_HASH_FRAG_FALLBACK
            else:
                value = found
        if keys.first_fragment.address_size:
            self.hashes[self.datagram(keys.first_fragment)] = value
        return value, flags


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("depth", [0, 2])
def test_fragments_with_a_memory_hash_as_with_hash_c_table(version, depth):
    table = lib.brk_frag_table_new(1024)
    memory = FragmentMemory()
    try:
        rng = random.Random(32)
        datagrams = [datagram_fragments(version, 500 + n, flow[0], flow[1], flow[2:])
                     for n, flow in enumerate(random_flows(rng, 30, version=version))]
        # A later fragment before its first (fallback), then the whole datagrams in order.
        frames = [datagrams[0][2]] + [fragment for fragments in datagrams for fragment in fragments]
        for frame in frames:
            assert memory.hash(frame, depth) == hash_c(frame, 4, depth, table)
    finally:
        lib.brk_frag_table_free(table)


def test_the_key_holds_every_layer():
    frame = tcp_frame("10.0.0.1", "10.0.0.2", 1000, 2000, vlans=[(ETHERTYPE_QINQ, 7), (ETHERTYPE_VLAN, 8)])
    keys = dissect(frame)
    assert (keys.vlan_count, list(keys.vlan_tci)[:2], keys.ethertype) == (2, [7, 8], ETHERTYPE_IPV4)
    assert (keys.ip_headers, keys.ip_protocol, keys.flow.has_ports) == (1, TCP, 1)
    assert (keys.flow.source_port, keys.flow.destination_port) == (1000, 2000)
    assert bytes(keys.address_pair.source)[:4] == bytes([10, 0, 0, 1])

    tunnel = dissect(tunnel_4in4("172.16.0.1", "172.16.0.2", 5353, 53))
    assert (tunnel.ip_headers, bytes(tunnel.flow.source)[:4], bytes(tunnel.address_pair.source)[:4]) == (
        2, bytes([172, 16, 0, 1]), bytes([192, 0, 2, 1]))
    assert dissect(tunnel_6in6("2001:db8::1", "2001:db8::2", 1, 2)).flow.address_size == 16
    assert dissect(ipv6_with_extensions("2001:db8::1", "2001:db8::2", 1, 2)).ip_protocol == TCP

    first, later = datagram_fragments(4, 77)[:2]
    keys = dissect(first, PARSE_FIRST_FRAGMENT)
    assert (keys.first_fragment.id, keys.first_fragment.protocol, keys.flow.has_ports) == (77, UDP, 1)
    keys = dissect(later, PARSE_FIRST_FRAGMENT)
    assert (keys.later_fragment.id, keys.flow.has_ports, keys.flow_result) == (77, 0, lib.BRK_DISSECT_FRAGMENT)
    assert dissect(udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"x")).first_fragment.address_size == 0
    assert dissect(ip_frame(ipv4("10.0.0.1", "10.0.0.2", UDP, udp(1, 2)))).flow.has_ports == 1


@pytest.mark.parametrize("depth", [0, 1])
@pytest.mark.parametrize("after_fragment_header", [AH, DESTINATION_OPTIONS])
def test_later_ipv6_fragments_naming_an_extension_header_follow_their_first_as_in_hash_c(depth,
                                                                                         after_fragment_header):
    """The fuzzers' finding in hash.c (tests/fuzz/test_fuzz_findings.py), for the dissector's key: datagrams
    go by the protocol the fragment header names, and a later fragment naming AH or destination options
    asks the memory."""
    segment = tcp(1234, 80, b"x" * 40)
    first = ipv6_fragment(0, [(after_fragment_header, b"")], TCP, segment[:16])
    later = ipv6_fragment(16, [], after_fragment_header, segment[16:32])
    table = ffi.gc(lib.brk_frag_table_new(64), lib.brk_frag_table_free)
    memory = FragmentMemory()
    for frame in (later, first, later):
        assert memory.hash(frame, depth) == hash_c(frame, 4, depth, table)
