"""The XDP back-end's pure parts: which trees its probe accepts and why it refuses the others (one line, what
print_status shows), the XdpTree it makes from a plan (Merge as Dummy, the plan's depths and splits), and
select() putting xdp before packet in the kernel family. Nothing is opened: plans name interfaces only."""
import pytest

from bricks import backends, graph
from bricks.backends import xdp as xdp_backend
from bricks.engine import Brick


def plan(root, qid=-1):
    return graph.plan(root, 1024, qid)


def balancer(outputs=4, split=4):
    return Brick("LoadBalancer", split).connect_input("eth9").connect_outputs("eth9", outputs)


@pytest.fixture
def kernel_allows(monkeypatch):
    monkeypatch.setattr(xdp_backend, "kernel_reason", lambda: None)
    backends.set_backend("xdp")
    yield
    backends.set_backend("packet")


def test_trees_of_the_programs_kinds_with_interfaces_and_pipes_run_in_xdp():
    assert xdp_backend.tree_reason(plan(balancer())) is None
    assert xdp_backend.tree_reason(plan(Brick("Duplicator").connect_input("eth9").connect_outputs("eth9", 3)
                                        .connect_output("eth8"))) is None
    assert xdp_backend.tree_reason(plan(Brick("Merge").connect_input("eth9", "eth8").connect_output("eth9{0"))) \
        is None


@pytest.mark.parametrize("make, reason", [
    (lambda: Brick("PcapWriter").connect_input("eth9").connect_output("all.pcap"),
     "PcapWriter cannot run in XDP"),
    (lambda: Brick("Filter", "tcp").connect_input("eth9").connect_output("eth9{0"),
     "a Filter with a tcpdump expression (XDP runs a Filter's rules, not libpcap's BPF)"),
    (lambda: Brick("LoadBalancer", 4).connect_input("eth9").connect_output("eth9{0", "out.pcap"),
     "output out.pcap (a pcap path) cannot be written from XDP"),
    (lambda: Brick("Dummy").connect_input("eth9}3").connect_output("eth9{0"),
     "input eth9}3: XDP reads interfaces only"),
    (lambda: Brick("LoadBalancer", 4, {"tunnels": "inner"}).connect_input("eth9").connect_outputs("eth9", 2),
     'LoadBalancer with tunnels = "inner" needs the C engine\'s tunnel walk'),
    (lambda: Brick("Strip").connect_input("eth9").connect_output("eth9{0"),
     "a Strip brick needs the C engine's tunnel walk"),
    (lambda: Brick("Dummy").connect_input("eth9").connect_output("vxlan:10.0.0.2/42"),
     "output vxlan:10.0.0.2/42 (a tunnel) cannot be written from XDP"),
])
def test_other_trees_are_refused_in_one_line(make, reason):
    assert xdp_backend.tree_reason(plan(make())) == reason


def test_the_programs_limits_are_checked_before_anything_loads():
    assert xdp_backend.tree_reason(plan(balancer(), qid=1)) == "qid 1: XDP reads every queue of the input"
    root = Brick("Dummy").connect_input("eth9").connect_output("eth9{0")
    parent = root
    for level in range(1, 9):
        child = Brick("Dummy").connect_input(f"eth9}}{level - 1}").connect_output(f"eth9{{{level}")
        parent.link(child)
        parent = child
    assert xdp_backend.tree_reason(plan(root)) == "a chain of more than 8 bricks"
    duplicator = Brick("Duplicator").connect_input("eth9").connect_output("eth9{0", "eth9{1")
    duplicator.link(Brick("Dummy").connect_input("eth9}0").connect_output("eth9{2"))
    assert xdp_backend.tree_reason(plan(duplicator)) == \
        "a Duplicator feeding another brick (XDP broadcasts to interfaces only)"


def test_the_program_tree_has_the_plans_kinds_depths_and_splits():
    root = Brick("Merge").connect_input("eth9", "eth8").connect_output("eth9{0")
    first = Brick("LoadBalancer", 2).connect_input("eth9}0").connect_output("eth9{1")
    second = Brick("LoadBalancer", 4).connect_input("eth9}1").connect_output("eth9{2", "eth9{3")
    first.link(second)
    root.link(first)
    tree = xdp_backend.xdp_tree(plan(root))
    assert (tree.kind, tree.outputs[0].kind, tree.outputs[0].split) == ("Dummy", "LoadBalancer", 2)
    leaf = tree.outputs[0].outputs[0]
    # A LoadBalancer with one output does not spread: the next one keeps the hash level, as in the C engine.
    assert (tree.outputs[0].depth, leaf.kind, leaf.split, leaf.depth, leaf.outputs) == \
        (0, "LoadBalancer", 4, 0, ["eth9{2", "eth9{3"])


def test_select_puts_xdp_before_packet_and_keeps_why_packet_runs_a_tree(kernel_allows):
    assert backends.select(plan(balancer())).backend.name == "xdp"
    writer = Brick("PcapWriter").connect_input("eth9").connect_output("all.pcap")
    context = backends.select(plan(writer))
    assert (context.backend.name, context.reasons) == ("packet", {"xdp": "PcapWriter cannot run in XDP"})
