"""Tunnel bricks benchmark: ns per frame through the C engine, in memory, of a Strip brick and of a
LoadBalancer hashing the inner flow, beside a Dummy (the engine's own cost) and today's LoadBalancer.

Run: .venv/bin/python bench/bench_tunnel_bricks.py [--frames-per-kind 1024] [--rounds 2000]
For each encapsulation (plain IPv4 TCP, VXLAN, GRE/ERSPAN II, GTP-U) of the same inner flows, a memory source
replays the frames `rounds` times into one brick whose outputs are null sinks (tests/native.py's Graph); the
time of the whole run divided by the frames is printed, and every brick's counters are checked (Strip: every
tunnelled frame stripped, plain ones unchanged). bench_dissect.py times the dissector alone.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bricks import catalog  # noqa: E402
from tests.native import Graph, brick_stats, memory_source  # noqa: E402
from tests.unit.test_tunnel_bricks import INNER_MACS, outer, inner_connections  # noqa: E402
from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402

ALL_LAYERS = sum(1 << bit for bit in catalog.STRIP_LAYERS.values())
BRICKS = {
    "Dummy": ("Dummy", {}, 1),
    "LoadBalancer(4)": ("LoadBalancer", {"split": 4, "depth": 0, "frag_slots": 4096, "tunnels": 0}, 4),
    "LoadBalancer(4) inner": ("LoadBalancer", {"split": 4, "depth": 0, "frag_slots": 4096, "tunnels": 1}, 4),
    "Strip (all)": ("Strip", {"layers": ALL_LAYERS}, 1),
}


def frames_of(kind, count):
    frames = []
    for number, (client, server, port, service) in enumerate(inner_connections(count)):
        inner = Ether(**INNER_MACS) / IP(src=client, dst=server) / TCP(sport=port, dport=service)
        frames.append(bytes(inner if kind == "plain" else outer(number, inner, kind)))
    return frames


def time_brick(kind, config, outputs, frames, rounds):
    with Graph() as graph:
        brick = graph.brick(kind, **config)
        graph.null_sinks(brick, outputs)
        graph.source(memory_source(frames, rounds), brick)
        began = time.perf_counter()
        graph.run()
        elapsed = time.perf_counter() - began
        counted = brick_stats(brick)
        assert counted.received_packets == len(frames) * rounds
        if kind == "Strip":
            assert counted.stripped + counted.unchanged == counted.received_packets and counted.cut == 0
    return elapsed * 1e9 / (len(frames) * rounds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames-per-kind", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2000)
    arguments = parser.parse_args()
    print(f"{'ns/frame':<24}" + "".join(f"{kind:>10}" for kind in ("plain", "vxlan", "erspan", "gtp")))
    frames = {kind: frames_of(kind, arguments.frames_per_kind) for kind in ("plain", "vxlan", "erspan", "gtp")}
    time_brick("Dummy", {}, 1, frames["plain"], arguments.rounds)    # warm-up: caches, frequency
    for label, (kind, config, outputs) in BRICKS.items():
        row = [time_brick(kind, config, outputs, frames[encapsulation], arguments.rounds) for encapsulation in frames]
        print(f"{label:<24}" + "".join(f"{value:>10.1f}" for value in row))


if __name__ == "__main__":
    main()
