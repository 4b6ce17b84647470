"""Throwaway network-namespace testbeds for the demo, the benchmarks and the end-to-end tests: a private namespace, quiet veth pairs into it, a sender and tcpdump readers.

Layout: bricks runs in the host namespace and reads or writes the host end of
each veth pair; the other end sits in the testbed's namespace, where the test
sends frames (`Testbed.send`) or captures them (`Reader`). Every name is unique
to one testbed (namespace `bkt-<pid>-<token>`, host ends `bt<token><name>`) so
test runs never collide, and everything is removed on exit, even on failure.
"""
import errno
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Optional, Sequence, Tuple

from pyroute2 import IPRoute, NetlinkError, netns
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP

from bricks.errors import BricksError
from bricks.frames import PCAP_HEADER, read_pcap
from bricks.links import quiet_link
from bricks.server import process_exists

NAMESPACE_PREFIX = "bkt-"
HOST_PREFIX = "bt"
MAX_SHORT_NAME = 5            # bt + 4 hex + 5 + "{63" stays within the kernel's 15
READER_START_TIMEOUT = 10.0
READER_STOP_TIMEOUT = 5.0

# The commands a testbed runs, and the Debian package of each.
TOOLS = {"ip": "iproute2", "sysctl": "procps", "tcpdump": "tcpdump"}


class TestbedError(BricksError):
    """Why a testbed cannot be made here, in one line naming the fix."""

    __test__ = False    # not a test class, whatever pytest thinks of its name


def missing_tools(names: Sequence[str] = tuple(TOOLS)) -> List[str]:
    """The commands among names that are not on PATH."""
    return [name for name in names if shutil.which(name) is None]


def require_tools(names: Sequence[str] = tuple(TOOLS)) -> None:
    """TestbedError naming the Debian packages to install when a command of names is not on PATH."""
    missing = missing_tools(names)
    if missing:
        packages = " ".join(sorted({TOOLS[name] for name in missing}))
        raise TestbedError(f"{', '.join(missing)}: command not found: apt-get install {packages} "
                           f"(bin/setup, run as root, installs them)")


def require_privileges() -> None:
    """TestbedError unless this process may create namespaces and veth pairs."""
    if os.geteuid() != 0:
        raise TestbedError("a testbed creates a network namespace and veth pairs: run as root "
                           "(it needs CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_NET_RAW)")


# Runs inside the namespace: sends length-prefixed frames from a file on an AF_PACKET socket.
_SENDER = r"""
import socket, struct, sys, time
interface, path, pps = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = open(path, "rb").read()
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((interface, 0))
start, offset, sent = time.monotonic(), 0, 0
while offset < len(data):
    (length,) = struct.unpack_from("<I", data, offset)
    frame = data[offset + 4: offset + 4 + length]
    offset += 4 + length
    if pps > 0:
        delay = start + sent / pps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    while True:
        try:
            sock.send(frame)
            break
        except BlockingIOError:
            time.sleep(0.0005)
        except OSError as error:
            if error.errno != 105:  # ENOBUFS: the qdisc is full, retry
                raise
            time.sleep(0.0005)
    sent += 1
"""


class Testbed:
    """A namespace with veth pairs to the host; a context manager that removes it all."""

    def __init__(self):
        require_privileges()              # before anything exists that would need removing
        require_tools(["ip", "sysctl"])
        self.token = secrets.token_hex(2)
        self.namespace = f"{NAMESPACE_PREFIX}{os.getpid()}-{self.token}"
        self.host_prefix = f"{HOST_PREFIX}{self.token}"
        self.directory = tempfile.mkdtemp(prefix=f"{self.namespace}-")
        self.readers: List["Reader"] = []

    def __enter__(self) -> "Testbed":
        try:    # a namespace the kernel refuses still leaves our directory to remove
            netns.create(self.namespace)
            _run_in_namespace(self.namespace, ["sysctl", "-q", "-w",
                                               "net.ipv6.conf.all.disable_ipv6=1",
                                               "net.ipv6.conf.default.disable_ipv6=1"])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        for reader in self.readers:
            reader.stop()
        self.readers.clear()
        try:
            netns.remove(self.namespace)
        except FileNotFoundError:
            pass
        # Pipes bricks made for our interfaces share the prefix: they go too.
        remove_veths(self.host_prefix)
        shutil.rmtree(self.directory, ignore_errors=True)

    def host_name(self, name: str) -> str:
        return f"{self.host_prefix}{name}"

    def add_input(self, name: str, mtu: int = 1500) -> Tuple[str, str]:
        """A pair whose host end bricks reads and whose namespace end the sender uses: (host_if, ns_if)."""
        return self._add_pair(name, mtu)

    def add_egress(self, name: str, mtu: int = 1500) -> Tuple[str, str]:
        """A pair whose host end bricks writes and whose namespace end a Reader captures: (host_if, ns_if)."""
        return self._add_pair(name, mtu)

    def _add_pair(self, name: str, mtu: int) -> Tuple[str, str]:
        if not re.fullmatch(r"[a-z0-9]{1,%d}" % MAX_SHORT_NAME, name):
            raise ValueError(f"testbed interface name {name!r}: 1 to {MAX_SHORT_NAME} of [a-z0-9]")
        host_if = self.host_name(name)
        with IPRoute() as ipr:
            ipr.link("add", ifname=host_if, kind="veth", mtu=mtu,
                     peer={"ifname": name, "mtu": mtu, "net_ns_fd": self.namespace})
            _quiet_up(ipr, host_if, in_this_namespace=True)
        with IPRoute(netns=self.namespace) as ipr:
            _quiet_up(ipr, name, in_this_namespace=False)    # the namespace's defaults disable IPv6
        return host_if, name

    def send(self, ns_if: str, frames: Sequence[bytes], pps: Optional[float] = None, timeout: float = 30.0) -> None:
        """Send raw Ethernet frames out of `ns_if` inside the namespace, at most `pps` per second."""
        send_frames(ns_if, frames, pps, timeout, namespace=self.namespace, directory=self.directory)

    def reader(self, interface: str, in_namespace: bool = True) -> "Reader":
        """A started Reader on `interface` (in the namespace, or on the host), stopped on exit."""
        reader = Reader(interface, self.namespace if in_namespace else None, self.directory)
        self.readers.append(reader)
        return reader.start()


class Reader:
    """A real `tcpdump -w` capture on an interface, returning the raw frames it saw."""

    def __init__(self, interface: str, namespace: Optional[str] = None, directory: Optional[str] = None):
        self.interface = interface
        self.namespace = namespace
        self.path = os.path.join(directory or tempfile.gettempdir(), f"reader-{secrets.token_hex(4)}.pcap")
        self.process: Optional[subprocess.Popen] = None
        self.frames: List[bytes] = []
        self.stderr_lines: List[str] = []
        self._listening = threading.Event()

    def __enter__(self) -> "Reader":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "Reader":
        require_tools(["tcpdump", "ip"] if self.namespace else ["tcpdump"])
        command = ["tcpdump", "-i", self.interface, "-w", self.path, "-U", "-n", "-s", "0", "-Z", "root"]
        if self.namespace:
            command = ["ip", "netns", "exec", self.namespace] + command
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        if not self._listening.wait(READER_START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"tcpdump on {self.interface} did not start: {' | '.join(self.stderr_lines)}")
        return self

    def _drain_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr_lines.append(line.strip())
            if "listening on" in line:
                self._listening.set()

    def read_so_far(self) -> List[bytes]:
        """The frames written to the capture file up to now (tcpdump -U flushes every packet)."""
        try:
            with open(self.path, "rb") as capture:
                return parse_pcap(capture.read())
        except FileNotFoundError:
            return []

    def wait_for(self, count: int, timeout: float = 5.0) -> List[bytes]:
        """Wait until at least `count` frames are captured or `timeout` passes; return what was seen."""
        deadline = time.monotonic() + timeout
        frames = self.read_so_far()
        while len(frames) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            frames = self.read_so_far()
        return frames

    def stop(self) -> List[bytes]:
        """Stop tcpdump (SIGINT, as a user would) and return every frame it captured."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(READER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.process = None
            self.frames = self.read_so_far()
            if os.path.exists(self.path):
                os.unlink(self.path)
        return self.frames


def wait_for_total(readers: Sequence["Reader"], expected: int, timeout: float = 10.0) -> int:
    """Wait until the readers together captured `expected` frames or `timeout` passes; return the total seen."""
    deadline = time.monotonic() + timeout
    total = sum(len(reader.read_so_far()) for reader in readers)
    while total < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        total = sum(len(reader.read_so_far()) for reader in readers)
    return total


def send_frames(interface: str, frames: Sequence[bytes], pps: Optional[float] = None, timeout: float = 30.0,
                namespace: Optional[str] = None, directory: Optional[str] = None) -> None:
    """Send raw Ethernet frames out of `interface` (in `namespace`, or on the host), at most `pps` per second."""
    descriptor, path = tempfile.mkstemp(prefix="frames-", dir=directory)
    with os.fdopen(descriptor, "wb") as out:
        for frame in frames:
            out.write(struct.pack("<I", len(frame)) + bytes(frame))
    command = [sys.executable, "-c", _SENDER, interface, path, str(pps or 0)]
    if namespace:
        command = ["ip", "netns", "exec", namespace] + command
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout + (len(frames) / pps if pps else 0))
    finally:
        os.unlink(path)
    if result.returncode != 0:
        raise RuntimeError(f"sending on {interface} failed: {result.stderr.strip()}")


def parse_pcap(data: bytes) -> List[bytes]:
    """The frames of a pcap file (micro- or nanosecond, either byte order); a cut last record is ignored."""
    if len(data) < PCAP_HEADER.size:
        return []
    return read_pcap(data).frames


def remove_veths(prefix: str) -> List[str]:
    """Delete every veth whose name starts with `prefix` (the leftovers of a crashed run); return their names."""
    removed = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get("ifname")
            if name.startswith(prefix) and link.get(("linkinfo", "kind")) == "veth":
                indexes = ipr.link_lookup(ifname=name)
                if indexes:    # deleting one end may already have removed this one
                    try:
                        ipr.link("del", index=indexes[0])
                    except NetlinkError as error:
                        if error.code != errno.ENODEV:    # gone with its namespace meanwhile
                            raise
                        continue
                    removed.append(name)
    return removed


def remove_stale_testbeds() -> List[str]:
    """Remove the namespaces and host veths of testbeds whose test process is dead; return the namespaces."""
    removed = []
    for namespace in netns.listnetns():
        match = re.fullmatch(NAMESPACE_PREFIX + r"(\d+)-([0-9a-f]{4})", namespace)
        if match and not process_exists(int(match[1])):
            netns.remove(namespace)
            remove_veths(HOST_PREFIX + match[2])
            removed.append(namespace)
    return removed


def _quiet_up(ipr: IPRoute, name: str, in_this_namespace: bool) -> None:
    """Silence a down link the way bricks silences its pipes, then bring it up."""
    (index,) = ipr.link_lookup(ifname=name)
    quiet_link(ipr, index, name if in_this_namespace else None)
    ipr.link("set", index=index, flags=IFF_UP, change=IFF_UP)


def _run_in_namespace(namespace: str, command: List[str], timeout: float = 10.0) -> None:
    result = subprocess.run(["ip", "netns", "exec", namespace] + command,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} in {namespace} failed: {result.stderr.strip()}")
