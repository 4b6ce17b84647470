"""XDP benchmark: live frames (bench/xdpgen) into a veth, forwarded 4 ways by bricks XDP, packet back-end and tc.

Run as root: .venv/bin/python bench/bench_xdp.py [--seconds 3] [--sizes 64,1514] [--modes ...]
The generator runs BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on the
namespace end of the input veth (XDP_TX: the frames leave for the host end,
the forwarder's input), on CPU 0. Its frames reach the input only when the
input has NAPI: every mode has an XDP program there (bricks' own, or an
XDP_PASS one for the packet back-end and tc, or XDP_DROP for "alone"). Each
mode runs first at the generator's full rate, then, while it loses frames, at
a lower offered rate (the generator transmits only a share of its runs), so
every row ends at the highest rate tried with 0 loss.

CPU per packet is counted the same way for every mode: the exact on-CPU time
(schedstat) of the generator process, of ksoftirqd on both CPUs and of the
bricks engine thread when there is one. Without IRQ_TIME_ACCOUNTING the
softirq work a task triggers (the input's NAPI poll, XDP, the pipes' receive)
is charged to that task. The generator alone (XDP_DROP on the input) is
measured the same way and subtracted: what remains is the forwarder's work
from the input's XDP hook to the consumer ends of the pipes. See bench/README.md.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from bench_veth import (  # noqa: E402 - bench_veth is a sibling script, found through sys.path
    REALTIME_DEFAULT, BricksForwarder, background_load, interface_counter, machine_facts, parse_realtime, task_cpu_ns,
)
from bricks import links  # noqa: E402
from bricks.engine import install_signal_handlers  # noqa: E402
from bricks.testbed import Testbed  # noqa: E402
from bricks.xdp import XdpProgram, XdpTree  # noqa: E402

OUTPUTS = 4
GENERATOR_CPU = 0
FORWARDER_CPU = 1                  # the packet back-end's engine; XDP and tc run in the generator's softirq
SHARE_SCALE = 1024                 # the generator transmits SHARE of every SHARE_SCALE runs
DRAIN_QUIET_SECONDS = 0.3
DRAIN_TIMEOUT = 3.0
SETTLE_SECONDS = 0.5               # after a forwarder starts, before the generator does
LOW_SHARE = 64                     # the generator alone at this share: the cost of a run that drops at once
BACKOFF = 0.9                      # next share: this much below the rate that was delivered


# ---------------------------------------------------------------- generator

def multiarch_include() -> list[str]:
    """Where Debian keeps <asm/types.h>, which <linux/types.h> needs under -target bpf: the build's own
    helper, bricks._native_build.multiarch_include, cannot be imported without rebuilding bricks.bpf.o."""
    triplet = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True, check=False).stdout.strip()
    return [f"-I/usr/include/{triplet}"] if triplet else []


def run(command: list[str], timeout: float = 10) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


class LiveFramesGenerator:
    """bench/xdpgen/xdpgen.bpf.c and its libbpf driver, compiled once into a temporary directory."""

    def __init__(self, directory: str):
        source = HERE / "xdpgen"
        self.object = os.path.join(directory, "xdpgen.bpf.o")
        self.driver = os.path.join(directory, "xdpgen")
        run(["clang", "-target", "bpf", "-O2", "-g", "-Wall", "-Wextra", "-Werror", *multiarch_include(),
             "-c", str(source / "xdpgen.bpf.c"), "-o", self.object])
        run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", str(source / "xdpgen.c"), "-o", self.driver, "-lbpf"])

    def run(self, namespace: str, interface: str, frame_bytes: int, seconds: float, share: int) -> dict:
        """Runs flat out (or at share/1024 of its runs) for seconds; its runs, frames transmitted and CPU ns."""
        output = run(["ip", "netns", "exec", namespace, "taskset", "-c", str(GENERATOR_CPU), self.driver,
                      self.object, interface, str(frame_bytes), str(seconds), str(share)], timeout=seconds + 30)
        found = re.search(r"runs (\d+) transmitted (\d+) seconds ([\d.]+) cpu_ns (\d+)", output)
        if not found:
            raise RuntimeError(f"xdpgen: unexpected output {output!r}")
        return {"runs": int(found[1]), "transmitted": int(found[2]), "seconds": float(found[3]),
                "cpu_ns": int(found[4])}

    def hold_drop(self, interface: str) -> subprocess.Popen:
        """XDP_DROP attached to interface until the returned process's stdin closes."""
        process = subprocess.Popen([self.driver, self.object, "--drop", interface], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        if process.stdout.readline().strip() != "attached":
            process.kill()
            raise RuntimeError(f"xdpgen: cannot attach XDP_DROP to {interface}")
        return process


def softirq_threads() -> list[int]:
    return [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _comm(pid).startswith("ksoftirqd/")]


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- forwarders

class Mode:
    """What runs between the input and the consumer ends; base: the generator alone, XDP_DROP on the input."""

    label = "generator alone"

    def __init__(self, bench: "Bench"):
        self.bench = bench
        self.consumers: list[str] = []
        self.pipes: list[links.PipePair] = []

    def start(self) -> None:
        self.dropper = self.bench.generator.hold_drop(self.bench.input_host)

    def thread_cpu_ns(self) -> int:
        return 0

    def stop(self) -> dict:
        self.dropper.stdin.close()
        self.dropper.wait(10)
        return {}

    def make_pipes(self) -> None:
        self.pipes = [links.create_pipe(self.bench.pipe_base, index, 1500) for index in range(OUTPUTS)]
        self.consumers = [pipe.consumer for pipe in self.pipes]

    def delete_pipes(self) -> None:
        for pipe in self.pipes:
            pipe.delete()
        self.pipes = []


class XdpBackend(Mode):
    """The bricks XDP program, LoadBalancer(4) to 4 pipes; their consumer ends get the XDP_PASS companion."""

    label = "xdp LB(4)"

    def start(self) -> None:
        self.make_pipes()
        for pipe in self.pipes:
            # As the back-end will run its pipes: GRO off, or the companion's NAPI merges TCP segments.
            run(["ethtool", "-K", pipe.consumer, "gro", "off"])
        self.program = XdpProgram(XdpTree("LoadBalancer", [pipe.broker for pipe in self.pipes], split=OUTPUTS))
        self.program.attach(self.bench.input_host, "native")
        for pipe in self.pipes:
            self.program.attach_pass(pipe.consumer)

    def stop(self) -> dict:
        failures = sum(output["redirect_failures"] for output in self.program.output_counters())
        self.program.close()
        self.delete_pipes()
        return {"redirect failures": failures}


class PassOnInput(Mode):
    """A forwarder fed through the input's regular receive path: an XDP_PASS program there gives it NAPI."""

    def start(self) -> None:
        # The companion of a one-brick program that is never attached itself: only its XDP_PASS is used.
        self.passer = XdpProgram(XdpTree("Dummy", [self.bench.input_host]))
        self.passer.attach_pass(self.bench.input_host)

    def stop(self) -> dict:
        self.passer.close()
        return {}


class PacketBackend(PassOnInput):
    """The packet back-end: PktEngine LoadBalancer(4) to the pipes IN{0..3, engine on FORWARDER_CPU."""

    label = "packet LB(4)"

    def start(self) -> None:
        super().start()
        arguments = self.bench.arguments
        self.engine = BricksForwarder(self.bench.input_host, FORWARDER_CPU, arguments.realtime,
                                      arguments.buffer_slots, arguments.batch)
        self.engine.start()
        self.consumers = self.engine.consumers

    def thread_cpu_ns(self) -> int:
        return self.engine.cpu_ns()

    def stop(self) -> dict:
        drops = self.engine.stop()
        super().stop()
        return drops


class TcMirred(PassOnInput):
    """tc: ingress u32 filters on the UDP source port's low 2 bits, each mirred egress redirect to one pipe."""

    label = "tc mirred 4-way"

    def start(self) -> None:
        super().start()
        self.make_pipes()
        interface = self.bench.input_host
        run(["tc", "qdisc", "add", "dev", interface, "ingress"])
        for index, pipe in enumerate(self.pipes):
            run(["tc", "filter", "add", "dev", interface, "parent", "ffff:", "protocol", "ip", "prio", "1",
                 "u32", "match", "ip", "sport", str(index), "0x3",
                 "action", "mirred", "egress", "redirect", "dev", pipe.broker])

    def stop(self) -> dict:
        statistics = run(["tc", "-s", "filter", "show", "dev", self.bench.input_host, "ingress"])
        subprocess.run(["tc", "qdisc", "del", "dev", self.bench.input_host, "ingress"], capture_output=True,
                       timeout=10, check=False)
        self.delete_pipes()
        super().stop()
        return {"mirred drops": sum(int(n) for n in re.findall(r"dropped (\d+)", statistics))}


# ---------------------------------------------------------------- trials

@dataclass
class Trial:
    mode: str
    frame_bytes: int
    share: int
    seconds: float
    runs: int
    offered: int               # frames the generator transmitted
    arrived: int               # rx_packets of the input's host end
    delivered: int             # rx_packets of the consumer ends, drain included
    cpu_ns: int                # generator + ksoftirqd + forwarder thread
    drops: dict

    @property
    def loss(self) -> int:
        return self.offered - self.delivered

    @property
    def offered_pps(self) -> float:
        return self.offered / self.seconds


class Bench:
    def __init__(self, testbed: Testbed, arguments, directory: str):
        self.testbed = testbed
        self.arguments = arguments
        self.input_host, self.input_namespace_end = testbed.add_input("in")
        self.pipe_base = testbed.host_name("o")
        self.generator = LiveFramesGenerator(directory)
        self.baselines: dict[int, tuple[float, float]] = {}   # size -> ns per transmitted frame, per dropped run

    def counters(self, mode: Mode) -> tuple[int, int]:
        return (interface_counter(self.input_host, "rx_packets"),
                sum(interface_counter(name, "rx_packets") for name in mode.consumers))

    def trial(self, make_mode, frame_bytes: int, share: int) -> Trial:
        mode = make_mode(self)
        mode.start()
        try:
            time.sleep(SETTLE_SECONDS)
            arrived_before, delivered_before = self.counters(mode)
            softirq = softirq_threads()
            threads_before = mode.thread_cpu_ns() + sum(task_cpu_ns(pid) for pid in softirq)
            generated = self.generator.run(self.testbed.namespace, self.input_namespace_end, frame_bytes,
                                           self.arguments.seconds, share)
            threads_after = mode.thread_cpu_ns() + sum(task_cpu_ns(pid) for pid in softirq)
            arrived_after, delivered_after = self._drained(mode)
        finally:
            drops = mode.stop()
        return Trial(mode.label, frame_bytes, share, generated["seconds"], generated["runs"], generated["transmitted"],
                     arrived_after - arrived_before, delivered_after - delivered_before,
                     generated["cpu_ns"] + threads_after - threads_before, drops)

    def _drained(self, mode: Mode) -> tuple[int, int]:
        deadline = time.monotonic() + DRAIN_TIMEOUT
        last = self.counters(mode)
        while time.monotonic() < deadline:
            time.sleep(DRAIN_QUIET_SECONDS)
            current = self.counters(mode)
            if current == last:
                break
            last = current
        return last

    def baseline(self, frame_bytes: int) -> list[Trial]:
        """The generator alone at full rate and at a low share: the CPU of a transmitted frame (up to the input's
        XDP hook, where XDP_DROP takes it) and of a run the generator drops itself."""
        full = self.trial(Mode, frame_bytes, SHARE_SCALE)
        low = self.trial(Mode, frame_bytes, LOW_SHARE)
        per_frame_full = full.cpu_ns / full.runs
        per_run_low = low.cpu_ns / low.runs
        # full: every run transmits; low: LOW_SHARE/SHARE_SCALE of them do. Two equations, two costs.
        transmitted_share = LOW_SHARE / SHARE_SCALE
        dropped_run = max(0.0, (per_run_low - transmitted_share * per_frame_full) / (1 - transmitted_share))
        self.baselines[frame_bytes] = (per_frame_full, dropped_run)
        return [full, low]

    def forwarding_ns(self, trial: Trial) -> float | None:
        """CPU per delivered frame beyond what the generator alone costs for the same runs."""
        if trial.mode == Mode.label or not trial.delivered or trial.frame_bytes not in self.baselines:
            return None
        per_frame, dropped_run = self.baselines[trial.frame_bytes]
        generator_ns = trial.offered * per_frame + (trial.runs - trial.offered) * dropped_run
        return (trial.cpu_ns - generator_ns) / trial.delivered

    def highest_lossless(self, make_mode, frame_bytes: int) -> list[Trial]:
        """Full rate first; while frames are lost, a share below the delivered rate."""
        trials = []
        share = SHARE_SCALE
        for _ in range(self.arguments.attempts):
            trial = self.trial(make_mode, frame_bytes, share)
            trials.append(trial)
            print_trial(trial, self.forwarding_ns(trial))
            if trial.loss == 0 or not trial.delivered:
                break
            share = max(1, int(share * trial.delivered / trial.offered * BACKOFF))
        return trials


# ---------------------------------------------------------------- output

HEADER = (f"{'mode':<16} {'frame':>5} {'share':>5} {'offered Mpps':>12} {'arrived':>10} {'delivered':>10} "
          f"{'lost':>8} {'fwd ns/pkt':>10}  drops")


def print_trial(trial: Trial, forwarding_ns: float | None) -> None:
    ns = "-" if forwarding_ns is None else f"{forwarding_ns:.0f}"
    drops = ", ".join(f"{name} {value}" for name, value in trial.drops.items()) or "-"
    lost = "-" if trial.mode == Mode.label else str(trial.loss)
    print(f"{trial.mode:<16} {trial.frame_bytes:>5} {trial.share:>5} {trial.offered_pps / 1e6:>12.3f} "
          f"{trial.arrived:>10} {trial.delivered:>10} {lost:>8} {ns:>10}  {drops}", flush=True)


def print_summary(bench: Bench, best: dict) -> None:
    print("\nhighest offered rate with 0 loss, CPU per packet beyond the generator")
    for size in bench.arguments.sizes:
        per_frame, dropped_run = bench.baselines[size]
        print(f"  {size} B: generator alone {per_frame:.0f} ns per transmitted frame, "
              f"{dropped_run:.0f} per dropped run")
        rows = {label: trial for (label, frame_bytes), trial in best.items() if frame_bytes == size}
        for label, trial in rows.items():
            if trial is None:
                print(f"    {label:<16} lost frames at every rate tried")
                continue
            print(f"    {label:<16} {trial.offered_pps / 1e6:.3f} Mpps, {bench.forwarding_ns(trial):.0f} ns/packet")
        xdp, packet, tc = (rows.get(label) for label in (XdpBackend.label, PacketBackend.label, TcMirred.label))
        if xdp and packet:
            print(f"    xdp / packet CPU per packet: {bench.forwarding_ns(xdp) / bench.forwarding_ns(packet):.2f}"
                  " (target <= 0.33)")
        if xdp and tc:
            print(f"    xdp / tc CPU per packet: {bench.forwarding_ns(xdp) / bench.forwarding_ns(tc):.2f} (target < 1)")


def tool_versions() -> str:
    clang = subprocess.run(["clang", "--version"], capture_output=True, text=True, check=False).stdout
    libbpf = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libbpf-dev"], capture_output=True, text=True,
                            check=False).stdout
    return f"{clang.splitlines()[0] if clang else 'clang ?'}; libbpf-dev {libbpf or '?'}"


MODES = {"xdp": XdpBackend, "packet": PacketBackend, "tc": TcMirred}


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="generator seconds per trial")
    parser.add_argument("--sizes", type=lambda text: [int(size) for size in text.split(",")], default=[64, 1514],
                        help="Ethernet frame sizes without FCS (default 64,1514)")
    parser.add_argument("--modes", type=lambda text: text.split(","), default=list(MODES),
                        help=f"comma-separated, from {', '.join(MODES)} (in this order by default)")
    parser.add_argument("--attempts", type=int, default=4, help="trials per mode and size while frames are lost")
    parser.add_argument("--buffer-slots", type=int, default=512, help="packet back-end PktEngine buffer_sz")
    parser.add_argument("--batch", type=int, default=1024, help="packet back-end pe:link batch")
    parser.add_argument("--realtime", type=parse_realtime, default=REALTIME_DEFAULT, metavar="default|off|PRIORITY",
                        help="the packet back-end engine thread's priority, as bench_veth.py's (default: the "
                             "product's own default, SCHED_FIFO 10 where allowed)")
    arguments = parser.parse_args()
    unknown = [mode for mode in arguments.modes if mode not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}: pick from {list(MODES)}")
    return arguments


def main() -> int:
    arguments = parse_arguments()
    if os.geteuid() != 0:
        print("bench_xdp.py needs root (namespaces, veths, XDP, tc)", file=sys.stderr)
        return 1
    install_signal_handlers()
    for line in machine_facts():
        print(line)
    print(f"xdp       {tool_versions()}")
    print(f"idle      {background_load()}")
    print(f"setup     xdpgen (BPF_PROG_RUN live frames, batch 64) on CPU {GENERATOR_CPU} -> veth -> forwarder; "
          f"packet back-end engine on CPU {FORWARDER_CPU}; 1024 UDP flows; {arguments.seconds:g} s per trial\n")
    best = {}
    with tempfile.TemporaryDirectory(prefix="bench-xdp-") as directory, Testbed() as testbed:
        bench = Bench(testbed, arguments, directory)
        print(HEADER)
        for size in arguments.sizes:
            for trial in bench.baseline(size):
                print_trial(trial, None)
        for size in arguments.sizes:
            for name in arguments.modes:
                mode = MODES[name]
                trials = bench.highest_lossless(mode, size)
                lossless = [trial for trial in trials if trial.loss == 0]
                best[(mode.label, size)] = max(lossless, key=lambda trial: trial.offered) if lossless else None
        print_summary(bench, best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
