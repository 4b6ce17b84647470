"""Kernel links for the packet back-end: veth pipes, interface facts and offloads (pyroute2); port names are
in ports.py, who holds what in registry.py.

A pipe `X{N` / `X}N` is a veth pair: bricks writes into the broker end `X{N`, and
any unmodified tool reads the consumer end `X}N`. Both ends are made quiet (no
IPv6, no ARP, no multicast) so a consumer sees only what bricks forwards. Every
pipe carries an alias naming the process that made it (pid and start time):
the pipes of a living bricks are never touched by another one, and the
leftovers of a killed run are found and removed (`reclaim_stale_pipes`). The
offloads bricks turns off on an input are written down with their owner in the
run directory and turned back on at the next start if that owner was killed.
"""
import errno
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from pyroute2 import IPRoute
from pyroute2.ethtool.ioctl import IoctlEthtool, NoSuchDevice, NotSupportedError
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import IFF_MULTICAST, IFF_NOARP, IFF_UP

from .errors import LinkError
# Port names live in ports.py; these names stay importable from here.
from .ports import (MAX_NAME_LENGTH, MAX_PIPE_INDEX, NETMAP_PREFIX, PortName, PortNameError,  # noqa: F401
                    broker_name, check_pipe_name_length, consumer_name, parse_port_name)

MIN_PIPE_MTU = 1500
MAX_VETH_MTU = 65535          # veth's max_mtu; `lo` reports 65536
ALIAS_PREFIX = "bricks pipe"
IN6_ADDR_GEN_MODE_NONE = 1

# Offloads that merge or split packets behind the capture's back, as capture
# tools advise turning off: GRO (rx-gro*), LRO, GSO and every TSO variant.
CAPTURE_HOSTILE_FEATURES = (
    "rx-gro",
    "rx-gro-hw",
    "rx-gro-list",
    "rx-udp-gro-forwarding",
    "rx-lro",
    "tx-generic-segmentation",
    "tx-tcp-segmentation",
    "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation",
    "tx-tcp6-segmentation",
    "tx-tcp-accecn-segmentation",
)

_ALIAS = re.compile(r"^bricks pipe pid=(?P<pid>\d+) start=(?P<start>\d+)$")


@dataclass(frozen=True)
class PipePair:
    """The two ends of veth pipe `index` of `interface`."""

    interface: str
    index: int
    broker: str       # bricks writes here
    consumer: str     # applications read here
    mtu: int

    def delete(self) -> None:
        delete_pipe(self)


@dataclass(frozen=True)
class InterfaceInfo:
    """What bricks needs to know about an existing interface."""

    name: str
    index: int
    mtu: int
    is_up: bool
    kind: Optional[str]    # the link kind ("veth", ...) or None for a plain device
    alias: Optional[str]
    exists: bool = True


# ---------------------------------------------------------------- interfaces

def interface_info(name: str) -> InterfaceInfo:
    """Facts about interface `name`; LinkError if there is none."""
    with IPRoute() as ipr:
        link = _find_link(ipr, name)
    if link is None:
        raise LinkError(f"{name}: no such interface")
    return InterfaceInfo(
        name=name,
        index=link["index"],
        mtu=link.get("mtu"),
        is_up=bool(link["flags"] & IFF_UP),
        kind=link.get(("linkinfo", "kind")),
        alias=link.get("ifalias"),
    )


def interface_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return _find_link(ipr, name) is not None


def transmit_drops(name: str) -> int:
    """Packets the kernel dropped on transmit on `name` (a veth whose peer's backlog was full); 0 if gone."""
    try:
        with open(f"/sys/class/net/{name}/statistics/tx_dropped") as counter:
            return int(counter.read())
    except (OSError, ValueError):
        return 0


def _find_link(ipr: IPRoute, name: str):
    try:
        links = ipr.get_links(ifname=name)
    except NetlinkError as error:
        if error.code in (errno.ENODEV, errno.ENOENT):
            return None
        raise
    return links[0] if links else None


# ---------------------------------------------------------------- pipes

def create_pipe(interface: str, index: int, mtu: int) -> PipePair:
    """Create the quiet veth pipe `interface{index` / `interface}index`, both ends up.

    A pipe of that name left by bricks is replaced; one bricks did not make is an error.
    """
    pair = PipePair(
        interface=interface,
        index=index,
        broker=broker_name(interface, index),
        consumer=consumer_name(interface, index),
        mtu=min(max(int(mtu), MIN_PIPE_MTU), MAX_VETH_MTU),
    )
    check_pipe_name_length(pair.broker)
    with IPRoute() as ipr:
        _remove_previous_pipe(ipr, pair)
        try:
            ipr.link("add", ifname=pair.broker, kind="veth", mtu=pair.mtu,
                     peer={"ifname": pair.consumer, "mtu": pair.mtu})
        except NetlinkError as error:
            raise LinkError(f"{pair.broker}: cannot create the pipe: {os.strerror(error.code)}") from None
        try:
            for end in (pair.broker, pair.consumer):
                _prepare_end(ipr, end)
        except BaseException:
            _delete_link(ipr, pair.broker)
            raise
    return pair


def _remove_previous_pipe(ipr: IPRoute, pair: PipePair) -> None:
    """Delete a previous pipe of this name if it is ours or its bricks is dead; refuse otherwise.

    Both ends are checked before either is deleted, so a refusal changes nothing.
    """
    previous = []
    for end in (pair.broker, pair.consumer):
        link = _find_link(ipr, end)
        if link is None:
            continue
        alias = link.get("ifalias") or ""
        if not _ALIAS.match(alias):
            raise LinkError(f"{end}: exists and was not created by bricks")
        owner = living_owner(alias)
        if owner is not None and owner != os.getpid():
            raise LinkError(f"{end} belongs to bricks pid {owner}, which is running: "
                            f"stop it or choose other pipe numbers")
        previous.append(end)
    for end in previous:
        _delete_link(ipr, end)


def _prepare_end(ipr: IPRoute, name: str) -> None:
    """Mark an end as ours, silence it (before it goes up, so it never speaks), bring it up."""
    index = ipr.link_lookup(ifname=name)[0]
    ipr.link("set", index=index, ifalias=_owner_alias())
    quiet_link(ipr, index, name)
    ipr.link("set", index=index, flags=IFF_UP, change=IFF_UP)


def quiet_link(ipr: IPRoute, index: int, name: Optional[str] = None) -> None:
    """Make a down link silent once up: IPv6 off, no link-local address, NOARP, no multicast.

    `name` is given for a link in this process's namespace, whose IPv6 switch is then turned off too.
    """
    if name is not None:
        _write_proc_sys(f"net/ipv6/conf/{name}/disable_ipv6", "1")
    try:
        ipr.link("set", index=index, IFLA_AF_SPEC={"attrs": [
            ("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE)]})]})
    except NetlinkError:
        pass    # IPv6 absent from this kernel: nothing to silence
    ipr.link("set", index=index, flags=IFF_NOARP, change=IFF_NOARP | IFF_MULTICAST)


def _write_proc_sys(path: str, value: str) -> None:
    try:
        with open(os.path.join("/proc/sys", path), "w") as setting:
            setting.write(value)
    except FileNotFoundError:
        pass    # IPv6 disabled at boot: the setting does not exist and is not needed


def steer_receive(consumer: str, engine_cpu: int) -> Optional[str]:
    """Have the receive work of a pipe's consumer end done on the CPUs other than engine_cpu (RPS).

    veth delivers to its peer in the sender's context: without this, every
    packet's trip through the consumer end's receive path (and into the
    consumer's socket) runs on the engine's CPU. RPS hands it to the backlog
    of another CPU, chosen per flow (so a flow stays in order). Returns the
    mask written, or None when there is no other CPU to use.
    """
    cpus = sorted(os.sched_getaffinity(0) - {engine_cpu})
    if not cpus:
        return None
    mask = rps_mask(cpus)
    try:
        with open(f"/sys/class/net/{consumer}/queues/rx-0/rps_cpus", "w") as setting:
            setting.write(mask)
    except OSError as error:
        raise LinkError(f"{consumer}: cannot set receive CPUs {mask}: {error.strerror}") from None
    return mask


def rps_mask(cpus: List[int]) -> str:
    """The sysfs spelling of a CPU set: hex, in comma-separated 32-bit groups, highest first."""
    bits = sum(1 << cpu for cpu in cpus)
    groups = []
    while True:
        groups.append(f"{bits & 0xFFFFFFFF:08x}")
        bits >>= 32
        if not bits:
            break
    return ",".join(reversed(groups))


def delete_pipe(pair: PipePair) -> None:
    """Delete both ends of a pipe (deleting one veth end removes its peer); gone already is fine."""
    with IPRoute() as ipr:
        _delete_link(ipr, pair.broker)
        _delete_link(ipr, pair.consumer)


def _delete_link(ipr: IPRoute, name: str) -> bool:
    indexes = ipr.link_lookup(ifname=name)
    if not indexes:
        return False
    try:
        ipr.link("del", index=indexes[0])
    except NetlinkError as error:
        if error.code != errno.ENODEV:
            raise LinkError(f"{name}: cannot delete: {os.strerror(error.code)}") from None
        return False
    return True


# ---------------------------------------------------------------- stale pipes

def _owner_alias(pid: Optional[int] = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{ALIAS_PREFIX} pid={pid} start={_process_start_time(pid)}"


def _process_start_time(pid: int) -> Optional[int]:
    """The start time of process `pid` (clock ticks since boot), None if it does not exist.

    Together with the pid it names one process: a pid reused later has another start time. A zombie is
    dead (None): it owns nothing any more.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None           # killed, not yet reaped (a daemon's parent is init, which may be slow to): dead
    return int(fields[19])    # field 22 of stat; fields here start at field 3


def living_owner(alias: str) -> Optional[int]:
    """The pid of the running process an owner alias names; None if it names none or a dead one."""
    marker = _ALIAS.match(alias)
    if not marker or _process_start_time(int(marker["pid"])) != int(marker["start"]):
        return None
    return int(marker["pid"])


# The link kinds bricks creates: veth pipes and tunnel devices (tunnels.py), all with the owner alias.
RECLAIMED_KINDS = ("veth", "vxlan", "gretap", "erspan")


def reclaim_stale_pipes() -> List[str]:
    """Delete the veths and tunnel devices a dead bricks process left behind, and turn back on the offloads
    it had turned off.

    Returns the names of the links deleted.
    """
    reclaim_stale_offloads()
    deleted = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name, alias = link.get("ifname"), link.get("ifalias") or ""
            if link.get(("linkinfo", "kind")) not in RECLAIMED_KINDS or not _ALIAS.match(alias):
                continue
            if living_owner(alias) is None and _delete_link(ipr, name):
                deleted.append(name)
    return deleted


# ---------------------------------------------------------------- offloads

# What a process turned off is also written down, with the process as owner,
# in <run dir>/offloads/<interface>: if it is killed before it can turn them
# back on, the next bricks to start does (`reclaim_stale_offloads`).
OFFLOAD_RECORDS = "offloads"


@dataclass(frozen=True)
class OffloadToken:
    """What `disable_offloads` turned off on an interface, for `restore_offloads`."""

    interface: str
    turned_off: Tuple[str, ...]


def disable_offloads(name: str) -> OffloadToken:
    """Turn off GRO, LRO, GSO and TSO on `name` while bricks reads it, recording what was on.

    Features the driver cannot change are left alone, silently.
    """
    turned_off: Tuple[str, ...] = ()
    with _ethtool(name) as ethtool:
        features = ethtool.get_features()
        turned_off = tuple(feature for feature in CAPTURE_HOSTILE_FEATURES
                           if feature in features and features.is_available(feature)
                           and features.is_requested(feature))
        if turned_off:
            # Before the change: a kill between the two still leaves the record.
            _write_offload_record(name, turned_off)
        _set_features(ethtool, name, turned_off, enable=False)
    return OffloadToken(name, turned_off)


def restore_offloads(token: OffloadToken) -> None:
    """Turn back on what `disable_offloads` turned off; an interface gone meanwhile is fine."""
    if not token.turned_off:
        return
    if interface_exists(token.interface):
        with _ethtool(token.interface) as ethtool:
            _set_features(ethtool, token.interface, token.turned_off, enable=True)
    _remove_offload_record(token.interface)


def reclaim_stale_offloads() -> List[str]:
    """Turn back on the offloads that dead bricks processes turned off; return the interfaces restored.

    A record whose interface is gone, or is another interface of the same name
    now (another index), is dropped without touching anything.
    """
    restored = []
    directory = _offload_record_directory()
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return restored    # no record was ever written here
    for name in names:
        record = None if name.startswith(".") else _read_offload_record(os.path.join(directory, name))
        if record is None or living_owner(record["owner"]) is not None:
            continue
        if _interface_index(name) == record.get("index"):
            try:
                with _ethtool(name) as ethtool:
                    _set_features(ethtool, name, tuple(record["turned_off"]), enable=True)
            except LinkError:
                continue    # not allowed here, or gone meanwhile: the record waits for a start that can
            restored.append(name)
        _remove_offload_record(name)
    return restored


def _offload_record_directory() -> str:
    from .server import run_dir    # the daemon's run directory; imported late: server imports much
    return os.path.join(run_dir(), OFFLOAD_RECORDS)


def _interface_index(name: str) -> Optional[int]:
    try:
        return interface_info(name).index
    except LinkError:
        return None


def _write_offload_record(name: str, turned_off: Tuple[str, ...]) -> None:
    """Best effort: without a writable run directory a kill leaves the offloads off, as before."""
    directory = _offload_record_directory()
    record = {"owner": _owner_alias(), "index": _interface_index(name), "turned_off": list(turned_off)}
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        partial = os.path.join(directory, f".{name}.{os.getpid()}")
        with open(partial, "w") as written:
            json.dump(record, written)
        os.replace(partial, os.path.join(directory, name))
    except OSError:
        pass


def _read_offload_record(path: str) -> Optional[dict]:
    """The record at path, or None for anything that is not one (a partial write, a stranger's file)."""
    try:
        with open(path) as recorded:
            record = json.load(recorded)
        if isinstance(record.get("owner"), str) and isinstance(record.get("turned_off"), list):
            return record
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _remove_offload_record(name: str) -> None:
    """Remove the record of name if this process wrote it (another living bricks may have its own)."""
    path = os.path.join(_offload_record_directory(), name)
    record = _read_offload_record(path)
    if record is not None and living_owner(record["owner"]) not in (None, os.getpid()):
        return
    try:
        os.unlink(path)
        os.rmdir(os.path.dirname(path))    # only when it was the last record: leave no empty directory
    except OSError:
        pass


@contextmanager
def _ethtool(name: str) -> Iterator[IoctlEthtool]:
    """The ethtool ioctl on `name`; a device without ethtool support yields no feature at all."""
    ethtool = IoctlEthtool()
    ethtool.change_ifname(name)
    try:
        yield ethtool
    except NoSuchDevice:
        raise LinkError(f"{name}: no such interface") from None
    except NotSupportedError:
        pass
    finally:
        ethtool.close()


def _set_features(ethtool: IoctlEthtool, name: str, features_to_set: Tuple[str, ...], enable: bool) -> None:
    if not features_to_set:
        return
    features = ethtool.get_features()
    for feature in features_to_set:
        features[feature] = enable
    try:
        ethtool.set_features(features)
    except OSError as error:
        # EINVAL: the driver refused a combination it cannot do; leave it as it is.
        if error.errno != errno.EINVAL:
            raise LinkError(f"{name}: cannot change offloads: {os.strerror(error.errno)}") from None
