"""A consumer that speaks AF_XDP on a pipe's `}` end: the XDP program redirects into veth pipes, and an XSK socket
(tests/xsk_reader.c) on the consumer end receives every frame with no socket buffer, byte for byte, counted.

The XDP_PASS companion is not attached there: the reader brings its own program (a redirect into its XSKMAP),
which gives that end the NAPI a veth needs to receive redirected frames, as the companion does for socket
readers. A consumer such as Suricata's af-xdp capture does the same: it needs the `}` end free of any other XDP
program, native mode (veth has no zero-copy: copy mode), queue 0 (a pipe has one queue), and GRO is irrelevant
to it (frames reach the socket before any GRO)."""
import collections

import pytest

from bricks.frames import ETHERTYPE_VLAN, flow_frames, pad, tcp_frame, udp_frame
from bricks.links import create_pipe
from bricks.xdp import XdpProgram, XdpTree, attached_program
from tests.e2e.test_xdp_redirect import tcp_stream
from tests.unit.test_xdp_program import CEngineChoice
from tests.xsk import XskReader

pytestmark = pytest.mark.root

SEND_PPS = 4000
READ_TIMEOUT_S = 30


def mixed_frames():
    """Flows both ways, IPv6, VLAN-tagged, full-size and minimum-size frames and a TCP stream."""
    frames = flow_frames(200, packets_per_direction=2, seed=60)
    for n in range(50):
        frames.append(pad(udp_frame(f"2001:db8::{n + 1:x}", "2001:db8::ffff", 1000 + n, 53)))
        frames.append(tcp_frame(f"10.50.{n}.1", "10.50.0.2", 3000 + n, 443, bytes([n]) * 1460))
        frames.append(pad(tcp_frame(f"10.60.{n}.1", "10.60.0.2", 4000 + n, 80, vlans=[(ETHERTYPE_VLAN, 100 + n)])))
    return frames + tcp_stream(30)


def test_xsk_reader_gets_every_frame_of_a_pipe_byte_exact(testbed):
    input_host, input_namespace = testbed.add_input("in")
    pipe = create_pipe(input_host, 0, 1500)
    frames = mixed_frames()
    with XdpProgram(XdpTree("Dummy", [pipe.broker])) as program:
        program.attach(input_host, "native")
        reader = XskReader(pipe.consumer, len(frames), READ_TIMEOUT_S)
        testbed.send(input_namespace, frames, pps=SEND_PPS)
        received = reader.stop(READ_TIMEOUT_S + 5)
        assert received == frames      # one path, one queue: in order, each once, unchanged
        assert reader.counters == {"received": len(frames), "dropped": 0, "ring_full": 0, "fill_empty": 0}
        assert program.output_counters() == [{"packets": len(frames), "bytes": sum(map(len, frames)),
                                               "redirect_failures": 0}]
    assert attached_program(pipe.consumer) == 0, "the reader detached its program"
    assert attached_program(input_host) == 0


def test_four_xsk_readers_get_the_c_engines_choice(testbed):
    input_host, input_namespace = testbed.add_input("in")
    pipes = [create_pipe(input_host, index, 1500) for index in range(4)]
    frames = mixed_frames()
    with XdpProgram(XdpTree("LoadBalancer", [pipe.broker for pipe in pipes], split=4)) as program:
        reference = CEngineChoice(program)
        expected = [collections.Counter() for _ in pipes]
        try:
            for frame in frames:
                expected[reference.output(frame)][frame] += 1
        finally:
            reference.close()
        assert all(expected), "every pipe gets traffic"
        program.attach(input_host, "native")
        readers = [XskReader(pipe.consumer, sum(counts.values()), READ_TIMEOUT_S)
                   for pipe, counts in zip(pipes, expected)]
        testbed.send(input_namespace, frames, pps=SEND_PPS)
        received = [collections.Counter(reader.stop(READ_TIMEOUT_S + 5)) for reader in readers]
        assert received == expected
        for reader, counts in zip(readers, expected):
            assert reader.counters == {"received": sum(counts.values()), "dropped": 0, "ring_full": 0,
                                       "fill_empty": 0}
        assert [output["packets"] for output in program.output_counters()] == [sum(c.values()) for c in expected]
        assert program.node_counters()["received_packets"] == len(frames)


def test_an_xsk_consumer_needs_the_end_without_the_companion(testbed):
    """With the XDP_PASS companion on the `}` end, an AF_XDP consumer cannot attach its program there (nor
    does the reader replace it): the back-end must leave that end to the consumer."""
    input_host, _ = testbed.add_input("in")
    pipe = create_pipe(input_host, 0, 1500)
    with XdpProgram(XdpTree("Dummy", [pipe.broker])) as program:
        program.attach_pass(pipe.consumer)
        companion = attached_program(pipe.consumer)
        with pytest.raises(AssertionError, match=r"attach \(another XDP program there\?\): Device or resource busy"):
            XskReader(pipe.consumer, 1, READ_TIMEOUT_S)
        assert attached_program(pipe.consumer) == companion
