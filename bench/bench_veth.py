"""Veth-path benchmark: trafgen floods 1024 UDP flows into a veth, forwarded by bricks LoadBalancer(4), by netsniff-ng and by a tc redirect, side by side.

Run as root: .venv/bin/python bench/bench_veth.py [--seconds 5] [--sizes 64,1514]
Every mode gets the same testbed (a namespace whose veth end trafgen blasts
into; the host end is the forwarder's input) and the same generator; what
arrives is counted on the consumer ends of the output veths (rx_packets).
Forwarder CPU time comes from /proc/.../schedstat (nanoseconds on CPU of the
engine thread or of the netsniff-ng process, softirq work done in their
context included); softirq time per CPU from /proc/stat. See bench/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bricks import links
from bricks import engine as bricks_engine
from bricks.engine import Brick, PktEngine, install_signal_handlers
from bricks.testbed import Testbed

OUTPUTS = 4
SOURCE_ADDRESS = "10.0.0.1"          # every generated flow: these addresses, source port FIRST_SOURCE_PORT + n
DESTINATION_ADDRESS = "10.0.1.1"
FIRST_SOURCE_PORT = 1024
DESTINATION_PORT = 4789
HEADER_BYTES = 14 + 20 + 8          # Ethernet + IPv4 + UDP
GENERATOR_CPU = 0                   # trafgen --cpus 1 pins its one worker to CPU 0 whatever taskset says
GENERATOR_START_TIMEOUT = 10.0
GENERATOR_START_ATTEMPTS = 2
GENERATOR_STOP_TIMEOUT = 3.0
WARMUP_SECONDS = 0.5
DRAIN_QUIET_SECONDS = 0.3
DRAIN_TIMEOUT = 3.0
FORWARDER_START_SECONDS = 1.0
REALTIME_PRIORITY = 10              # --realtime given without a number (bench_xdp.py's True)
REALTIME_DEFAULT = "default"        # --realtime default: what the product does with no setting at all
CONTENDER = "while True: pass"      # --contend: a normal-priority CPU hog on the forwarder's CPU
CLOCK_TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- counters

def interface_counter(interface: str, name: str) -> int:
    with open(f"/sys/class/net/{interface}/statistics/{name}") as counter:
        return int(counter.read())


def namespace_link_stats(namespace: str, interface: str) -> dict:
    """The stats64 of an interface inside a namespace (its /sys is not ours to read)."""
    output = subprocess.run(["ip", "-n", namespace, "-j", "-s", "link", "show", "dev", interface],
                            capture_output=True, text=True, check=True, timeout=10).stdout
    return json.loads(output)[0]["stats64"]


def task_cpu_ns(pid: int, tid: int | None = None) -> int:
    """Nanoseconds on CPU of one thread, or of every thread of a process (schedstat is exact, stat is ticks)."""
    tasks = [tid] if tid is not None else [int(task) for task in os.listdir(f"/proc/{pid}/task")]
    total = 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                total += int(schedstat.read().split()[0])
        except FileNotFoundError:
            pass    # a thread that ended between listdir and open
    return total


def cpu_times() -> dict[int, dict[str, int]]:
    """Per CPU, busy and softirq time in ticks from /proc/stat."""
    times = {}
    with open("/proc/stat") as stat:
        for line in stat:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *values = line.split()
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in values[:8])
            times[int(name[3:])] = {"busy": user + nice + system + irq + softirq + steal, "softirq": softirq}
    return times


@dataclass
class Snapshot:
    """Every counter of one instant of a trial."""

    time: float
    generated: int              # frames the host end of the input veth received
    sent: int                   # frames trafgen handed to its veth end, refused ones included
    delivered: int              # frames the consumer ends received
    forwarder_cpu_ns: int | None
    cpus: dict[int, dict[str, int]]


# ---------------------------------------------------------------- generator

def trafgen_config(frame_bytes: int, flows: int) -> str:
    """One packet per flow, all computed when trafgen starts: no per-packet work for the generator."""
    payload = frame_bytes - HEADER_BYTES
    if payload < 0:
        raise SystemExit(f"frame size {frame_bytes} is smaller than the {HEADER_BYTES} header bytes")
    packets = []
    for flow in range(flows):
        packets.append(
            "{ eth(da=02:00:00:00:00:02, sa=02:00:00:00:00:01), "
            f"ipv4(sa={SOURCE_ADDRESS}, da={DESTINATION_ADDRESS}, ttl=64), "
            f"udp(sp={FIRST_SOURCE_PORT + flow}, dp={DESTINATION_PORT}), fill(0x00, {payload}) }}")
    return "\n".join(packets) + "\n"


class Generator:
    """trafgen in the testbed's namespace, one worker (on CPU 0), flat out, round robin over the flows."""

    def __init__(self, testbed: Testbed, interface: str):
        self.testbed = testbed
        self.interface = interface
        self.process: subprocess.Popen | None = None
        self.log = ProcessLog()

    def start(self, config: str) -> None:
        # A session of its own: trafgen forks its worker, and SIGINT must reach both.
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.testbed.namespace, "trafgen", "--dev", self.interface,
             "--conf", "-", "--cpus", "1"],
            stdin=subprocess.PIPE, stdout=self.log.fresh(), stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.process.stdin.write(config)
        self.process.stdin.close()

    def stop(self) -> None:
        if self.process is None:
            return
        _stop_session(self.process, GENERATOR_STOP_TIMEOUT)
        self.process = None


class ProcessLog:
    """A child's output in an unlinked file: no /tmp clean-up by someone else can take it away."""

    def __init__(self):
        self.file = tempfile.TemporaryFile("w+")    # noqa: SIM115 - open for the life of the child's log

    def fresh(self):
        self.file.seek(0)
        self.file.truncate()
        return self.file

    def text(self) -> str:
        self.file.seek(0)
        return self.file.read()

    def tail(self, lines: int = 3) -> str:
        return " | ".join(self.text().strip().splitlines()[-lines:])


def _stop_session(process: subprocess.Popen, timeout: float) -> None:
    """SIGINT to the process group (a tool's clean exit), SIGKILL if it is still there after timeout."""
    for sent_signal in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(process.pid, sent_signal)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    # trafgen's forked worker can outlive its parent: the group must be empty.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- forwarders

class Forwarder:
    """What a mode runs between the input veth and its outputs; base class: no forwarder at all."""

    label = "generator alone"

    def __init__(self, input_interface: str, cpu: int, realtime: bool | int | str | None = False):
        self.input_interface = input_interface
        self.cpu = cpu
        # SCHED_FIFO, so that other load on the forwarder's CPU cannot preempt it: a priority, True (REALTIME_PRIORITY),
        # REALTIME_DEFAULT (bricks' own default, the same priority for netsniff-ng) or False / None (normal)
        self.realtime = realtime
        self.consumers: list[str] = []

    @property
    def realtime_priority(self) -> int | None:
        """The SCHED_FIFO priority this forwarder runs at (for bricks: asks for), or None."""
        if self.realtime is True:
            return REALTIME_PRIORITY
        if self.realtime == REALTIME_DEFAULT:
            return bricks_engine.DEFAULT_REALTIME_PRIORITY
        return self.realtime or None

    def start(self) -> None:
        pass

    def cpu_ns(self) -> int | None:
        return None

    def stop(self) -> dict[str, int]:
        """Stops forwarding; returns the forwarder's own drop counters of the whole run."""
        return {}


class BricksForwarder(Forwarder):
    """bricks: LoadBalancer(4) from the input veth to the pipes IN{0..3 on an engine pinned to cpu.

    steered: BRICKS_STEER_PIPES=1, the pipes' consumer-end receive work goes by
    RPS to the other CPUs (here CPU 0, the generator's).
    """

    base_label = "bricks LB(4)"

    def __init__(self, input_interface: str, cpu: int, realtime: bool | int | str | None, buffer_slots: int,
                 batch: int, steered: bool = False, nice: int | None = None):
        super().__init__(input_interface, cpu, realtime)
        self.buffer_slots = buffer_slots
        self.batch = batch
        self.steered = steered
        self.nice = nice                         # the engine thread's nice value, set once it runs (None: left)
        self.scheduling = ""                     # the engine thread's policy as it ran, for the row's notes
        self.label = self.base_label + (" rps" if steered else "")
        self.engine: PktEngine | None = None
        self.brick: Brick | None = None
        self.per_output_packets: list[int] = []
        self.final_stats: dict | None = None     # engine stats at stop

    def make_brick(self) -> Brick:
        """The brick the engine links, reading the input veth and writing pipes on it (a subclass may
        forward through another kind)."""
        balancer = Brick("LoadBalancer", OUTPUTS).connect_input(self.input_interface)
        return balancer.connect_outputs(self.input_interface, OUTPUTS)

    def start(self) -> None:
        self.engine = PktEngine.new(f"veth-bench-{os.getpid()}", self.buffer_slots, self.cpu)
        self.brick = self.make_brick()
        previous = os.environ.pop(bricks_engine.STEER_PIPES_ENVIRONMENT, None)
        if self.steered:
            os.environ[bricks_engine.STEER_PIPES_ENVIRONMENT] = "1"
        try:
            self.engine.link(self.brick, self.batch)
        finally:
            os.environ.pop(bricks_engine.STEER_PIPES_ENVIRONMENT, None)
            if previous is not None:
                os.environ[bricks_engine.STEER_PIPES_ENVIRONMENT] = previous
        if self.realtime != REALTIME_DEFAULT:
            bricks_engine.set_realtime_priority(self.realtime_priority)
        self.engine.start()
        thread = self.engine.thread.native_id
        if self.nice is not None:
            os.setpriority(os.PRIO_PROCESS, thread, self.nice)
        policy = os.sched_getscheduler(thread)
        self.scheduling = (f"engine SCHED_FIFO {os.sched_getparam(thread).sched_priority}" if policy == os.SCHED_FIFO
                           else f"engine SCHED_OTHER nice {os.getpriority(os.PRIO_PROCESS, thread)}")
        self.consumers = [links.consumer_name(self.input_interface, index)
                          for index in range(len(self.brick.outputs))]

    def cpu_ns(self) -> int | None:
        return task_cpu_ns(os.getpid(), self.engine.thread.native_id)

    def stop(self) -> dict[str, int]:
        if self.engine is None:
            return {}
        try:
            self.engine.stop()
            stats = self.engine.stats()
        finally:
            self.engine.delete()
            self.engine = None
        self.final_stats = stats
        self.per_output_packets = [output["packets"] for output in stats["bricks"][0]["outputs"]]
        return {"kernel": stats["kernel_drops"], "output": stats["output_drops"]}


class PipeForwarder(Forwarder):
    """A forwarder writing one quiet veth pair made like a bricks pipe (the same consumer end)."""

    pipe_suffix = ""

    def __init__(self, input_interface: str, cpu: int, realtime: bool, pipe_base: str):
        super().__init__(input_interface, cpu, realtime)
        self.pipe_base = pipe_base
        self.pipe: links.PipePair | None = None

    def start(self) -> None:
        self.pipe = links.create_pipe(self.pipe_base, 0, 1500)
        self.consumers = [self.pipe.consumer]

    def stop(self) -> dict[str, int]:
        if self.pipe is not None:
            self.pipe.delete()
            self.pipe = None
        return {}


class NetsniffForwarder(PipeForwarder):
    """netsniff-ng --in IN --out OUT, silent, pinned to cpu."""

    base_label = "netsniff-ng"

    def __init__(self, input_interface: str, cpu: int, realtime: bool, pipe_base: str,
                 ring_size: str, kernel_pull_us: int | None):
        super().__init__(input_interface, cpu, realtime, pipe_base)
        self.log = ProcessLog()
        self.ring_size = ring_size
        self.kernel_pull_us = kernel_pull_us
        self.label = self.base_label + (f" -k{kernel_pull_us}" if kernel_pull_us else "")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        super().start()
        realtime = ["chrt", "--fifo", str(self.realtime_priority)] if self.realtime_priority else []
        kernel_pull = ["--kernel-pull", str(self.kernel_pull_us)] if self.kernel_pull_us else []
        # --notouch-irq: leave IRQ affinities alone (veth has none; a NIC's are not ours to move).
        self.process = subprocess.Popen(
            realtime + ["taskset", "-c", str(self.cpu), "netsniff-ng", "--in", self.input_interface,
                        "--out", self.pipe.broker, "--silent", "--notouch-irq", "--ring-size", self.ring_size]
            + kernel_pull,
            stdin=subprocess.DEVNULL, stdout=self.log.fresh(), stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(FORWARDER_START_SECONDS)
        if self.process.poll() is not None:
            raise RuntimeError(f"netsniff-ng exited at start: {self.log.tail()}")

    def cpu_ns(self) -> int | None:
        return task_cpu_ns(self.process.pid)

    def stop(self) -> dict[str, int]:
        if self.process is not None:
            _stop_session(self.process, GENERATOR_STOP_TIMEOUT)
            self.process = None
        super().stop()
        # Its exit report: "N  packets failed filter (out of space)" are the RX ring's drops.
        found = re.search(r"(\d+)\s+packets failed filter \(out of space\)", self.log.text())
        return {"ring": int(found[1])} if found else {}


class TcRedirect(PipeForwarder):
    """The kernel alone: ingress matchall + mirred egress redirect, run in the generator's softirq."""

    label = "tc mirred"

    def start(self) -> None:
        super().start()
        run(["tc", "qdisc", "add", "dev", self.input_interface, "ingress"])
        # A u32 filter matching every frame: this kernel has no matchall classifier.
        run(["tc", "filter", "add", "dev", self.input_interface, "parent", "ffff:", "protocol", "all",
             "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", self.pipe.broker])

    def stop(self) -> dict[str, int]:
        statistics = subprocess.run(["tc", "-s", "filter", "show", "dev", self.input_interface, "ingress"],
                                    capture_output=True, text=True, timeout=10, check=False).stdout
        subprocess.run(["tc", "qdisc", "del", "dev", self.input_interface, "ingress"],
                       capture_output=True, timeout=10, check=False)
        super().stop()
        found = re.search(r"dropped (\d+)", statistics)
        return {"mirred": int(found[1])} if found else {}


@contextlib.contextmanager
def contender(cpu: int | None):
    """A CPU-bound Python loop at normal priority pinned to cpu while the block runs (None: nothing): the other
    work that shares a forwarder's CPU on a busy machine, made the same for every row."""
    if cpu is None:
        yield
        return
    process = subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-c", CONTENDER],
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield
    finally:
        process.kill()
        process.wait()


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


# ---------------------------------------------------------------- one trial

@dataclass
class Trial:
    """What one mode did with one frame size."""

    mode: str
    frame_bytes: int
    seconds: float
    generated_pps: float
    delivered_pps: float
    sent: int
    generated: int
    delivered: int
    forwarder_ns_per_packet: float | None
    forwarder_busy: float | None         # share of one CPU
    forwarder_core_ns_per_packet: float | None
    softirq_ns_per_packet: float
    forwarder_drops: dict[str, int]
    notes: str = ""

    @property
    def loss(self) -> float | None:
        if not self.generated:
            return None
        return 100.0 * (self.generated - self.delivered) / self.generated


class Bench:
    """The testbed, the generator and the counters every mode is measured with."""

    def __init__(self, testbed: Testbed, input_host: str, input_namespace_end: str, arguments):
        self.testbed = testbed
        self.input_host = input_host
        self.input_namespace_end = input_namespace_end
        self.arguments = arguments
        self.generator = Generator(testbed, input_namespace_end)
        self.configs = {size: trafgen_config(size, arguments.flows) for size in arguments.sizes}

    def snapshot(self, forwarder: Forwarder) -> Snapshot:
        namespace_end = namespace_link_stats(self.testbed.namespace, self.input_namespace_end)["tx"]
        return Snapshot(
            time=time.monotonic(),
            generated=interface_counter(self.input_host, "rx_packets"),
            sent=namespace_end["packets"] + namespace_end["dropped"],
            delivered=sum(interface_counter(name, "rx_packets") for name in forwarder.consumers),
            forwarder_cpu_ns=forwarder.cpu_ns(),
            cpus=cpu_times(),
        )

    def trial(self, forwarder: Forwarder, frame_bytes: int) -> Trial:
        """One run of the generator through a freshly started forwarder (its counters start at zero)."""
        with contender(self.arguments.cpu if self.arguments.contend else None):
            return self._trial_run(forwarder, frame_bytes)

    def _trial_run(self, forwarder: Forwarder, frame_bytes: int) -> Trial:
        forwarder.start()
        try:
            before = self.snapshot(forwarder)
            try:
                self._start_generator(frame_bytes, before.generated)
                time.sleep(WARMUP_SECONDS)
                start = self.snapshot(forwarder)
                time.sleep(self.arguments.seconds)
                end = self.snapshot(forwarder)
            finally:
                self.generator.stop()
            after = self._drained(forwarder)
        finally:
            drops = forwarder.stop()
        return self._trial(forwarder, frame_bytes, before, start, end, after, drops)

    def _start_generator(self, frame_bytes: int, generated_before: int) -> None:
        """Starts trafgen and waits for its first frames; a second try, as its worker now and then
        starts spinning in sched_yield() without ever sending."""
        for _ in range(GENERATOR_START_ATTEMPTS):
            self.generator.start(self.configs[frame_bytes])
            deadline = time.monotonic() + GENERATOR_START_TIMEOUT
            while time.monotonic() < deadline:
                if interface_counter(self.input_host, "rx_packets") != generated_before:
                    return
                time.sleep(0.01)
            self.generator.stop()
        raise RuntimeError(f"trafgen sent nothing in {GENERATOR_START_ATTEMPTS} tries of "
                           f"{GENERATOR_START_TIMEOUT:g} s: {self.generator.log.tail()}")

    def _drained(self, forwarder: Forwarder) -> Snapshot:
        """The counters once the outputs have stopped moving (the forwarder emptied its rings)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        last = self.snapshot(forwarder)
        while time.monotonic() < deadline:
            time.sleep(DRAIN_QUIET_SECONDS)
            current = self.snapshot(forwarder)
            if current.delivered == last.delivered and current.generated == last.generated:
                return current
            last = current
        return last

    def _trial(self, forwarder, frame_bytes, before, start, end, after, drops) -> Trial:
        elapsed = end.time - start.time
        delivered_in_window = end.delivered - start.delivered
        per_delivered = (lambda ns: ns / delivered_in_window) if delivered_in_window else (lambda ns: None)
        forwarder_ns = None if start.forwarder_cpu_ns is None else end.forwarder_cpu_ns - start.forwarder_cpu_ns
        core_ticks = end.cpus[self.arguments.cpu]["busy"] - start.cpus[self.arguments.cpu]["busy"]
        softirq_ticks = sum(end.cpus[cpu]["softirq"] - start.cpus[cpu]["softirq"] for cpu in end.cpus)
        generated_in_window = end.generated - start.generated
        notes = ""
        if isinstance(forwarder, BricksForwarder):
            notes = (f"{forwarder.scheduling}; per output "
                     + "/".join(str(count) for count in forwarder.per_output_packets))
        return Trial(
            mode=forwarder.label,
            frame_bytes=frame_bytes,
            seconds=elapsed,
            generated_pps=generated_in_window / elapsed,
            delivered_pps=delivered_in_window / elapsed,
            sent=after.sent - before.sent,
            generated=after.generated - before.generated,
            delivered=after.delivered - before.delivered,
            forwarder_ns_per_packet=None if forwarder_ns is None else per_delivered(forwarder_ns),
            forwarder_busy=None if forwarder_ns is None else forwarder_ns / (elapsed * 1e9),
            forwarder_core_ns_per_packet=per_delivered(core_ticks * CLOCK_TICK_NS) if forwarder.consumers else None,
            softirq_ns_per_packet=softirq_ticks * CLOCK_TICK_NS / max(generated_in_window, 1),
            forwarder_drops=drops,
            notes=notes,
        )

    def run_mode(self, make_forwarder) -> list[Trial]:
        trials = []
        for size in self.arguments.sizes:
            trial = self.trial(make_forwarder(), size)
            print_trial(trial)
            trials.append(trial)
        return trials


# ---------------------------------------------------------------- output

def machine_facts() -> list[str]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")
    versions = []
    for tool in ("trafgen", "netsniff-ng"):
        first = subprocess.run([tool, "-v"], capture_output=True, text=True, check=False).stdout.splitlines()
        versions.append(first[0] if first else f"{tool} ?")
    return [f"date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"cpu       {model}, nproc {os.cpu_count()}",
            f"kernel    {platform.release()}",
            f"python    {platform.python_version()}",
            f"tools     {'; '.join(versions)}"]


def background_load(seconds: float = 1.0) -> str:
    """How busy each CPU is before the bench starts: other work there skews every row."""
    before = cpu_times()
    time.sleep(seconds)
    after = cpu_times()
    ticks = seconds * 1e9 / CLOCK_TICK_NS
    shares = {cpu: (after[cpu]["busy"] - before[cpu]["busy"]) / ticks for cpu in after}
    text = ", ".join(f"cpu{cpu} {100 * share:.0f}% busy" for cpu, share in sorted(shares.items()))
    if max(shares.values()) > 0.1:
        text += "  WARNING: other work is running, numbers will be noisy (see --realtime)"
    return text


def number(value, form):
    return "-" if value is None else format(value, form)


HEADER = (f"{'mode':<18} {'frame':>5} {'gen Mpps':>8} {'dlv Mpps':>8} {'loss %':>7} {'fwd drops':>12} "
          f"{'fwd CPU':>7} {'fwd ns/pkt':>10} {'core ns/pkt':>11} {'softirq ns/pkt':>14}")


def print_trial(trial: Trial) -> None:
    drops = "/".join(str(value) for value in trial.forwarder_drops.values()) or "-"
    print(f"{trial.mode:<18} {trial.frame_bytes:>5} {trial.generated_pps / 1e6:>8.3f} "
          f"{trial.delivered_pps / 1e6 if trial.delivered else 0:>8.3f} "
          f"{number(trial.loss if trial.delivered or trial.mode != Forwarder.label else None, '7.3f'):>7} "
          f"{drops:>12} {number(None if trial.forwarder_busy is None else 100 * trial.forwarder_busy, '6.1f'):>6}% "
          f"{number(trial.forwarder_ns_per_packet, '10.0f'):>10} {number(trial.forwarder_core_ns_per_packet, '11.0f'):>11} "
          f"{trial.softirq_ns_per_packet:>14.0f}", flush=True)
    print(f"{'':<18} {'':>5} sent {trial.sent}, generated {trial.generated}, delivered {trial.delivered}"
          + (f"; {trial.notes}" if trial.notes else ""), flush=True)


def print_ratios(trials: list[Trial]) -> None:
    print("\nratios")
    alone = {trial.frame_bytes: trial for trial in trials if trial.mode == Forwarder.label}
    for size in sorted({trial.frame_bytes for trial in trials}):
        forwarded = [trial for trial in trials if trial.frame_bytes == size and trial.mode != Forwarder.label]
        for trial in forwarded:
            if trial.generated:
                versus = (f", generator rate {trial.generated_pps / alone[size].generated_pps:.2f} x alone"
                          if size in alone else "")
                print(f"  {size:>5} B  {trial.mode:<18} delivered/generated {trial.delivered / trial.generated:.5f}"
                      f"{versus}")
        bricks_trials = [trial for trial in forwarded if trial.mode.startswith(BricksForwarder.base_label)]
        for bricks in bricks_trials:
            for other in forwarded:
                if other in bricks_trials or not (bricks.forwarder_ns_per_packet and other.forwarder_ns_per_packet):
                    continue
                whole_core = (f", {bricks.forwarder_core_ns_per_packet / other.forwarder_core_ns_per_packet:.2f} "
                              "(whole core)" if bricks.forwarder_core_ns_per_packet
                              and other.forwarder_core_ns_per_packet else "")
                print(f"  {size:>5} B  {bricks.mode} / {other.mode} CPU per packet: "
                      f"{bricks.forwarder_ns_per_packet / other.forwarder_ns_per_packet:.2f} (thread vs process)"
                      + whole_core)


def parse_modes(text: str) -> list[str]:
    modes = text.split(",")
    for mode in modes:
        if not re.fullmatch(r"alone|bricks|bricks-rps|tc|netsniff(-k[1-9][0-9]*)?", mode):
            raise argparse.ArgumentTypeError(f"unknown mode {mode!r}")
    return modes


def parse_realtime(text: str) -> int | str | None:
    if text == REALTIME_DEFAULT:
        return REALTIME_DEFAULT
    if text in ("off", "0"):
        return None
    if text.isdigit() and 1 <= int(text) <= 99:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected default, off or a priority 1..99, got {text!r}")


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per mode and frame size")
    parser.add_argument("--sizes", type=lambda text: [int(size) for size in text.split(",")], default=[64, 1514],
                        help="Ethernet frame sizes without FCS (default 64,1514: 1514 = a 1500-byte IP packet)")
    parser.add_argument("--flows", type=int, default=1024, help="UDP flows (source ports from 1024)")
    parser.add_argument("--cpu", type=int, default=1,
                        help="CPU of the forwarder (bricks engine, netsniff-ng); trafgen takes CPU 0")
    parser.add_argument("--buffer-slots", type=int, default=512, help="bricks PktEngine buffer_sz")
    parser.add_argument("--batch", type=int, default=1024, help="bricks pe:link batch")
    parser.add_argument("--netsniff-ring", default="4MiB",
                        help="netsniff-ng --ring-size, each of RX and TX (default: the bytes of bricks' default "
                             "RX ring; netsniff-ng's own default fails to allocate on veth)")
    parser.add_argument("--realtime", type=parse_realtime, default=REALTIME_DEFAULT, metavar="default|off|PRIORITY",
                        help="the forwarder's (bricks engine thread, netsniff-ng) SCHED_FIFO priority: default "
                             "(bricks' own default, DEFAULT_REALTIME_PRIORITY where allowed, the same for "
                             "netsniff-ng), off (normal scheduling) or 1..99; given without a value: "
                             f"{REALTIME_PRIORITY}", nargs="?", const=REALTIME_PRIORITY)
    parser.add_argument("--backend", choices=bricks_engine.BACKENDS, default="packet",
                        help="bricks' back-end (default packet: auto would pick xdp for LB(4), which bench_xdp.py "
                             "measures; its work is softirq time, not the engine thread's)")
    parser.add_argument("--contend", action="store_true",
                        help="run a CPU-bound loop at normal priority on the forwarder's CPU during every row: "
                             "other work sharing that CPU, the same in every run")
    parser.add_argument("--engine-nice", type=int, metavar="NICE",
                        help="the bricks engine thread's nice value (with --realtime off: a weight instead of "
                             "real-time priority)")
    parser.add_argument("--modes", default="alone,bricks,netsniff,netsniff-k100,tc", type=parse_modes,
                        help="comma-separated, from alone, bricks, bricks-rps (BRICKS_STEER_PIPES=1: the pipes' "
                             "receive work on the other CPU, the generator's), netsniff, netsniff-kN "
                             "(netsniff-ng --kernel-pull N us instead of its 10 us TX flush timer), tc")
    arguments = parser.parse_args()
    if arguments.cpu == GENERATOR_CPU:
        parser.error(f"--cpu {GENERATOR_CPU} is where trafgen runs: pick another CPU")
    return arguments


def main() -> int:
    arguments = parse_arguments()
    if os.geteuid() != 0:
        print("bench_veth.py needs root (namespaces, veths, AF_PACKET, tc)", file=sys.stderr)
        return 1
    install_signal_handlers()    # SIGTERM too unwinds through the clean-ups
    for line in machine_facts():
        print(line)
    print(f"idle      {background_load()}")
    bricks_engine.set_backend(arguments.backend)
    if arguments.realtime == REALTIME_DEFAULT:
        os.environ.pop(bricks_engine.REALTIME_ENVIRONMENT, None)   # the default is what runs with no setting
    realtime = {REALTIME_DEFAULT: f"default ({bricks_engine.DEFAULT_REALTIME_PRIORITY} where allowed)",
                None: "off"}.get(arguments.realtime, arguments.realtime)
    print(f"bricks    back-end {arguments.backend}; forwarder SCHED_FIFO: {realtime}"
          + (f"; engine nice {arguments.engine_nice}" if arguments.engine_nice is not None else "")
          + (f"; a normal-priority CPU hog on CPU {arguments.cpu} during every row" if arguments.contend else ""))
    print(f"setup     trafgen 1 worker on CPU {GENERATOR_CPU} -> veth -> forwarder on CPU {arguments.cpu}; "
          f"{arguments.flows} UDP flows, {arguments.seconds:g} s per row\n")
    trials = []
    with Testbed() as testbed:
        input_host, input_namespace_end = testbed.add_input("in")
        pipe_base = testbed.host_name("o")
        bench = Bench(testbed, input_host, input_namespace_end, arguments)
        modes = {
            "alone": lambda: Forwarder(input_host, arguments.cpu),
            "bricks": lambda: BricksForwarder(input_host, arguments.cpu, arguments.realtime,
                                              arguments.buffer_slots, arguments.batch, nice=arguments.engine_nice),
            "bricks-rps": lambda: BricksForwarder(input_host, arguments.cpu, arguments.realtime,
                                                  arguments.buffer_slots, arguments.batch, steered=True,
                                                  nice=arguments.engine_nice),
            "netsniff": lambda kernel_pull=None: NetsniffForwarder(
                input_host, arguments.cpu, arguments.realtime, pipe_base,
                arguments.netsniff_ring, kernel_pull),
            "tc": lambda: TcRedirect(input_host, arguments.cpu, arguments.realtime, pipe_base),
        }
        print(HEADER)
        for mode in arguments.modes:
            name, _, kernel_pull = mode.partition("-k")
            make = modes[name]
            trials += bench.run_mode(functools.partial(make, int(kernel_pull)) if kernel_pull else make)
    print_ratios(trials)
    return 0


if __name__ == "__main__":
    sys.exit(main())
