"""Soak: bricks LoadBalancer(4) on a testbed veth for a long run (default 10 minutes) at a bounded rate, its stats
asked every second, then exact accounting and flat memory (issue 8's Show).

Run as root: .venv/bin/python bench/soak.py [--seconds 600] [--rate 5000] [--flows 1024]

trafgen sends exactly seconds x rate UDP frames (1024 flows) into a veth of a namespace testbed; the host end is
the input of an engine running LoadBalancer(4) to the pipes IN{0..3. Every second the script reads the engine's
stats through the engine API and checks that no counter went backwards. At the end, once the outputs are quiet:
  sent by trafgen (the namespace end's tx_packets) = arrived at the input (the host end's rx_packets)
  arrived = received by the engine + dropped by the kernel on input
  received = delivered + dropped at the outputs (per output too)
  delivered to output N - dropped by the kernel on transmit = received by the consumer end IN}N (rx_packets)
and the process's resident memory grew less than 1% from the end of minute 1 (or a third of a shorter run) to the
end. Prints a result block; exits 0 only if every check held.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_veth import (GENERATOR_STOP_TIMEOUT, ProcessLog, _stop_session, interface_counter,  # noqa: E402
                        machine_facts, namespace_link_stats, trafgen_config)
from bricks import links  # noqa: E402
from bricks.engine import Brick, PktEngine  # noqa: E402
from bricks.testbed import Testbed  # noqa: E402

OUTPUTS = 4
FRAME_BYTES = 64
BASELINE_SECONDS = 60.0              # RSS is compared from the end of minute 1 (warm caches, rings touched)
RSS_GROWTH_LIMIT = 0.01
GENERATOR_START_TIMEOUT = 10.0
GENERATOR_FINISH_TIMEOUT = 60.0      # trafgen's rate is approximate: it may need a little longer for its count
DRAIN_QUIET_SECONDS = 0.5
DRAIN_TIMEOUT = 10.0


def process_status(field: str) -> int:
    """A kB field of /proc/self/status (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


class Counters:
    """The kernel's view of the testbed: what trafgen sent, what reached the input, what each consumer got."""

    def __init__(self, testbed: Testbed, input_host: str, input_namespace_end: str):
        self.testbed = testbed
        self.input_host = input_host
        self.input_namespace_end = input_namespace_end
        self.consumers = [links.consumer_name(input_host, index) for index in range(OUTPUTS)]

    def read(self) -> dict:
        sent = namespace_link_stats(self.testbed.namespace, self.input_namespace_end)["tx"]
        return {"sent": sent["packets"], "sent_dropped": sent["dropped"],
                "arrived": interface_counter(self.input_host, "rx_packets"),
                "consumed": [interface_counter(name, "rx_packets") for name in self.consumers]}


def since(after: dict, before: dict) -> dict:
    return {key: [a - b for a, b in zip(value, before[key])] if isinstance(value, list) else value - before[key]
            for key, value in after.items()}


class Soak:
    def __init__(self, arguments):
        self.arguments = arguments
        self.failures: list[str] = []
        self.samples = 0
        self.rss_baseline_kb: int | None = None
        self.fds_baseline: int | None = None

    def check(self, condition: bool, text: str) -> None:
        if not condition:
            self.failures.append(text)

    def run(self) -> int:
        arguments = self.arguments
        total = int(arguments.seconds * arguments.rate)
        with Testbed() as testbed:
            input_host, input_namespace_end = testbed.add_input("in")
            engine = PktEngine.new(f"soak-{os.getpid()}")
            try:
                balancer = Brick("LoadBalancer", OUTPUTS).connect_input(input_host)
                balancer.connect_outputs(input_host, OUTPUTS)
                engine.link(balancer)
                engine.start()
                counters = Counters(testbed, input_host, input_namespace_end)
                before = counters.read()
                generator = self.start_generator(testbed, input_namespace_end, input_host, before["arrived"], total)
                try:
                    started = time.monotonic()
                    self.watch(engine, started, generator)
                finally:
                    _stop_session(generator, GENERATOR_STOP_TIMEOUT)
                final_stats = self.drain(engine, counters)
                after = since(counters.read(), before)
                rss_end_kb, fds_end = process_status("VmRSS"), open_descriptors()
                self.account(final_stats, after, total)
            finally:
                engine.stop()
                engine.delete()
        self.report(final_stats, after, total, rss_end_kb, fds_end, time.monotonic() - started)
        return 0 if not self.failures else 1

    def start_generator(self, testbed, interface, input_host, arrived_before, total) -> subprocess.Popen:
        """trafgen, one worker, exactly `total` frames at the given rate; returns once its first frame arrived."""
        log = ProcessLog()
        process = subprocess.Popen(
            ["ip", "netns", "exec", testbed.namespace, "trafgen", "--dev", interface, "--conf", "-", "--cpus", "1",
             "--rate", f"{self.arguments.rate}pps", "--num", str(total)],
            stdin=subprocess.PIPE, stdout=log.fresh(), stderr=subprocess.STDOUT, text=True, start_new_session=True)
        process.stdin.write(trafgen_config(FRAME_BYTES, self.arguments.flows))
        process.stdin.close()
        deadline = time.monotonic() + GENERATOR_START_TIMEOUT
        while interface_counter(input_host, "rx_packets") == arrived_before:
            if time.monotonic() > deadline or process.poll() is not None:
                _stop_session(process, GENERATOR_STOP_TIMEOUT)
                raise RuntimeError(f"trafgen sent nothing: {log.tail()}")
            time.sleep(0.01)
        return process

    def watch(self, engine: PktEngine, started: float, generator: subprocess.Popen) -> None:
        """Stats every second for the run's length and until trafgen has sent its count: counters only grow,
        the engine stays up."""
        baseline_at = min(BASELINE_SECONDS, self.arguments.seconds / 3)
        previous = None
        next_sample = started + 1.0
        end = started + self.arguments.seconds
        while next_sample <= end or (generator.poll() is None and next_sample <= end + GENERATOR_FINISH_TIMEOUT):
            time.sleep(max(0.0, next_sample - time.monotonic()))
            next_sample += 1.0
            stats = engine.stats()
            self.samples += 1
            self.check(stats["running"], f"engine not running at sample {self.samples}")
            handled = sum(output["packets"] for output in stats["bricks"][0]["outputs"]) + stats["output_drops"]
            if previous is not None:
                for key in ("packets", "kernel_drops", "output_drops"):
                    self.check(stats[key] >= previous[key], f"sample {self.samples}: {key} went backwards")
                # The engine's and the bricks' counters are separate snapshots (taken in that order), so
                # within one sample the bricks may be a batch ahead; a second later the engine has caught up.
                self.check(previous_handled <= stats["packets"],
                           f"sample {self.samples}: {previous_handled} delivered or dropped a second ago,"
                           f" {stats['packets']} received now")
            previous, previous_handled = stats, handled
            if self.rss_baseline_kb is None and time.monotonic() - started >= baseline_at:
                self.rss_baseline_kb, self.fds_baseline = process_status("VmRSS"), open_descriptors()
            if self.arguments.verbose and self.samples % 60 == 0:
                print(f"  {self.samples:>5} s  received {stats['packets']:>10}  drops {stats['drops']}", flush=True)

    def drain(self, engine: PktEngine, counters: Counters) -> dict:
        """The engine's stats once input and outputs have been quiet for a while (trafgen has stopped)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        last = (counters.read(), engine.stats()["packets"])
        while time.monotonic() < deadline:
            time.sleep(DRAIN_QUIET_SECONDS)
            current = (counters.read(), engine.stats()["packets"])
            if current == last:
                break
            last = current
        return engine.stats()

    def account(self, stats: dict, kernel: dict, total: int) -> None:
        outputs = stats["bricks"][0]["outputs"]
        delivered = sum(output["packets"] for output in outputs)
        self.check(kernel["sent"] == total, f"trafgen sent {kernel['sent']}, not the {total} asked for")
        self.check(kernel["arrived"] == kernel["sent"], f"sent {kernel['sent']} != arrived {kernel['arrived']}")
        self.check(stats["packets"] + stats["kernel_drops"] == kernel["arrived"],
                   f"received {stats['packets']} + kernel drops {stats['kernel_drops']} != arrived {kernel['arrived']}")
        self.check(stats["bricks"][0]["received"] == stats["packets"], "the LoadBalancer missed engine packets")
        self.check(delivered + stats["output_drops"] == stats["packets"],
                   f"delivered {delivered} + output drops {stats['output_drops']} != received {stats['packets']}")
        for index, (output, consumed) in enumerate(zip(outputs, kernel["consumed"])):
            self.check(output["packets"] - output["kernel_drops"] == consumed,
                       f"output {index}: delivered {output['packets']} - transmit drops {output['kernel_drops']}"
                       f" != consumer rx {consumed}")
        if self.rss_baseline_kb is None:
            self.failures.append("no RSS baseline (run too short)")

    def report(self, stats, kernel, total, rss_end_kb, fds_end, elapsed) -> None:
        outputs = stats["bricks"][0]["outputs"]
        delivered = sum(output["packets"] for output in outputs)
        growth = (rss_end_kb - self.rss_baseline_kb) / self.rss_baseline_kb if self.rss_baseline_kb else None
        if growth is not None:
            self.check(growth < RSS_GROWTH_LIMIT, f"RSS grew {100 * growth:.2f}% (limit {100 * RSS_GROWTH_LIMIT:g}%)")
        lines = ["soak: bricks LoadBalancer(4) on a testbed veth"]
        lines += ["  " + fact for fact in machine_facts()]
        lines += [
            f"  run        {elapsed:.0f} s, trafgen {self.arguments.rate} pps x {self.arguments.seconds:g} s,"
            f" {self.arguments.flows} UDP flows, {FRAME_BYTES}-byte frames; {self.samples} stats samples (1/s)",
            f"  sent       {kernel['sent']} (asked {total}; tx dropped {kernel['sent_dropped']})",
            f"  arrived    {kernel['arrived']}",
            f"  received   {stats['packets']}   kernel drops on input {stats['kernel_drops']}",
            f"  delivered  {delivered}   output drops {stats['output_drops']}"
            f"   transmit drops {stats['transmit_drops']}",
            f"  per output {' / '.join(str(output['packets']) for output in outputs)}",
            f"  consumers  {' / '.join(str(count) for count in kernel['consumed'])}"
            f" (= {sum(kernel['consumed'])}, rx_packets of IN}}0..3)",
            f"  RSS        {self.rss_baseline_kb} kB at {min(BASELINE_SECONDS, self.arguments.seconds / 3):.0f} s"
            f" -> {rss_end_kb} kB at the end"
            + (f" ({100 * growth:+.2f}%)" if growth is not None else ""),
            f"  fds        {self.fds_baseline} -> {fds_end}",
            "  result     " + ("PASS: every packet accounted for, RSS flat" if not self.failures
                                else "FAIL: " + "; ".join(self.failures)),
        ]
        print("\n".join(lines), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the run (default 600)")
    parser.add_argument("--rate", type=int, default=5000, help="frames per second trafgen sends (default 5000)")
    parser.add_argument("--flows", type=int, default=1024, help="distinct UDP flows (default 1024)")
    parser.add_argument("--verbose", action="store_true", help="a progress line every minute")
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        print("soak: run as root (namespaces, veths, AF_PACKET)", file=sys.stderr)
        return 2
    if arguments.seconds < 3 or arguments.rate < 1:
        print("soak: --seconds must be at least 3 and --rate at least 1", file=sys.stderr)
        return 2
    return Soak(arguments).run()


if __name__ == "__main__":
    sys.exit(main())
