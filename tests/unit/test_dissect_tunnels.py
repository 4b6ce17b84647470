"""The dissector's tunnel walk (brk_dissect_tunnels in csrc/dissect.h): every layer of issue 12 item 1.

Frames are built with scapy, and scapy's own layering is the oracle: the offset of every header scapy put in the
frame must be the offset the walk records, with the same kind, and the innermost flow must be the deepest IP
header's addresses with its TCP/UDP ports. Then: every prefix of every frame is walked at the end of a page
followed by an unmapped one (a read past caplen would fault), the default key stays exactly brk_dissect's (the
default hash does not move), the depth bound holds, and pcaps written by real tools (scapy's wrpcap,
text2pcap's own Ethernet/IP/UDP headers) give the same answers.
"""
import random
import struct
import subprocess
import shutil

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.contrib.mpls import MPLS, EoMCW
from scapy.layers.inet import GRE, IP, TCP, UDP, ICMP
from scapy.layers.inet6 import (
    IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import wrpcap

from bricks._native import ffi, lib
from bricks.frames import read_pcap
from tests.unit.test_hash import GuardedBuffer

# --- the walk and scapy's view of a frame ------------------------------------------------------------------

KIND_NAMES = {getattr(lib, name): name[len("BRK_LAYER_"):].lower() for name in dir(lib)
              if name.startswith("BRK_LAYER_")}
STOP_NAMES = {getattr(lib, name): name[len("BRK_DISSECT_STOP_"):].lower() for name in dir(lib)
              if name.startswith("BRK_DISSECT_STOP_")}
DEEP = 8    # tunnels entered: more than any frame here nests

# scapy's layer classes as the walk names them; extension headers and options belong to their header.
SCAPY_KINDS = {
    Ether: "ethernet", Dot1Q: "vlan", Dot1AD: "vlan", MPLS: "mpls", EoMCW: "pw_control_word", IP: "ipv4",
    IPv6: "ipv6", GRE: "gre", ERSPAN_II: "erspan", ERSPAN_III: "erspan", UDP: "udp", TCP: "tcp",
    VXLAN: "vxlan", GENEVE: "geneve", GTP_U_Header: "gtp",
}
PART_OF_PREVIOUS = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                    ERSPAN_PlatformSpecific, GTPPDUSessionContainer)


def walk(frame, max_tunnels=DEEP, options=0, caplen=None, data=None):
    keys = ffi.new("struct brk_tunnel_keys *")
    lib.brk_dissect_tunnels_frame(frame if data is None else data, len(frame) if caplen is None else caplen,
                                  options, max_tunnels, keys)
    return keys


def layers_of(keys):
    return [(KIND_NAMES[keys.layers[i].kind], keys.layers[i].offset) for i in range(keys.layer_count)]


def expected_layers(packet):
    """(kind, offset) of every header scapy built, then the payload after the last one."""
    total = len(bytes(packet))
    layers = []
    layer = packet
    while layer is not None and not isinstance(layer, (Raw,)) and layer.__class__.__name__ != "NoPayload":
        offset = total - len(bytes(layer))
        if isinstance(layer, PART_OF_PREVIOUS):
            pass
        elif type(layer) in SCAPY_KINDS:
            layers.append((SCAPY_KINDS[type(layer)], offset))
        else:
            break           # a layer the walk does not open (ARP, ICMP): its payload starts here
        layer = layer.payload if layer.payload.__class__.__name__ != "NoPayload" else None
    end = total if layer is None else total - len(bytes(layer))
    return layers + [("payload", end)]


def endpoints(flow):
    size = flow.address_size
    return (bytes(flow.source)[:size], bytes(flow.destination)[:size],
            flow.source_port if flow.has_ports else None, flow.destination_port if flow.has_ports else None)


def scapy_flow(packet, innermost=True):
    """The deepest (or first) IP header's addresses and its TCP/UDP ports, as bytes and ints."""
    ips = [layer for layer in packet.iterpayloads() if isinstance(layer, (IP, IPv6))]
    ip = ips[-1] if innermost else ips[0]
    family = ip.__class__
    address = (lambda text: bytes(IP(src=text))[12:16]) if family is IP else (
        lambda text: bytes(IPv6(src=text))[8:24])
    transport = ip.payload
    while isinstance(transport, PART_OF_PREVIOUS):
        transport = transport.payload
    if isinstance(transport, (TCP, UDP)):
        return address(ip.src), address(ip.dst), transport.sport, transport.dport
    return address(ip.src), address(ip.dst), None, None


# --- frames of every layer ----------------------------------------------------------------------------

OUTER = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
INNER_ETHER = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
OUTER4 = IP(src="192.0.2.1", dst="192.0.2.2")
OUTER6 = IPv6(src="2001:db8:ffff::1", dst="2001:db8:ffff::2")
INNER_TCP4 = IP(src="10.1.0.1", dst="10.2.0.2") / TCP(sport=40000, dport=443) / Raw(b"inner data")
INNER_UDP6 = IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5353, dport=53) / Raw(b"query")
GTP_EXTENSION = GTPPDUSessionContainer(type=1, QFI=9)

FRAMES = {
    "ipv4 tcp": OUTER / INNER_TCP4,
    "ipv4 options": OUTER / IP(src="10.1.0.1", dst="10.2.0.2", options=b"\x01" * 8) / UDP(sport=1, dport=2),
    "ipv6 extension headers": OUTER / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
    / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / TCP(sport=1000, dport=2000),
    "802.1q": OUTER / Dot1Q(vlan=10) / INNER_TCP4,
    "qinq 5 tags": OUTER / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / Dot1Q(vlan=4) / Dot1Q(vlan=5)
    / INNER_UDP6,
    "mpls ipv4": OUTER / MPLS(label=100, s=0) / MPLS(label=200, s=0) / MPLS(label=300, s=1) / INNER_TCP4,
    "mpls ipv6": OUTER / MPLS(label=100, s=1) / INNER_UDP6,
    "ethernet over mpls": OUTER / MPLS(label=100, s=0) / MPLS(label=16, s=1) / EoMCW() / INNER_ETHER / INNER_TCP4,
    "ipip": OUTER / OUTER4 / INNER_TCP4,
    "6in4": OUTER / OUTER4 / INNER_UDP6,
    "4in6": OUTER / OUTER6 / INNER_TCP4,
    "6in6": OUTER / OUTER6 / INNER_UDP6,
    "gre ipv4": OUTER / OUTER4 / GRE() / INNER_TCP4,
    "gre key sequence checksum ipv6": OUTER / OUTER4 / GRE(chksum_present=1, key_present=1, key=7,
                                                           seqnum_present=1, sequence_number=9) / INNER_UDP6,
    "gre over ipv6": OUTER / OUTER6 / GRE(key_present=1, key=1) / INNER_TCP4,
    "gre transparent ethernet": OUTER / OUTER4 / GRE(proto=0x6558) / INNER_ETHER / INNER_TCP4,
    "gre mpls": OUTER / OUTER4 / GRE(proto=0x8847) / MPLS(label=5, s=1) / INNER_TCP4,
    "erspan ii": OUTER / OUTER4 / GRE(seqnum_present=1, proto=0x88be) / ERSPAN_II(session_id=5) / INNER_ETHER
    / INNER_TCP4,
    "erspan iii": OUTER / OUTER4 / GRE(seqnum_present=1, proto=0x22eb) / ERSPAN_III(session_id=5) / INNER_ETHER
    / Dot1Q(vlan=3) / INNER_UDP6,
    "erspan iii platform sub-header": OUTER / OUTER4 / GRE(seqnum_present=1, proto=0x22eb) / ERSPAN_III(o=1)
    / ERSPAN_PlatformSpecific(platf_id=3) / INNER_ETHER / INNER_TCP4,
    "vxlan": OUTER / OUTER4 / UDP(sport=51000, dport=4789) / VXLAN(vni=42) / INNER_ETHER / INNER_TCP4,
    "vxlan over ipv6, inner arp": OUTER / OUTER6 / UDP(sport=51000, dport=4789) / VXLAN(vni=42) / INNER_ETHER
    / ARP(psrc="10.0.0.1", pdst="10.0.0.2"),
    "geneve": OUTER / OUTER4 / UDP(sport=51000, dport=6081) / GENEVE(proto=0x6558, vni=7) / INNER_ETHER
    / INNER_UDP6,
    "geneve options, ipv4": OUTER / OUTER4 / UDP(sport=51000, dport=6081)
    / GENEVE(proto=0x0800, options=[GeneveOptions(classid=0x102, type=0x80, data=b"\x00" * 8)]) / INNER_TCP4,
    "gtp-u": OUTER / OUTER4 / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=0x1234, gtp_type=255) / INNER_TCP4,
    "gtp-u extension header, ipv6": OUTER / OUTER4 / UDP(sport=2152, dport=2152)
    / GTP_U_Header(teid=1, gtp_type=255, E=1, next_ex=0x85) / GTP_EXTENSION / INNER_UDP6,
    "icmp": OUTER / IP(src="10.1.0.1", dst="10.2.0.2") / ICMP(),
}
NESTED = {
    # issue 12's example, and two tunnels in one another
    "vlan mpls gre erspan ii vlan ipv6 tcp": OUTER / Dot1Q(vlan=100) / MPLS(label=17, s=1) / OUTER4
    / GRE(seqnum_present=1, proto=0x88be) / ERSPAN_II(session_id=9) / INNER_ETHER / Dot1Q(vlan=200)
    / IPv6(src="2001:db8::7", dst="2001:db8::8") / TCP(sport=3333, dport=80) / Raw(b"GET /"),
    "vxlan in gre in qinq": OUTER / Dot1AD(vlan=1) / Dot1Q(vlan=2) / OUTER6 / GRE() / IP(src="198.51.100.1",
                                                                                         dst="198.51.100.2")
    / UDP(sport=1, dport=4789) / VXLAN(vni=5) / INNER_ETHER / INNER_TCP4,
    "gtp-u in geneve": OUTER / OUTER4 / UDP(dport=6081) / GENEVE(proto=0x0800) / IP(src="10.9.9.1", dst="10.9.9.2")
    / UDP(sport=2152, dport=2152) / GTP_U_Header(gtp_type=255) / INNER_UDP6,
}
ALL = {**FRAMES, **NESTED}
# A different encoding the scapy oracle cannot describe: ERSPAN type I is GRE 0x88be without a sequence number
# and without a header (the walk records an ERSPAN layer of size 0 at the inner Ethernet header).
ERSPAN_I = OUTER / OUTER4 / GRE(proto=0x88be) / INNER_ETHER / INNER_TCP4


def frame_of(name):
    return bytes(ALL[name])


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_layer_at_the_offset_scapy_put_it(name):
    packet = ALL[name]
    keys = walk(bytes(packet))
    assert layers_of(keys) == expected_layers(packet)
    assert STOP_NAMES[keys.stop] == "end"


@pytest.mark.parametrize("name", sorted(ALL))
def test_the_innermost_and_outer_flows(name):
    packet = ALL[name]
    keys = walk(bytes(packet))
    if any(isinstance(layer, ARP) for layer in packet.iterpayloads()):
        assert endpoints(keys.inner) == (bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b"), None, None)
        assert keys.inner_result == lib.BRK_DISSECT_NON_IP
    else:
        assert endpoints(keys.inner) == scapy_flow(packet)
        assert keys.inner_result == 0
    assert endpoints(keys.outer) == scapy_flow(packet, innermost=False)
    for flow in (keys.inner, keys.outer):   # the rest is zero: keys compare and hash whole
        assert bytes(flow.source)[flow.address_size:] == bytes(flow.destination)[flow.address_size:] == bytes(
            16 - flow.address_size)
    tunnels = sum(kind in ("gre", "vxlan", "geneve", "gtp", "pw_control_word") for kind, _ in layers_of(keys))
    ips = [kind for kind, _ in layers_of(keys)]
    tunnels += sum(1 for a, b in zip(ips, ips[1:]) if a.startswith("ipv") and b.startswith("ipv"))
    assert keys.tunnels == tunnels


def test_erspan_type_i_has_a_header_of_size_zero():
    frame = bytes(ERSPAN_I)
    keys = walk(frame)
    assert layers_of(keys) == [("ethernet", 0), ("ipv4", 14), ("gre", 34), ("erspan", 38), ("ethernet", 38),
                               ("ipv4", 52), ("tcp", 72), ("payload", 92)]
    assert [keys.layers[i].detail for i in (3,)] == [1]
    assert endpoints(keys.inner) == scapy_flow(ERSPAN_I)


def test_layer_details_erspan_type_mpls_bottom_fragment_kind():
    keys = walk(frame_of("erspan ii"))
    assert [(KIND_NAMES[layer.kind], layer.detail) for layer in keys.layers[0:keys.layer_count]][3] == ("erspan", 2)
    keys = walk(frame_of("erspan iii"))
    assert keys.layers[3].detail == 3
    keys = walk(frame_of("mpls ipv4"))
    assert [keys.layers[i].detail for i in (1, 2, 3)] == [0, 0, 1]


# --- the default key does not move ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ALL) + ["erspan i"])
def test_the_default_key_is_brk_dissect_s(name):
    frame = bytes(ERSPAN_I) if name == "erspan i" else frame_of(name)
    for options in (0, lib.BRK_DISSECT_PARSE_FIRST_FRAGMENT):
        default = ffi.new("struct brk_flow_keys *")
        lib.brk_dissect_frame(frame, len(frame), options, default)
        keys = walk(frame, options=options)
        assert bytes(ffi.buffer(ffi.addressof(keys, "keys"))) == bytes(ffi.buffer(default))
        for split in (2, 4):
            flags = ffi.new("uint32_t *")
            assert lib.brk_dissect_flow_hash(ffi.addressof(keys, "keys"), split, 0) == lib.brk_flow_hash(
                frame, len(frame), split, 0, ffi.NULL, flags)


@pytest.mark.parametrize("name", sorted(ALL))
def test_tunnels_only_skips_the_default_key_and_nothing_else(name):
    frame = frame_of(name)
    full = walk(frame)
    alone = walk(frame, options=lib.BRK_DISSECT_TUNNELS_ONLY)
    assert bytes(ffi.buffer(ffi.addressof(alone, "keys"))) == bytes(ffi.sizeof("struct brk_flow_keys"))
    assert (endpoints(alone.inner), endpoints(alone.outer), layers_of(alone), alone.stop, alone.inner_result) == (
        endpoints(full.inner), endpoints(full.outer), layers_of(full), full.stop, full.inner_result)


def test_the_default_hash_stays_on_the_outer_udp_flow_of_vxlan():
    keys = walk(frame_of("vxlan"))
    assert endpoints(keys.keys.flow) == endpoints(keys.outer) == scapy_flow(FRAMES["vxlan"], innermost=False)
    assert endpoints(keys.inner) != endpoints(keys.outer)


def test_ipip_inner_as_the_default_key():
    keys = walk(frame_of("ipip"))
    assert endpoints(keys.inner) == endpoints(keys.keys.flow)


def reply_to(packet):
    """The inner connection's other direction: addresses and ports swapped."""
    return packet.__class__(src=packet.dst, dst=packet.src) / packet.payload.__class__(
        sport=packet.payload.dport, dport=packet.payload.sport)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_the_inner_hash_is_one_per_connection_whatever_carries_it(depth):
    """Both directions of an inner connection, in every tunnel, hash alike (inner-flow balancing's key)."""
    carriers = [
        lambda inner: OUTER / inner,
        lambda inner: OUTER / OUTER4 / UDP(sport=51000, dport=4789) / VXLAN(vni=42) / INNER_ETHER / inner,
        lambda inner: OUTER / OUTER6 / UDP(sport=1, dport=6081) / GENEVE(proto=0x6558) / INNER_ETHER / inner,
        lambda inner: OUTER / OUTER4 / GRE(seqnum_present=1, proto=0x88be) / ERSPAN_II() / INNER_ETHER
        / Dot1Q(vlan=5) / inner,
        lambda inner: OUTER / OUTER4 / UDP(sport=2152, dport=2152) / GTP_U_Header(gtp_type=255) / inner,
        lambda inner: OUTER / MPLS(label=3, s=1) / EoMCW() / INNER_ETHER / inner,
    ]
    for inner in (IP(src="10.1.0.1", dst="10.2.0.2") / TCP(sport=40000, dport=443),
                  IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5353, dport=53)):
        hashes = {lib.brk_dissect_inner_hash(walk(bytes(carry(packet))), depth)
                  for carry in carriers for packet in (inner, reply_to(inner))}
        assert len(hashes) == 1
        plain = bytes(OUTER / inner)
        assert hashes == {lib.brk_dissect_flow_hash(ffi.addressof(walk(plain), "keys"), 4, depth)}


# --- bounds: depth, layers, fragments, odd values ------------------------------------------------------------

def test_max_tunnels_stops_before_the_next_encapsulation():
    frame = frame_of("vxlan in gre in qinq")
    full = layers_of(walk(frame))
    keys = walk(frame, max_tunnels=0)
    gre = [offset for kind, offset in full if kind == "gre"][0]
    assert layers_of(keys) == [layer for layer in full if layer[1] < gre] + [("payload", gre)]
    assert (STOP_NAMES[keys.stop], keys.tunnels) == ("depth", 0)
    assert endpoints(keys.inner) == endpoints(keys.outer)
    keys = walk(frame, max_tunnels=1)
    vxlan = [offset for kind, offset in full if kind == "vxlan"][0]
    assert layers_of(keys) == [layer for layer in full if layer[1] < vxlan] + [("payload", vxlan)]
    assert endpoints(keys.inner) == (bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2]), 1, 4789)
    assert walk(frame, max_tunnels=2).tunnels == 2


def test_more_layers_than_the_array_holds():
    labels = b"".join(struct.pack("!I", (n << 12) | 64) for n in range(40)) + struct.pack("!I", (99 << 12) | 0x100 | 64)
    frame = bytes(OUTER)[:12] + b"\x88\x47" + labels + bytes(INNER_TCP4)
    keys = walk(frame)
    assert STOP_NAMES[keys.stop] == "layers"
    assert keys.layer_count == 31 and layers_of(keys)[-1] == ("mpls", 14 + 29 * 4)


def test_too_many_vlan_tags_and_gtp_extensions_are_malformed():
    def tagged(count):
        tags = b"".join(struct.pack("!HH", n, 0x8100 if n < count - 1 else 0x0800) for n in range(count))
        return bytes(OUTER)[:12] + b"\x81\x00" + tags + bytes(INNER_TCP4)
    assert STOP_NAMES[walk(tagged(9)).stop] == "malformed"
    assert STOP_NAMES[walk(tagged(8)).stop] == "end"
    # 9 chained GTP-U extension headers of 4 bytes, each naming a next one
    extensions = b"\x01\x00\x00\x85" * 9
    gtp = struct.pack("!BBHI", 0x34, 0xff, 0, 1) + b"\x00\x00\x00\x85" + extensions + bytes(INNER_TCP4)
    frame = bytes(OUTER / OUTER4 / UDP(sport=2152, dport=2152) / Raw(gtp))
    assert STOP_NAMES[walk(frame).stop] == "malformed"


@pytest.mark.parametrize("packet,stop", [
    (OUTER / OUTER4 / GRE(routing_present=1) / INNER_TCP4, "malformed"),
    (OUTER / OUTER4 / GRE(version=1) / INNER_TCP4, "malformed"),
    (OUTER / OUTER4 / UDP(dport=4789) / VXLAN(flags=0) / INNER_ETHER / INNER_TCP4, "malformed"),
    (OUTER / OUTER4 / UDP(dport=6081) / GENEVE(version=1, proto=0x0800) / INNER_TCP4, "malformed"),
    (OUTER / OUTER4 / UDP(dport=2152) / GTP_U_Header(version=2, gtp_type=255) / INNER_TCP4, "malformed"),
    (OUTER / OUTER4 / GRE(seqnum_present=1, proto=0x88be) / ERSPAN_II(ver=2) / INNER_ETHER, "malformed"),
    (OUTER / OUTER4 / UDP(dport=2152) / GTP_U_Header(gtp_type=1) / Raw(b"\x00" * 4), "end"),
])
def test_values_no_encoder_writes_stop_the_walk(packet, stop):
    keys = walk(bytes(packet))
    assert STOP_NAMES[keys.stop] == stop
    assert endpoints(keys.inner) == scapy_flow(packet, innermost=False)


def test_fragments_stop_the_walk_unless_the_first_is_parsed():
    payload = Raw(bytes(GRE() / INNER_TCP4))
    first = OUTER / IP(src="192.0.2.1", dst="192.0.2.2", proto=47, flags="MF") / payload
    later = OUTER / IP(src="192.0.2.1", dst="192.0.2.2", proto=47, frag=3) / payload
    for packet, options, layers in [(first, 0, 3), (later, 0, 3),
                                    (later, lib.BRK_DISSECT_PARSE_FIRST_FRAGMENT, 3),
                                    (first, lib.BRK_DISSECT_PARSE_FIRST_FRAGMENT, 6)]:
        keys = walk(bytes(packet), options=options)
        assert keys.layer_count == layers
        assert keys.inner_result & lib.BRK_DISSECT_FRAGMENT
    keys = walk(bytes(later))
    assert endpoints(keys.inner) == (bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]), None, None)
    assert keys.layers[1].detail == 2
    six = OUTER / OUTER6 / IPv6ExtHdrFragment(m=0, offset=5) / Raw(b"\x00" * 16)
    assert layers_of(walk(bytes(six))) == [("ethernet", 0), ("ipv6", 14), ("payload", 14 + 48)]


# --- never past caplen ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def guarded():
    return GuardedBuffer()


@pytest.mark.parametrize("name", sorted(ALL) + ["erspan i"])
def test_every_prefix_at_an_unmapped_page(guarded, name):
    """Every prefix walks without a read past its end, records only whole headers of the full frame's walk,
    and the innermost flow is one the full walk went through (or the Ethernet addresses)."""
    frame = bytes(ERSPAN_I) if name == "erspan i" else frame_of(name)
    full = layers_of(walk(frame))
    for length in range(len(frame) + 1):
        keys = walk(frame[:length], data=guarded.place(frame[:length]))
        layers = layers_of(keys)
        headers = [layer for layer in layers if layer[0] != "payload"]
        assert headers == full[:len(headers)], length
        if length < len(frame) and keys.stop == lib.BRK_DISSECT_STOP_TRUNCATED:
            assert keys.inner_result & lib.BRK_DISSECT_TRUNCATED
        for (_, offset), (_, following) in zip(layers, layers[1:]):
            assert following <= length and offset <= following
    assert layers_of(walk(frame, data=guarded.place(frame))) == full


def test_random_tunnel_garbage_at_an_unmapped_page(guarded):
    rng = random.Random(120)
    seeds = [frame_of(name) for name in sorted(ALL)]
    for _ in range(6000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        data = bytes(data[:rng.randrange(len(data) + 1)])
        keys = walk(data, data=guarded.place(data), max_tunnels=rng.randrange(4))
        assert keys.layer_count <= 32 and keys.stop in STOP_NAMES


# --- pcaps written by real tools ------------------------------------------------------------------------

def test_a_pcap_written_by_scapy_of_every_tunnel(tmp_path):
    path = tmp_path / "tunnels.pcap"
    names = sorted(ALL)
    wrpcap(str(path), [ALL[name] for name in names])
    records = read_pcap(path.read_bytes()).records
    assert len(records) == len(names)
    for name, (_, _, _, data) in zip(names, records):
        keys = walk(data)
        assert layers_of(keys) == expected_layers(ALL[name]), name
        if not any(isinstance(layer, ARP) for layer in ALL[name].iterpayloads()):
            assert endpoints(keys.inner) == scapy_flow(ALL[name]), name


def text2pcap(tmp_path, payload, *wrapping):
    """The pcap text2pcap writes for payload wrapped in its own Ethernet/IPv4 (and UDP) headers."""
    text = tmp_path / "frame.txt"
    text.write_text("0000 " + " ".join(f"{byte:02x}" for byte in payload) + "\n")
    pcap = tmp_path / "frame.pcap"
    subprocess.run(["text2pcap", "-q", "-F", "pcap", *wrapping, str(text), str(pcap)], check=True, capture_output=True)
    records = read_pcap(pcap.read_bytes()).records
    assert len(records) == 1
    return records[0][3]


@pytest.mark.skipif(not shutil.which("text2pcap"), reason="text2pcap (wireshark-common) is not installed")
@pytest.mark.parametrize("wrapping,tunnel,inner,deepest", [
    (["-u", "40000,4789"], VXLAN(vni=42) / INNER_ETHER / INNER_TCP4, ["vxlan", "ethernet", "ipv4", "tcp"],
     INNER_TCP4),
    (["-u", "40000,6081"], GENEVE(proto=0x6558) / INNER_ETHER / INNER_UDP6, ["geneve", "ethernet", "ipv6", "udp"],
     INNER_UDP6),
    (["-u", "2152,2152"], GTP_U_Header(gtp_type=255, E=1, next_ex=0x85) / GTP_EXTENSION / INNER_TCP4,
     ["gtp", "ipv4", "tcp"], INNER_TCP4),
    (["-i", "47"], GRE(seqnum_present=1, proto=0x88be) / ERSPAN_II() / INNER_ETHER / Dot1Q(vlan=4) / INNER_UDP6,
     ["gre", "erspan", "ethernet", "vlan", "ipv6", "udp"], INNER_UDP6),
    (["-i", "47"], GRE(seqnum_present=1, proto=0x22eb) / ERSPAN_III() / INNER_ETHER / INNER_TCP4,
     ["gre", "erspan", "ethernet", "ipv4", "tcp"], INNER_TCP4),
    (["-i", "47"], GRE(proto=0x6558) / INNER_ETHER / INNER_TCP4, ["gre", "ethernet", "ipv4", "tcp"], INNER_TCP4),
    (["-i", "4"], INNER_TCP4, ["ipv4", "tcp"], INNER_TCP4),
    (["-i", "41"], INNER_UDP6, ["ipv6", "udp"], INNER_UDP6),
])
def test_text2pcap_outer_headers(tmp_path, wrapping, tunnel, inner, deepest):
    """text2pcap writes the outer Ethernet, IPv4 (and UDP) headers around the tunnel bytes."""
    payload = bytes(tunnel)
    frame = text2pcap(tmp_path, payload, *wrapping)
    keys = walk(frame)
    outer = ["ethernet", "ipv4"] + (["udp"] if wrapping[0] == "-u" else [])
    assert [kind for kind, _ in layers_of(keys)] == outer + inner + ["payload"]
    assert layers_of(keys)[len(outer)][1] == len(frame) - len(payload)
    assert endpoints(keys.inner) == scapy_flow(deepest)
    assert keys.stop == lib.BRK_DISSECT_STOP_END
