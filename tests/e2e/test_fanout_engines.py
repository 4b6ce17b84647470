"""Several engines on one interface (qid >= 0): the fanout program splits its traffic (SPEC §4, pe:link).

Every frame must reach exactly one engine, fragments included (no reassembly,
no drop), and each address pair, with every flow between those addresses in
both directions and every fragment of their datagrams, must reach one engine
only; frames other than IP go by their MAC pair.
"""
import random

import pytest

from bricks import frames as packets
from bricks import links
from bricks.engine import Brick, PktEngine
from bricks.testbed import wait_for_total

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("engines_removed")]

SEND_RATE = 20000
ENGINES = 3
QINQ = [(packets.ETHERTYPE_QINQ, 100), (packets.ETHERTYPE_VLAN, 5)]
DOT1Q = [(packets.ETHERTYPE_VLAN, 7)]


def fragmented_udp(source, destination, ports, ident, vlans=()):
    """The padded frames of one UDP datagram cut into fragments of 16 bytes (IPv4 or IPv6 by the address)."""
    payload = packets.udp(*ports, bytes(range(64)))
    fragments = packets.ipv4_fragments if ":" not in source else packets.ipv6_fragments
    return [packets.pad(packets.ip_frame(fragment, vlans=vlans))
            for fragment in fragments(source, destination, packets.UDP, payload, ident)]


def labelled_traffic():
    """(frame, group) pairs: a group (kind of frame, address or MAC pair) must stay on one engine."""
    rng = random.Random(97)
    labelled = []

    def add(group, frames):
        labelled.extend((frame, group) for frame in frames)

    for version, vlans in [(4, ()), (4, DOT1Q), (4, QINQ), (6, ()), (6, DOT1Q)]:
        for source, destination, source_port, destination_port in packets.random_flows(rng, 12, version):
            group = (f"IPv{version} tags {vlans}", frozenset([source, destination]))
            ident = rng.randrange(1, 0xFFFE)
            # A datagram each way, fragments in order, beside packets of the same flows.
            add(group, fragmented_udp(source, destination, (source_port, destination_port), ident, vlans))
            add(group, fragmented_udp(destination, source, (destination_port, source_port), ident + 1, vlans))
            add(group, [packets.pad(packets.udp_frame(source, destination, source_port, destination_port,
                                                      vlans=vlans)),
                        packets.pad(packets.tcp_frame(destination, source, destination_port, source_port,
                                                      vlans=vlans))])
    for _ in range(12):
        first, second = rng.getrandbits(48).to_bytes(6, "big"), rng.getrandbits(48).to_bytes(6, "big")
        add(("ARP", frozenset([first, second])),
            [packets.pad(packets.ether(bytes(28), packets.ETHERTYPE_ARP, destination=second, source=first)),
             packets.pad(packets.ether(bytes(28), packets.ETHERTYPE_ARP, destination=first, source=second))])
    return labelled


def test_fragments_and_flows_each_reach_one_engine_none_lost(testbed):
    labelled = labelled_traffic()
    group_of = dict(labelled)
    frames = [frame for frame, _ in labelled]
    assert len(group_of) == len(frames), "every frame distinct, so that its engine tells where it went"
    host_if, ns_if = testbed.add_input("in")
    engines = []
    for qid in range(ENGINES):
        engine = PktEngine.new(f"q{qid}")
        engine.link(Brick("Dummy").connect_input(host_if).connect_output(links.broker_name(host_if, qid)), 256, qid)
        engines.append(engine)
    readers = [testbed.reader(links.consumer_name(host_if, qid), in_namespace=False) for qid in range(ENGINES)]
    for engine in engines:
        engine.start()
    testbed.send(ns_if, frames, pps=SEND_RATE)
    wait_for_total(readers, len(frames))
    for engine in engines:
        engine.stop()
    shares = [reader.stop() for reader in readers]

    assert sorted(frame for share in shares for frame in share) == sorted(frames), \
        "every frame, fragments included, exactly once"
    assert all(shares), f"an engine got nothing: {[len(share) for share in shares]}"
    engines_of_group = {}
    for qid, share in enumerate(shares):
        for frame in share:
            engines_of_group.setdefault(group_of[frame], set()).add(qid)
    split = {group: qids for group, qids in engines_of_group.items() if len(qids) > 1}
    assert not split, f"address pairs on several engines: {split}"
    engines_of_kind = {}
    for (kind, _), qids in engines_of_group.items():
        engines_of_kind.setdefault(kind, set()).update(qids)
    assert all(len(qids) > 1 for qids in engines_of_kind.values()), \
        f"a kind of frame not spread by its addresses: {engines_of_kind}"
    for engine, share in zip(engines, shares):
        stats = engine.stats()
        assert stats["packets"] == len(share)
        assert stats["drops"] == 0, stats
