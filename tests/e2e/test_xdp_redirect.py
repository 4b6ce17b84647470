"""The XDP program on real veths: attached to the input (native, or generic), redirecting through its DEVMAP
into veth pipes made as the engine makes them, their consumer ends given NAPI by the XDP_PASS companion with
GRO off. Every frame arrives once, byte for byte, on the pipe the C engine's LoadBalancer chooses (jumbo frames
too); a TCP stream's segments arrive unmerged; a Duplicator's pipes each get every frame; one program serves
two inputs; counters are exact, with drops by cause (a vanished pipe, a full pipe, frames too large to
broadcast); someone else's XDP program is never replaced; nothing stays attached after close or SIGKILL."""
import collections
import random
import signal
import subprocess
import sys
import time

import pytest

from bricks.errors import BricksError
from bricks.frames import (
    ETHERTYPE_QINQ, ETHERTYPE_VLAN, TCP, flow_frames, ip_frame, ipv4, pad, tcp, tcp_frame, udp_frame,
)
from bricks.links import create_pipe
from bricks.testbed import wait_for_total
from bricks.xdp import XdpProgram, XdpTree, attached_program, transmit_errors
from tests.unit.test_hash import datagram_fragments
from tests.unit.test_xdp_program import CEngineChoice

pytestmark = pytest.mark.root

SEND_PPS = 4000
ARRIVAL_TIMEOUT_S = 20
SEGMENT = 1000
DETACH_TIMEOUT_S = 5
GRO_HOLD_NS = 10_000_000      # gro_flush_timeout: GRO, where it runs, merges across NAPI polls for 10 ms

# Attaches a Dummy to an input and the companion to a pipe's consumer end, says so, then waits to be killed.
_ATTACHED_PROCESS = r"""
import sys, time
from bricks.xdp import XdpProgram, XdpTree
program = XdpProgram(XdpTree("Dummy", [sys.argv[2]]))
program.attach(sys.argv[1])
program.attach_pass(sys.argv[3])
print("attached", flush=True)
time.sleep(60)
"""


def tcp_stream(segments):
    """Consecutive full-size segments of one TCP connection: what GRO would merge into one frame."""
    return [ip_frame(ipv4("10.20.0.1", "10.20.0.2", TCP, tcp(40000, 5201, bytes([n % 251]) * SEGMENT, flags=0x10,
                                                             sequence=1 + n * SEGMENT), ident=n))
            for n in range(segments)]


def traffic():
    """Flows both ways, IPv6, tags, fragment trains and a TCP stream, shuffled except within each train."""
    frames = flow_frames(300, packets_per_direction=2, seed=50)
    rng = random.Random(51)
    for n in range(100):
        frames.append(pad(udp_frame(f"2001:db8::{n + 1:x}", "2001:db8::ffff", 1000 + n, 53)))
        frames.append(pad(tcp_frame(f"10.30.{n}.1", "10.30.0.2", 2000 + n, 80,
                                    vlans=[(ETHERTYPE_QINQ, 10), (ETHERTYPE_VLAN, 20 + n)])))
    rng.shuffle(frames)
    for ident in range(10):
        frames += datagram_fragments(4 if ident % 2 else 6, 7000 + ident, ports=(3000 + ident, 53))
    return frames + tcp_stream(50)


def pipes_with_readers(testbed, input_interface, count, mtu=1500):
    pairs = [create_pipe(input_interface, index, mtu) for index in range(count)]
    for pair in pairs:
        subprocess.run(["ethtool", "-K", pair.consumer, "gro", "off"], check=True, capture_output=True)
    readers = [testbed.reader(pair.consumer, in_namespace=False) for pair in pairs]
    return pairs, readers


def attach_all(program, input_interface, pairs, mode="native"):
    generic = program.attach(input_interface, mode)
    assert generic is (mode == "generic")
    for pair in pairs:
        program.attach_pass(pair.consumer)
    assert attached_program(input_interface) != 0


def assert_nothing_attached(interfaces):
    assert [attached_program(name) for name in interfaces] == [0] * len(interfaces)


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_load_balancer_redirects_every_frame_once_to_the_c_engines_pipe(testbed, mode):
    input_host, input_namespace = testbed.add_input("in")
    pairs, readers = pipes_with_readers(testbed, input_host, 4)
    frames = traffic()
    with XdpProgram(XdpTree("LoadBalancer", [pair.broker for pair in pairs], split=4)) as program:
        attach_all(program, input_host, pairs, mode)
        reference = CEngineChoice(program)
        expected = [collections.Counter() for _ in pairs]
        try:
            for frame in frames:
                expected[reference.output(frame)][frame] += 1
        finally:
            reference.close()
        testbed.send(input_namespace, frames, pps=SEND_PPS)
        assert wait_for_total(readers, len(frames), ARRIVAL_TIMEOUT_S) == len(frames)
        received = [collections.Counter(reader.stop()) for reader in readers]
        assert received == expected
        assert all(expected), "every pipe gets traffic"
        assert program.node_counters() == {"received_packets": len(frames), "received_bytes": sum(map(len, frames)),
                                           "malformed": 0, "fragment_fallbacks": 0, "jumbo_drops": 0,
                                           "filtered": 0, "passed": 0, "rule_dropped": 0, "rule_allowed": 0}
        assert program.output_counters() == [
            {"packets": sum(counts.values()), "bytes": sum(len(frame) * n for frame, n in counts.items()),
             "redirect_failures": 0} for counts in expected]
    assert_nothing_attached([input_host] + [pair.consumer for pair in pairs])


def test_duplicator_gives_every_pipe_every_frame(testbed):
    input_host, input_namespace = testbed.add_input("in")
    pairs, readers = pipes_with_readers(testbed, input_host, 3)
    frames = flow_frames(100, seed=52) + tcp_stream(20)
    with XdpProgram(XdpTree("Duplicator", [pair.broker for pair in pairs])) as program:
        attach_all(program, input_host, pairs)
        testbed.send(input_namespace, frames, pps=SEND_PPS)
        assert wait_for_total(readers, 3 * len(frames), ARRIVAL_TIMEOUT_S) == 3 * len(frames)
        for reader in readers:
            assert collections.Counter(reader.stop()) == collections.Counter(frames)
        assert program.node_counters()["received_packets"] == len(frames)
        assert [output["packets"] for output in program.output_counters()] == [len(frames)] * 3
    assert_nothing_attached([input_host] + [pair.consumer for pair in pairs])


def jumbo_traffic(testbed, mtu=9000):
    input_host, input_namespace = testbed.add_input("in", mtu=mtu)
    pairs, readers = pipes_with_readers(testbed, input_host, 2, mtu=mtu)
    rng = random.Random(54)
    frames = [tcp_frame(f"10.40.{n}.1", "10.40.0.2", 1000 + n, 443, bytes(rng.getrandbits(8) for _ in range(size)))
              for n, size in enumerate([8900, 5000, 3600, 1400, 60] * 8)]
    return input_host, input_namespace, pairs, readers, frames


def test_jumbo_frames_are_balanced_whole(testbed):
    """At MTU 9000 a veth hands XDP a frame in several buffers: the program (xdp.frags) hashes the headers of
    the first, counts every byte and redirects the whole frame."""
    input_host, input_namespace, pairs, readers, frames = jumbo_traffic(testbed)
    with XdpProgram(XdpTree("LoadBalancer", [pair.broker for pair in pairs])) as program:
        attach_all(program, input_host, pairs)
        testbed.send(input_namespace, frames, pps=SEND_PPS)
        assert wait_for_total(readers, len(frames), ARRIVAL_TIMEOUT_S) == len(frames)
        received = collections.Counter()
        for reader in readers:
            received.update(reader.stop())
        assert received == collections.Counter(frames)
        assert program.node_counters()["received_bytes"] == sum(map(len, frames))
        assert sum(output["bytes"] for output in program.output_counters()) == sum(map(len, frames))


def test_a_duplicator_drops_and_counts_the_jumbo_frames_xdp_cannot_clone(testbed):
    input_host, input_namespace, pairs, readers, frames = jumbo_traffic(testbed)
    small = [frame for frame in frames if len(frame) <= 1500]
    large = [frame for frame in frames if len(frame) >= 5000]
    with XdpProgram(XdpTree("Duplicator", [pair.broker for pair in pairs])) as program:
        attach_all(program, input_host, pairs)
        testbed.send(input_namespace, frames, pps=SEND_PPS)
        wait_for_total(readers, 2 * len(small), ARRIVAL_TIMEOUT_S)
        time.sleep(0.5)   # time for a wrongly delivered frame to show
        received = [collections.Counter(reader.stop()) for reader in readers]
        counters = program.node_counters()
        delivered = program.output_counters()
    assert received[0] == received[1]
    assert set(small) <= set(received[0]) and not set(large) & set(received[0])
    assert counters["received_packets"] == len(frames)
    assert counters["jumbo_drops"] == len(frames) - sum(received[0].values())
    assert [output["packets"] for output in delivered] == [sum(received[0].values())] * 2


def set_napi(interface, **settings):
    """Writes /sys/class/net/<interface>/<setting> (gro_flush_timeout, napi_defer_hard_irqs)."""
    for setting, value in settings.items():
        with open(f"/sys/class/net/{interface}/{setting}", "w") as knob:
            knob.write(str(value))


@pytest.mark.parametrize("gro", ["off", "on"])
def test_a_tcp_stream_reaches_the_consumer_unmerged_only_with_gro_off(testbed, gro):
    """The companion gives the consumer end NAPI; with GRO on that NAPI would merge a TCP stream's segments
    (the control case shows the stream is mergeable), so the pipes keep GRO off and every segment arrives as sent."""
    input_host, input_namespace = testbed.add_input("in")
    pair = create_pipe(input_host, 0, 1500)
    subprocess.run(["ethtool", "-K", pair.consumer, "gro", gro], check=True, capture_output=True)
    set_napi(pair.consumer, gro_flush_timeout=GRO_HOLD_NS)
    reader = testbed.reader(pair.consumer, in_namespace=False)
    stream = tcp_stream(400)
    with XdpProgram(XdpTree("Dummy", [pair.broker])) as program:
        attach_all(program, input_host, [pair])
        testbed.send(input_namespace, stream)
        arrived = reader.wait_for(len(stream), timeout=5 if gro == "off" else 2)
        assert program.output_counters()[0]["packets"] == len(stream)
    if gro == "off":
        assert arrived == stream
    else:
        assert len(arrived) < len(stream) and sum(map(len, arrived)) > len(stream) * SEGMENT


def test_a_full_pipe_counts_its_drops_as_transmit_errors(testbed):
    """A consumer end that stops polling fills the pipe: what XDP redirected there but the veth could not take
    is counted by the broker end's xdp_xmit_errors, and with what arrived it accounts for every frame."""
    input_host, input_namespace = testbed.add_input("in")
    pair = create_pipe(input_host, 0, 1500)
    subprocess.run(["ethtool", "-K", pair.consumer, "gro", "off"], check=True, capture_output=True)
    set_napi(pair.consumer, gro_flush_timeout=GRO_HOLD_NS, napi_defer_hard_irqs=100)   # a slow consumer
    reader = testbed.reader(pair.consumer, in_namespace=False)
    frames = flow_frames(500, seed=55)
    with XdpProgram(XdpTree("Dummy", [pair.broker])) as program:
        attach_all(program, input_host, [pair])
        assert transmit_errors(pair.broker) == 0
        testbed.send(input_namespace, frames)
        time.sleep(1)
        errors = transmit_errors(pair.broker)
        arrived = reader.wait_for(len(frames) - errors, timeout=5)
        assert program.output_counters()[0]["packets"] == len(frames)
    assert errors > 0
    assert len(arrived) + errors == len(frames)
    assert collections.Counter(arrived) <= collections.Counter(frames)


def test_a_vanished_pipe_counts_its_frames_as_redirect_failures(testbed):
    input_host, input_namespace = testbed.add_input("in")
    pairs, readers = pipes_with_readers(testbed, input_host, 2)
    frames = flow_frames(200, seed=53)
    with XdpProgram(XdpTree("LoadBalancer", [pair.broker for pair in pairs], split=2)) as program:
        attach_all(program, input_host, pairs)
        reference = CEngineChoice(program)
        try:
            chosen = [reference.output(frame) for frame in frames]
        finally:
            reference.close()
        readers[1].stop()
        pairs[1].delete()    # the kernel empties its DEVMAP slot
        testbed.send(input_namespace, frames, pps=SEND_PPS)
        kept = [frame for frame, output in zip(frames, chosen) if output == 0]
        assert 0 < len(kept) < len(frames)
        assert wait_for_total(readers[:1], len(kept), ARRIVAL_TIMEOUT_S) == len(kept)
        assert collections.Counter(readers[0].stop()) == collections.Counter(kept)
        delivered, failed = program.output_counters()
        assert (delivered["packets"], delivered["redirect_failures"]) == (len(kept), 0)
        assert (failed["packets"], failed["redirect_failures"]) == (0, len(frames) - len(kept))
        assert program.node_counters()["received_packets"] == len(frames)
    assert_nothing_attached([input_host, pairs[0].consumer])


def test_one_program_serves_several_inputs(testbed):
    """A Merge in XDP: the same program attached to two inputs, their frames balanced together, counted once."""
    first_host, first_namespace = testbed.add_input("ina")
    second_host, second_namespace = testbed.add_input("inb")
    pairs, readers = pipes_with_readers(testbed, first_host, 2)
    first_frames, second_frames = flow_frames(100, seed=56), flow_frames(100, seed=57)
    with XdpProgram(XdpTree("LoadBalancer", [pair.broker for pair in pairs], split=2)) as program:
        attach_all(program, first_host, pairs)
        assert program.attach(second_host, "native") is False
        testbed.send(first_namespace, first_frames)
        testbed.send(second_namespace, second_frames)
        total = len(first_frames) + len(second_frames)
        assert wait_for_total(readers, total, ARRIVAL_TIMEOUT_S) == total
        received = collections.Counter()
        for reader in readers:
            received.update(reader.stop())
        assert received == collections.Counter(first_frames + second_frames)
        assert program.node_counters()["received_packets"] == total
    assert_nothing_attached([first_host, second_host] + [pair.consumer for pair in pairs])


def test_someone_elses_program_is_never_replaced(testbed):
    input_host, _ = testbed.add_input("in")
    pairs = [create_pipe(input_host, 0, 1500)]
    with XdpProgram(XdpTree("Dummy", [pairs[0].broker])) as first:
        first.attach(input_host)
        owner = attached_program(input_host)
        with XdpProgram(XdpTree("Dummy", [pairs[0].broker])) as second:
            with pytest.raises(BricksError, match=f"{input_host} already runs XDP program {owner}: not replacing it"):
                second.attach(input_host)
            with pytest.raises(BricksError, match="already runs XDP program"):
                second.attach(input_host, mode="generic")
        # The refused program's close detached nothing of the first one's.
        assert attached_program(input_host) == owner
        first.detach(input_host)
        assert attached_program(input_host) == 0


def test_a_killed_process_leaves_no_program_attached(testbed):
    input_host, _ = testbed.add_input("in")
    pair = create_pipe(input_host, 0, 1500)
    process = subprocess.Popen([sys.executable, "-c", _ATTACHED_PROCESS, input_host, pair.broker, pair.consumer],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "attached", process.stderr.read()
        assert attached_program(input_host) != 0 and attached_program(pair.consumer) != 0
        process.send_signal(signal.SIGKILL)
        process.wait(DETACH_TIMEOUT_S)
        deadline = time.monotonic() + DETACH_TIMEOUT_S
        while attached_program(input_host) + attached_program(pair.consumer) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert_nothing_attached([input_host, pair.consumer])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
