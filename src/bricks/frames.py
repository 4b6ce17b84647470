"""Byte-exact Ethernet frame builders (VLAN, IPv4, IPv6, TCP, UDP, fragments), random flows, flow keys and pcap files: for the demo, the benchmarks and the tests.

Pure `struct`, no scapy, so tests control every byte (truncation, odd headers).
Addresses are strings ("10.0.0.1", "2001:db8::1") or integers; every
builder returns bytes. Outer layers take the inner one as `payload`:

    frame = ether(ipv4("10.0.0.1", "10.0.0.2", TCP, tcp(1234, 80)), ETHERTYPE_IPV4)
    frame = tcp_frame("10.0.0.1", "10.0.0.2", 1234, 80, vlans=[(ETHERTYPE_QINQ, 10), (ETHERTYPE_VLAN, 20)])
"""
import ipaddress
import random
import struct
from typing import List, NamedTuple, Sequence, Tuple

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_QINQ = 0x88A8
ETHERTYPE_IPV6 = 0x86DD

HOP_BY_HOP = 0
ICMP = 1
IPIP = 4
TCP = 6
UDP = 17
IPV6 = 41
ROUTING = 43
FRAGMENT = 44
GRE = 47
AH = 51
ICMPV6 = 58
DESTINATION_OPTIONS = 60

PCAP_MICROSECOND_MAGIC = 0xA1B2C3D4
PCAP_NANOSECOND_MAGIC = 0xA1B23C4D
PCAP_SNAPLEN = 262144
LINKTYPE_ETHERNET = 1
PCAP_HEADER = struct.Struct("IHHiIII")      # magic, version 2.4, zone, sigfigs, snaplen, link type
PCAP_RECORD = struct.Struct("IIII")         # seconds, micro- or nanoseconds, caplen, wirelen
PCAP_FIRST_SECOND = 1_700_000_000

DEFAULT_DESTINATION_MAC = bytes.fromhex("020000000002")
DEFAULT_SOURCE_MAC = bytes.fromhex("020000000001")


def mac(value):
    """6 bytes from "aa:bb:cc:dd:ee:ff", an int or bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return value.to_bytes(6, "big")
    return bytes.fromhex(value.replace(":", ""))


def ip_bytes(address):
    """The packed form of an IPv4 or IPv6 address (string, int < 2**32 = IPv4, or bytes)."""
    if isinstance(address, bytes):
        return address
    return ipaddress.ip_address(address).packed


def ether(payload, ethertype, destination=DEFAULT_DESTINATION_MAC, source=DEFAULT_SOURCE_MAC, vlans=()):
    """An Ethernet frame; vlans = [(tpid, vlan id), ...], outermost first."""
    header = mac(destination) + mac(source)
    for tpid, vlan_id in vlans:
        header += struct.pack("!HH", tpid, vlan_id & 0x0FFF)
    return header + struct.pack("!H", ethertype) + payload


def checksum(data):
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp(source_port, destination_port, payload=b"", flags=0x18, sequence=1):
    """A TCP segment (checksum left 0: ipv4()/ipv6() fill it in for whole datagrams)."""
    return struct.pack("!HHIIBBHHH", source_port, destination_port, sequence, 0,
                       5 << 4, flags, 65535, 0, 0) + payload


def udp(source_port, destination_port, payload=b""):
    """A UDP datagram (checksum filled in by ipv4()/ipv6())."""
    return struct.pack("!HHHH", source_port, destination_port, 8 + len(payload), 0) + payload


def with_l4_checksum(source, destination, protocol, segment):
    """segment with its TCP/UDP checksum over the pseudo-header; other protocols unchanged."""
    offsets = {TCP: 16, UDP: 6}
    if protocol not in offsets or len(segment) < offsets[protocol] + 2:
        return segment
    if len(source) == 4:
        pseudo = source + destination + struct.pack("!BBH", 0, protocol, len(segment))
    else:
        pseudo = source + destination + struct.pack("!I3xB", len(segment), protocol)
    at = offsets[protocol]
    blank = segment[:at] + b"\0\0" + segment[at + 2:]
    value = checksum(pseudo + blank) or 0xFFFF
    return blank[:at] + struct.pack("!H", value) + blank[at + 2:]


def ipv4(source, destination, protocol, payload, ident=0, more_fragments=False, fragment_offset=0,
         options=b"", ttl=64):
    """An IPv4 packet; fragment_offset in bytes (multiple of 8); options padded to 32 bits."""
    source, destination = ip_bytes(source), ip_bytes(destination)
    options += b"\0" * (-len(options) % 4)
    if not more_fragments and fragment_offset == 0:
        payload = with_l4_checksum(source, destination, protocol, payload)
    header_size = 20 + len(options)
    fragment_field = (0x2000 if more_fragments else 0) | (fragment_offset // 8)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | header_size // 4, 0, header_size + len(payload), ident,
                         fragment_field, ttl, protocol, 0, source, destination) + options
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def ipv6_extension(kind, next_header, body=b""):
    """One IPv6 extension header of the given kind, padded to its unit (AH: 4 bytes, others: 8)."""
    if kind == AH:
        body = body or b"\0" * 10
        body += b"\0" * (-(len(body) + 2) % 4)
        return struct.pack("!BB", next_header, (len(body) + 2) // 4 - 2) + body
    if kind == FRAGMENT:
        return struct.pack("!BB", next_header, 0) + body
    body += b"\0" * (-(len(body) + 2) % 8)
    return struct.pack("!BB", next_header, (len(body) + 2) // 8 - 1) + body


def fragment_header_body(ident, fragment_offset, more_fragments):
    """The 6 bytes after next-header/reserved of an IPv6 fragment header."""
    return struct.pack("!HI", fragment_offset | int(more_fragments), ident)


def ipv6(source, destination, protocol, payload, extensions=(), hop_limit=64):
    """An IPv6 packet; extensions = [(kind, body bytes), ...] in order before the payload."""
    source, destination = ip_bytes(source), ip_bytes(destination)
    is_fragment = any(kind == FRAGMENT for kind, _ in extensions)
    if not is_fragment:
        payload = with_l4_checksum(source, destination, protocol, payload)
    chain = b""
    kinds = [kind for kind, _ in extensions] + [protocol]
    for (kind, body), following in zip(extensions, kinds[1:]):
        chain += ipv6_extension(kind, following, body)
    body = chain + payload
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), kinds[0], hop_limit, source, destination) + body


def ipv4_fragments(source, destination, protocol, payload, ident, fragment_size=16):
    """The IPv4 fragments (first first) of one datagram whose L4 bytes are payload."""
    assert fragment_size % 8 == 0
    whole = with_l4_checksum(ip_bytes(source), ip_bytes(destination), protocol, payload)
    pieces = range(0, len(whole), fragment_size)
    return [ipv4(source, destination, protocol, whole[at:at + fragment_size], ident=ident,
                 more_fragments=at + fragment_size < len(whole), fragment_offset=at) for at in pieces]


def ipv6_fragments(source, destination, protocol, payload, ident, fragment_size=16):
    """The IPv6 fragments (first first) of one datagram whose L4 bytes are payload."""
    assert fragment_size % 8 == 0
    whole = with_l4_checksum(ip_bytes(source), ip_bytes(destination), protocol, payload)
    return [ipv6(source, destination, protocol, whole[at:at + fragment_size],
                 extensions=[(FRAGMENT, fragment_header_body(ident, at, at + fragment_size < len(whole)))])
            for at in range(0, len(whole), fragment_size)]


def ip_frame(packet, **ether_options):
    """packet (IPv4 or IPv6, told by its version nibble) in an Ethernet frame."""
    ethertype = ETHERTYPE_IPV4 if packet[0] >> 4 == 4 else ETHERTYPE_IPV6
    return ether(packet, ethertype, **ether_options)


def ip_packet(source, destination, protocol, payload, **options):
    """IPv4 or IPv6 according to the address family of source."""
    if len(ip_bytes(source)) == 4:
        return ipv4(source, destination, protocol, payload, **options)
    return ipv6(source, destination, protocol, payload, **options)


def tcp_frame(source, destination, source_port, destination_port, payload=b"", **ether_options):
    """An Ethernet frame carrying one TCP segment over IPv4 or IPv6."""
    return ip_frame(ip_packet(source, destination, TCP, tcp(source_port, destination_port, payload)),
                    **ether_options)


def udp_frame(source, destination, source_port, destination_port, payload=b"", **ether_options):
    """An Ethernet frame carrying one UDP datagram over IPv4 or IPv6."""
    return ip_frame(ip_packet(source, destination, UDP, udp(source_port, destination_port, payload)),
                    **ether_options)


def pad(frame, size=60):
    """frame padded with zeros to the Ethernet minimum (without FCS)."""
    return frame + b"\0" * max(0, size - len(frame))


def random_ipv4_address(rng):
    return str(ipaddress.IPv4Address(rng.getrandbits(32)))


def random_ipv6_address(rng):
    return str(ipaddress.IPv6Address(rng.getrandbits(128)))


def random_flows(rng, count, version=4):
    """count distinct random (source, destination, source port, destination port) tuples."""
    address = random_ipv4_address if version == 4 else random_ipv6_address
    flows = set()
    while len(flows) < count:
        flows.add((address(rng), address(rng), rng.randrange(1, 65536), rng.randrange(1, 65536)))
    return sorted(flows)


def random_tcp_frames(count, seed=1, version=4, size=60):
    """count frames of count distinct random TCP flows, padded to size bytes."""
    rng = random.Random(seed)
    return [pad(tcp_frame(*flow), size) for flow in random_flows(rng, count, version)]


def garbage_frame(rng, protocols=None):
    """Random bytes (0 to 159) a dissector must survive: mostly with an IP or VLAN EtherType, half of those
    with a plausible first IP byte, and, given protocols, half of those long enough with one of them as the
    IPv4 protocol. The same rng gives the same frames."""
    data = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(0, 160)))
    if len(data) >= 14 and rng.random() < 0.8:
        data[12:14] = struct.pack("!H", rng.choice([ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETHERTYPE_QINQ]))
        if len(data) > 14 and rng.random() < 0.5:
            data[14] = rng.choice([0x45, 0x46, 0x4F, 0x40, 0x60])
        if protocols and len(data) > 23 and rng.random() < 0.5:
            data[23] = rng.choice(protocols)
    return bytes(data)


def flow_key(frame):
    """The same key for both directions of an IPv4 TCP/UDP flow in an untagged frame."""
    header = 14
    protocol = frame[header + 9]
    ihl = (frame[header] & 0x0F) * 4
    source, destination = frame[header + 12:header + 16], frame[header + 16:header + 20]
    ports = frame[header + ihl:header + ihl + 4]
    return (protocol,) + tuple(sorted([(source, ports[:2]), (destination, ports[2:])]))


def flow_frames(flows, packets_per_direction=1, seed=1):
    """Padded frames of `flows` random flows, every other one TCP or UDP, both directions, shuffled."""
    rng = random.Random(seed)
    frames = []
    for number, (source, destination, source_port, destination_port) in enumerate(random_flows(rng, flows)):
        build = tcp_frame if number % 2 else udp_frame
        for _ in range(packets_per_direction):
            frames.append(pad(build(source, destination, source_port, destination_port)))
            frames.append(pad(build(destination, source, destination_port, source_port)))
    rng.shuffle(frames)
    return frames


PcapRecord = Tuple[int, int, int, bytes]    # (seconds, fraction of a second, wirelen, captured bytes)


class PcapFile(NamedTuple):
    magic: int
    snaplen: int
    linktype: int
    records: List[PcapRecord]
    cut_bytes: int                          # bytes of a last record cut short (a capture still being written)

    @property
    def frames(self) -> List[bytes]:
        return [data for _, _, _, data in self.records]


def pcap_bytes(records: Sequence[PcapRecord], magic=PCAP_MICROSECOND_MAGIC, linktype=LINKTYPE_ETHERNET,
               snaplen=PCAP_SNAPLEN) -> bytes:
    """A little-endian pcap file of `records`."""
    out = [struct.pack("<" + PCAP_HEADER.format, magic, 2, 4, 0, 0, snaplen, linktype)]
    for seconds, fraction, wirelen, data in records:
        out.append(struct.pack("<" + PCAP_RECORD.format, seconds, fraction, len(data), wirelen) + data)
    return b"".join(out)


def write_pcap(path, frames: Sequence[bytes]) -> None:
    """A pcap file at `path` of whole `frames`, the n-th stamped PCAP_FIRST_SECOND + n seconds and n microseconds."""
    with open(path, "wb") as out:
        out.write(pcap_bytes([(PCAP_FIRST_SECOND + index, index, len(frame), frame)
                              for index, frame in enumerate(frames)]))


def read_pcap(data: bytes) -> PcapFile:
    """The header and records of a pcap file (micro- or nanosecond, either byte order)."""
    for order in ("<", ">"):
        magic, _, _, _, _, snaplen, linktype = struct.unpack_from(order + PCAP_HEADER.format, data, 0)
        if magic in (PCAP_MICROSECOND_MAGIC, PCAP_NANOSECOND_MAGIC):
            break
    else:
        raise ValueError(f"not a pcap file (magic {data[:4].hex()})")
    records, offset = [], PCAP_HEADER.size
    while offset + PCAP_RECORD.size <= len(data):
        seconds, fraction, caplen, wirelen = struct.unpack_from(order + PCAP_RECORD.format, data, offset)
        end = offset + PCAP_RECORD.size + caplen
        if end > len(data):
            break
        records.append((seconds, fraction, wirelen, data[offset + PCAP_RECORD.size:end]))
        offset = end
    return PcapFile(magic, snaplen, linktype, records, len(data) - offset)
