"""Issue 12 items 2 and 3 on real veths: inner-flow balancing of VXLAN, GENEVE, ERSPAN and GTP-U traffic
over 4 pipes, and Strip's output read by tcpdump, byte for byte.

The frames are the ones tests/unit/test_tunnel_bricks.py makes with scapy (1000 inner TCP connections,
both directions, each direction in another tunnel kind from other outer hosts); here they go through a
namespace's veth into bricks, and tcpdump on every pipe's consumer end says where each one went.
"""
import pytest

from bricks.engine import Brick
from tests.e2e.test_engine_e2e import assert_accounted, run_to_pipes
from tests.unit.test_tunnel_bricks import STRIP_CASES, tunnelled_conversations

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("engines_removed")]


def run_live(testbed, brick_of, pipes, frames):
    engine, captured = run_to_pipes(testbed, brick_of(), pipes, frames, "tunnel-live")
    return engine.stats(), captured


@pytest.mark.parametrize("pipes", [4, 2])
def test_inner_balancing_keeps_every_inner_connection_on_one_pipe(testbed, pipes):
    frames, owner = tunnelled_conversations(1000)
    stats, captured = run_live(testbed, lambda: Brick("LoadBalancer", 4, {"tunnels": "inner"}), pipes, frames)
    assert sorted(frame for pipe in captured for frame in pipe) == sorted(frames)
    assert stats["packets"] == len(frames) and stats["drops"] == 0
    assert_accounted(stats)
    pipe_of = {}
    for index, pipe in enumerate(captured):
        for frame in pipe:
            assert pipe_of.setdefault(owner[frame], index) == index, "an inner connection was split over two pipes"
    per_pipe = [sum(1 for pipe in pipe_of.values() if pipe == index) for index in range(pipes)]
    if pipes == 2:
        assert all(450 <= count <= 550 for count in per_pipe), per_pipe     # 50 +/- 5%
    else:
        assert all(187 <= count <= 313 for count in per_pipe), per_pipe


def test_strip_output_read_by_tcpdump_is_the_inner_frames_byte_for_byte(testbed):
    frames = [bytes(frame) for _, frame, _ in STRIP_CASES] * 20
    expected = [inner for _, _, inner in STRIP_CASES] * 20
    stats, (captured,) = run_live(testbed, lambda: Brick("Strip"), 1, frames)
    assert captured == expected
    strip = stats["bricks"][0]
    assert (strip["stripped"], strip["unchanged"], strip["cut"]) == (len(frames) - 20, 20, 0)
    assert_accounted(stats)
