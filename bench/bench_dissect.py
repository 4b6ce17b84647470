"""Dissector benchmark: ns per frame of the tunnel walk (dissect.h) beside today's flow hash, in memory.

Run: .venv/bin/python bench/bench_dissect.py [--seconds 1] [--repeat 5] [--cpu 1] [--flows 1024]
For each encapsulation (plain IPv4 TCP, VXLAN, GRE/ERSPAN II, GTP-U) of the same inner flows, a plain C loop
(compiled here with -O3 from the dissector's own headers) times: the product's brk_flow_hash (today's hash,
split 4, depth 0, called through a pointer into the native module), the default dissection + its hash (what
the XDP program does), the tunnel walk + the innermost flow's hash (inner-flow balancing), and the same with
BRK_DISSECT_TUNNELS_ONLY (no default key). Every loop checks its hashes against the native module's before it
is timed.
"""
import argparse
import os
import random
import sys
import time
from pathlib import Path

from cffi_loops import compile_module
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.gtp import GTP_U_Header
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bricks._native import ffi, lib  # noqa: E402

CSRC = ROOT / "src" / "bricks" / "csrc"
LOOPS = r"""
#include "dissect.h"
#include "flow_hash.h"

typedef uint32_t (*flow_hash_function)(const uint8_t *, uint32_t, int, unsigned, void *, uint32_t *);

/* Each loop returns the XOR of its hashes (so nothing is optimised away) and fills hashes[] on round 0. */
uint32_t product_hash_run(void *flow_hash, const uint8_t *frames, const uint32_t *lengths, unsigned count,
                          uint64_t rounds, uint32_t *hashes)
{
    flow_hash_function hash = (flow_hash_function)flow_hash;
    uint32_t all = 0;
    for (uint64_t round = 0; round < rounds; round++) {
        const uint8_t *frame = frames;
        for (unsigned i = 0; i < count; frame += lengths[i], i++) {
            uint32_t flags;
            uint32_t value = hash(frame, lengths[i], 4, 0, NULL, &flags);
            all ^= value;
            if (round == 0)
                hashes[i] = value;
        }
    }
    return all;
}

uint32_t default_dissect_run(const uint8_t *frames, const uint32_t *lengths, unsigned count, uint64_t rounds,
                             uint32_t *hashes)
{
    uint32_t all = 0;
    struct brk_flow_keys keys;
    for (uint64_t round = 0; round < rounds; round++) {
        const uint8_t *frame = frames;
        for (unsigned i = 0; i < count; frame += lengths[i], i++) {
            brk_dissect(frame, frame + lengths[i], 0, &keys);
            uint32_t value = brk_endpoints_hash(&keys.flow, 0);
            all ^= value;
            if (round == 0)
                hashes[i] = value;
        }
    }
    return all;
}

uint32_t tunnel_dissect_run(const uint8_t *frames, const uint32_t *lengths, unsigned count, uint64_t rounds,
                            unsigned max_tunnels, unsigned options, uint32_t *hashes)
{
    uint32_t all = 0;
    struct brk_tunnel_keys keys;
    for (uint64_t round = 0; round < rounds; round++) {
        const uint8_t *frame = frames;
        for (unsigned i = 0; i < count; frame += lengths[i], i++) {
            brk_dissect_tunnels(frame, frame + lengths[i], options, max_tunnels, &keys);
            uint32_t value = brk_endpoints_hash(&keys.inner, 0);
            all ^= value;
            if (round == 0)
                hashes[i] = value;
        }
    }
    return all;
}
"""
CDEF = """
uint32_t product_hash_run(void *flow_hash, const uint8_t *frames, const uint32_t *lengths, unsigned count,
                          uint64_t rounds, uint32_t *hashes);
uint32_t default_dissect_run(const uint8_t *frames, const uint32_t *lengths, unsigned count, uint64_t rounds,
                             uint32_t *hashes);
uint32_t tunnel_dissect_run(const uint8_t *frames, const uint32_t *lengths, unsigned count, uint64_t rounds,
                            unsigned max_tunnels, unsigned options, uint32_t *hashes);
"""
MAX_TUNNELS = 4


def build_loops():
    """Compiles the loops into a throwaway cffi module and imports it."""
    return compile_module("_dissect_loops", CDEF, LOOPS, include_dirs=[str(CSRC)])


def inner_packets(count, seed=7):
    rng = random.Random(seed)
    return [IP(src=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
               dst=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
            / TCP(sport=rng.randrange(1024, 65535), dport=rng.choice([80, 443, 22])) for _ in range(count)]


OUTER = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
INNER_ETHER = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
OUTER4 = IP(src="192.0.2.1", dst="192.0.2.2")
ENCAPSULATIONS = {
    "plain IPv4 TCP": lambda inner: OUTER / inner,
    "VXLAN": lambda inner: OUTER / OUTER4 / UDP(sport=51000, dport=4789) / VXLAN(vni=42) / INNER_ETHER / inner,
    "GRE/ERSPAN II": lambda inner: OUTER / OUTER4 / GRE(seqnum_present=1, proto=0x88be) / ERSPAN_II(session_id=1)
    / INNER_ETHER / inner,
    "GTP-U": lambda inner: OUTER / OUTER4 / UDP(sport=2152, dport=2152) / GTP_U_Header(gtp_type=255) / inner,
}


def timed(function, count, seconds, repeat):
    """ns per frame of function(rounds), calibrated to last about seconds; the best of repeat runs (the
    machine is shared: the fastest run is the one least disturbed)."""
    rounds = max(1, 100_000 // count)
    start = time.perf_counter()
    function(rounds)
    elapsed = time.perf_counter() - start
    rounds = max(1, int(rounds * seconds / max(elapsed, 1e-6)))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function(rounds)
        best = min(best, time.perf_counter() - start)
    return best * 1e9 / (rounds * count)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--cpu", type=int, default=min(1, os.cpu_count() - 1))
    parser.add_argument("--flows", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})

    loops = build_loops()
    flow_hash = ffi.cast("void *", ffi.addressof(lib, "brk_flow_hash"))
    inners = inner_packets(args.flows)
    print(f"{'encapsulation':<16} {'bytes':>5} {'brk_flow_hash':>14} {'default dissect':>16} "
          f"{'tunnel walk':>12} {'walk only':>12}   (ns/frame, hash included)")
    for name, encapsulate in ENCAPSULATIONS.items():
        frames = [bytes(encapsulate(inner)) for inner in inners]
        data = loops.ffi.new("uint8_t[]", b"".join(frames))
        lengths = loops.ffi.new("uint32_t[]", [len(frame) for frame in frames])
        count = len(frames)
        product, default, tunnel = (loops.ffi.new("uint32_t[]", count) for _ in range(3))

        # The loops compute what the native module computes.
        loops.lib.product_hash_run(flow_hash, data, lengths, count, 1, product)
        loops.lib.default_dissect_run(data, lengths, count, 1, default)
        loops.lib.tunnel_dissect_run(data, lengths, count, 1, MAX_TUNNELS, 0, tunnel)
        for i, frame in enumerate(frames):
            keys = ffi.new("struct brk_tunnel_keys *")
            lib.brk_dissect_tunnels_frame(frame, len(frame), 0, MAX_TUNNELS, keys)
            assert product[i] == default[i] == lib.brk_dissect_flow_hash(ffi.addressof(keys, "keys"), 4, 0)
            assert tunnel[i] == lib.brk_dissect_inner_hash(keys, 0)
            assert keys.inner.destination_port == inners[i][TCP].dport

        row = [timed(lambda rounds: loops.lib.product_hash_run(flow_hash, data, lengths, count, rounds, product),
                     count, args.seconds, args.repeat),
               timed(lambda rounds: loops.lib.default_dissect_run(data, lengths, count, rounds, default),
                     count, args.seconds, args.repeat),
               timed(lambda rounds: loops.lib.tunnel_dissect_run(data, lengths, count, rounds, MAX_TUNNELS, 0, tunnel),
                     count, args.seconds, args.repeat),
               timed(lambda rounds: loops.lib.tunnel_dissect_run(data, lengths, count, rounds, MAX_TUNNELS,
                                                                 lib.BRK_DISSECT_TUNNELS_ONLY, tunnel),
                     count, args.seconds, args.repeat)]
        print(f"{name:<16} {len(frames[0]):>5} {row[0]:>14.1f} {row[1]:>16.1f} {row[2]:>12.1f} {row[3]:>12.1f}")


if __name__ == "__main__":
    main()
