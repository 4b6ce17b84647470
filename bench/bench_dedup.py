"""Dedup and Slice benchmark, in memory: memory source -> brick -> null sink on one pinned CPU, beside Dummy.

Run: .venv/bin/python bench/bench_dedup.py [--seconds 2] [--cpu 1] [--batch 256] [--only dedup|slice]
Dedup (1 ms window, its default table) at 0% and 50% duplicates over 1024 and
1,000,000 flows; the target is >= 15 Mpps at 1024 flows. At 0% every frame is
distinct (1024 flows x 64 sequence numbers, so that no frame comes round again
within the window); at 50% each frame is followed by its copy with a TTL one
lower and its checksum redone (a router between the taps), so half the frames
are dropped as copies. Slice: 128-byte frames cut to 64 bytes, and cut past
the TCP header, each against Dummy (target: within 10%). The memory source
has no capture times: Dedup's clock is then CLOCK_MONOTONIC, read every 64
packets. Rates are per second of the engine thread's CPU time (thread_time),
so that other work on a shared machine does not count against the brick.
"""
import argparse
import os
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import memory_engine  # noqa: E402
from bricks import catalog  # noqa: E402
from bricks._ffi import ffi, lib  # noqa: E402
from bricks.frames import checksum, pad, tcp_frame  # noqa: E402

DEDUP_TARGET_MPPS = 15.0
SLICE_TARGET_RATIO = 0.90
PACKETS_PER_FLOW = 64   # at 1024 flows: 65,536 distinct frames, ~3 ms at 20 Mpps, longer than the window


def distinct_frames(flows, per_flow, size):
    """flows x per_flow distinct TCP frames of size bytes: addresses per flow, sequence number per packet."""
    template = bytearray(pad(tcp_frame("10.0.0.1", "10.0.0.2", 1000, 80), size))
    frames = []
    for flow in range(flows):
        struct.pack_into("!II", template, 26, 0x0a000000 | flow, 0xac100000 | flow)
        for packet in range(per_flow):
            struct.pack_into("!I", template, 38, packet)
            frames.append(bytes(template))
    return frames


def router_copy(frame):
    """frame with its TTL one lower and its IPv4 checksum redone."""
    header = bytearray(frame[14:34])
    header[8] -= 1
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return frame[:14] + bytes(header) + frame[34:]


def engine_run(kind_name, config, frames, batch, cpu):
    """A function of rounds: one engine run over frames; returns (delivered, dropped by the brick on purpose)."""
    own = ffi.new(f"struct brk_{kind_name.lower()}_config *", config) if config else ffi.NULL
    removed = lib.BRK_DEDUP_DEDUPLICATED if kind_name == "Dedup" else None
    return memory_engine.engine_run(kind_name, frames, batch, cpu, config=own, removed_counter=removed)


def measure(function, packets_per_round, seconds):
    """(Mpps, share delivered): the best of 3 runs of about seconds each (calibrated on a short one).

    Timed by this thread's CPU time (the engine runs in it): on a machine shared with other work, time spent
    preempted is not the brick's. A rate per second of one core's time, as the target is stated."""
    rounds = max(1, 200_000 // packets_per_round)
    start = time.thread_time()
    function(rounds)
    elapsed = time.thread_time() - start
    rounds = max(1, int(rounds * seconds / max(elapsed, 1e-6)))
    best, share = 0.0, 0.0
    for _ in range(3):
        start = time.thread_time()
        delivered, removed = function(rounds)
        elapsed = time.thread_time() - start
        assert delivered + removed == rounds * packets_per_round
        if rounds * packets_per_round / elapsed / 1e6 > best:
            best, share = rounds * packets_per_round / elapsed / 1e6, delivered / (rounds * packets_per_round)
    return best, share


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--cpu", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--only", choices=("dedup", "slice"), help="one of the two parts")
    args = parser.parse_args()
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    if args.only != "slice":
        dedup_bench(args)
    if args.only != "dedup":
        slice_bench(args)


def dedup_bench(args):
    dedup = catalog.KINDS["Dedup"].check_argument({"window_us": 1000})
    print(f"Dedup, window 1 ms, table {dedup['table_size']} frames / {dedup['store_bytes'] >> 20} MiB, "
          f"64-byte frames, batch {args.batch}, CPU {args.cpu}")
    print("| flows | duplicates | Mpps | ns/packet | delivered | Dummy Mpps |")
    print("| --- | --- | --- | --- | --- | --- |")
    for flows, per_flow in ((1024, PACKETS_PER_FLOW), (1_000_000, 1)):
        unique = distinct_frames(flows, per_flow, 64)
        dummy, _ = measure(engine_run("Dummy", None, unique, args.batch, args.cpu), len(unique), args.seconds)
        for label, frames in (("0%", unique),
                              ("50%", [copy for frame in unique for copy in (frame, router_copy(frame))])):
            mpps, share = measure(engine_run("Dedup", dedup, frames, args.batch, args.cpu), len(frames),
                                  args.seconds)
            print(f"| {flows:,} | {label} | {mpps:.1f} | {1000 / mpps:.1f} | {share:.0%} | {dummy:.1f} |")
        del unique


def slice_bench(args):
    print(f"\nSlice, 128-byte frames, 1024 flows (target: >= {SLICE_TARGET_RATIO:.0%} of Dummy)")
    print("| case | Mpps | ns/packet | % of Dummy |")
    print("| --- | --- | --- | --- |")
    frames = distinct_frames(1024, 1, 128)
    dummy, _ = measure(engine_run("Dummy", None, frames, args.batch, args.cpu), len(frames), args.seconds)
    print(f"| Dummy | {dummy:.1f} | {1000 / dummy:.1f} | 100% |")
    for label, argument in (("Slice(64)", 64), ("Slice{payload = 8}", {"payload": 8}),
                            ("Slice{length = 64, fix_lengths = true}", {"length": 64, "fix_lengths": True})):
        config = catalog.KINDS["Slice"].check_argument(argument)
        mpps, _ = measure(engine_run("Slice", config, frames, args.batch, args.cpu), len(frames), args.seconds)
        print(f"| {label} | {mpps:.1f} | {1000 / mpps:.1f} | {mpps / dummy:.0%} |")


if __name__ == "__main__":
    main()
