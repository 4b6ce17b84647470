"""Regression tests for what the fuzz harnesses found (tests/fuzz/README.md), through the built module."""
import pytest

from bricks import frames as f
from bricks._native import ffi, lib

SOURCE, DESTINATION = "2001:db8::1", "2001:db8::2"


def flow_hash(frame, table, depth):
    flags = ffi.new("uint32_t *")
    return lib.brk_flow_hash(frame, len(frame), 4, depth, table, flags), flags[0]


def ipv6_fragment(offset, extensions_after, protocol, payload):
    """One IPv6 fragment of datagram 7; the first carries extensions_after (AH, options) before the payload."""
    header = [(f.FRAGMENT, f.fragment_header_body(7, offset, True))]
    return f.ip_frame(f.ipv6(SOURCE, DESTINATION, protocol, payload, extensions=header + extensions_after))


@pytest.mark.parametrize("depth", [0, 1])
@pytest.mark.parametrize("after_fragment_header", [f.AH, f.DESTINATION_OPTIONS])
def test_later_ipv6_fragment_naming_an_extension_header_follows_its_first_fragment(depth, after_fragment_header):
    # RFC 8200's order puts AH and destination options after the fragment header: only the first fragment
    # holds them and the TCP ports; a later one names the extension header and carries raw bytes.
    segment = f.tcp(1234, 80, b"x" * 40)
    first = ipv6_fragment(0, [(after_fragment_header, b"")], f.TCP, segment[:16])
    later = ipv6_fragment(16, [], after_fragment_header, segment[16:32])
    table = ffi.gc(lib.brk_frag_table_new(64), lib.brk_frag_table_free)
    first_hash, _ = flow_hash(first, table, depth)
    later_hash, later_flags = flow_hash(later, table, depth)
    assert later_hash == first_hash
    assert not later_flags & lib.BRK_HASH_FRAG_FALLBACK
    # Without its first fragment the later one is a counted fallback to the address pair.
    _, lone_flags = flow_hash(later, ffi.gc(lib.brk_frag_table_new(64), lib.brk_frag_table_free), depth)
    assert lone_flags & lib.BRK_HASH_FRAG_FALLBACK
