"""The AF_PACKET back-end on real veth pairs: byte-exact forwarding, fanout shares, full TX rings, jumbo frames, errors."""
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from bricks import engine as engine_module
from bricks._native import ffi, lib
from bricks.errors import BricksError
from bricks.frames import ETHERTYPE_QINQ, ETHERTYPE_VLAN, pad, udp_frame

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33   # Linux constants the socket module does not export
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
AUXDATA = struct.Struct("=IIIHHHH")   # struct tpacket_auxdata
RING_BYTES = 4 << 20
TX_SLOTS = 1024
BATCH = 256
SETTLE_TIMEOUT_S = 10
STOP_TIMEOUT_S = 2
SENDER_TIMEOUT_S = 60

# Runs inside the namespace: sends the length-prefixed frames of a file on an
# interface through a raw socket, then prints how many it sent.
SENDER = """
import socket, struct, sys
interface, path = sys.argv[1], sys.argv[2]
blob = open(path, "rb").read()
sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
sender.bind((interface, 0))
offset = sent = 0
while offset < len(blob):
    (length,) = struct.unpack_from("!I", blob, offset)
    sender.send(blob[offset + 4:offset + 4 + length])
    offset += 4 + length
    sent += 1
print(sent)
"""


def ip(*arguments, namespace=None):
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run(prefix + ["ip", *arguments], check=True, capture_output=True, timeout=10)


def quiet(interface, namespace=None, mtu=None):
    """Up, no ARP, no IPv6: the link carries only the test's frames."""
    command = f"echo 1 > /proc/sys/net/ipv6/conf/'{interface}'/disable_ipv6"
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run(prefix + ["sh", "-c", command], check=True, capture_output=True, timeout=10)
    if mtu:
        ip("link", "set", interface, "mtu", str(mtu), namespace=namespace)
    ip("link", "set", interface, "arp", "off", "up", namespace=namespace)


class VethTestbed:
    """A namespace that sends into the host end of an input veth, and output pipes X{N / X}N.

    Names carry the pid and a per-test tag, so concurrent runs never collide.
    """

    def __init__(self, tag, pipes=1, mtu=None):
        pid = os.getpid()
        self.namespace = f"bricks-afp-{pid}-{tag}"
        self.input_host = f"bk{tag}{pid}h"
        self.input_namespace = f"bk{tag}{pid}n"
        self.pipe_ends = [(f"bk{tag}{pid}{{{n}", f"bk{tag}{pid}}}{n}") for n in range(pipes)]
        self.mtu = mtu

    def __enter__(self):
        try:
            ip("netns", "add", self.namespace)
            ip("link", "add", self.input_host, "type", "veth", "peer", "name", self.input_namespace,
               "netns", self.namespace)
            quiet(self.input_host, mtu=self.mtu)
            quiet(self.input_namespace, namespace=self.namespace, mtu=self.mtu)
            for broker_end, consumer_end in self.pipe_ends:
                ip("link", "add", broker_end, "type", "veth", "peer", "name", consumer_end)
                quiet(broker_end, mtu=self.mtu)
                quiet(consumer_end, mtu=self.mtu)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exception):
        for broker_end, _ in self.pipe_ends:
            subprocess.run(["ip", "link", "del", broker_end], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.input_host], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=10)

    def send(self, frames):
        """Sends frames from the namespace end, in order; returns how many were sent."""
        with tempfile.NamedTemporaryFile(prefix="bricks-afp-", suffix=".frames") as blob:
            blob.write(b"".join(struct.pack("!I", len(frame)) + frame for frame in frames))
            blob.flush()
            done = subprocess.run(["ip", "netns", "exec", self.namespace, sys.executable, "-c", SENDER,
                                   self.input_namespace, blob.name],
                                  check=True, capture_output=True, text=True, timeout=SENDER_TIMEOUT_S)
        return int(done.stdout)


class Reader:
    """Collects every frame arriving at an interface (a consumer reading X}N).

    The kernel hands a VLAN tag over beside the frame; like libpcap, the reader
    puts it back so that frames compare byte for byte with what was sent.
    """

    def __init__(self, interface):
        # Protocol 0 until bind(): an ETH_P_ALL socket would queue frames of every
        # interface in between.
        self.socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        self.socket.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.socket.bind((interface, ETH_P_ALL))   # Python converts to network order
        self.socket.settimeout(0.1)
        self.frames = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            try:
                frame, ancillary, _, address = self.socket.recvmsg(65536, 64)
            except socket.timeout:
                continue
            if address[2] == PACKET_OUTGOING:
                continue
            for level, kind, data in ancillary:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    status, _, _, _, _, tci, tpid = AUXDATA.unpack_from(data)
                    if status & TP_STATUS_VLAN_VALID:
                        tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID and tpid else 0x8100
                        frame = frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]
            self.frames.append(frame)

    def wait_for(self, count, timeout=SETTLE_TIMEOUT_S):
        """Waits until count frames arrived (or timeout), then a little longer for extras."""
        deadline = time.monotonic() + timeout
        while len(self.frames) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        return self.frames

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=STOP_TIMEOUT_S)
        self.socket.close()


def check(pointer, error):
    assert pointer != ffi.NULL, ffi.string(error).decode()
    return pointer


class Engine:
    """Source -> Dummy -> sink in one engine, run by a thread (cffi releases the GIL)."""

    def __init__(self, source_interface, sink_interface=None, fanout_group=-1, slots=TX_SLOTS, mtu=1500,
                 ring_bytes=RING_BYTES, batch=BATCH, pcap_path=None):
        error = ffi.new("char[256]")
        self.source = check(lib.brk_source_afpacket_open(source_interface.encode(), ring_bytes,
                                                         fanout_group, error, len(error)), error)
        if pcap_path:
            self.sink = check(lib.brk_sink_pcap_open(str(pcap_path).encode(), 65535, error, len(error)), error)
        else:
            self.sink = check(lib.brk_sink_afpacket_open(sink_interface.encode(), slots, mtu, error,
                                                         len(error)), error)
        config = ffi.new("struct brk_brick_config *", {"split": 4})
        self.brick = check(lib.brk_brick_new(lib.brk_brick_kind_find(b"Dummy"), config, error, len(error)),
                           error)
        assert lib.brk_brick_add_sink(self.brick, self.sink) == 0
        self.engine = lib.brk_engine_new(batch, -1)
        assert lib.brk_engine_add_source(self.engine, self.source, self.brick) == 0
        self.thread = threading.Thread(target=lib.brk_engine_run, args=(self.engine,), daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        """Stops the loop; returns how long the thread took to end."""
        began = time.monotonic()
        lib.brk_engine_stop(self.engine)
        self.thread.join(timeout=STOP_TIMEOUT_S)
        assert not self.thread.is_alive(), "the engine did not stop"
        return time.monotonic() - began

    def stats(self):
        stats = ffi.new("struct brk_engine_stats *")
        lib.brk_engine_stats(self.engine, stats)
        return stats

    def output(self):
        counters = ffi.new("struct brk_counters *")
        assert lib.brk_brick_output_stats(self.brick, 0, counters) == 0
        return counters

    def free(self):
        if self.thread.is_alive():
            self.stop()
        lib.brk_engine_free(self.engine)
        lib.brk_brick_free(self.brick)
        lib.brk_sink_close(self.sink)
        lib.brk_source_close(self.source)


@contextmanager
def running(*engines):
    try:
        yield [engine.start() for engine in engines]
    finally:
        for engine in engines:
            engine.free()


def distinct_udp_frames(count, seed, size=None):
    """count frames of distinct UDP flows (no two frames alike), some VLAN or QinQ tagged."""
    rng = random.Random(seed)
    frames = []
    for n in range(count):
        vlans = [(), [(ETHERTYPE_VLAN, 10 + n % 7)], [(ETHERTYPE_QINQ, 100), (ETHERTYPE_VLAN, n % 4000)]][n % 3]
        payload = struct.pack("!I", n) + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        if size:
            payload = payload + bytes(size)
        frame = udp_frame(f"10.{n >> 8 & 255}.{n & 255}.1", "192.0.2.1", 1024 + n, 53, payload, vlans=vlans)
        frames.append(pad(frame)[:size] if size else pad(frame))
    return frames


@pytest.mark.root
def test_forwards_every_packet_byte_exact_in_order():
    with VethTestbed("f") as bed, running(Engine(bed.input_host, bed.pipe_ends[0][0])) as (engine,):
        reader = Reader(bed.pipe_ends[0][1])
        try:
            frames = distinct_udp_frames(2000, seed=1)
            began = time.monotonic()
            assert bed.send(frames) == len(frames)
            received = reader.wait_for(len(frames))
            elapsed = time.monotonic() - began
        finally:
            reader.close()
        engine.stop()
        stats, output = engine.stats(), engine.output()
    assert len(received) == len(frames), f"{len(received)} of {len(frames)} arrived"
    assert received == frames
    assert stats.received_packets == len(frames)
    assert stats.received_bytes == sum(map(len, frames))
    assert output.packets == len(frames) and output.bytes == sum(map(len, frames))
    assert stats.kernel_drops == 0 and stats.output_drops == 0 and output.drops == 0
    print(f"{len(frames)} frames forwarded in {elapsed:.2f} s")


@pytest.mark.root
def test_only_arriving_packets_are_read():
    """Frames leaving the input interface (another program sending there) are not input."""
    with VethTestbed("o") as bed, running(Engine(bed.input_host, bed.pipe_ends[0][0])) as (engine,):
        outgoing = distinct_udp_frames(300, seed=7)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sender:
            sender.bind((bed.input_host, 0))
            for frame in outgoing:
                sender.send(frame)
        incoming = distinct_udp_frames(200, seed=9)
        assert bed.send(incoming) == len(incoming)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while engine.stats().received_packets < len(incoming) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        engine.stop()
        stats = engine.stats()
    assert stats.received_packets == len(incoming)
    assert stats.received_bytes == sum(map(len, incoming))


@pytest.mark.root
def test_capture_timestamps_are_the_arrival_time(tmp_path):
    path = tmp_path / "out.pcap"
    with VethTestbed("t") as bed, running(Engine(bed.input_host, pcap_path=path)) as (engine,):
        frames = distinct_udp_frames(50, seed=8)
        before = time.time()
        assert bed.send(frames) == len(frames)
        after = time.time()
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while engine.stats().received_packets < len(frames) and time.monotonic() < deadline:
            time.sleep(0.01)
        engine.stop()
    blob = path.read_bytes()
    offset, stamps, received = 24, [], []
    while offset < len(blob):
        seconds, microseconds, caplen, _ = struct.unpack_from("<IIII", blob, offset)
        stamps.append(seconds + microseconds / 1e6)
        received.append(blob[offset + 16:offset + 16 + caplen])
        offset += 16 + caplen
    assert received == frames
    assert all(before - 0.001 <= stamp <= after + 0.001 for stamp in stamps)
    assert stamps == sorted(stamps)


def flow_key(frame):
    """The unordered address/port pair of an untagged IPv4 UDP frame: the same for both directions."""
    source, destination = frame[26:30], frame[30:34]
    source_port, destination_port = frame[34:36], frame[36:38]
    return frozenset([(source, source_port), (destination, destination_port)])


@pytest.mark.root
def test_fanout_gives_disjoint_complete_flow_consistent_shares():
    rng = random.Random(2)
    flows = [(f"10.1.{n}.{rng.randrange(1, 255)}", f"10.2.{n}.{rng.randrange(1, 255)}",
              rng.randrange(1024, 65536), rng.randrange(1, 1024)) for n in range(200)]
    frames = []
    for n, (client, server, client_port, server_port) in enumerate(flows):
        frames.append(pad(udp_frame(client, server, client_port, server_port, struct.pack("!I", 2 * n))))
        frames.append(pad(udp_frame(server, client, server_port, client_port, struct.pack("!I", 2 * n + 1))))
    with VethTestbed("h", pipes=2) as bed:
        engines = [Engine(bed.input_host, broker_end, fanout_group=0x4b1d) for broker_end, _ in bed.pipe_ends]
        with running(*engines):
            readers = [Reader(consumer_end) for _, consumer_end in bed.pipe_ends]
            try:
                assert bed.send(frames) == len(frames)
                deadline = time.monotonic() + SETTLE_TIMEOUT_S
                while sum(len(reader.frames) for reader in readers) < len(frames) and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.2)
            finally:
                for reader in readers:
                    reader.close()
            for engine in engines:
                engine.stop()
            received = [engine.stats().received_packets for engine in engines]
    shares = [reader.frames for reader in readers]
    assert sorted(shares[0] + shares[1]) == sorted(frames), "not a complete, duplicate-free split"
    assert all(shares), f"one engine got nothing: {list(map(len, shares))}"
    assert received == list(map(len, shares))
    keys = [set(map(flow_key, share)) for share in shares]
    assert not keys[0] & keys[1], "a flow (in one or both directions) reached both engines"
    assert len(keys[0]) + len(keys[1]) == len(flows)
    for share in shares:
        per_flow = {}
        for frame in share:
            per_flow[flow_key(frame)] = per_flow.get(flow_key(frame), 0) + 1
        assert set(per_flow.values()) == {2}, "both directions of each flow belong together"


@pytest.mark.root
# The ring has exactly `slots` frames whatever its block layout (8 and 100 slots:
# blocks of 8 and 4 frames; 512: the default, blocks of 64 frames a cache line apart).
@pytest.mark.parametrize("consumer_up, slots", [(True, 8), (False, 8), (False, 100), (False, 512)],
                         ids=["nobody-reads", "consumer-down", "consumer-down-100", "consumer-down-512"])
def test_small_tx_ring_never_blocks(consumer_up, slots):
    with VethTestbed("s") as bed:
        broker_end, consumer_end = bed.pipe_ends[0]
        if not consumer_up:
            ip("link", "set", consumer_end, "down")
        frames = distinct_udp_frames(2000, seed=3)
        with running(Engine(bed.input_host, broker_end, slots=slots)) as (engine,):
            assert bed.send(frames) == len(frames)
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while engine.stats().received_packets < len(frames) and time.monotonic() < deadline:
                time.sleep(0.01)
            stop_time = engine.stop()
            stats, output = engine.stats(), engine.output()
    assert stats.received_packets == len(frames)
    assert stop_time < 0.5
    assert output.packets + output.drops == len(frames)
    assert stats.output_drops == output.drops
    if consumer_up:
        # veth sends synchronously: a full ring empties on request, nothing is lost.
        assert output.packets == len(frames)
    else:
        # Nothing leaves a down link: a ring of frames stays requested, the rest is dropped.
        assert output.packets == slots


@pytest.mark.root
def test_jumbo_frames_pass():
    with VethTestbed("j", mtu=9000) as bed, \
            running(Engine(bed.input_host, bed.pipe_ends[0][0], mtu=9000)) as (engine,):
        reader = Reader(bed.pipe_ends[0][1])
        try:
            frames = distinct_udp_frames(100, seed=4, size=8000)
            assert bed.send(frames) == len(frames)
            received = reader.wait_for(len(frames))
        finally:
            reader.close()
        engine.stop()
        output = engine.output()
    assert {len(frame) for frame in frames} == {8000}
    assert received == frames
    assert output.packets == len(frames) and output.drops == 0


@pytest.mark.root
def test_frames_over_the_sink_mtu_are_dropped_and_counted():
    with VethTestbed("m", mtu=9000) as bed, \
            running(Engine(bed.input_host, bed.pipe_ends[0][0], mtu=1500)) as (engine,):
        reader = Reader(bed.pipe_ends[0][1])
        try:
            big = distinct_udp_frames(10, seed=5, size=1515)
            fitting = distinct_udp_frames(10, seed=6, size=1514)
            assert bed.send(big + fitting) == 20
            received = reader.wait_for(len(fitting))
        finally:
            reader.close()
        engine.stop()
        output = engine.output()
    # Tagged frames may carry 4 bytes more than MTU + 14, untagged ones not.
    expected = [frame for frame in big if frame[12:14] in (b"\x81\x00", b"\x88\xa8")] + fitting
    assert received == expected
    assert output.packets == len(expected) and output.drops == 20 - len(expected)


@pytest.mark.parametrize("open_function", ["source", "sink"])
def test_bad_interface_name_fails_with_message(open_function):
    error = ffi.new("char[256]")
    if open_function == "source":
        handle = lib.brk_source_afpacket_open(b"bknosuch0", RING_BYTES, -1, error, len(error))
    else:
        handle = lib.brk_sink_afpacket_open(b"bknosuch0", TX_SLOTS, 1500, error, len(error))
    assert handle == ffi.NULL
    assert ffi.string(error) == b"bknosuch0: no such interface"


@pytest.mark.root
def test_without_privileges_fails_with_message():
    script = ("from bricks._native import ffi, lib\n"
              "error = ffi.new('char[256]')\n"
              "assert lib.brk_source_afpacket_open(b'lo', 1 << 20, -1, error, 256) == ffi.NULL\n"
              "print(ffi.string(error).decode())\n"
              "assert lib.brk_sink_afpacket_open(b'lo', 64, 1500, error, 256) == ffi.NULL\n"
              "print(ffi.string(error).decode())\n")
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                           sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["lo: AF_PACKET socket: Operation not permitted"] * 2


def dummy_engine(testbed, tag):
    """A PktEngine forwarding a testbed input to one pipe, linked, not started."""
    host_if, _ = testbed.add_input(tag)
    engine = engine_module.PktEngine.new(f"{tag}-{os.getpid()}")
    engine.link(engine_module.Brick("Dummy").connect_input(host_if).connect_outputs(host_if, 1))
    return engine


@pytest.mark.root
@pytest.mark.parametrize("setting", ["environment", "call"])
def test_realtime_priority_runs_the_engine_thread_sched_fifo(testbed, monkeypatch, setting):
    monkeypatch.setattr(engine_module, "_realtime_chosen", False)
    monkeypatch.setattr(engine_module, "_realtime_priority", None)
    if setting == "environment":
        monkeypatch.setenv(engine_module.REALTIME_ENVIRONMENT, "7")
    else:
        engine_module.set_realtime_priority(7)
    engine = dummy_engine(testbed, "rt")
    try:
        engine.start()
        thread = engine.thread.native_id
        assert os.sched_getscheduler(thread) == os.SCHED_FIFO
        assert os.sched_getparam(thread).sched_priority == 7
    finally:
        engine.stop()
        engine.delete()


@pytest.mark.root
def test_engine_threads_run_normally_without_realtime_priority(testbed, monkeypatch):
    monkeypatch.setattr(engine_module, "_realtime_chosen", False)
    monkeypatch.delenv(engine_module.REALTIME_ENVIRONMENT, raising=False)
    engine = dummy_engine(testbed, "nrt")
    try:
        engine.start()
        assert os.sched_getscheduler(engine.thread.native_id) == os.SCHED_OTHER
    finally:
        engine.stop()
        engine.delete()


@pytest.mark.root
@pytest.mark.parametrize("value", ["0", "100", "high"])
def test_a_bad_realtime_priority_is_a_one_line_error_and_nothing_runs(testbed, monkeypatch, value):
    monkeypatch.setattr(engine_module, "_realtime_chosen", False)
    monkeypatch.setenv(engine_module.REALTIME_ENVIRONMENT, value)
    engine = dummy_engine(testbed, "brt")
    try:
        with pytest.raises(BricksError, match=engine_module.REALTIME_ENVIRONMENT) as raised:
            engine.start()
        assert "\n" not in str(raised.value)
        assert not engine.running
    finally:
        engine.stop()
        engine.delete()


# A process with an engine and its pipe forks a child without exec (as pyroute2
# does for its namespace helpers) and stops it with SIGTERM: the child must
# exit at once, without the parent's clean-ups (the pipe stays).
FORKED_CHILD = """
import os, signal, sys, time
from bricks import engine, links
engine.install_signal_handlers()
pe = engine.PktEngine.new("forker")
pe.link(engine.Brick("Dummy").connect_input(sys.argv[1]).connect_outputs(sys.argv[1], 1))
child = os.fork()
if child == 0:
    while True:
        time.sleep(0.01)
time.sleep(0.2)
os.kill(child, signal.SIGTERM)
_, status = os.waitpid(child, 0)
print(os.waitstatus_to_exitcode(status), links.interface_exists(sys.argv[1] + "{0"))
pe.delete()
"""


@pytest.mark.root
def test_a_forked_child_stopped_by_sigterm_leaves_the_parents_pipes(testbed):
    host_if, _ = testbed.add_input("fk")
    done = subprocess.run([sys.executable, "-c", FORKED_CHILD, host_if], capture_output=True, text=True,
                          timeout=30, check=True)
    assert done.stdout.split() == ["143", "True"]
