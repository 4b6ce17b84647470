"""The AF_PACKET back-end on real veth pairs: byte-exact forwarding, fanout shares, full TX rings, jumbo frames, errors."""
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from bricks import engine as engine_module
from bricks._native import ffi, lib
from bricks.errors import BricksError
from bricks.frames import ETHERTYPE_QINQ, ETHERTYPE_VLAN, pad, read_pcap, udp_frame
from tests.native import Graph, opened, output_counters

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


def wait_until(condition, timeout=SETTLE_TIMEOUT_S):
    """Polls condition() until it holds or timeout passes."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


class Reader:
    """Collects every frame arriving at an interface of a namespace (a consumer reading X}N), in order.

    The kernel hands a VLAN tag over beside the frame; like libpcap, the reader
    puts it back so that frames compare byte for byte with what was sent.
    """

    def __init__(self, interface, namespace):
        # Protocol 0 until bind(): an ETH_P_ALL socket would queue frames of every
        # interface in between.
        self.socket = netns.create_socket(namespace, socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        self.socket.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.socket.bind((interface, ETH_P_ALL))   # Python converts to network order
        self.socket.settimeout(0.1)
        self.frames = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exception_info):
        self.close()

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

    def wait_for(self, count):
        """Waits until count frames arrived (or timeout), then a little longer for extras."""
        wait_until(lambda: len(self.frames) >= count)
        time.sleep(0.2)
        return self.frames

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=STOP_TIMEOUT_S)
        self.socket.close()


def afpacket_sink(interface, slots=TX_SLOTS, mtu=1500):
    return opened(lib.brk_sink_afpacket_open, interface.encode(), slots, mtu)


@contextmanager
def forwarding(source_interface, sink, fanout_group=-1):
    """AF_PACKET source on source_interface -> Dummy -> sink, running in a thread: yields (graph, dummy)."""
    with Graph(BATCH) as graph:
        dummy = graph.brick("Dummy", split=4)
        graph.sink(dummy, sink)
        graph.source(opened(lib.brk_source_afpacket_open, source_interface.encode(), RING_BYTES, fanout_group),
                     dummy)
        yield graph.start(), dummy


def wait_for_received(graph, count):
    wait_until(lambda: graph.stats().received_packets >= count)


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
def test_forwards_every_packet_byte_exact_in_order(testbed):
    input_host, input_namespace = testbed.add_input("in")
    broker_end, consumer_end = testbed.add_egress("p0")
    with forwarding(input_host, afpacket_sink(broker_end)) as (graph, dummy):
        with Reader(consumer_end, testbed.namespace) as reader:
            frames = distinct_udp_frames(2000, seed=1)
            began = time.monotonic()
            testbed.send(input_namespace, frames)
            received = reader.wait_for(len(frames))
            elapsed = time.monotonic() - began
        graph.stop()
        stats, output = graph.stats(), output_counters(dummy)
    assert len(received) == len(frames), f"{len(received)} of {len(frames)} arrived"
    assert received == frames
    assert stats.received_packets == len(frames)
    assert stats.received_bytes == sum(map(len, frames))
    assert output.packets == len(frames) and output.bytes == sum(map(len, frames))
    assert stats.kernel_drops == 0 and stats.output_drops == 0 and output.drops == 0
    print(f"{len(frames)} frames forwarded in {elapsed:.2f} s")


@pytest.mark.root
def test_only_arriving_packets_are_read(testbed):
    """Frames leaving the input interface (another program sending there) are not input."""
    input_host, input_namespace = testbed.add_input("in")
    broker_end, _ = testbed.add_egress("p0")
    with forwarding(input_host, afpacket_sink(broker_end)) as (graph, _):
        outgoing = distinct_udp_frames(300, seed=7)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sender:
            sender.bind((input_host, 0))
            for frame in outgoing:
                sender.send(frame)
        incoming = distinct_udp_frames(200, seed=9)
        testbed.send(input_namespace, incoming)
        wait_for_received(graph, len(incoming))
        time.sleep(0.3)
        graph.stop()
        stats = graph.stats()
    assert stats.received_packets == len(incoming)
    assert stats.received_bytes == sum(map(len, incoming))


@pytest.mark.root
def test_capture_timestamps_are_the_arrival_time(testbed, tmp_path):
    path = tmp_path / "out.pcap"
    input_host, input_namespace = testbed.add_input("in")
    with forwarding(input_host, opened(lib.brk_sink_pcap_open, str(path).encode(), 65535)) as (graph, _):
        frames = distinct_udp_frames(50, seed=8)
        before = time.time()
        testbed.send(input_namespace, frames)
        after = time.time()
        wait_for_received(graph, len(frames))
        graph.stop()
    capture = read_pcap(path.read_bytes())
    stamps = [seconds + microseconds / 1e6 for seconds, microseconds, _, _ in capture.records]
    assert capture.cut_bytes == 0
    assert capture.frames == frames
    assert all(before - 0.001 <= stamp <= after + 0.001 for stamp in stamps)
    assert stamps == sorted(stamps)


def flow_key(frame):
    """The unordered address/port pair of an untagged IPv4 UDP frame: the same for both directions."""
    source, destination = frame[26:30], frame[30:34]
    source_port, destination_port = frame[34:36], frame[36:38]
    return frozenset([(source, source_port), (destination, destination_port)])


@pytest.mark.root
def test_fanout_gives_disjoint_complete_flow_consistent_shares(testbed):
    rng = random.Random(2)
    flows = [(f"10.1.{n}.{rng.randrange(1, 255)}", f"10.2.{n}.{rng.randrange(1, 255)}",
              rng.randrange(1024, 65536), rng.randrange(1, 1024)) for n in range(200)]
    frames = []
    for n, (client, server, client_port, server_port) in enumerate(flows):
        frames.append(pad(udp_frame(client, server, client_port, server_port, struct.pack("!I", 2 * n))))
        frames.append(pad(udp_frame(server, client, server_port, client_port, struct.pack("!I", 2 * n + 1))))
    input_host, input_namespace = testbed.add_input("in")
    pipes = [testbed.add_egress(f"p{n}") for n in range(2)]
    with ExitStack() as running:
        graphs = [running.enter_context(forwarding(input_host, afpacket_sink(broker_end), fanout_group=0x4b1d))[0]
                  for broker_end, _ in pipes]
        with ExitStack() as reading:
            readers = [reading.enter_context(Reader(consumer_end, testbed.namespace)) for _, consumer_end in pipes]
            testbed.send(input_namespace, frames)
            wait_until(lambda: sum(len(reader.frames) for reader in readers) >= len(frames))
            time.sleep(0.2)
        for graph in graphs:
            graph.stop()
        received = [graph.stats().received_packets for graph in graphs]
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
def test_small_tx_ring_never_blocks(testbed, consumer_up, slots):
    input_host, input_namespace = testbed.add_input("in")
    broker_end, consumer_end = testbed.add_egress("p0")
    if not consumer_up:
        with IPRoute(netns=testbed.namespace) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=consumer_end)[0], state="down")
    frames = distinct_udp_frames(2000, seed=3)
    with forwarding(input_host, afpacket_sink(broker_end, slots=slots)) as (graph, dummy):
        testbed.send(input_namespace, frames)
        wait_for_received(graph, len(frames))
        stop_time = graph.stop()
        stats, output = graph.stats(), output_counters(dummy)
    assert stats.received_packets == len(frames)
    assert stop_time < 0.5
    assert output.packets + output.drops + output.queued == len(frames)
    assert stats.output_drops == output.drops == output.full
    if consumer_up:
        # veth sends synchronously: a full ring empties on request, nothing is lost.
        assert output.packets == len(frames) and output.queued == 0
    else:
        # Nothing leaves a down link: a ring of frames stays requested (queued, not delivered: the kernel
        # never took them), the rest is dropped.
        assert output.packets == 0 and output.queued == slots


def forward_through_jumbo_veths(testbed, frames, sink_mtu, expected_count):
    """frames sent over veths of MTU 9000 into a sink of sink_mtu; returns (frames received, output counters)."""
    input_host, input_namespace = testbed.add_input("in", mtu=9000)
    broker_end, consumer_end = testbed.add_egress("p0", mtu=9000)
    with forwarding(input_host, afpacket_sink(broker_end, mtu=sink_mtu)) as (graph, dummy):
        with Reader(consumer_end, testbed.namespace) as reader:
            testbed.send(input_namespace, frames)
            received = reader.wait_for(expected_count)
        graph.stop()
        return received, output_counters(dummy)


@pytest.mark.root
def test_jumbo_frames_pass(testbed):
    frames = distinct_udp_frames(100, seed=4, size=8000)
    received, output = forward_through_jumbo_veths(testbed, frames, 9000, len(frames))
    assert {len(frame) for frame in frames} == {8000}
    assert received == frames
    assert output.packets == len(frames) and output.drops == 0


@pytest.mark.root
def test_frames_over_the_sink_mtu_are_dropped_and_counted(testbed):
    big = distinct_udp_frames(10, seed=5, size=1515)
    fitting = distinct_udp_frames(10, seed=6, size=1514)
    received, output = forward_through_jumbo_veths(testbed, big + fitting, 1500, len(fitting))
    # Tagged frames may carry 4 bytes more than MTU + 14, untagged ones not.
    expected = [frame for frame in big if frame[12:14] in (b"\x81\x00", b"\x88\xa8")] + fitting
    assert received == expected
    assert output.packets == len(expected) and output.drops == output.too_big == 20 - len(expected)


def socket_mapping_bytes():
    """Bytes of every socket this process has mapped (/proc/self/maps names them socket:[inode])."""
    total = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("]") and "socket:[" in line:
                start, end = (int(address, 16) for address in line.split()[0].split("-"))
                total += end - start
    return total


@pytest.mark.root
@pytest.mark.parametrize("mtu, least, most", [(1500, 32768 * 1616, 52 << 20), (9000, 64 << 20, 64 << 20)])
def test_rx_ring_holds_32768_full_size_frames_up_to_64_mib(testbed, mtu, least, most):
    """The engine's cost hardly depends on the frame's size: the RX ring covers a stall in frames, so a
    4 MiB request on a 1500-byte MTU still gets room for 32768 frames of 1514 bytes (jumbo MTUs: 64 MiB)."""
    input_host, _ = testbed.add_input("in", mtu=mtu)
    before = socket_mapping_bytes()
    source = opened(lib.brk_source_afpacket_open, input_host.encode(), RING_BYTES, -1)
    try:
        assert least <= socket_mapping_bytes() - before <= most
    finally:
        lib.brk_source_close(source)


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


@pytest.fixture
def realtime_default(monkeypatch):
    """The process as an operator starts it: no --realtime, no BRICKS_REALTIME (conftest pins 0 for the suite),
    and the default's one log line not written yet."""
    monkeypatch.setattr(engine_module, "_realtime_chosen", False)
    monkeypatch.setattr(engine_module, "_realtime_announced", False)
    monkeypatch.delenv(engine_module.REALTIME_ENVIRONMENT, raising=False)


def realtime_log_lines(caplog):
    return [record for record in caplog.records if "priority" in record.getMessage()]


@pytest.mark.root
def test_engine_threads_run_sched_fifo_by_default_with_one_log_line(testbed, realtime_default, caplog):
    caplog.set_level("INFO", logger="bricks")
    engines = [dummy_engine(testbed, f"drt{number}") for number in range(2)]
    try:
        for engine in engines:
            engine.start()
            thread = engine.thread.native_id
            assert os.sched_getscheduler(thread) == os.SCHED_FIFO
            assert os.sched_getparam(thread).sched_priority == engine_module.DEFAULT_REALTIME_PRIORITY
        [line] = realtime_log_lines(caplog)
        assert (line.levelname, line.getMessage()) == (
            "INFO", f"engine threads run SCHED_FIFO at priority {engine_module.DEFAULT_REALTIME_PRIORITY} by "
                    "default, so that other work on their CPUs cannot make input rings overflow; --realtime 0 "
                    "(BRICKS_REALTIME=0) turns it off")
    finally:
        for engine in engines:
            engine.stop()
            engine.delete()


@pytest.mark.root
@pytest.mark.parametrize("setting", ["0", "off", " OFF ", "call None", "call 0"])
def test_engine_threads_run_normally_with_realtime_off(testbed, realtime_default, monkeypatch, caplog, setting):
    if setting.startswith("call"):
        engine_module.set_realtime_priority(None if setting == "call None" else 0)
    else:
        monkeypatch.setenv(engine_module.REALTIME_ENVIRONMENT, setting)
    caplog.set_level("INFO", logger="bricks")
    engine = dummy_engine(testbed, "nrt")
    try:
        engine.start()
        assert os.sched_getscheduler(engine.thread.native_id) == os.SCHED_OTHER
        assert realtime_log_lines(caplog) == []
    finally:
        engine.stop()
        engine.delete()


@pytest.mark.root
def test_a_refused_default_priority_is_one_warning_and_the_engines_forward(testbed, realtime_default, monkeypatch,
                                                                           caplog):
    """The kernel refuses SCHED_FIFO (a process without CAP_SYS_NICE; a real one runs in
    test_systemd_readiness.py): one warning for every engine of the process, and each forwards at normal priority."""
    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(engine_module.os, "sched_setscheduler", refuse)
    monkeypatch.setattr(engine_module, "_has_capability", lambda number: False)   # what the kernel refused for
    engines, readers, frames = [], [], []
    try:
        for number in range(2):
            host_if, ns_if = testbed.add_input(f"ref{number}")
            engine = engine_module.PktEngine.new(f"ref{number}-{os.getpid()}")
            engines.append(engine)
            engine.link(engine_module.Brick("Dummy").connect_input(host_if).connect_outputs(host_if, 1))
            engine.start()
            assert engine.running and os.sched_getscheduler(engine.thread.native_id) == os.SCHED_OTHER
            readers.append(testbed.reader(f"{host_if}}}0", in_namespace=False))
            frames.append([udp_frame("10.0.0.1", "10.0.0.2", 1000 + index, 2000) for index in range(50)])
            testbed.send(ns_if, frames[-1])
        for reader, sent in zip(readers, frames):
            reader.wait_for(len(sent))
            assert sorted(reader.stop()) == sorted(sent)
        [line] = realtime_log_lines(caplog)
        assert (line.levelname, line.getMessage()) == (
            "WARNING", f"engine threads run at normal priority: the default real-time priority "
                       f"{engine_module.DEFAULT_REALTIME_PRIORITY} was refused: Operation not permitted (it needs "
                       "root or CAP_SYS_NICE); other work on their CPUs can make input rings overflow; "
                       "--realtime 0 (BRICKS_REALTIME=0) runs them normally without this warning")
    finally:
        for engine in engines:
            engine.stop()
            engine.delete()


@pytest.mark.root
def test_an_asked_priority_that_is_refused_stops_the_start(testbed, monkeypatch):
    monkeypatch.setattr(engine_module, "_realtime_chosen", False)
    monkeypatch.setenv(engine_module.REALTIME_ENVIRONMENT, "7")

    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(engine_module.os, "sched_setscheduler", refuse)
    monkeypatch.setattr(engine_module, "_has_capability", lambda number: False)
    engine = dummy_engine(testbed, "art")
    try:
        with pytest.raises(BricksError) as raised:
            engine.start()
        assert str(raised.value) == (f"engine {engine.name}: cannot run at real-time priority 7: Operation not "
                                     "permitted (it needs root or CAP_SYS_NICE)")
        assert not engine.running
    finally:
        engine.stop()
        engine.delete()


@pytest.mark.root
@pytest.mark.parametrize("value", ["100", "-1", "high", "1.5"])
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
