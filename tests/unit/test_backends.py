"""The back-end protocol: a back-end that runs only some trees drops in as one more module of a family, with the
family's last module as each tree's fallback and the refusal kept for print_status (what xdp will do)."""
import pytest

from bricks import backends, graph
from bricks.engine import Brick


class OnlyBalancers:
    """A back-end of the kernel family that runs trees of LoadBalancers only (as XDP runs only some kinds)."""

    name = "balancers"
    family = "kernel"

    def probe(self, plan):
        others = sorted({node.kind.name for node in plan.nodes} - {"LoadBalancer"})
        return f"cannot run {', '.join(others)}" if others else None


@pytest.fixture
def one_more_module(monkeypatch):
    monkeypatch.setitem(backends.MODULES, "balancers", OnlyBalancers())
    monkeypatch.setitem(backends.FAMILIES, "kernel", ["balancers", "packet"])
    monkeypatch.setattr(backends, "_chosen", "auto")
    monkeypatch.setattr(backends, "_family", "kernel")   # settled: netmap is not here


def plan_of(brick):
    return graph.plan(brick, 1024)


def test_a_tree_the_first_module_accepts_runs_there(one_more_module):
    context = backends.select(plan_of(Brick("LoadBalancer", 4).connect_input("eth9").connect_outputs("eth9", 2)))
    assert context.backend.name == "balancers" and context.reasons == {}


def test_a_tree_it_refuses_falls_back_with_the_reason(one_more_module):
    context = backends.select(plan_of(Brick("Duplicator").connect_input("eth9").connect_outputs("eth9", 2)))
    assert context.backend.name == "packet" and context.reasons == {"balancers": "cannot run Duplicator"}


def test_pcap_ports_always_open_in_the_pcap_module(one_more_module, tmp_path):
    tree = Brick("LoadBalancer", 4).connect_input("eth9").connect_output(str(tmp_path / "out.pcap"))
    context = backends.select(plan_of(tree))
    sink = plan_of(tree).sinks[0][1]
    assert backends.for_port(context, sink.port).name == "pcap"
    assert backends.for_port(context, plan_of(tree).sources[0].port).name == "balancers"


def test_a_plan_is_pure_and_ordered_as_the_engine_makes_bricks():
    leaf = Brick("Dummy").connect_input("a}1").connect_output("out{0")
    middle = Brick("LoadBalancer", 2).connect_input("a}0").connect_outputs("mid", 2)
    root = Brick("LoadBalancer", 4).connect_input("eth0").connect_output("a{0", "a{1")
    root.link(middle, leaf)
    plan = plan_of(root)
    assert [node.kind.name for node in plan.nodes] == ["LoadBalancer", "LoadBalancer", "Dummy"]
    assert [node.depth for node in plan.nodes] == [0, 1, 1]
    assert plan.edges == [(0, 0, 1), (0, 1, 2)]
    assert [(number, output.port.name) for number, output in plan.sinks] == [(1, "mid{0"), (1, "mid{1"),
                                                                            (2, "out{0")]
    assert [source.port.name for source in plan.sources] == ["eth0"] and plan.interfaces == ["eth0", "mid", "out"]   # internal edges open nothing
    assert plan.nodes[1].config == {"split": 2, "depth": 1, "frag_slots": 4096, "tunnels": 0} and plan.nodes[2].config is None
