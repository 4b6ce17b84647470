"""The packet back-end: AF_PACKET sockets (io_afpacket.c) on interfaces and on veth pipes.

An input interface has its capture-hostile offloads turned off while any tree reads it (registry.py); an
output `X{N` is the broker end of a veth pipe the engine holds until it is deleted. A tunnel port
(`vxlan:`, `gretap:`, `erspan:`) is a kernel tunnel device (tunnels.py) the tree holds while linked,
opened like an interface (an input with its offloads off too: GRO would merge inner packets). It runs any
plan.
"""
import zlib
import os

from .. import links, registry
from .._ffi import open_native, lib
from ..errors import BricksError
from ..ports import PortKind

PCAP_PIPE_MTU = 9000           # pcap inputs carry no MTU: pipes fed from files take jumbo frames
RX_RING_BYTES_PER_SLOT = 8192   # buffer_sz slots of RX ring, each room for a jumbo frame
MIN_RX_RING_BYTES = 16 << 20   # ~10,000 full-size frames: tens of ms of engine stall at line rate


def link_call(function, *args):
    """function(*args), its links.LinkError a BricksError of the same line."""
    try:
        return function(*args)
    except links.LinkError as error:
        raise BricksError(str(error)) from None


def fanout_group(ifindex):
    """A PACKET_FANOUT group id shared by this process's engines on one interface."""
    return zlib.crc32(f"{os.getpid()}:{ifindex}".encode()) & 0xFFFF


def input_mtu(plan):
    """The MTU pipes fed by plan's tree get: its live inputs' largest, at least 1500; jumbo from files."""
    mtus = [links.interface_info(port.interface).mtu for port in plan.root.inputs
            if port.kind in (PortKind.INTERFACE, PortKind.CONSUMER)]
    return max(mtus + [1500]) if mtus else PCAP_PIPE_MTU


def quiet_input(context, interface):
    """Offloads off on interface while this tree reads it (released with the tree)."""
    link_call(registry.quiet_input, interface)
    context.hold(lambda: registry.release_input(interface))


def hold_tunnel(context, port):
    """port's tunnel device, made for its first user and deleted after its last (released with the tree)."""
    link_call(registry.use_tunnel, port)
    context.hold(lambda: registry.release_tunnel(port))


class PacketBackend:
    name = "packet"
    family = "kernel"

    def probe(self, plan):
        return None

    def open_source(self, context, port):
        name = port.device
        if port.kind == PortKind.TUNNEL:
            hold_tunnel(context, port)
        info = link_call(links.interface_info, name)
        if port.kind in (PortKind.INTERFACE, PortKind.TUNNEL):
            quiet_input(context, name)
        ring_bytes = max(MIN_RX_RING_BYTES, context.engine.buffer_slots * RX_RING_BYTES_PER_SLOT)
        fanout = fanout_group(info.index) if context.plan.qid >= 0 else -1
        return open_native(lib.brk_source_afpacket_open, name.encode(), ring_bytes, fanout)

    def open_sink(self, context, node, output):
        port = output.port
        if port.kind == PortKind.BROKER:
            mtu = input_mtu(context.plan)
            context.engine.hold_pipe(port, mtu)
        elif port.kind == PortKind.TUNNEL:
            hold_tunnel(context, port)
            mtu = link_call(links.interface_info, port.device).mtu
        else:
            mtu = link_call(links.interface_info, port.interface).mtu
        return open_native(lib.brk_sink_afpacket_open, port.device.encode(), context.engine.buffer_slots, mtu)

    def realise(self, context):
        pass

    def release(self, context):
        pass


BACKEND = PacketBackend()
