"""Filter brick without a kernel: rule validation, matching semantics and counters on in-memory frames through the C engine."""
import json
import time

import pytest

from bricks._ffi import ffi, lib
from bricks.engine import Brick
from bricks.errors import BricksError
from bricks.filter import FilterRules, load_rule_file, retrieve, save_all
from bricks.frames import (ETHERTYPE_IPV4, ETHERTYPE_VLAN, FRAGMENT, ICMP, ICMPV6, ether, fragment_header_body,
                           ip_frame, ipv4, ipv4_fragments, ipv6, pad, tcp, tcp_frame, udp_frame)
from tests.native import Graph, brick_stats, memory_source, output_packets


def run(rules, frames, rounds=1, reject_output=False):
    """Pushes frames through a C Filter brick using rules' table; returns (packets per output, packets filtered,
    filter stats)."""
    with Graph() as graph:
        brick = graph.brick("Filter")
        rules.attach(brick)
        outputs = 2 if reject_output else 1
        graph.null_sinks(brick, outputs)
        graph.source(memory_source(frames, rounds), brick)
        graph.run()
        passed = output_packets(brick, outputs)
        counted = brick_stats(brick)
        assert counted.received_packets == sum(passed) + counted.filtered
        return passed, counted.filtered, filter_stats(brick)


def filter_stats(brick):
    """The Filter's own counters (passed, expression_rejected, rule_dropped, rule_allowed), as published."""
    return brick_stats(brick)


def passes(rules, frame):
    outputs, filtered, _ = run(rules, [frame])
    assert outputs[0] + filtered == 1
    return outputs[0] == 1


A, B, C = "10.0.0.1", "10.0.0.2", "192.168.7.9"
V6A, V6B = "2001:db8::1", "2001:db8:1::2"


def test_no_rule_no_expression_passes_everything():
    frames = [pad(tcp_frame(A, B, 1000 + i, 80)) for i in range(10)] + [ether(b"\0" * 46, 0x0806)]
    outputs, filtered, stats = run(FilterRules(), frames, rounds=3)
    assert outputs == [33] and filtered == 0 and stats.passed == 33


@pytest.mark.parametrize("expression, frame, expected", [
    ("tcp port 80", tcp_frame(A, B, 1234, 80), True),
    ("tcp port 80", tcp_frame(A, B, 1234, 81), False),
    ("tcp port 80", udp_frame(A, B, 1234, 80), False),
    ("vlan and udp", udp_frame(A, B, 1, 2, vlans=[(ETHERTYPE_VLAN, 5)]), True),
    ("vlan and udp", udp_frame(A, B, 1, 2), False),
    ("ip6", tcp_frame(V6A, V6B, 1, 2), True),
    ("ip6", tcp_frame(A, B, 1, 2), False),
])
def test_expression(expression, frame, expected):
    assert passes(FilterRules(expression), pad(frame)) is expected


def test_expression_rejects_go_to_the_second_output_when_there_is_one():
    rules = FilterRules("udp")
    frames = [pad(udp_frame(A, B, 1, 2)), pad(tcp_frame(A, B, 1, 2)), pad(tcp_frame(A, B, 3, 4))]
    outputs, filtered, stats = run(rules, frames, rounds=5, reject_output=True)
    assert outputs == [5, 10] and filtered == 0
    assert (stats.passed, stats.expression_rejected) == (5, 10)


def test_bad_expression_is_one_line_quoting_libpcap():
    with pytest.raises(BricksError) as caught:
        Brick("Filter", "tcp port eighty")
    message = str(caught.value)
    assert "\n" not in message and "tcp port eighty" in message and "unknown port 'eighty'" in message


def test_drop_by_address_both_directions_and_one_direction():
    rules = FilterRules()
    rules.drop({"src": C})
    assert not passes(rules, pad(tcp_frame(C, A, 1, 2)))
    assert not passes(rules, pad(tcp_frame(A, C, 1, 2)))     # bidirectional by default
    assert passes(rules, pad(tcp_frame(A, B, 1, 2)))
    rules.clear()
    rules.drop({"src": C, "bidirectional": False})
    assert not passes(rules, pad(tcp_frame(C, A, 1, 2)))
    assert passes(rules, pad(tcp_frame(A, C, 1, 2)))


def test_longest_prefix_wins_the_hit():
    rules = FilterRules()
    wide = rules.drop({"dst": "10.0.0.0/8"})
    narrow = rules.drop({"dst": "10.1.0.0/16"})
    outputs, _, _ = run(rules, [pad(udp_frame("172.16.0.1", "10.1.2.3", 1, 2)),
                                pad(udp_frame("172.16.0.1", "10.9.2.3", 1, 2)),
                                pad(udp_frame("172.16.0.1", "11.0.0.1", 1, 2))])
    assert outputs == [1]
    hits = {rule["id"]: rule["hits"] for rule in rules.rules()}
    assert hits == {wide: 1, narrow: 1}


def test_five_tuple_rule_matches_both_directions_only_that_flow():
    rules = FilterRules()
    rules.drop({"src": A, "dst": B, "sport": 1234, "dport": 80, "proto": "tcp"})
    assert not passes(rules, pad(tcp_frame(A, B, 1234, 80)))
    assert not passes(rules, pad(tcp_frame(B, A, 80, 1234)))
    assert passes(rules, pad(udp_frame(A, B, 1234, 80)))
    assert passes(rules, pad(tcp_frame(A, B, 1235, 80)))
    assert passes(rules, pad(tcp_frame(B, A, 1234, 80)))


def test_ipv6_prefix_icmp_and_vlan():
    rules = FilterRules()
    rules.drop({"src": "2001:db8:1::/48"})
    rules.drop({"proto": "icmp"})
    assert not passes(rules, pad(tcp_frame(V6A, V6B, 5, 6)))
    assert passes(rules, pad(tcp_frame(V6A, "2001:db8:2::1", 5, 6)))
    assert not passes(rules, pad(ip_frame(ipv4(A, B, ICMP, b"\x08\0\0\0\0\0\0\0"))))
    assert not passes(rules, pad(ip_frame(ipv6(V6A, "2001:db8:2::1", ICMPV6, b"\x80\0\0\0\0\0\0\0"))))
    tagged = ether(ipv4(A, B, ICMP, b"\x08\0\0\0\0\0\0\0"), ETHERTYPE_IPV4, vlans=[(ETHERTYPE_VLAN, 3)])
    assert not passes(rules, pad(tagged))


def test_ports_of_ipv6_after_extension_headers_and_fragments():
    rules = FilterRules()
    rules.drop({"dport": 443, "proto": "udp"})
    first, second = [ip_frame(packet) for packet in
                     [ipv6(V6A, V6B, 17, udp_payload, extensions=[(FRAGMENT, fragment_header_body(7, at, more))])
                      for udp_payload, at, more in [(udp_bytes(5, 443), 0, True), (b"\0" * 16, 16, False)]]]
    assert not passes(rules, pad(first))
    assert passes(rules, pad(second))        # a later fragment carries no ports
    fragments = [ip_frame(packet) for packet in ipv4_fragments(A, B, 17, udp_bytes(5, 443) + b"x" * 40, ident=9)]
    assert not passes(rules, pad(fragments[0]))
    assert passes(rules, pad(fragments[1]))


def udp_bytes(source_port, destination_port):
    return bytes.fromhex(f"{source_port:04x}{destination_port:04x}0010 0000".replace(" ", "")) + b"\0" * 8


def test_allow_wins_over_drop_and_counts_what_it_saved():
    rules = FilterRules()
    drop = rules.drop({"dst": "10.0.0.0/24"})
    allow = rules.allow({"src": C, "dport": 22, "proto": "tcp"})
    frames = [pad(tcp_frame(C, A, 999, 22)), pad(tcp_frame(C, A, 999, 23)), pad(tcp_frame(C, "10.9.9.9", 999, 22))]
    outputs, filtered, stats = run(rules, frames, rounds=4)
    assert outputs == [8] and filtered == 4
    assert (stats.rule_dropped, stats.rule_allowed, stats.passed) == (4, 4, 8)
    listing = {rule["id"]: rule for rule in rules.rules()}
    assert (listing[drop]["hits"], listing[allow]["hits"]) == (4, 4)
    assert listing[drop]["bytes"] == 4 * len(frames[1])


def test_counters_survive_republishing_and_reset_on_slot_reuse():
    rules = FilterRules()
    first = rules.drop({"src": A})
    run(rules, [pad(tcp_frame(A, B, 1, 2))], rounds=7)
    second = rules.drop({"src": B})
    assert rules.rules()[0]["hits"] == 7
    rules.remove(first)
    third = rules.drop({"src": C})
    assert {rule["id"]: rule["hits"] for rule in rules.rules()} == {second: 0, third: 0}


def test_timeout_expires_without_any_control_call():
    rules = FilterRules()
    rules.drop({"src": A, "timeout": 0.3})
    listing = rules.rules()
    assert 0 < listing[0]["time_left"] <= 0.3
    frame = pad(tcp_frame(A, B, 1, 2))
    assert not passes(rules, frame)
    time.sleep(0.4)
    assert passes(rules, frame)
    assert rules.rules() == []


@pytest.mark.parametrize("fields, message", [
    ({"src": "10.0.0.0/33"}, "not an address or CIDR"),
    ({"src": "10.0.0.1/8"}, "host bits set"),
    ({"dst": "10.0.0"}, "not an address or CIDR"),
    ({"sport": 70000, "proto": "tcp"}, "port number from 1 to 65535"),
    ({"dport": 0}, "port number from 1 to 65535"),
    ({"dport": 8.5}, "port number"),
    ({"proto": "gre-ish"}, "unknown protocol"),
    ({"proto": 300}, "0 to 255"),
    ({"source": A}, "unknown field 'source'"),
    ({"src": A, "dst": V6A}, "IPv4 but dst is IPv6"),
    ({"dport": 80, "proto": "icmp"}, "ports need proto"),
    ({"src": A, "timeout": -1}, "timeout"),
    ({"src": A, "bidirectional": "yes"}, "bidirectional"),
    ({}, "needs at least one"),
])
def test_bad_rule_is_one_line_and_changes_nothing(fields, message):
    rules = FilterRules()
    kept = rules.drop({"src": C})
    publications = rules.publications()
    with pytest.raises(BricksError) as caught:
        rules.drop(fields)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert [rule["id"] for rule in rules.rules()] == [kept]
    assert rules.publications() == publications


def test_remove_unknown_id_is_an_error():
    rules = FilterRules()
    with pytest.raises(BricksError, match="no rule 5"):
        rules.remove(5)


def test_save_load_round_trip_keeps_fields_and_expiry(tmp_path):
    rules = FilterRules()
    rules.drop({"src": "10.0.0.0/8", "dport": 53, "proto": "udp", "bidirectional": False})
    rules.allow({"dst": "2001:db8::/32", "timeout": 100})
    rules.drop({"src": A, "timeout": 0.05})
    time.sleep(0.1)
    path = tmp_path / "rules.jsonl"
    assert rules.save(str(path)) == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"action": "drop", "src": "10.0.0.0/8", "dport": 53, "proto": "udp", "bidirectional": False}
    assert abs(lines[1]["expires_at"] - (time.time() + 100)) < 2
    again = FilterRules()
    assert len(again.load(str(path))) == 2
    assert [{k: v for k, v in rule.items() if k not in ("id", "time_left")} for rule in again.rules()] == \
        [{k: v for k, v in rule.items() if k not in ("id", "time_left")} for rule in rules.rules()]


def test_load_bad_line_names_it_and_adds_nothing(tmp_path):
    path = tmp_path / "rules.jsonl"
    path.write_text('{"action": "drop", "src": "10.0.0.1"}\n{"action": "drop", "sport": 99999}\n')
    rules = FilterRules()
    with pytest.raises(BricksError, match=r"rules.jsonl:2: sport"):
        rules.load(str(path))
    assert rules.rules() == []


def test_retrieve_by_first_output_and_daemon_rule_file(tmp_path):
    brick = Brick("Filter")
    brick.connect_input("unit0}1").connect_output("unit0f{4", "unit0r{0")
    assert retrieve("unit0f{4") is brick and retrieve("netmap:unit0f{4") is brick
    assert retrieve("unit0r{0") is None
    brick.drop({"src": A})
    path = str(tmp_path / "all.jsonl")
    assert save_all(path) >= 1
    brick.clear()
    assert load_rule_file(path) >= 1
    assert [rule["src"] for rule in brick.rules()] == [A]


def test_many_rules_while_traffic_flows_counters_exact():
    """Rules published one by one while the engine runs: packets no rule drops are never lost."""
    rules = FilterRules()
    kept, dropped = pad(tcp_frame(A, B, 1000, 80)), pad(tcp_frame(C, B, 1000, 80))
    with Graph(batch=64) as graph:
        brick = graph.brick("Filter")
        rules.attach(brick)
        graph.null_sinks(brick, 1)
        graph.source(memory_source([kept, dropped], rounds=1 << 40), brick)
        graph.start()
        try:
            for index in range(2000):
                rules.drop({"src": f"172.16.{index // 256}.{index % 256}"})
            rules.drop({"src": C})
            time.sleep(0.05)
        finally:
            graph.stop()
        (passed,) = output_packets(brick, 1)
        counted, stats = brick_stats(brick), filter_stats(brick)
        received, filtered = counted.received_packets, counted.filtered
        assert stats.rule_dropped > 0
        assert passed == received - stats.rule_dropped == stats.passed
        assert passed >= received // 2           # every frame from A, whatever was published when
        assert stats.rule_dropped == filtered == rules.rules()[-1]["hits"]
        assert len(rules.rules()) == 2001


@pytest.mark.parametrize("fillers", [0, 2700])
def test_random_rules_agree_with_a_plain_python_model(fillers):
    """Many shapes (prefixes on either side, ports, protocols, one-way rules): verdicts equal the model's.
    With fillers: as many more rules in 198.18.0.0/15, which no test address is in, so that the set has
    thousands of keys and its prefix guard the full 16 bits (a few hundred keys get a smaller one)."""
    import ipaddress
    import random
    rng = random.Random(11)
    bases = ["10.1.0.0", "10.2.128.0", "192.168.0.0", "172.20.5.0"]

    def address():
        base = int(ipaddress.IPv4Address(rng.choice(bases)))
        return str(ipaddress.IPv4Address(base + rng.randrange(1 << 10)))

    requests = []
    for _ in range(300):
        fields = {}
        for side in ("src", "dst"):
            if rng.random() < 0.5:
                length = rng.choice([8, 12, 16, 20, 22, 23, 24, 26, 28, 30, 32])
                fields[side] = str(ipaddress.ip_network(f"{address()}/{length}", strict=False))
        if rng.random() < 0.3:
            fields["proto"] = rng.choice(["tcp", "udp"])
            if rng.random() < 0.5:
                fields["dport"] = rng.choice([53, 80, 443])
        if not fields:
            fields["src"] = address()
        fields["bidirectional"] = rng.random() < 0.7
        if rng.random() < 0.1:    # narrow exceptions, or nothing would be dropped
            fields = {"src": str(ipaddress.ip_network(f"{address()}/{rng.choice([26, 28, 32])}", strict=False))}
            requests.append(("allow", fields | {"bidirectional": True}))
        else:
            requests.append(("drop", fields))
    rules = FilterRules()
    rules.add(requests)
    if fillers:
        rules.add([("drop", {("src", "dst")[index % 2]:
                             str(ipaddress.ip_network(f"198.18.{index % 256}.{index % 7}/{16 + index % 17}",
                                                      strict=False))})
                   for index in range(fillers)])

    def one_way(fields, src, dst, sport, dport, proto):
        return all([
            "src" not in fields or ipaddress.ip_address(src) in ipaddress.ip_network(fields["src"]),
            "dst" not in fields or ipaddress.ip_address(dst) in ipaddress.ip_network(fields["dst"]),
            "proto" not in fields or {"tcp": 6, "udp": 17}[fields["proto"]] == proto,
            "dport" not in fields or fields["dport"] == dport])

    def matches(fields, packet):
        src, dst, sport, dport, proto = packet
        return one_way(fields, *packet) or (fields["bidirectional"] and one_way(fields, dst, src, dport, sport, proto))

    packets, expected = [], []
    for _ in range(400):
        packet = (address(), address(), rng.randrange(1, 65536), rng.choice([53, 80, 443, 8080]), rng.choice([6, 17]))
        if rng.random() < 0.5:
            packet = (packet[1], packet[0], packet[3], packet[2], packet[4])
        dropped = any(matches(f, packet) for a, f in requests if a == "drop") and \
            not any(matches(f, packet) for a, f in requests if a == "allow")
        packets.append(packet)
        expected.append(not dropped)
    builder = {6: tcp_frame, 17: udp_frame}
    verdicts = [passes(rules, pad(builder[proto](src, dst, sport, dport))) for src, dst, sport, dport, proto in packets]
    assert 50 < sum(expected) < 350           # both verdicts well represented
    assert verdicts == expected


def test_retrieve_binds_a_name_to_the_newest_filter():
    older = Brick("Filter").connect_input("eth9").connect_output("eth9{7")
    newer = Brick("Filter").connect_input("eth9").connect_output("eth9{7")
    assert retrieve("eth9{7") is newer
    del newer
    assert retrieve("eth9{7") is older


MOBILITY = 135   # an IPv6 extension header the Filter's own parser used to stop at


@pytest.mark.parametrize("frame", [
    tcp_frame(A, B, 1234, 80, vlans=[(ETHERTYPE_VLAN, 1), (ETHERTYPE_VLAN, 2), (ETHERTYPE_VLAN, 3),
                                     (ETHERTYPE_VLAN, 4)]),
    ip_frame(ipv6(V6A, V6B, 6, tcp(1234, 80), extensions=[(MOBILITY, b"")])),
])
def test_rules_see_the_five_tuple_the_flow_hash_sees(frame):
    """One dissector (dissect.h) for the flow hash and the Filter: four VLAN tags and every IPv6 extension
    header the hash skips, the Filter's rules skip too, and find the ports behind them."""
    keys = ffi.new("struct brk_flow_keys *")
    lib.brk_dissect_frame(frame, len(frame), 0, keys)
    assert (keys.flow.source_port, keys.flow.destination_port) == (1234, 80)
    rules = FilterRules()
    rules.drop({"dport": 80, "proto": "tcp"})
    assert not passes(rules, pad(frame))
    other = FilterRules()
    other.drop({"dport": 81, "proto": "tcp"})
    assert passes(other, pad(frame))
