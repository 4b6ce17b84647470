"""The XDP program run by the kernel on single frames (BPF_PROG_RUN, nothing transmitted): every LoadBalancer
chooses the output the C engine chooses (hash vectors, VLAN, IPv6, tunnels, fragments, cut frames; split 2 and 4;
the brick linked to the input and deeper ones), counters are exact, Duplicator and Dummy forward, bad trees are
refused in one line. Needs root and BPF (CI has both)."""
import random
import sys

import pytest

from bricks._native import ffi, lib
from bricks.errors import BricksError
from bricks.frames import random_tcp_frames, tcp_frame
from bricks.xdp import XdpProgram, XdpTree
from tests.native import Graph, memory_source, output_packets
from tests.unit.test_dissect import vector_frames
from tests.unit.test_hash import TRUNCATION_CASES, datagram_fragments

pytestmark = pytest.mark.root

LOOPBACK = 1           # any interface will do: BPF_PROG_RUN transmits nothing
FRAGMENT_SLOTS = 1024  # the C LoadBalancer's table, big enough that neither side forgets


def xdp_frames():
    """Every vector frame, every prefix of the truncation cases long enough for XDP (an Ethernet header),
    and fragment trains with a later fragment ahead of its first."""
    frames = vector_frames()
    for frame, _ in TRUNCATION_CASES:
        frames += [frame[:length] for length in range(14, len(frame) + 1)]
    rng = random.Random(40)
    for version in (4, 6):
        for ident in range(6):
            fragments = datagram_fragments(version, 3000 + ident, ports=(rng.randrange(1, 65535), 53))
            frames += [fragments[1]] + fragments
    return frames


class CEngineChoice:
    """The output the C engine's bricks choose for a frame of tree: brk_flow_hash, a fragment table per
    LoadBalancer as the C brick keeps it, output = hash % outputs; leaves numbered as the XDP program does."""

    def __init__(self, program: XdpProgram):
        self.plan = program.plan
        self.tables = [lib.brk_frag_table_new(FRAGMENT_SLOTS) for _ in self.plan.bricks]
        self.children = {}
        next_index = 1
        for index, brick in enumerate(self.plan.bricks):
            for slot, output in enumerate(brick.outputs):
                if isinstance(output, XdpTree):
                    self.children[index, slot] = next_index
                    next_index += 1
        self.malformed = [0] * len(self.plan.bricks)
        self.fallbacks = [0] * len(self.plan.bricks)

    def close(self):
        for table in self.tables:
            lib.brk_frag_table_free(table)

    def output(self, frame):
        """The program output (leaf) the frame leaves by."""
        index = 0
        flags = ffi.new("uint32_t *")
        while True:
            brick = self.plan.bricks[index]
            slot = 0
            if brick.kind == "LoadBalancer":
                value = lib.brk_flow_hash(frame, len(frame), brick.split, self.plan.depths[index],
                                          self.tables[index], flags)
                self.malformed[index] += bool(flags[0] & lib.BRK_HASH_TRUNCATED)
                self.fallbacks[index] += bool(flags[0] & lib.BRK_HASH_FRAG_FALLBACK)
                slot = value % len(brick.outputs)
            if (index, slot) not in self.children:
                return self.plan.first_outputs[index] + slot
            index = self.children[index, slot]


def taken_output(program, before):
    """The output whose delivered count grew since before (exactly one must have)."""
    after = [counters["packets"] for counters in program.output_counters()]
    grown = [output for output, (old, new) in enumerate(zip(before, after)) if new != old]
    return grown, after


def balancer(split, outputs):
    return XdpTree("LoadBalancer", outputs, split=split)


TREES = {
    "lb2": lambda: balancer(2, [LOOPBACK] * 2),
    "lb4": lambda: balancer(4, [LOOPBACK] * 4),
    "lb4-lb2": lambda: balancer(4, [balancer(2, [LOOPBACK] * 2) for _ in range(4)]),
    "lb2-lb4": lambda: balancer(2, [balancer(4, [LOOPBACK] * 4) for _ in range(2)]),
    "lb4-dummy-lb4-lb2": lambda: balancer(4, [XdpTree("Dummy", [balancer(4, [balancer(2, [LOOPBACK] * 2), LOOPBACK,
                                                                              LOOPBACK, LOOPBACK])]),
                                              LOOPBACK, LOOPBACK, LOOPBACK]),
}


@pytest.mark.parametrize("tree", list(TREES))
def test_every_frame_leaves_by_the_c_engines_output(tree):
    frames = xdp_frames()
    with XdpProgram(TREES[tree]()) as program:
        reference = CEngineChoice(program)
        try:
            delivered = [0] * len(program.plan.output_ifindexes)
            for frame in frames:
                assert program.run(frame) == "redirect"
                grown, delivered_now = taken_output(program, delivered)
                leaf = reference.output(frame)
                # A leaf output grew by one; so did every brick-to-brick output on the way (not compared here).
                assert leaf in grown and delivered_now[leaf] == delivered[leaf] + 1, frame.hex()
                delivered = delivered_now
            for node in range(len(program.plan.bricks)):
                counters = program.node_counters(node)
                assert counters["malformed"] == reference.malformed[node]
                assert counters["fragment_fallbacks"] == reference.fallbacks[node]
                outputs = program.output_counters(node)
                assert counters["received_packets"] == sum(output["packets"] for output in outputs)
                assert all(output["redirect_failures"] == 0 for output in outputs)
            assert program.node_counters(0)["received_packets"] == len(frames)
            assert program.node_counters(0)["received_bytes"] == sum(map(len, frames))
            assert reference.fallbacks[0] > 0 or tree == "lb2-lb4" or program.plan.bricks[0].split == 2
        finally:
            reference.close()


@pytest.mark.parametrize("split", [2, 4])
def test_output_counts_equal_the_c_engine_run_on_the_same_frames(split):
    frames = random_tcp_frames(3000, seed=41) + random_tcp_frames(1000, seed=42, version=6) + xdp_frames()
    with Graph() as graph:
        brick = graph.brick("LoadBalancer", split=split, depth=0, frag_slots=FRAGMENT_SLOTS)
        graph.null_sinks(brick, 4)
        graph.source(memory_source(frames), brick)
        graph.run()
        engine_counts = output_packets(brick, 4)
    with XdpProgram(balancer(split, [LOOPBACK] * 4)) as program:
        for frame in frames:
            program.run(frame)
        assert [output["packets"] for output in program.output_counters()] == engine_counts
        assert sum(engine_counts) == len(frames)


def test_duplicator_and_dummy_forward_and_count():
    frame = tcp_frame("10.0.0.1", "10.0.0.2", 1, 2)
    with XdpProgram(XdpTree("Duplicator", [LOOPBACK] * 3)) as program:
        for _ in range(5):
            assert program.run(frame) == "redirect"
        assert program.node_counters()["received_packets"] == 5
        assert [output["packets"] for output in program.output_counters()] == [5, 5, 5]
    with XdpProgram(XdpTree("Dummy", [XdpTree("Dummy", [LOOPBACK])])) as program:
        assert program.run(frame) == "redirect"
        assert program.output_counters() == [{"packets": 1, "bytes": len(frame), "redirect_failures": 0}] * 2


@pytest.mark.parametrize("tree,message", [
    (XdpTree("Duplicator", [XdpTree("Dummy", [LOOPBACK])]), "a Duplicator's outputs must be interfaces"),
    (XdpTree("LoadBalancer", [LOOPBACK], split=3), "split must be 2 or 4"),
    (XdpTree("PcapWriter", [LOOPBACK]), "PcapWriter cannot run in XDP"),
    (XdpTree("Dummy", [LOOPBACK, LOOPBACK]), "brick 0 has 2 outputs"),
    (XdpTree("LoadBalancer", []), "brick 0 has 0 outputs"),
    (XdpTree("Dummy", ["bricks-no-such-interface"]), "no interface bricks-no-such-interface"),
])
def test_trees_xdp_cannot_run_are_refused_in_one_line(tree, message):
    with pytest.raises(BricksError, match=message) as refused:
        XdpProgram(tree)
    assert "\n" not in str(refused.value)


def test_a_chain_deeper_than_the_program_walks_is_refused():
    tree = XdpTree("Dummy", [LOOPBACK])
    for _ in range(lib.BRK_XDP_MAX_LEVELS):
        tree = XdpTree("Dummy", [tree])
    with pytest.raises(BricksError, match="a chain of more than 8 bricks"):
        XdpProgram(tree)


@pytest.mark.parametrize("split", [2, 4])
def test_random_garbage_leaves_by_the_c_engines_output(split):
    """The verifier-checked dissector on bytes no builder makes: still the C engine's choice, never an abort."""
    rng = random.Random(43)
    frames = []
    for _ in range(3000):
        data = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(14, 160)))
        if rng.random() < 0.8:
            data[12:14] = rng.choice([b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x88\xa8"])
            if len(data) > 14:
                data[14] = rng.choice([0x45, 0x46, 0x4F, 0x40, 0x60, data[14]])
            if len(data) > 23 and rng.random() < 0.5:
                data[23] = rng.choice([6, 17, 4, 41, 44, 0, 43, 51, 60])
        frames.append(bytes(data))
    tree = balancer(split, [balancer(4, [LOOPBACK] * 4), balancer(2, [LOOPBACK] * 2), LOOPBACK])
    with XdpProgram(tree) as program:
        reference = CEngineChoice(program)
        try:
            delivered = [0] * len(program.plan.output_ifindexes)
            for frame in frames:
                assert program.run(frame) == "redirect"
                grown, delivered_now = taken_output(program, delivered)
                assert reference.output(frame) in grown, frame.hex()
                delivered = delivered_now
            assert [program.node_counters(node)["malformed"] for node in range(3)] == reference.malformed
        finally:
            reference.close()


def test_without_privileges_the_program_is_refused_in_one_line():
    from tests.unit.test_first_contact import one_line, run, unprivileged
    script = ("from bricks.errors import BricksError\n"
              "from bricks.xdp import XdpProgram, XdpTree\n"
              "try:\n"
              "    XdpProgram(XdpTree('Dummy', [1]))\n"
              "except BricksError as error:\n"
              "    print(error)\n")
    result = run(unprivileged([sys.executable, "-c", script]))
    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == "XDP: the kernel refused the program (not root, or a locked-memory limit)"
    assert result.stderr == ""
