"""One brick between a memory source and a null sink, run by the engine in this thread: the in-memory case
the brick benchmarks (bench_dedup.py, bench_filter.py) time beside Dummy."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from bricks._ffi import ffi, lib  # noqa: E402


def engine_run(kind_name, frames, batch, cpu, config=ffi.NULL, attach=None, removed_counter=None):
    """A function of rounds: one engine run over frames through a brick of kind_name (config: its config
    struct or NULL; attach(brick) before the run). Returns (delivered, the brick's removed_counter, or 0)."""
    error = ffi.new("char[256]")
    kind = lib.brk_brick_kind_find(kind_name.encode())
    lengths = ffi.new("uint32_t[]", [len(frame) for frame in frames])
    data = b"".join(frames)

    def run(rounds):
        engine = lib.brk_engine_new(batch, cpu)
        source = lib.brk_source_memory_new(data, lengths, len(frames), rounds)
        brick = lib.brk_brick_new(kind, config, error, len(error))
        sink = lib.brk_sink_null_new()
        assert engine != ffi.NULL and source != ffi.NULL and brick != ffi.NULL, ffi.string(error)
        try:
            if attach is not None:
                attach(brick)
            assert lib.brk_brick_add_sink(brick, sink) == 0
            assert lib.brk_engine_add_source(engine, source, brick) == 0
            assert lib.brk_engine_run(engine) == 0
            counters = ffi.new("struct brk_counters *")
            lib.brk_brick_output_stats(brick, 0, counters)
            stats = ffi.new("struct brk_brick_stats *")
            lib.brk_brick_stats(brick, stats)
            return counters.packets, stats.counters[removed_counter] if removed_counter is not None else 0
        finally:
            lib.brk_engine_free(engine)
            lib.brk_source_close(source)
            lib.brk_brick_free(brick)
            lib.brk_sink_close(sink)
    return run
