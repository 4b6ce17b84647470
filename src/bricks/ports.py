"""Port names (SPEC §2): what a name given to connect_input/connect_output designates.

A port name is an optional prefix, then a body whose grammar the prefix picks:

    [netmap:]IFACE          an interface                     PortKind.INTERFACE
    [netmap:]IFACE{N        the broker end of pipe N         PortKind.BROKER   (bricks writes here)
    [netmap:]IFACE}N        the consumer end of pipe N       PortKind.CONSUMER (tools read here)
    PATH                    a pcap file or directory         PortKind.PCAP     (has "/", ends in .pcap, or is a dir)
    vxlan:REMOTE[:PORT]/VNI a kernel VXLAN device            PortKind.TUNNEL   (UDP port 4789 unless given)
    gretap:REMOTE[/KEY]     a kernel GRE (Ethernet) device   PortKind.TUNNEL
    erspan:REMOTE/SESSION   a kernel ERSPAN (type II) device PortKind.TUNNEL
    (REMOTE: the IPv4 address of the other end; an input may say 0.0.0.0, any sender)

Parsing dispatches on the prefix first (PREFIXES), so a tunnel's "/" is never
taken for a pcap path. `netmap:` changes nothing in what the port is: the
back-end is chosen per linked tree (backends.py). Kernel operations on ports
are in links.py; who owns the kernel objects in registry.py.
"""
import enum
import ipaddress
import os
import re
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from .errors import LinkError

MAX_NAME_LENGTH = 15          # IFNAMSIZ - 1: the kernel's limit on an interface name
MAX_PIPE_INDEX = 63
NETMAP_PREFIX = "netmap:"
# The largest key each tunnel kind carries: VXLAN's 24-bit VNI, GRE's 32-bit key, ERSPAN's 10-bit session.
TUNNEL_KEY_LIMITS = {"vxlan": (1 << 24) - 1, "gretap": (1 << 32) - 1, "erspan": (1 << 10) - 1}
VXLAN_PORT = 4789             # IANA's; Linux's own default is 8472
TUNNEL_SPELLINGS = {"vxlan": "vxlan:REMOTE[:PORT]/VNI", "gretap": "gretap:REMOTE[/KEY]",
                    "erspan": "erspan:REMOTE/SESSION"}

# Characters the kernel refuses in a name (dev_valid_name), plus the pipe separators.
_FORBIDDEN_IN_INTERFACE = re.compile(r"[\s/:{}]")
_PIPE_NAME = re.compile(r"^(?P<interface>.*?)(?P<separator>[{}])(?P<index>[^{}]*)$")


class PortKind(str, enum.Enum):
    """What a port is. A str, so that `port.kind == "pcap"` reads as it always did."""

    INTERFACE = "interface"
    BROKER = "broker"
    CONSUMER = "consumer"
    PCAP = "pcap"
    TUNNEL = "tunnel"

    def __str__(self) -> str:
        return self.value

    @property
    def described(self) -> str:
        """How errors name a port of this kind."""
        return _DESCRIBED[self]


_DESCRIBED = {PortKind.INTERFACE: "an interface", PortKind.BROKER: "the broker end of a pipe",
              PortKind.CONSUMER: "the consumer end of a pipe", PortKind.PCAP: "a pcap path",
              PortKind.TUNNEL: "a tunnel"}


class PortNameError(LinkError, ValueError):
    """A port name that is not an interface, a pipe end, a pcap path or a tunnel."""


@dataclass(frozen=True)
class PortName:
    """A parsed port name."""

    interface: str                # the interface (for PCAP the path, for TUNNEL the remote address)
    kind: PortKind
    index: Optional[int] = None   # the pipe number (BROKER, CONSUMER) or the tunnel's key (TUNNEL; gretap: None = no key)
    tunnel: Optional[str] = None  # TUNNEL: "vxlan", "gretap" or "erspan"
    udp_port: Optional[int] = None   # TUNNEL vxlan: the UDP port

    @property
    def name(self) -> str:
        """The canonical spelling (without any `netmap:` prefix)."""
        if self.kind == PortKind.BROKER:
            return broker_name(self.interface, self.index)
        if self.kind == PortKind.CONSUMER:
            return consumer_name(self.interface, self.index)
        if self.kind == PortKind.TUNNEL:
            port = f":{self.udp_port}" if self.udp_port not in (None, VXLAN_PORT) else ""
            key = f"/{self.index}" if self.index is not None else ""
            return f"{self.tunnel}:{self.interface}{port}{key}"
        return self.interface

    @property
    def device(self) -> str:
        """The kernel device an interface, pipe-end or tunnel port opens (what sysfs and AF_PACKET name)."""
        if self.kind == PortKind.TUNNEL:
            # Unique per spelling, within the kernel's 15 characters: "brk" + kind's letter + 8 hex digits.
            return f"brk{self.tunnel[0]}{zlib.crc32(self.name.encode()):08x}"
        return self.name


def broker_name(interface: str, index: int) -> str:
    return f"{interface}{{{index}"


def consumer_name(interface: str, index: int) -> str:
    return f"{interface}}}{index}"


def parse_port_name(text: str) -> PortName:
    """Tell what a port name designates (SPEC §2); raise PortNameError naming the culprit."""
    if not isinstance(text, str):
        raise PortNameError(f"port name must be a string, got {text!r}")
    name = text.strip()
    for prefix, parse in PREFIXES.items():
        if name.startswith(prefix):
            return parse(text, prefix[:-1], name[len(prefix):])
    return _parse_local(text, name)


def strip_netmap_prefix(name: str) -> str:
    return name[len(NETMAP_PREFIX):] if name.startswith(NETMAP_PREFIX) else name


def _parse_local(text: str, name: str) -> PortName:
    """An interface, a pipe end or a pcap path."""
    if not name:
        raise PortNameError(f"port name {text!r} is empty")
    if _is_pcap_path(name):
        return PortName(name, PortKind.PCAP)
    pipe = _PIPE_NAME.match(name)
    if pipe:
        return _parse_pipe_end(text, name, pipe)
    _check_interface_name(text, name)
    return PortName(name, PortKind.INTERFACE)


def _parse_netmap(text: str, prefix: str, body: str) -> PortName:
    return _parse_local(text, body)


def _parse_tunnel(text: str, tunnel: str, body: str) -> PortName:
    """TUNNEL_SPELLINGS: the remote endpoint's IPv4 address, vxlan's UDP port, the tunnel's key."""
    spelling = TUNNEL_SPELLINGS[tunnel]
    remote, separator, key = body.partition("/")
    udp_port = None
    if tunnel == "vxlan" and remote.count(":") == 1:
        remote, _, port_text = remote.partition(":")
        if not port_text.isdigit() or not port_text.isascii() or not 1 <= int(port_text) <= 65535:
            raise PortNameError(f"port {text!r}: UDP port {port_text!r} is not a number from 1 to 65535 ({spelling})")
        udp_port = int(port_text)
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        raise PortNameError(f"port {text!r}: {remote!r} is not an IP address ({spelling})") from None
    if address.version != 4:
        raise PortNameError(f"port {text!r}: tunnel remotes are IPv4 addresses ({spelling})")
    limit = TUNNEL_KEY_LIMITS[tunnel]
    what = {"vxlan": "VNI", "gretap": "key", "erspan": "session"}[tunnel]
    if tunnel == "gretap" and not separator:
        return PortName(str(address), PortKind.TUNNEL, None, tunnel)
    if not separator or not key.isdigit() or not key.isascii() or int(key) > limit:
        raise PortNameError(f"port {text!r}: {tunnel} {what} {key!r} is not a number from 0 to {limit} ({spelling})")
    if tunnel == "vxlan":
        udp_port = udp_port or VXLAN_PORT
    return PortName(str(address), PortKind.TUNNEL, int(key), tunnel, udp_port)


# The prefix of a port name picks the parser of the rest (each gets the text, the prefix, the rest).
PREFIXES: Dict[str, Callable[[str, str, str], PortName]] = {
    NETMAP_PREFIX: _parse_netmap,
    **{f"{tunnel}:": _parse_tunnel for tunnel in TUNNEL_KEY_LIMITS},
}


def _is_pcap_path(name: str) -> bool:
    return "/" in name or name.endswith(".pcap") or os.path.isdir(name)


def _parse_pipe_end(text: str, name: str, pipe: "re.Match") -> PortName:
    interface, separator, digits = pipe.group("interface", "separator", "index")
    _check_interface_name(text, interface)
    if not digits.isdigit() or not digits.isascii() or (len(digits) > 1 and digits[0] == "0"):
        raise PortNameError(f"port {text!r}: pipe number {digits!r} is not a number from 0 to {MAX_PIPE_INDEX}")
    index = int(digits)
    if index > MAX_PIPE_INDEX:
        raise PortNameError(f"port {text!r}: pipe number {index} is outside 0..{MAX_PIPE_INDEX}")
    check_pipe_name_length(name, PortNameError)
    return PortName(interface, PortKind.BROKER if separator == "{" else PortKind.CONSUMER, index)


def _check_interface_name(text: str, interface: str) -> None:
    if not interface:
        raise PortNameError(f"port {text!r} has no interface name")
    bad = _FORBIDDEN_IN_INTERFACE.search(interface)
    if bad or interface in (".", ".."):
        raise PortNameError(f"port {text!r}: {interface!r} is not a valid interface name")
    if len(interface) > MAX_NAME_LENGTH:
        raise PortNameError(f"interface name {interface!r} is longer than {MAX_NAME_LENGTH} characters")


def check_pipe_name_length(name: str, error: type = LinkError) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise error(f"pipe name {name!r} is longer than {MAX_NAME_LENGTH} characters")
