"""The C core's choice of output: exactly hash % outputs for every output count (no division trick may drift)."""
import pytest

from bricks import frames
from bricks._native import ffi, lib
from tests.native import Graph, brick_stats, memory_source, new_brick, output_packets

BALANCER = {"split": 4, "depth": 0, "frag_slots": 0}


@pytest.mark.parametrize("outputs", [1, 2, 3, 5, 7, 13, 63, 64])
def test_output_is_hash_modulo_outputs(outputs):
    frame_list = frames.random_tcp_frames(3000, seed=outputs)
    expected = [0] * outputs
    flags = ffi.new("uint32_t *")
    for frame in frame_list:
        expected[lib.brk_flow_hash(frame, len(frame), 4, 0, ffi.NULL, flags) % outputs] += 1
    with Graph(batch=64) as graph:
        balancer = graph.brick("LoadBalancer", **BALANCER)
        graph.null_sinks(balancer, outputs)
        graph.source(memory_source(frame_list), balancer)
        graph.run()
        assert output_packets(balancer, outputs) == expected


def test_too_many_outputs_are_refused():
    brick = new_brick("LoadBalancer", **BALANCER)
    sinks = [lib.brk_sink_null_new() for _ in range(65)]
    results = [lib.brk_brick_add_sink(brick, sink) for sink in sinks]
    assert results == [0] * 64 + [-1]
    lib.brk_brick_free(brick)
    for sink in sinks:
        lib.brk_sink_close(sink)


def test_counters_are_published_while_running():
    """Counters are published while the engine runs (not only at stop) and never go backwards."""
    frame_list = frames.random_tcp_frames(512, seed=3)
    with Graph() as graph:
        balancer = graph.brick("LoadBalancer", **BALANCER)
        graph.null_sinks(balancer, 3)
        graph.source(memory_source(frame_list, rounds=20000), balancer)
        graph.start()
        reads, previous = 0, 0
        try:
            while graph.thread.is_alive() and reads < 20000:
                received = brick_stats(balancer).received_packets
                assert received >= previous
                previous = received
                reads += 1
        finally:
            graph.stop()
        assert reads > 100 and previous > 0
        assert sum(output_packets(balancer, 3)) == brick_stats(balancer).received_packets
