"""Writes the seed corpora of tests/fuzz (corpus/<harness>/): valid frames of every kind the bricks parse, built
with bricks.frames, in each harness's input format (see the harness files' header comments).

    .venv/bin/python tests/fuzz/make_seeds.py

Frames: Ethernet/IPv4/IPv6 with TCP, UDP and ICMP, VLAN and QinQ tags, IPv4 and IPv6 fragments (first and
later), IP-in-IP and IPv6-in-IPv4 tunnels, IPv6 extension headers (hop-by-hop, routing, destination options,
AH, fragment), a non-IP frame, and frames cut short at every header boundary. The files are small and
committed; rerunning the script rewrites them identically.
"""
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from bricks import frames as f  # noqa: E402

HERE = Path(__file__).resolve().parent


def seed_frames():
    """(name, frame) for every kind of frame the bricks parse."""
    payload = f.tcp(1234, 80, b"x" * 40)
    icmp = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping"
    yield "tcp4", f.pad(f.tcp_frame("10.0.0.1", "10.0.0.2", 1234, 80))
    yield "udp4_dns", f.pad(f.udp_frame("10.0.0.3", "10.0.0.4", 5353, 53))
    yield "icmp4", f.pad(f.ip_frame(f.ipv4("172.16.1.1", "192.168.0.9", f.ICMP, icmp)))
    yield "tcp4_options", f.ip_frame(f.ipv4("10.1.2.3", "10.0.0.2", f.TCP, f.tcp(1, 2), options=b"\x01\x01\x01\x00"))
    yield "tcp6", f.tcp_frame("2001:db8::1", "2001:db8::2", 1234, 80)
    yield "udp6", f.udp_frame("2001:db8::1", "2001:db8::3", 4000, 443)
    yield "icmp6", f.ip_frame(f.ipv6("2001:db8::5", "fe80::1", f.ICMPV6, icmp))
    yield "vlan_tcp4", f.tcp_frame("10.0.0.1", "10.0.0.2", 1234, 80, vlans=[(f.ETHERTYPE_VLAN, 10)])
    yield "qinq_udp6", f.udp_frame("2001:db8::1", "2001:db8::2", 1, 2,
                                   vlans=[(f.ETHERTYPE_QINQ, 10), (f.ETHERTYPE_VLAN, 20)])
    fragments4 = f.ipv4_fragments("10.0.0.1", "10.0.0.2", f.TCP, payload, ident=7)
    yield "frag4_first", f.ip_frame(fragments4[0])
    yield "frag4_later", f.ip_frame(fragments4[1])
    fragments6 = f.ipv6_fragments("2001:db8::1", "2001:db8::2", f.UDP, f.udp(9, 10, b"y" * 40), ident=8)
    yield "frag6_first", f.ip_frame(fragments6[0])
    yield "frag6_later", f.ip_frame(fragments6[1])
    yield "ipip", f.ip_frame(f.ipv4("192.0.2.1", "192.0.2.2", f.IPIP,
                                    f.ipv4("10.0.0.1", "10.0.0.2", f.TCP, f.tcp(1234, 80))))
    yield "ipv6_in_ipv4", f.ip_frame(f.ipv4("192.0.2.1", "192.0.2.2", f.IPV6,
                                            f.ipv6("2001:db8::1", "2001:db8::2", f.UDP, f.udp(1, 2))))
    yield "ipv6_extensions", f.ip_frame(f.ipv6("2001:db8::1", "2001:db8::2", f.TCP, f.tcp(1234, 80), extensions=[
        (f.HOP_BY_HOP, b""), (f.ROUTING, b"\0" * 6), (f.DESTINATION_OPTIONS, b""), (f.AH, b"")]))
    yield "ipv6_fragment_ah", f.ip_frame(f.ipv6("2001:db8::1", "2001:db8::2", f.TCP, payload[:16], extensions=[
        (f.FRAGMENT, f.fragment_header_body(9, 0, True)), (f.AH, b"")]))
    yield "arp", f.pad(f.ether(b"\0\1\x08\0\6\4\0\1" + b"\0" * 20, f.ETHERTYPE_ARP))
    whole = f.tcp_frame("10.0.0.1", "10.0.0.2", 1234, 80, vlans=[(f.ETHERTYPE_VLAN, 10)])
    for cut in (0, 1, 12, 13, 14, 17, 20, 30, 37, 38, 40):
        yield f"cut{cut}_vlan_tcp4", whole[:cut]
    whole6 = f.ipv6_fragments("2001:db8::1", "2001:db8::2", f.TCP, payload, ident=3)[0]
    for cut in (20, 54, 61, 62):
        yield f"cut{cut}_frag6", f.ip_frame(whole6)[:cut]


def tunnel_frames():
    """(name, frame) of every encapsulation the tunnel walk opens: tests/unit/test_dissect_tunnels.py's
    scapy-built frames (scapy is a test dependency)."""
    sys.path.insert(0, str(HERE.parents[1]))
    from tests.unit.test_dissect_tunnels import ALL, ERSPAN_I
    for name, packet in sorted({**ALL, "erspan i": ERSPAN_I}.items()):
        yield name.replace(" ", "_").replace(",", ""), bytes(packet)


def framed(frames):
    """The frames part of an input: each a 2-byte little-endian length and its bytes."""
    return b"".join(struct.pack("<H", len(frame)) + frame for frame in frames)


def write(harness, name, data):
    directory = HERE / "corpus" / harness
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def main():
    frames = list(seed_frames())
    every = [frame for _, frame in frames]
    for name, frame in frames:
        for options in (0x00, 0x01, 0x03):          # split 2 / split 4 at depth 0 / split 4 at depth 1
            write("fuzz_flow_hash", f"{name}_{options:02x}", bytes([options]) + frame)
    for name, frame in list(tunnel_frames()) + frames[:3]:
        for option in (0x08, 0x03):                 # all tunnels / one tunnel with first fragments parsed
            write("fuzz_dissect", f"{name}_{option:02x}", bytes([option]) + framed([frame]))
    for expression in range(8):                     # fuzz_filter.c's expressions, then two outputs
        write("fuzz_filter", f"all_expression{expression}", bytes([expression]) + framed(every))
        write("fuzz_filter", f"all_expression{expression}_reject", bytes([0x80 | expression]) + framed(every))
    # Rules from frames 0, 4 and 9 (TCP IPv4, TCP IPv6, first fragment): exact, prefixes, an allow, any family.
    rules = bytes([0x1C, 0, 32, 32, 0x1C, 4, 128, 128, 0x40, 1, 8, 0, 0x01, 0, 16, 0, 0x62, 9, 0, 0, 0x80, 2, 24, 24])
    write("fuzz_filter_rules", "rules_all", bytes([0x81, len(rules) // 4]) + rules + framed(every))
    write("fuzz_filter_rules", "rules_expression", bytes([0x06, 2]) + rules[:8] + framed(every[:12]))
    for shape in range(9):                          # fuzz_bricks.c's topologies, one with refusing sinks
        write("fuzz_bricks", f"shape{shape}", bytes([shape, 0x0B, 7]) + framed(every))
        write("fuzz_bricks", f"shape{shape}_refusing", bytes([0x30 | shape, 0x3C, 0]) + framed(every))
    records = [(f.PCAP_FIRST_SECOND + i, i, len(frame), frame) for i, frame in enumerate(every)]
    write("fuzz_pcap_reader", "all_micro", bytes([0x03]) + f.pcap_bytes(records))
    write("fuzz_pcap_reader", "all_nano_twice", bytes([0x17]) + f.pcap_bytes(records, magic=f.PCAP_NANOSECOND_MAGIC))
    write("fuzz_pcap_reader", "cut_last", bytes([0x00]) + f.pcap_bytes(records[:3])[:-5])
    snapped = [(1, 0, len(frame) + 100, frame[:40]) for frame in every[:5]]
    write("fuzz_pcap_reader", "snapped", bytes([0x01]) + f.pcap_bytes(snapped, snaplen=40))
    print(f"seeds written to {HERE / 'corpus'}")


if __name__ == "__main__":
    main()
