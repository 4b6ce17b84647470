"""Tunnel ports (`vxlan:`, `gretap:`, `erspan:`): the kernel's own tunnel devices, made with pyroute2.

A tunnel port is one kernel device (ports.PortName.device names it): VXLAN (`vxlan`, UDP port given or
4789, learning off), GRE carrying Ethernet (`gretap`, with the key when one is given) or ERSPAN type II
(`erspan`, the session as its key, sequence numbers on). The kernel encapsulates what bricks writes into
it and decapsulates what arrives for it: an output sends the frames to REMOTE, an input (REMOTE 0.0.0.0:
any sender) reads the inner frames. Nothing of the encapsulation is bricks' own.

Devices carry the owner alias of pipes (links.py: pid and start time), so the registry (registry.py) holds
them like pipes: made by their first user, deleted by their last, reclaimed after a SIGKILL by the next
bricks (`links.reclaim_stale_pipes`), and never touched while their owner lives. They are made quiet (no
IPv6, no ARP, no multicast): a sensor behind the tunnel sees only what bricks forwards.
"""
import errno
import ipaddress
import os

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import GRE_KEY, GRE_SEQ, ifinfmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP

from . import links
from .errors import LinkError
from .ports import PortName

KINDS = ("vxlan", "gretap", "erspan")    # the kernel's link kinds, as the port prefixes spell them
ANY = ipaddress.IPv4Address("0.0.0.0")
ERSPAN_VERSION_II = 1                    # the kernel's erspan_ver: 1 is ERSPAN type II


class _erspan_data(ifinfmsg.ifinfo.data_map["gretap"]):
    """IFLA_INFO_DATA of kind erspan: gretap's attributes and ERSPAN's (pyroute2 0.9 lacks them)."""

    nla_map = ifinfmsg.ifinfo.data_map["gretap"].nla_map + (
        ("IFLA_GRE_ERSPAN_INDEX", "uint32"),
        ("IFLA_GRE_ERSPAN_VER", "uint8"),
        ("IFLA_GRE_ERSPAN_DIR", "uint8"),
        ("IFLA_GRE_ERSPAN_HWID", "uint16"),
    )


if "erspan" not in ifinfmsg.ifinfo.data_map:
    ifinfmsg.ifinfo.register_link_kind(module={"erspan": _erspan_data})


def _settings(port: PortName) -> dict:
    """The pyroute2 link attributes of port's device."""
    remote = ipaddress.IPv4Address(port.interface)
    if port.tunnel == "vxlan":
        settings = {"vxlan_id": port.index, "vxlan_port": port.udp_port, "vxlan_learning": 0}
        if remote != ANY:
            settings["vxlan_group"] = str(remote)
        return settings
    settings = {}
    if remote != ANY:
        settings["gre_remote"] = str(remote)
    if port.index is not None:
        flags = GRE_KEY | (GRE_SEQ if port.tunnel == "erspan" else 0)
        settings.update(gre_ikey=port.index, gre_okey=port.index, gre_iflags=flags, gre_oflags=flags)
    if port.tunnel == "erspan":
        settings.update(gre_erspan_ver=ERSPAN_VERSION_II)
    return settings


def create_tunnel(port: PortName) -> str:
    """Make port's device (replacing one a dead bricks left), quiet and up; its name. LinkError in one line."""
    name = port.device
    with IPRoute() as ipr:
        _remove_previous(ipr, port)
        try:
            ipr.link("add", ifname=name, kind=port.tunnel, **_settings(port))
        except NetlinkError as error:
            raise LinkError(f"{port.name}: the kernel refuses the {port.tunnel} device: "
                            f"{os.strerror(error.code)}{_hint(port, error.code)}") from None
        try:
            index = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=index, ifalias=links._owner_alias())
            links.quiet_link(ipr, index, name)
            ipr.link("set", index=index, flags=IFF_UP, change=IFF_UP)
        except BaseException:
            links._delete_link(ipr, name)
            raise
    return name


MODULES = {"vxlan": "vxlan", "gretap": "ip_gre", "erspan": "ip_gre"}   # the kernel module of each kind


def _hint(port: PortName, code: int) -> str:
    if port.tunnel == "vxlan" and code == errno.EEXIST:
        return f" (another VXLAN device has VNI {port.index} on UDP port {port.udp_port})"
    if code == errno.EOPNOTSUPP:
        return f" (this kernel has no {port.tunnel} devices: modprobe {MODULES[port.tunnel]})"
    return ""


def _remove_previous(ipr: IPRoute, port: PortName) -> None:
    """A device of this name: ours or a dead bricks' is deleted; a living owner's or a stranger's is an error."""
    link = links._find_link(ipr, port.device)
    if link is None:
        return
    alias = link.get("ifalias") or ""
    if not links._ALIAS.match(alias):
        raise LinkError(f"{port.name}: device {port.device} exists and was not created by bricks")
    owner = links.living_owner(alias)
    if owner is not None and owner != os.getpid():
        raise LinkError(f"{port.name}: device {port.device} belongs to bricks pid {owner}, which is running")
    links._delete_link(ipr, port.device)


def delete_tunnel(name: str) -> None:
    """Delete a tunnel device; gone already is fine."""
    with IPRoute() as ipr:
        links._delete_link(ipr, name)
