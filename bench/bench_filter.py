"""Filter benchmark: memory source -> Filter -> null sink in the C engine, side by side with a plain Dummy brick.

Run: .venv/bin/python bench/bench_filter.py [--seconds 2] [--cpu 1] [--flows 1024]
Cases: no rule, one expression, 100,000 exact 5-tuple rules (half of the
traffic's flows among them: shunted) and 10,000 prefix rules of lengths /8 to
/32. Prints Mpps, ns/packet and the ratio to Dummy; the target is at least 70%
of the Dummy rate with 100,000 rules.
"""
import argparse
import ipaddress
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bricks._ffi import ffi, lib  # noqa: E402
from bricks.filter import FilterRules  # noqa: E402
from bricks.frames import pad, random_flows, tcp_frame  # noqa: E402

TARGET_RATIO = 0.70


def engine_run(kind_name, rules, frames, batch, cpu):
    """A function of rounds: runs the engine once over the frames; returns (delivered, filtered)."""
    error = ffi.new("char[256]")
    kind = lib.brk_brick_kind_find(kind_name.encode())
    config = ffi.new("struct brk_brick_config *")
    lengths = ffi.new("uint32_t[]", [len(frame) for frame in frames])
    data = b"".join(frames)

    def run(rounds):
        engine = lib.brk_engine_new(batch, cpu)
        source = lib.brk_source_memory_new(data, lengths, len(frames), rounds)
        brick = lib.brk_brick_new(kind, config, error, len(error))
        sink = lib.brk_sink_null_new()
        assert engine != ffi.NULL and source != ffi.NULL and brick != ffi.NULL, ffi.string(error)
        try:
            if rules is not None:
                rules.attach(brick)
            assert lib.brk_brick_add_sink(brick, sink) == 0
            assert lib.brk_engine_add_source(engine, source, brick) == 0
            assert lib.brk_engine_run(engine) == 0
            counters = ffi.new("struct brk_counters *")
            lib.brk_brick_output_stats(brick, 0, counters)
            stats = ffi.new("struct brk_brick_stats *")
            lib.brk_brick_stats(brick, stats)
            return counters.packets, stats.filtered
        finally:
            lib.brk_engine_free(engine)
            lib.brk_source_close(source)
            lib.brk_brick_free(brick)
            lib.brk_sink_close(sink)
    return run


def measure(function, packets_per_round, seconds):
    """(Mpps, delivered share) of a run of about seconds (calibrated on a short one)."""
    rounds = max(1, 200_000 // packets_per_round)
    start = time.perf_counter()
    function(rounds)
    elapsed = time.perf_counter() - start
    rounds = max(1, int(rounds * seconds / max(elapsed, 1e-6)))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        delivered, filtered = function(rounds)
        elapsed = time.perf_counter() - start
        assert delivered + filtered == rounds * packets_per_round
        best = max(best, rounds * packets_per_round / elapsed / 1e6)
    return best, delivered / (rounds * packets_per_round)


def exact_rules(flows, count, rng):
    """count 5-tuple drop rules: every second traffic flow, the rest random flows."""
    shunted = flows[::2]
    requests = [("drop", {"src": s, "dst": d, "sport": sp, "dport": dp, "proto": "tcp"})
                for s, d, sp, dp in shunted]
    for s, d, sp, dp in random_flows(rng, count - len(requests)):
        requests.append(("drop", {"src": s, "dst": d, "sport": sp, "dport": dp, "proto": "tcp"}))
    return requests


def prefix_rules(count, rng):
    """count drop rules on random source prefixes of lengths /8 to /32."""
    requests, seen = [], set()
    while len(requests) < count:
        length = rng.randint(8, 32)
        network = ipaddress.ip_network((rng.getrandbits(32) >> (32 - length) << (32 - length), length))
        if network not in seen:
            seen.add(network)
            requests.append(("drop", {"src": str(network)}))
    return requests


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--cpu", type=int, default=min(1, os.cpu_count() - 1))
    parser.add_argument("--flows", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})

    rng = random.Random(7)
    flows = random_flows(rng, args.flows)
    frames = [pad(tcp_frame(*flow), 64) for flow in flows]
    print(f"{len(frames)} flows, 64-byte IPv4 TCP frames, batch {args.batch}, CPU {args.cpu}")

    cases = [("Dummy", "Dummy", None)]
    cases.append(("Filter, no rule", "Filter", FilterRules()))
    cases.append(("Filter, expression 'tcp and ip'", "Filter", FilterRules("tcp and ip")))
    exact = FilterRules()
    start = time.perf_counter()
    exact.add(exact_rules(flows, 100_000, rng))
    exact_build = time.perf_counter() - start
    cases.append(("Filter, 100,000 exact rules", "Filter", exact))
    prefixes = FilterRules()
    start = time.perf_counter()
    prefixes.add(prefix_rules(10_000, rng))
    prefix_build = time.perf_counter() - start
    cases.append(("Filter, 10,000 prefix rules /8-/32", "Filter", prefixes))
    print(f"rule tables built in {exact_build:.2f} s (100,000 exact) and {prefix_build:.2f} s (10,000 prefixes), "
          "Python validation included")

    # The Dummy rate is measured again beside every case: on a shared machine
    # the ratio of two neighbouring runs is steadier than either rate.
    dummy = engine_run("Dummy", None, frames, args.batch, args.cpu)
    ratios = {}
    for label, kind, rules in cases[1:]:
        dummy_mpps, _ = measure(dummy, len(frames), args.seconds)
        mpps, delivered = measure(engine_run(kind, rules, frames, args.batch, args.cpu), len(frames), args.seconds)
        ratios[label] = mpps / dummy_mpps
        print(f"{label:<38} {mpps:8.2f} Mpps {1e3 / mpps:7.2f} ns/packet  {ratios[label]:6.0%} of Dummy "
              f"({dummy_mpps:.2f} Mpps)  {delivered:6.1%} delivered")
    ratio = ratios["Filter, 100,000 exact rules"]
    verdict = "meets" if ratio >= TARGET_RATIO else "is BELOW"
    print(f"100,000 rules: {ratio:.0%} of the Dummy rate, {verdict} the {TARGET_RATIO:.0%} target")


if __name__ == "__main__":
    main()
