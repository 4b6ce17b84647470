"""The Filter's runtime rules in the XDP program, run by the kernel on single frames (BPF_PROG_RUN, nothing
transmitted): every frame gets the C Filter brick's verdict and every rule the same hits and bytes (random rule
sets of every shape, IPv4 and IPv6, both actions, the frames of the hash vectors and cut ones), rule changes and
timeouts take effect at once, a set the program cannot hold is refused whole in one line, counts survive the
program, and a frame never sees half a set while rules change under it. Needs root and BPF (CI has both)."""
import ipaddress
import random
import threading
import time

import pytest

from bricks.errors import BricksError
from bricks.filter import FilterRules
from bricks.frames import pad, tcp_frame, udp_frame
from bricks.xdp import XdpProgram, XdpTree
from tests.native import Graph, memory_source, output_packets
from tests.unit.test_xdp_program import LOOPBACK, xdp_frames

pytestmark = pytest.mark.root

V4_BASES = ["10.1.0.0", "10.2.128.0", "192.168.0.0"]
V6_BASES = ["2001:db8::", "2001:db8:1:2::", "fd00:7::"]


def filter_program(rules, reject_output=True):
    outputs = [LOOPBACK, LOOPBACK] if reject_output else [LOOPBACK]
    return XdpProgram(XdpTree("Filter", outputs, rules=rules.table))


def xdp_verdicts(program, frames):
    """Per frame: True when it left by output 0 (passed), False when by output 1 or dropped."""
    verdicts = []
    for frame in frames:
        before = program.output_counters()[0]["packets"]
        program.run(frame)
        verdicts.append(program.output_counters()[0]["packets"] == before + 1)
    return verdicts


def c_verdicts(rules, frames):
    """Per frame, the C Filter brick's verdict with rules' table."""
    verdicts = []
    for frame in frames:
        with Graph() as graph:
            brick = graph.brick("Filter")
            rules.attach(brick)
            graph.null_sinks(brick, 2)
            graph.source(memory_source([frame]), brick)
            graph.run()
            passed, rejected = output_packets(brick, 2)
            assert passed + rejected == 1
            verdicts.append(passed == 1)
    return verdicts


class Addresses:
    """Addresses from a few small pools, so that random rules and random frames meet."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def address(self, version):
        base = int(ipaddress.ip_address(self.rng.choice(V4_BASES if version == 4 else V6_BASES)))
        address = ipaddress.ip_address(base + self.rng.randrange(1 << 10))
        return str(address)

    def prefix(self, version):
        lengths = [8, 12, 16, 20, 22, 23, 24, 26, 28, 30, 32] if version == 4 else [32, 48, 56, 64, 112, 120, 128]
        return str(ipaddress.ip_network(f"{self.address(version)}/{self.rng.choice(lengths)}", strict=False))

    def rule(self, version):
        rng = self.rng
        fields = {}
        for side in ("src", "dst"):
            if rng.random() < 0.5:
                fields[side] = self.prefix(version)
        if rng.random() < 0.3:
            fields["proto"] = rng.choice(["tcp", "udp"])
            if rng.random() < 0.5:
                fields["dport"] = rng.choice([53, 80, 443])
        if not fields:
            fields["src"] = self.address(version)
        fields["bidirectional"] = rng.random() < 0.7
        if rng.random() < 0.12:   # narrow exceptions, or nothing would pass
            return "allow", {"src": self.prefix(version), "bidirectional": True}
        return "drop", fields

    def frame(self, version):
        rng = self.rng
        builder = rng.choice([tcp_frame, udp_frame])
        vlans = [(0x8100, rng.randrange(4096))] if rng.random() < 0.2 else None
        extra = {"vlans": vlans} if vlans else {}
        return pad(builder(self.address(version), self.address(version), rng.randrange(1, 65536),
                           rng.choice([53, 80, 443, 8080]), **extra))


def random_case(seed, rule_count=240, frame_count=500):
    addresses = Addresses(seed)
    requests = [addresses.rule(4 if index % 3 else 6) for index in range(rule_count)]
    frames = [addresses.frame(4 if index % 3 else 6) for index in range(frame_count)]
    return requests, frames + xdp_frames()[::3]


def add_in_steps(tables, requests, seed):
    """The same changes to every table: requests in batches, some rules removed and their fields added again
    (keys then change hands between duplicates, masks come and go)."""
    rng = random.Random(seed)
    for start in range(0, len(requests), 37):
        ids = [table.add(requests[start:start + 37]) for table in tables][0]
        for rule_id in rng.sample(ids, len(ids) // 4):
            for table in tables:
                table.remove(rule_id)
    removed = [requests[index] for index in range(len(requests)) if index % 5 == 0]
    for table in tables:
        table.add(removed)


@pytest.mark.parametrize("seed, changed_while_loaded", [(1, False), (2, False), (3, True), (4, True)])
def test_every_frame_gets_the_c_filters_verdict_and_every_rule_its_hits(seed, changed_while_loaded):
    """The rules written whole when the program loads, or changed a batch at a time while it runs."""
    requests, frames = random_case(seed)
    in_c, in_xdp = FilterRules(), FilterRules()
    program = None
    if changed_while_loaded:
        program = filter_program(in_xdp)
        add_in_steps([in_c, in_xdp], requests, seed)
    else:
        in_c.add(requests)
        in_xdp.add(requests)
    expected = c_verdicts(in_c, frames)
    with program or filter_program(in_xdp) as program:
        assert xdp_verdicts(program, frames) == expected
        counters = program.node_counters(0)
        assert counters["received_packets"] == len(frames)
        assert counters["passed"] == sum(expected) == program.output_counters()[0]["packets"]
        assert counters["rule_dropped"] == len(frames) - sum(expected) == program.output_counters()[1]["packets"]
        assert in_xdp.rules() == in_c.rules()   # hits and bytes per rule, read from the kernel
    assert 0.15 < sum(expected) / len(frames) < 0.95      # both verdicts well represented
    assert sum(rule["hits"] for rule in in_c.rules() if rule["action"] == "allow") > 0
    assert in_xdp.rules() == in_c.rules()       # the program's counts stay with the table once it is gone


def test_without_a_reject_output_rejected_frames_are_dropped_and_counted_filtered():
    rules = FilterRules()
    rules.drop({"src": "10.1.0.0/16", "bidirectional": True})
    frames = [pad(tcp_frame("10.1.0.7", "10.9.9.9", 1000, 80)), pad(tcp_frame("10.9.9.9", "10.1.0.7", 80, 1000)),
              pad(tcp_frame("10.2.0.7", "10.9.9.9", 1000, 80))]
    with filter_program(rules, reject_output=False) as program:
        assert [program.run(frame) for frame in frames] == ["drop", "drop", "redirect"]
        counters = program.node_counters(0)
        assert (counters["filtered"], counters["passed"], counters["rule_dropped"]) == (2, 1, 2)
        assert [(rule["hits"], rule["bytes"]) for rule in rules.rules()] == [(2, len(frames[0]) + len(frames[1]))]


def test_changes_and_timeouts_take_effect_at_once():
    rules = FilterRules()
    frame = pad(udp_frame("192.168.0.1", "192.168.0.2", 5000, 53))
    with filter_program(rules, reject_output=False) as program:
        assert program.run(frame) == "redirect"
        rule = rules.drop({"dst": "192.168.0.0/24", "proto": "udp", "dport": 53})
        assert program.run(frame) == "drop"
        allow = rules.allow({"src": "192.168.0.1"})
        assert program.run(frame) == "redirect"
        assert [(entry["id"], entry["hits"]) for entry in rules.rules()] == [(rule, 1), (allow, 1)]
        rules.remove(allow)
        assert program.run(frame) == "drop"
        rules.clear()
        assert program.run(frame) == "redirect"
        rules.drop({"src": "192.168.0.1", "timeout": 0.3})
        assert program.run(frame) == "drop"
        time.sleep(0.5)   # expired: the program sees it before any control call prunes it
        assert program.run(frame) == "redirect"
        assert rules.rules() == []


def test_a_key_two_rules_share_passes_to_the_later_one_when_the_earlier_goes():
    rules = FilterRules()
    frame = pad(tcp_frame("10.1.0.7", "10.9.9.9", 1000, 80))
    with filter_program(rules, reject_output=False) as program:
        first, second = rules.add([("drop", {"src": "10.1.0.0/16"}), ("drop", {"src": "10.1.0.0/16"})])
        assert program.run(frame) == "drop"
        rules.remove(first)
        assert program.run(frame) == "drop"
        assert [(entry["id"], entry["hits"]) for entry in rules.rules()] == [(second, 1)]
        rules.remove(second)
        assert program.run(frame) == "redirect"


def test_a_set_the_program_cannot_hold_is_refused_whole_and_nothing_changes():
    rules = FilterRules()
    kept = rules.drop({"src": "10.1.0.0/16"})
    frame = pad(tcp_frame("10.1.0.7", "10.9.9.9", 1000, 80))
    with filter_program(rules, reject_output=False) as program:
        too_many_shapes = [("drop", {"src": f"172.0.0.0/{src}", "dst": f"11.0.0.0/{dst}",
                                     "bidirectional": False})
                           for src in range(8, 25) for dst in range(8, 25)]
        with pytest.raises(BricksError) as refused:
            rules.add(too_many_shapes)
        assert str(refused.value) == ("add: the XDP program's Filter takes at most 256 rule shapes per action and "
                                      "family (combinations of prefix lengths, ports and protocol), this set has 291")
        assert [entry["id"] for entry in rules.rules()] == [kept]
        assert program.run(frame) == "drop"
        rules.add(too_many_shapes[:254])   # the kept rule's two shapes (both ways) and 254: fine
        assert len(rules.rules()) == 255 and program.run(frame) == "drop"


def test_a_table_runs_in_one_program_at_a_time():
    rules = FilterRules()
    with filter_program(rules):
        with pytest.raises(BricksError, match="^Filter: this Filter's rules already run in another XDP program$"):
            filter_program(rules)
    with filter_program(rules) as program:   # free again once the first program is gone
        assert program.run(pad(tcp_frame("10.1.0.7", "10.9.9.9", 1000, 80))) == "redirect"


def test_a_frame_never_sees_half_a_set_while_rules_change_under_it():
    """One thread runs frames of a flow a permanent rule drops and of a flow no rule drops, while another
    publishes hundreds of sets around them (each a new generation, the old one deleted): every frame of the
    first is dropped, every one of the second passes, and the permanent rule's hits equal the first's frames."""
    rules = FilterRules()
    blocked = pad(tcp_frame("10.1.0.7", "10.2.128.9", 1000, 443))
    free = pad(tcp_frame("10.1.0.8", "10.2.128.9", 1000, 443))
    permanent = rules.drop({"src": "10.1.0.7", "dst": "10.2.128.9", "proto": "tcp", "sport": 1000, "dport": 443})
    stop = threading.Event()
    publications = []

    def churn():
        rng = random.Random(5)
        while not stop.is_set():
            ids = rules.add([("drop", {"src": f"10.{rng.randrange(3, 200)}.0.0/{rng.choice([16, 24, 32])}"})
                             for _ in range(rng.randrange(1, 20))])
            for rule_id in ids[::2]:
                rules.remove(rule_id)
            publications.append(len(ids))

    with filter_program(rules, reject_output=False) as program:
        changer = threading.Thread(target=churn)
        changer.start()
        runs = 0
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                assert program.run(blocked) == "drop"
                assert program.run(free) == "redirect"
                runs += 1
        finally:
            stop.set()
            changer.join(10)
        hits = {entry["id"]: entry["hits"] for entry in rules.rules()}
        assert hits[permanent] == runs
        assert program.node_counters(0)["filtered"] == runs
    assert len(publications) > 50, "the rules hardly changed: the test proved nothing"
