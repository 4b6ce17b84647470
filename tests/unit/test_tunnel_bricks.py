"""Issue 12 items 2 and 3 through the engine, on pcap files (no kernel object): inner-flow balancing
(`Brick("LoadBalancer", 4, {"tunnels": "inner"})`) and the Strip brick.

Frames are made by scapy. Balancing: 1000 inner TCP connections, each seen in both directions, each
direction carried by a different tunnel kind and outer endpoints (VXLAN, GENEVE, ERSPAN II, GTP-U): every
connection must leave by one output, and two outputs share the connections 50 +/- 5%. Strip: what leaves
is exactly the inner frame scapy put inside, byte for byte (or the inner IP packet behind the outer frame's
addresses, when the tunnel carries bare IP), and every frame is counted once as stripped, unchanged or cut.
"""
import random

import pytest
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header
from scapy.contrib.mpls import MPLS, EoMCW
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from bricks import catalog
from bricks._native import lib
from bricks.engine import Brick, PktEngine, shutdown_all
from bricks.errors import BricksError
from bricks.frames import read_pcap, write_pcap

OUTER_MACS = {"dst": "02:00:00:00:00:01", "src": "02:00:00:00:00:02"}
INNER_MACS = {"dst": "02:00:00:00:aa:01", "src": "02:00:00:00:aa:02"}


def outer(index, inner, kind):
    """inner (an Ether frame, or an IP packet for GTP-U) in tunnel `kind` between outer hosts of `index`."""
    addresses = Ether(**OUTER_MACS) / IP(src=f"192.0.2.{index % 250 + 1}", dst=f"198.51.100.{index % 7 + 1}")
    if kind == "vxlan":
        return addresses / UDP(sport=40000 + index % 1000, dport=4789) / VXLAN(vni=42) / inner
    if kind == "geneve":
        return addresses / UDP(sport=50000 + index % 1000, dport=6081) / GENEVE(vni=7, proto=0x6558) / inner
    if kind == "erspan":
        return addresses / GRE(seqnum_present=1, sequence_number=index, proto=0x88be) / ERSPAN_II(session_id=5) / inner
    if kind == "gtp":
        return addresses / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=index) / inner[IP]
    raise ValueError(kind)


def run(root, *bricks):
    engine = PktEngine.new("tunnelbricks")
    try:
        engine.link(root)
        engine.start()
        assert engine.wait(20)
        return {id(brick): brick.stats() for brick in bricks}, engine.stats()
    finally:
        shutdown_all()


def pcap_frames(path):
    return [data for _, _, _, data in read_pcap(path.read_bytes()).records]


# --- inner-flow balancing --------------------------------------------------------------------------------

KINDS = ("vxlan", "geneve", "erspan", "gtp")


def inner_connections(count, seed=12):
    rng = random.Random(seed)
    return [(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
             f"172.16.{rng.randrange(256)}.{rng.randrange(1, 255)}", rng.randrange(1024, 65536), rng.choice((80, 443)))
            for _ in range(count)]


def balanced(tmp_path, outputs, options, frames):
    write_pcap(tmp_path / "in.pcap", frames)
    reader = Brick("PcapReader").connect_input(str(tmp_path / "in.pcap")).connect_output("tun{0")
    balancer = Brick("LoadBalancer", 4, options).connect_input("tun}0")
    balancer.connect_output(*[str(tmp_path / f"out{n}.pcap") for n in range(outputs)])
    reader.link(balancer)
    counters, _ = run(reader, balancer)
    return [pcap_frames(tmp_path / f"out{n}.pcap") for n in range(outputs)], counters[id(balancer)]


def tunnelled_conversations(count):
    """Both directions of each connection, each direction in another tunnel kind from other outer hosts."""
    frames, owner = [], {}
    for number, (client, server, port, service) in enumerate(inner_connections(count)):
        request = Ether(**INNER_MACS) / IP(src=client, dst=server) / TCP(sport=port, dport=service)
        reply = Ether(**INNER_MACS) / IP(src=server, dst=client) / TCP(sport=service, dport=port)
        for direction, packet in enumerate((request, reply)):
            frame = bytes(outer(2 * number + direction, packet, KINDS[(number + direction) % len(KINDS)]))
            frames.append(frame)
            owner[frame] = number
    return frames, owner


@pytest.mark.parametrize("outputs", [4, 2])
def test_inner_balancing_keeps_both_directions_of_every_inner_connection_on_one_output(tmp_path, outputs):
    frames, owner = tunnelled_conversations(1000)
    written, counters = balanced(tmp_path, outputs, {"tunnels": "inner"}, frames)
    assert sum(len(out) for out in written) == len(frames) == counters["received"]
    output_of = {}
    for number, out in enumerate(written):
        for frame in out:
            assert output_of.setdefault(owner[frame], number) == number   # one output per inner connection
    assert len(output_of) == 1000
    if outputs == 2:
        share = sum(1 for number in output_of.values() if number == 0) / 1000
        assert 0.45 <= share <= 0.55, share
    else:
        assert all(len(out) > 0 for out in written)
    assert counters["malformed"] == counters["fragment_fallbacks"] == 0


def test_outer_balancing_is_the_default_and_puts_each_tunnel_on_one_output(tmp_path):
    """Without the option (or with tunnels = "outer") nothing moves: one outer flow, one output."""
    frames = [bytes(Ether(**OUTER_MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=4000, dport=4789)
                    / VXLAN(vni=1)
                    / Ether(**INNER_MACS) / IP(src=f"10.0.{n}.1", dst="10.9.0.1") / TCP(sport=n + 1, dport=80))
              for n in range(200)]
    default, _ = balanced(tmp_path, 4, None, frames)
    explicit, _ = balanced(tmp_path, 4, {"tunnels": "outer"}, frames)
    assert default == explicit
    assert sorted(len(out) for out in default) == [0, 0, 0, 200]
    inner, _ = balanced(tmp_path, 4, {"tunnels": "inner"}, frames)
    assert all(len(out) > 20 for out in inner)


def test_inner_fragments_stay_together_and_are_counted(tmp_path):
    """A fragmented inner datagram: every fragment on one output (its inner address pair), counted."""
    inner = IP(src="10.1.1.1", dst="10.2.2.2", id=77) / UDP(sport=5, dport=6) / (b"x" * 200)
    from scapy.layers.inet import fragment
    frames = [bytes(Ether(**OUTER_MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=4000 + n, dport=4789)
                    / VXLAN(vni=1) / Ether(**INNER_MACS) / piece) for n, piece in enumerate(fragment(inner, 64))]
    written, counters = balanced(tmp_path, 4, {"tunnels": "inner"}, frames)
    assert sorted(len(out) for out in written) == [0, 0, 0, len(frames)]
    assert counters["fragment_fallbacks"] == len(frames)


@pytest.mark.parametrize("options, message", [
    ({"tunnels": "middle"}, "tunnels must be \"outer\" or \"inner\""),
    ({"tunnel": "inner"}, "unknown option 'tunnel'"),
    ("inner", "options must be a table"),
])
def test_bad_balancing_options_are_one_line_errors(options, message):
    with pytest.raises(BricksError, match=message):
        Brick("LoadBalancer", 4, options)
    with pytest.raises(BricksError, match="Dummy takes no options"):
        Brick("Dummy", None, {"tunnels": "inner"})


# --- Strip ---------------------------------------------------------------------------------------------

INNER_FRAME = Ether(**INNER_MACS) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80) / (b"p" * 30)
INNER_IP = INNER_FRAME[IP]
SYNTHESISED = bytes(Ether(**OUTER_MACS, type=0x0800)) + bytes(INNER_IP)
SYNTHESISED_V6 = Ether(**OUTER_MACS, type=0x86dd) / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2)
OUTER_V4 = Ether(**OUTER_MACS) / IP(src="192.0.2.1", dst="192.0.2.2")

# (name, frame, what Strip (all layers) hands on)
STRIP_CASES = [
    ("vxlan", OUTER_V4 / UDP(sport=1, dport=4789) / VXLAN(vni=9) / INNER_FRAME, bytes(INNER_FRAME)),
    ("geneve", OUTER_V4 / UDP(sport=1, dport=6081) / GENEVE(vni=9, proto=0x6558) / INNER_FRAME, bytes(INNER_FRAME)),
    ("geneve-ip", OUTER_V4 / UDP(sport=1, dport=6081) / GENEVE(vni=9, proto=0x0800) / INNER_IP, SYNTHESISED),
    ("gre-teb", OUTER_V4 / GRE(proto=0x6558, key_present=1, key=5) / INNER_FRAME, bytes(INNER_FRAME)),
    ("gre-ip", OUTER_V4 / GRE(proto=0x0800) / INNER_IP, SYNTHESISED),
    ("erspan", OUTER_V4 / GRE(seqnum_present=1, proto=0x88be) / ERSPAN_II(session_id=3) / INNER_FRAME,
     bytes(INNER_FRAME)),
    ("gtp", OUTER_V4 / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=1) / INNER_IP, SYNTHESISED),
    ("gtp-v6", OUTER_V4 / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=1) / SYNTHESISED_V6[IPv6],
     bytes(SYNTHESISED_V6)),
    ("vlan", Ether(**INNER_MACS) / Dot1Q(vlan=5) / Dot1Q(vlan=6) / INNER_IP, bytes(INNER_FRAME)),
    ("mpls", Ether(**INNER_MACS, type=0x8847) / MPLS(label=16, s=0) / MPLS(label=17, s=1) / INNER_IP,
     bytes(INNER_FRAME)),
    ("mpls-pw", Ether(**OUTER_MACS, type=0x8847) / MPLS(label=16, s=1) / EoMCW() / INNER_FRAME, bytes(INNER_FRAME)),
    ("vlan-vxlan-vlan", Ether(**OUTER_MACS) / Dot1Q(vlan=100) / IP(src="192.0.2.1", dst="192.0.2.2")
     / UDP(sport=1, dport=4789) / VXLAN(vni=1) / Ether(**INNER_MACS) / Dot1Q(vlan=7) / INNER_IP, bytes(INNER_FRAME)),
    ("plain", INNER_FRAME, bytes(INNER_FRAME)),
]


def stripped(tmp_path, frames, layers=None, outputs=1):
    write_pcap(tmp_path / "in.pcap", frames)
    reader = Brick("PcapReader").connect_input(str(tmp_path / "in.pcap")).connect_output("strip{0")
    strip = Brick("Strip", layers).connect_input("strip}0")
    strip.connect_output(*[str(tmp_path / f"out{n}.pcap") for n in range(outputs)])
    reader.link(strip)
    counters, _ = run(reader, strip)
    return [pcap_frames(tmp_path / f"out{n}.pcap") for n in range(outputs)], counters[id(strip)]


def test_strip_hands_on_exactly_the_inner_frame_of_every_encapsulation(tmp_path):
    frames = [bytes(frame) for _, frame, _ in STRIP_CASES]
    (out,), counters = stripped(tmp_path, frames)
    for (name, _, expected), got in zip(STRIP_CASES, out):
        assert got == expected, name
    synthesised = sum(1 for name, *_ in STRIP_CASES if name in ("geneve-ip", "gre-ip", "gtp", "gtp-v6"))
    assert (counters["stripped"], counters["unchanged"], counters["cut"], counters["synthesised"]) == \
        (len(frames) - 1, 1, 0, synthesised)
    assert counters["outputs"][0]["packets"] == len(frames)


def test_strip_removes_only_the_layers_named_and_counts_per_output(tmp_path):
    vxlan = bytes(STRIP_CASES[0][1])
    gtp = bytes(STRIP_CASES[6][1])
    tagged_vxlan = bytes(STRIP_CASES[11][1])
    (first, second), counters = stripped(tmp_path, [vxlan, gtp, tagged_vxlan], ["vxlan"], outputs=2)
    inner_tagged = bytes(Ether(**INNER_MACS) / Dot1Q(vlan=7) / INNER_IP)
    assert first == second == [bytes(INNER_FRAME), gtp, inner_tagged]
    assert (counters["stripped"], counters["unchanged"], counters["cut"]) == (2, 1, 0)
    assert [output["packets"] for output in counters["outputs"]] == [3, 3]


def test_a_cut_inner_frame_passes_unchanged_and_is_counted(tmp_path):
    vxlan = bytes(STRIP_CASES[0][1])
    cut = vxlan[:14 + 20 + 8 + 8 + 10]      # the inner Ethernet header ends past the capture
    (out,), counters = stripped(tmp_path, [cut])
    assert out == [cut]
    assert (counters["stripped"], counters["unchanged"], counters["cut"]) == (0, 0, 1)


def test_strip_layer_bits_are_the_dissectors_layer_kinds():
    for name, bit in catalog.STRIP_LAYERS.items():
        assert bit == getattr(lib, f"BRK_LAYER_{name.upper()}")


@pytest.mark.parametrize("layers, message", [
    (["vxlan", "ipip"], "unknown layer 'ipip'"),
    ([], "takes a list of layer names"),
    (5, "takes a list of layer names"),
])
def test_bad_strip_layers_are_one_line_errors(layers, message):
    with pytest.raises(BricksError, match=message):
        Brick("Strip", layers)


# --- the shells ----------------------------------------------------------------------------------------

def test_lua_takes_the_options_table_and_strips_list_and_refuses_bad_ones_in_one_line():
    from bricks.lua import LuaRuntime
    printed = []
    runtime = LuaRuntime(output=printed.append)
    runtime.execute('lb = Brick.new("LoadBalancer", 2, {tunnels = "inner"})\n'
                    's = Brick.new("Strip", {"vxlan", "gtp"})\n'
                    'print(lb)\nprint(s)\n'
                    'print(select(2, pcall(Brick.new, "LoadBalancer", 4, {tunnels = "deep"})))\n'
                    'print(select(2, pcall(Brick.new, "Strip", {"vxlan", 3})))\n'
                    'print(select(2, pcall(Brick.new, "LoadBalancer", 4, 7)))\n')
    text = "".join(printed).splitlines()
    assert text[0].startswith("Brick LoadBalancer(2) {tunnels = inner}")
    assert text[1].startswith("Brick Strip(vxlan, gtp)")
    assert text[2] == 'Brick.new: LoadBalancer: tunnels must be "outer" or "inner", got \'deep\''
    assert text[3].startswith("Brick.new: Strip: unknown layer 3")
    assert text[4] == 'Brick.new: LoadBalancer options must be a table such as {tunnels = "inner"}, got 7'


def test_bricks_load_balance_passes_tunnels_inner_to_its_load_balancer():
    from bricks.cli import fan_out_chunk
    assert 'Brick.new("LoadBalancer", nil, {tunnels = "inner"})' in fan_out_chunk("LoadBalancer", "eth3", 4, "inner")
    assert 'Brick.new("LoadBalancer")\n' in fan_out_chunk("LoadBalancer", "eth3", 4)


def test_a_plan_names_the_bricks_that_need_the_tunnel_walk():
    from bricks.graph import plan
    plain = Brick("LoadBalancer", 4, {"tunnels": "outer"}).connect_input("eth0").connect_output("eth0{0")
    assert plan(plain, 64).tunnel_walk_reason is None
    inner = Brick("LoadBalancer", 4, {"tunnels": "inner"}).connect_input("eth0").connect_output("eth0{0")
    assert plan(inner, 64).tunnel_walk_reason == 'LoadBalancer with tunnels = "inner" needs the C engine\'s tunnel walk'
    strip = Brick("Strip").connect_input("eth0").connect_output("eth0{0")
    assert plan(strip, 64).tunnel_walk_reason == "a Strip brick needs the C engine's tunnel walk"


def test_inner_split_2_keeps_every_inner_host_pair_on_one_output(tmp_path):
    """Split 2 hashes the inner address pair: all connections between two inner hosts, any ports, together."""
    frames, pair = [], {}
    for number, (client, server, port, service) in enumerate(inner_connections(300)):
        for extra in range(3):    # three connections per host pair, in both directions
            request = Ether(**INNER_MACS) / IP(src=client, dst=server) / TCP(sport=port + extra, dport=service)
            reply = Ether(**INNER_MACS) / IP(src=server, dst=client) / TCP(sport=service, dport=port + extra)
            for direction, packet in enumerate((request, reply)):
                frame = bytes(outer(number * 6 + extra * 2 + direction, packet, KINDS[(number + extra + direction) % 4]))
                frames.append(frame)
                pair[frame] = number
    write_pcap(tmp_path / "in.pcap", frames)
    reader = Brick("PcapReader").connect_input(str(tmp_path / "in.pcap")).connect_output("tun{0")
    balancer = Brick("LoadBalancer", 2, {"tunnels": "inner"}).connect_input("tun}0")
    balancer.connect_output(*[str(tmp_path / f"out{n}.pcap") for n in range(2)])
    reader.link(balancer)
    run(reader, balancer)
    output_of = {}
    for number in range(2):
        for frame in pcap_frames(tmp_path / f"out{number}.pcap"):
            assert output_of.setdefault(pair[frame], number) == number
    assert len(output_of) == 300 and 0.4 <= sum(output_of.values()) / 300 <= 0.6


def test_netmap_leaves_a_tree_with_a_tunnel_port_to_the_packet_back_end(monkeypatch):
    from bricks.backends import netmap as netmap_backend
    from bricks.graph import plan
    monkeypatch.setattr(netmap_backend.netmap, "missing_reason", lambda: None)    # as if netmap were loaded
    monkeypatch.setattr(netmap_backend.netmap, "probe", lambda interface, qid: None)
    tree = Brick("Dummy").connect_input("eth0").connect_output("vxlan:192.0.2.7/42")
    assert netmap_backend.BACKEND.probe(plan(tree, 64)) == \
        "vxlan:192.0.2.7/42: tunnel ports are kernel devices, which the packet back-end opens"
    assert netmap_backend.BACKEND.probe(plan(Brick("Dummy").connect_input("eth0").connect_output("eth0{0"), 64)) is None
