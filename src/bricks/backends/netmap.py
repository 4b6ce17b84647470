"""The netmap back-end: interfaces and netmap pipes opened through /dev/netmap (io_netmap.c, netmap.py).

A pipe `X{N` is a netmap pipe of X's port: no veth is created. Its probe accepts a tree when the module is
loaded and opens every interface of the tree (with qid >= 0: has that ring pair on each input)."""
from .. import links, netmap
from .._ffi import lib
from ..errors import BricksError
from ..ports import PortKind
from .packet import quiet_input


def netmap_port(port, qid):
    """The netmap port a bricks port names: qid >= 0 reads that one NIC ring pair (SPEC §3)."""
    if port.kind == PortKind.BROKER:
        return netmap.NetmapPort(port.interface, lib.NR_REG_PIPE_MASTER, pipe=port.index)
    if port.kind == PortKind.CONSUMER:
        return netmap.NetmapPort(port.interface, lib.NR_REG_PIPE_SLAVE, pipe=port.index)
    if qid >= 0:
        return netmap.NetmapPort(port.interface, lib.NR_REG_ONE_NIC, ring=qid)
    return netmap.NetmapPort(port.interface, lib.NR_REG_ALL_NIC)


class NetmapBackend:
    name = "netmap"
    family = "netmap"

    def probe(self, plan):
        reason = netmap.missing_reason()
        tunnels = plan.ports(PortKind.TUNNEL)
        if tunnels and not reason:
            reason = f"{tunnels[0].name}: tunnel ports are kernel devices, which the packet back-end opens"
        read = set(plan.interfaces_read)
        for interface in plan.interfaces:
            reason = reason or netmap.probe(interface, plan.qid if interface in read else -1)
        return reason

    def open_source(self, context, port):
        if port.kind == PortKind.INTERFACE:
            if not links.interface_exists(port.interface):
                raise BricksError(f"{port.interface}: no such interface")
            quiet_input(context, port.interface)   # netmap forwards no offloaded frame either
        return netmap.open_source(netmap_port(port, context.plan.qid))

    def open_sink(self, context, node, output):
        return netmap.open_sink(netmap_port(output.port, qid=-1))   # a pipe master: no veth to create

    def realise(self, context):
        pass

    def release(self, context):
        pass


BACKEND = NetmapBackend()
