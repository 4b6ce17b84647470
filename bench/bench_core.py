"""Core benchmark: memory source -> LoadBalancer(4) -> 4 null sinks on one pinned CPU, beside the original's bit-loop hash.

Run: .venv/bin/python bench/bench_core.py [--seconds 3] [--cpu 1] [--flows 1024]
Prints Mpps and ns/packet for the engine, for the product's hash alone in a
plain C loop, and for the 96-step bit-loop hash (compiled here from
bench/bitloop_reference.c, never shipped) doing the same parse + hash + %4.
"""
import argparse
import os
import sys
import time
from pathlib import Path

from cffi_loops import compile_module

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bricks._native import ffi, lib  # noqa: E402
from bricks.frames import random_tcp_frames  # noqa: E402

OUTPUTS = 4
TARGET_MPPS = 20.0


def build_reference():
    """Compiles bench/bitloop_reference.c into a throwaway cffi module and imports it."""
    return compile_module("_bitloop_reference", """
        void bitloop_run(const uint8_t *frames, const uint32_t *lengths, unsigned count, uint64_t rounds,
                         unsigned outputs, uint64_t *per_output);
        void product_run(void *flow_hash, const uint8_t *frames, const uint32_t *lengths, unsigned count,
                         uint64_t rounds, unsigned outputs, uint64_t *per_output);
    """, (ROOT / "bench" / "bitloop_reference.c").read_text())


def pin(cpu):
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})


def timed(function, rounds):
    start = time.perf_counter()
    function(rounds)
    return time.perf_counter() - start


def calibrated(function, packets_per_round, seconds):
    """(seconds, rounds) of a run of function lasting about seconds."""
    rounds = max(1, 200_000 // packets_per_round)
    elapsed = timed(function, rounds)
    rounds = max(1, int(rounds * seconds / max(elapsed, 1e-6)))
    return timed(function, rounds), rounds


def engine_run(frames, lengths, cpu, batch, per_output):
    """A function of rounds running the engine once over the frames; fills per_output."""
    error = ffi.new("char[256]")
    kind = lib.brk_brick_kind_find(b"LoadBalancer")
    config = ffi.new("struct brk_balance_config *", {"split": 4, "depth": 0, "frag_slots": 1024})
    data = b"".join(frames)

    def run(rounds):
        engine = lib.brk_engine_new(batch, cpu)
        source = lib.brk_source_memory_new(data, lengths, len(frames), rounds)
        brick = lib.brk_brick_new(kind, config, error, len(error))
        assert engine != ffi.NULL and source != ffi.NULL and brick != ffi.NULL, ffi.string(error)
        sinks = [lib.brk_sink_null_new() for _ in range(OUTPUTS)]
        try:
            for sink in sinks:
                assert lib.brk_brick_add_sink(brick, sink) == 0
            assert lib.brk_engine_add_source(engine, source, brick) == 0
            assert lib.brk_engine_run(engine) == 0
            counters = ffi.new("struct brk_counters *")
            for output in range(OUTPUTS):
                lib.brk_brick_output_stats(brick, output, counters)
                per_output[output] = counters.packets
        finally:
            lib.brk_engine_free(engine)
            lib.brk_source_close(source)
            lib.brk_brick_free(brick)
            for sink in sinks:
                lib.brk_sink_close(sink)
    return run


def report(label, seconds, packets, baseline=None):
    mpps = packets / seconds / 1e6
    line = f"{label:<44} {mpps:8.2f} Mpps {seconds * 1e9 / packets:8.2f} ns/packet"
    if baseline:
        line += f"   x{mpps / baseline:.1f} vs bit loop"
    print(line)
    return mpps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--cpu", type=int, default=min(1, os.cpu_count() - 1))
    parser.add_argument("--flows", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()

    reference = build_reference()
    frames = random_tcp_frames(args.flows, seed=42, size=64)
    count = len(frames)
    lengths = ffi.new("uint32_t[]", [len(f) for f in frames])
    data = b"".join(frames)
    pin(args.cpu)   # the plain loops run in this thread; the engine pins itself too

    bitloop_counts = reference.ffi.new("uint64_t[]", OUTPUTS)
    product_counts = reference.ffi.new("uint64_t[]", OUTPUTS)
    engine_counts = [0] * OUTPUTS
    reference_lengths = reference.ffi.cast("uint32_t *", lengths)
    product_hash = reference.ffi.cast("void *", int(ffi.cast("uintptr_t", ffi.addressof(lib, "brk_flow_hash"))))

    def bitloop(rounds):
        reference.lib.bitloop_run(data, reference_lengths, count, rounds, OUTPUTS, bitloop_counts)

    def product_loop(rounds):
        reference.lib.product_run(product_hash, data, reference_lengths, count, rounds, OUTPUTS, product_counts)

    # One round each: the product's outputs must be the original's (depth 0, bit for bit).
    bitloop(1)
    product_loop(1)
    engine_run(frames, lengths, args.cpu, args.batch, engine_counts)(1)
    assert list(bitloop_counts) == list(product_counts) == engine_counts, (
        list(bitloop_counts), list(product_counts), engine_counts)
    print(f"{count} flows, 64-byte IPv4 TCP frames, {OUTPUTS} outputs, CPU {args.cpu}; "
          f"per-output share of one round: {engine_counts}")

    seconds, rounds = calibrated(bitloop, count, args.seconds)
    baseline = report("bit loop (96 steps) parse+hash+%4", seconds, rounds * count)
    seconds, rounds = calibrated(product_loop, count, args.seconds)
    report("product brk_flow_hash parse+hash+%4", seconds, rounds * count, baseline)
    seconds, rounds = calibrated(engine_run(frames, lengths, args.cpu, args.batch, engine_counts),
                                 count, args.seconds)
    engine_mpps = report("engine: memory -> LoadBalancer(4) -> 4 null", seconds, rounds * count, baseline)
    assert sum(engine_counts) == rounds * count
    verdict = "meets" if engine_mpps >= TARGET_MPPS else "BELOW"
    print(f"engine {verdict} the {TARGET_MPPS:.0f} Mpps single-core target")


if __name__ == "__main__":
    main()
