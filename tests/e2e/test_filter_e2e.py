"""End to end: the Filter brick on real veths; tcpdump on the passed pipe (and on the rejected pipe when there is one).

The runtime rules' tests run on both back-ends that can run them: the packet
back-end (the C brick) and the XDP back-end (the rules in the XDP program's
maps, changed while it runs); a tcpdump expression runs on packet only.

Frames enter the host end of a veth pair from a private namespace; the
filter's outputs are veth pipes read by tcpdump. Every test checks what was
captured against what the rules say, and that every packet is accounted for:
received = delivered + dropped + filtered.
"""
import struct
import threading
import time

import pytest

from bricks import links
from bricks.engine import Brick, PktEngine
from bricks.frames import ETHERTYPE_VLAN, pad, tcp_frame, udp_frame
from bricks.testbed import wait_for_total

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("engines_removed")]

SEND_RATE = 20000
A, B, C, D = "10.0.0.1", "10.0.0.2", "192.168.7.9", "10.9.8.7"


def numbered(build, *flow, number=0, **options):
    """A frame of one flow whose payload carries number, so captures can be told apart."""
    return build(*flow, payload=b"n" * 16 + struct.pack("!I", number), **options)


def number_of(frame):
    return struct.unpack("!I", frame[-4:])[0]


class FilterBed:
    """A Filter between a veth input and one or two pipes, each read by tcpdump."""

    def __init__(self, testbed, expression=None, reject_output=False, name="flt", backend="packet"):
        self.testbed = testbed
        self.host_if, self.ns_if = testbed.add_input("in")
        self.filter = Brick("Filter", expression).connect_input(self.host_if)
        self.filter.connect_outputs(self.host_if, 2 if reject_output else 1)
        self.engine = PktEngine.new(name)
        self.engine.link(self.filter)
        assert self.engine.linked[0].backend == backend
        self.readers = [testbed.reader(links.consumer_name(self.host_if, index), in_namespace=False)
                        for index in range(2 if reject_output else 1)]

    def send(self, frames, expected, pps=SEND_RATE):
        self.testbed.send(self.ns_if, frames, pps=pps)
        wait_for_total(self.readers, expected)
        time.sleep(0.2)       # anything extra would show up now

    def captured(self):
        return [reader.read_so_far() for reader in self.readers]

    def stats(self):
        stats = self.engine.stats()
        brick = stats["bricks"][0]
        assert brick["received"] == sum(o["packets"] + o["drops"] for o in brick["outputs"]) + brick["filtered"]
        return brick


@pytest.mark.parametrize("expression, matching, other", [
    ("tcp port 80", [tcp_frame(A, B, 1234, 80), tcp_frame(B, A, 80, 1234)],
     [tcp_frame(A, B, 1234, 81), udp_frame(A, B, 1234, 80)]),
    ("vlan and udp", [udp_frame(A, B, 5, 6, vlans=[(ETHERTYPE_VLAN, 7)])],
     [udp_frame(A, B, 5, 6), tcp_frame(A, B, 5, 6, vlans=[(ETHERTYPE_VLAN, 7)])]),
    ("ip6", [tcp_frame("2001:db8::1", "2001:db8::2", 5, 6), udp_frame("2001:db8::2", "2001:db8::1", 6, 5)],
     [tcp_frame(A, B, 5, 6)]),
])
def test_expression_splits_passed_and_rejected(testbed, expression, matching, other):
    bed = FilterBed(testbed, expression, reject_output=True)
    matching, other = [pad(frame) for frame in matching] * 10, [pad(frame) for frame in other] * 10
    bed.engine.start()
    bed.send(matching + other, len(matching) + len(other))
    passed, rejected = bed.captured()
    assert sorted(passed) == sorted(matching)
    assert sorted(rejected) == sorted(other)
    assert bed.filter.filter_stats()["expression_rejected"] == len(other)


def test_runtime_rules_on_the_wire_and_across_stop_start(testbed, rules_backend):
    bed = FilterBed(testbed, backend=rules_backend)
    by_address = bed.filter.drop({"src": C})
    by_cidr = bed.filter.drop({"dst": "10.9.0.0/16"})
    by_flow = bed.filter.drop({"src": A, "dst": B, "sport": 4000, "dport": 443, "proto": "tcp"})
    bed.filter.drop({"src": "10.0.0.0/24"})
    exception = bed.filter.allow({"src": A, "dport": 22, "proto": "tcp"})
    dropped = {
        by_address: [tcp_frame(C, A, 1, 2), tcp_frame(A, C, 2, 1)],          # both directions
        by_cidr: [udp_frame("172.16.0.9", D, 7, 8)],
        by_flow: [tcp_frame(A, B, 4000, 443), tcp_frame(B, A, 443, 4000)],
    }
    kept = [tcp_frame(A, B, 4001, 22), tcp_frame("172.16.0.1", "172.16.0.2", 4000, 443),
            udp_frame("172.16.0.1", "10.8.0.1", 7, 8)]
    frames = [pad(frame) for group in dropped.values() for frame in group] + [pad(frame) for frame in kept]
    bed.engine.start()
    bed.send(frames * 5, 5 * len(kept))
    assert sorted(bed.captured()[0]) == sorted(pad(frame) for frame in kept * 5)
    hits = {rule["id"]: rule["hits"] for rule in bed.filter.rules()}
    for rule_id, group in dropped.items():
        assert hits[rule_id] == 5 * len(group)
    assert hits[exception] == 5          # the /24 drop would have taken tcp A -> B:22
    assert bed.stats()["filtered"] == 5 * sum(len(group) for group in dropped.values())

    bed.engine.stop()
    bed.engine.start()
    bed.send(frames, 6 * len(kept))
    assert len(bed.captured()[0]) == 6 * len(kept)
    assert {rule["id"]: rule["hits"] for rule in bed.filter.rules()}[by_flow] == 6 * 2


def test_timeout_stops_dropping_on_the_wire(testbed, rules_backend):
    bed = FilterBed(testbed, backend=rules_backend)
    rate, seconds = 200, 3.5
    frames = [numbered(udp_frame, C, A, 5, 6, number=number) for number in range(int(rate * seconds))]
    bed.engine.start()
    bed.filter.drop({"src": C, "timeout": 2})
    started = time.monotonic()
    bed.send(frames, 1, pps=rate)
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(frames) - 1 not in map(number_of, bed.captured()[0]):
        time.sleep(0.05)
    seen = sorted(number_of(frame) for frame in bed.captured()[0])
    assert seen, "the rule never expired"
    # Everything after the expiry passed, nothing before it did (the sender's pace gives the time).
    assert seen == list(range(seen[0], len(frames)))
    sent_per_second = len(frames) / elapsed
    assert 1.5 <= seen[0] / sent_per_second <= 2.6, (seen[0], sent_per_second)
    assert bed.filter.rules() == []


def test_ten_thousand_rules_while_traffic_flows(testbed, rules_backend):
    """No packet that no rule drops is lost while rules are published, and drop counts are exact."""
    bed = FilterBed(testbed, backend=rules_backend)
    shunted = bed.filter.drop({"src": C, "dst": A, "sport": 9, "dport": 9, "proto": "udp"})
    rate, count = 2000, 12000
    frames = []
    for number in range(count):
        if number % 4 == 3:
            frames.append(numbered(udp_frame, A, C, 9, 9, number=number))     # the reverse of the shunt
        else:
            frames.append(numbered(tcp_frame, A, B, 1000 + number % 50, 80, number=number))
    adding_done = threading.Event()
    added = []

    def add_rules():
        try:
            for index in range(10000):
                added.append(bed.filter.drop({"src": f"172.{16 + index // 4096}.{index // 16 % 256}.{index % 16}",
                                              "dport": 1 + index % 1000, "proto": "tcp"}))
        finally:
            adding_done.set()

    bed.engine.start()
    adder = threading.Thread(target=add_rules)
    adder.start()
    kept = [frame for frame in frames if number_of(frame) % 4 != 3]
    bed.send(frames, len(kept), pps=rate)
    adder.join(120)
    assert adding_done.is_set() and len(added) == 10000
    captured = bed.captured()[0]
    assert sorted(captured) == sorted(kept)
    hits = {rule["id"]: rule["hits"] for rule in bed.filter.rules()}
    assert len(hits) == 10001
    assert hits[shunted] == count // 4
    assert sum(hits.values()) == count // 4
    assert bed.stats()["filtered"] == count // 4
