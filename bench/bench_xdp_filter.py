"""The Filter's rules in the XDP program: kernel time per frame (BPF_PROG_RUN, nothing transmitted) beside a Dummy
program, and the cost of a rule change with the program loaded beside the packet back-end's alone.

Run (root): .venv/bin/python bench/bench_xdp_filter.py [--repeat 20000] [--frames 64]
Cases, on frames of 1024 TCP flows: a Dummy (the program's own cost), a Filter without rules, 100,000 exact
5-tuple rules (half of the flows among them: shunted), 10,000 prefix rules of lengths /8 to /32 on either side
(the set takes the LPM trie), and the same prefixes with an allow exception per /16. Each case prints the mean
kernel ns per run over the sample of frames and the ratio to Dummy. Then publications: f:drop{...} on a table of
10,000 exact rules, 1,000 times, with and without an XDP program holding the table.
"""
import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bricks.filter import FilterRules  # noqa: E402
from bricks.frames import pad, random_flows, tcp_frame  # noqa: E402
from bricks.xdp import XdpProgram, XdpTree  # noqa: E402

LOOPBACK = 1   # BPF_PROG_RUN transmits nothing: any interface will do


def flow_frames(count, seed=7):
    return [pad(tcp_frame(*flow)) for flow in random_flows(random.Random(seed), count)]


def exact_rules(flows, count):
    """count exact 5-tuple drops: half of them the flows' own, the rest flows nobody sends."""
    rng = random.Random(8)
    rules = [{"src": src, "dst": dst, "sport": sport, "dport": dport, "proto": "tcp"}
             for src, dst, sport, dport in flows[: len(flows) // 2]]
    while len(rules) < count:
        rules.append({"src": f"172.{16 + rng.randrange(16)}.{rng.randrange(256)}.{rng.randrange(256)}",
                      "dst": f"198.18.{rng.randrange(256)}.{rng.randrange(256)}", "sport": rng.randrange(1, 65536),
                      "dport": rng.randrange(1, 65536), "proto": "tcp"})
    return [("drop", rule) for rule in rules]


def prefix_rules(count, with_allows=False):
    rng = random.Random(9)
    rules = []
    for _ in range(count):
        length = rng.randrange(8, 33)
        address = rng.getrandbits(32) & ((1 << 32) - (1 << (32 - length)))
        side = rng.choice(["src", "dst"])
        rules.append(("drop", {side: f"{address >> 24}.{address >> 16 & 255}.{address >> 8 & 255}.{address & 255}"
                                      f"/{length}"}))
    if with_allows:
        rules += [("allow", {"src": f"{rng.randrange(1, 224)}.{rng.randrange(256)}.0.0/16"}) for _ in range(100)]
    return rules


def kernel_ns(tree, frames, repeat):
    with XdpProgram(tree) as program:
        return sum(program.time_per_run(frame, repeat) for frame in frames) / len(frames)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20000, help="runs per frame (BPF_PROG_RUN repeat)")
    parser.add_argument("--frames", type=int, default=64, help="frames of the sample (of 1024 flows)")
    arguments = parser.parse_args()
    flows = random_flows(random.Random(7), 1024)
    frames = flow_frames(1024)[:: 1024 // arguments.frames]

    cases = [("Dummy", None), ("Filter, no rule", []), ("Filter, 100,000 exact 5-tuples", exact_rules(flows, 100000)),
             ("Filter, 10,000 prefixes /8-/32", prefix_rules(10000)),
             ("Filter, 10,000 prefixes + 100 allows", prefix_rules(10000, with_allows=True))]
    baseline = None
    print(f"{'case':40} {'ns/frame':>9} {'vs Dummy':>9}")
    for name, requests in cases:
        if requests is None:
            tree = XdpTree("Dummy", [LOOPBACK])
        else:
            rules = FilterRules()
            rules.add(requests)
            tree = XdpTree("Filter", [LOOPBACK], rules=rules.table)
        nanoseconds = kernel_ns(tree, frames, arguments.repeat)
        baseline = baseline or nanoseconds
        print(f"{name:40} {nanoseconds:9.1f} {nanoseconds / baseline:9.2f}")

    print("\npublications (f:drop on a table of 10,000 exact rules, 1,000 times):")
    for loaded in (False, True):
        rules = FilterRules()
        rules.add(exact_rules(flows, 10000))
        program = XdpProgram(XdpTree("Filter", [LOOPBACK], rules=rules.table)) if loaded else None
        start = time.perf_counter()
        for index in range(1000):
            rules.drop({"src": f"10.{index >> 8}.{index & 255}.1", "dport": 1 + index, "proto": "tcp"})
        elapsed = time.perf_counter() - start
        if program:
            program.close()
        print(f"  {'with the XDP program' if loaded else 'packet back-end alone':24} {elapsed * 1000:8.3f} ms "
              f"per 1,000 = {elapsed:.3f} ms each")


if __name__ == "__main__":
    main()
