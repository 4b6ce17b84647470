"""The C core's choice of output: exactly hash % outputs for every output count (no division trick may drift)."""

import pytest

from bricks import frames
from bricks._native import ffi, lib


def run_balancer(frame_list, outputs):
    blob = b"".join(frame_list)
    lengths = ffi.new("uint32_t[]", [len(frame) for frame in frame_list])
    source = lib.brk_source_memory_new(blob, lengths, len(frame_list), 1)
    config = ffi.new("struct brk_brick_config *", {"split": 4, "depth": 0, "frag_slots": 0})
    error = ffi.new("char[]", 256)
    brick = lib.brk_brick_new(lib.brk_brick_kind_find(b"LoadBalancer"), config, error, len(error))
    sinks = [lib.brk_sink_null_new() for _ in range(outputs)]
    for sink in sinks:
        assert lib.brk_brick_add_sink(brick, sink) == 0
    engine = lib.brk_engine_new(64, -1)
    lib.brk_engine_add_source(engine, source, brick)
    assert lib.brk_engine_run(engine) == 0
    counters = ffi.new("struct brk_counters *")
    counts = []
    for index in range(outputs):
        lib.brk_brick_output_stats(brick, index, counters)
        counts.append(counters.packets)
    lib.brk_engine_free(engine)
    lib.brk_brick_free(brick)
    for sink in sinks:
        lib.brk_sink_close(sink)
    lib.brk_source_close(source)
    return counts


@pytest.mark.parametrize("outputs", [1, 2, 3, 5, 7, 13, 63, 64])
def test_output_is_hash_modulo_outputs(outputs):
    frame_list = frames.random_tcp_frames(3000, seed=outputs)
    expected = [0] * outputs
    flags = ffi.new("uint32_t *")
    for frame in frame_list:
        expected[lib.brk_flow_hash(frame, len(frame), 4, 0, ffi.NULL, flags) % outputs] += 1
    assert run_balancer(frame_list, outputs) == expected


def test_too_many_outputs_are_refused():
    config = ffi.new("struct brk_brick_config *", {"split": 4, "depth": 0, "frag_slots": 0})
    error = ffi.new("char[]", 256)
    brick = lib.brk_brick_new(lib.brk_brick_kind_find(b"LoadBalancer"), config, error, len(error))
    sinks = [lib.brk_sink_null_new() for _ in range(65)]
    results = [lib.brk_brick_add_sink(brick, sink) for sink in sinks]
    assert results == [0] * 64 + [-1]
    lib.brk_brick_free(brick)
    for sink in sinks:
        lib.brk_sink_close(sink)


def test_counters_are_published_while_running():
    """Counters are published while the engine runs (not only at stop) and never go backwards."""
    import threading

    frame_list = frames.random_tcp_frames(512, seed=3)
    blob = b"".join(frame_list)
    lengths = ffi.new("uint32_t[]", [len(frame) for frame in frame_list])
    source = lib.brk_source_memory_new(blob, lengths, len(frame_list), 20000)
    config = ffi.new("struct brk_brick_config *", {"split": 4, "depth": 0, "frag_slots": 0})
    error = ffi.new("char[]", 256)
    brick = lib.brk_brick_new(lib.brk_brick_kind_find(b"LoadBalancer"), config, error, len(error))
    sinks = [lib.brk_sink_null_new() for _ in range(3)]
    for sink in sinks:
        lib.brk_brick_add_sink(brick, sink)
    engine = lib.brk_engine_new(256, -1)
    lib.brk_engine_add_source(engine, source, brick)
    thread = threading.Thread(target=lib.brk_engine_run, args=(engine,))
    thread.start()
    stats = ffi.new("struct brk_brick_stats *")
    counters = ffi.new("struct brk_counters *")
    reads, previous = 0, 0
    try:
        while thread.is_alive() and reads < 20000:
            lib.brk_brick_stats(brick, stats)
            received = stats.received_packets
            assert received >= previous
            previous = received
            reads += 1
    finally:
        lib.brk_engine_stop(engine)
        thread.join(30)
    assert reads > 100 and previous > 0
    lib.brk_brick_stats(brick, stats)
    total = 0
    for index in range(3):
        lib.brk_brick_output_stats(brick, index, counters)
        total += counters.packets
    assert total == stats.received_packets
    lib.brk_engine_free(engine)
    lib.brk_brick_free(brick)
    for sink in sinks:
        lib.brk_sink_close(sink)
    lib.brk_source_close(source)
