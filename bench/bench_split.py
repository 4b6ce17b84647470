"""Offline pcap splitting: `bricks split --balance 4` against `tcpdump -r -w` and `editcap`, on one large file.

    .venv/bin/python bench/bench_split.py [--frames 3000000] [--dir /tmp] [--rounds 3] [--keep]

Writes a classic pcap of --frames Ethernet frames of 60, 576 and 1514 bytes in
the simple IMIX proportions 7:4:1 (3,000,000 frames: 1.1 GB) over 4096 TCP flows into --dir,
reads it once so that the page cache is warm, then runs each tool --rounds
times, alternating, every run on CPU 0 only (taskset) with its output in the
same directory, removed after each run. The file is removed at the end unless --keep.

Columns: the best wall time of the rounds (and the range), user and system CPU
of that run, frames per second, and the rate against tcpdump's best. tcpdump
and editcap copy the file (no hashing); bricks also parses and hashes every
frame and writes four files. `editcap` comes with Debian's wireshark-common.
"""
import argparse
import os
import platform
import random
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT / "src"))

from bricks.frames import pad, random_flows, tcp_frame  # noqa: E402

SIZES = (60, 576, 1514)
MIX = (0,) * 7 + (1,) * 4 + (2,)     # simple IMIX: 7 small, 4 medium, 1 large frame in every 12
FLOWS = 4096
WRITE_CHUNK = 4096          # records per write() while generating
CPU = "0"


def generate(path, frames, seed=1):
    """A pcap of `frames` frames, sizes in the MIX proportions, flows drawn from FLOWS precomputed ones."""
    rng = random.Random(seed)
    templates = []
    for source, destination, source_port, destination_port in random_flows(rng, FLOWS):
        frame = tcp_frame(source, destination, source_port, destination_port)
        templates.append([pad(frame, size) for size in SIZES])
    header = struct.Struct("<IIII")
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        chunk = []
        for index in range(frames):
            data = templates[index * 7919 % FLOWS][MIX[index % len(MIX)]]
            chunk.append(header.pack(1_700_000_000 + index // 1_000_000, index % 1_000_000, len(data), len(data)))
            chunk.append(data)
            if len(chunk) >= 2 * WRITE_CHUNK:
                out.write(b"".join(chunk))
                chunk = []
        out.write(b"".join(chunk))


def warm(path):
    with open(path, "rb") as source:
        while source.read(1 << 24):
            pass


def timed(command):
    """Wall, user and system seconds of `command` (a child process), which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    result = subprocess.run(["taskset", "-c", CPU] + command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"bench_split: {' '.join(command)} failed: {result.stderr.decode().strip()}")
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def tools(input_path, directory):
    bricks = str(CHECKOUT / ".venv" / "bin" / "bricks")
    out = str(directory / "bench-split-out")
    found = {"tcpdump": ["tcpdump", "-r", input_path, "-w", out + ".pcap"],
             "editcap": ["editcap", "-F", "pcap", input_path, out + ".pcap"],
             "bricks split --balance 4": [bricks, "split", input_path, "--balance", "4", "-o", out + "-{n}.pcap"]}
    return {name: command for name, command in found.items() if shutil.which(command[0])}


def remove_outputs(directory):
    for path in directory.glob("bench-split-out*"):
        path.unlink()


def machine_facts():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    versions = []
    for command in (["tcpdump", "--version"], ["editcap", "--version"]):
        if shutil.which(command[0]):
            output = subprocess.run(command, capture_output=True, text=True).stdout.splitlines()
            versions.append(output[0] if output else command[0])
    return (f"{model}, {os.cpu_count()} CPUs, kernel {platform.release()}, Python {platform.python_version()}; "
            + "; ".join(versions) + f"; load average {os.getloadavg()[0]:.2f} at the start")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    options = parser.parse_args()
    input_path = options.dir / f"bench-split-{options.frames}.pcap"
    try:
        if not input_path.exists():
            began = time.perf_counter()
            generate(input_path, options.frames)
            print(f"generated {input_path} ({input_path.stat().st_size / 1e9:.2f} GB) "
                  f"in {time.perf_counter() - began:.1f} s", flush=True)
        warm(input_path)
        print(machine_facts(), flush=True)
        commands = tools(str(input_path), options.dir)
        runs = {name: [] for name in commands}
        for _ in range(options.rounds):
            for name, command in commands.items():
                runs[name].append(timed(command))
                remove_outputs(options.dir)
        baseline = min(run[0] for run in runs.get("tcpdump", [(float("nan"),)]))
        print(f"\n{options.frames:,} frames, {input_path.stat().st_size / 1e9:.2f} GB, best of {options.rounds}\n")
        print("| tool | wall s (range) | user s | sys s | Mframes/s | rate vs tcpdump |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, results in runs.items():
            wall, user, system = min(results)
            walls = [result[0] for result in results]
            print(f"| {name} | {wall:.2f} ({min(walls):.2f}-{max(walls):.2f}) | {user:.2f} | {system:.2f} | "
                  f"{options.frames / wall / 1e6:.2f} | {baseline / wall:.2f}x |")
    finally:
        remove_outputs(options.dir)
        if not options.keep and input_path.exists():
            input_path.unlink()


if __name__ == "__main__":
    main()
