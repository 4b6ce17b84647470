"""`bricks split`: one pcap file split offline into several, by flow, copied to each, or filtered.

The work is done by an ordinary engine (PcapReader -> [Filter] -> LoadBalancer
or Duplicator -> PcapWriter outputs), so a file split here lands in the same
output as its frames would on a live LoadBalancer with as many outputs: the
same C hash and the same output choice, not a re-implementation of them.
"""
import os
import sys
import time

from .errors import BricksError

OUTPUT_FIELD = "{n}"          # in the -o template: the output's number, 0..N-1
PROGRESS_INTERVAL = 0.2       # seconds between two redraws of the progress line
POLL_INTERVAL = 0.05          # seconds between two looks at a finished engine
PCAP_FILE_HEADER_BYTES = 24
PCAP_RECORD_HEADER_BYTES = 16
BAR_WIDTH = 30


class SplitPlan:
    """What to do: the input, the output paths, and the bricks between them."""

    def __init__(self, input_path, template, balance=None, duplicate=None, expression=None, split=4):
        if balance is not None and duplicate is not None:
            raise BricksError("--balance and --duplicate cannot be used together")
        if balance is None and duplicate is None and expression is None:
            raise BricksError("nothing to do: give --balance N, --duplicate N or --filter EXPR")
        if not os.path.isfile(input_path):
            raise BricksError(f"{input_path}: no such pcap file")
        self.input_path = input_path
        self.balance, self.duplicate, self.expression, self.split = balance, duplicate, expression, split
        self.outputs = output_paths(template, balance or duplicate or 1)
        for path in self.outputs:
            if os.path.exists(path) and os.path.samefile(path, input_path):
                raise BricksError(f"{path}: the output would overwrite the input")

    def bricks(self):
        """The root brick of the tree (PcapReader), its descendants linked; internal edges are named `split*`."""
        from .engine import Brick
        reader = Brick("PcapReader", self.split if self.balance and self.expression is None else None)
        reader.connect_input(self.input_path)
        if self.balance and self.expression is None:
            # The reader balances by itself with the LoadBalancer's code (balance.h): one brick less per packet.
            reader.connect_output(*self.outputs)
            return reader
        reader.connect_output("split{0")
        last, port = reader, "split}0"
        if self.expression is not None:
            passed = Brick("Filter", self.expression).connect_input(port)
            last.link(passed)
            last, port = passed, "split}1"
            if not (self.balance or self.duplicate):
                passed.connect_output(*self.outputs)
                return reader
            passed.connect_output("split{1")
        if self.balance:
            fan_out = Brick("LoadBalancer", self.split)
        else:
            fan_out = Brick("Duplicator")
        fan_out.connect_input(port).connect_output(*self.outputs)
        last.link(fan_out)
        return reader


def output_paths(template, count):
    """The output paths: `{n}` in template replaced by 0..count-1 (needed when count > 1)."""
    if count > 1 and OUTPUT_FIELD not in template:
        raise BricksError(f"-o {template}: {count} outputs need {OUTPUT_FIELD} in the name (e.g. 'out-{{n}}.pcap')")
    paths = [template.replace(OUTPUT_FIELD, str(index)) for index in range(count)]
    return paths


class Progress:
    """One line on a terminal, redrawn in place: share of the input read, packets/s and the time left."""

    def __init__(self, stream, total_bytes):
        self.stream = stream
        self.total_bytes = max(1, total_bytes)
        self.started = time.monotonic()
        self.drawn = 0.0
        self.width = 0

    def update(self, packets, wire_bytes, force=False):
        now = time.monotonic()
        if not force and now - self.drawn < PROGRESS_INTERVAL:
            return
        self.drawn = now
        # The file position, from what was read: the records' headers and (whole captures) their bytes.
        position = PCAP_FILE_HEADER_BYTES + packets * PCAP_RECORD_HEADER_BYTES + wire_bytes
        share = min(1.0, position / self.total_bytes)
        elapsed = max(now - self.started, 1e-6)
        rate = packets / elapsed
        left = elapsed * (1 - share) / share if share > 0 else float("inf")
        filled = int(share * BAR_WIDTH)
        line = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share * 100:5.1f}%  {packets:,} packets  "
                f"{_packets_per_second(rate)}  ETA {_duration(left)}")
        self.stream.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.stream.flush()

    def close(self):
        self.stream.write("\r" + " " * self.width + "\r")
        self.stream.flush()


def _packets_per_second(rate):
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} Mpkt/s"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} kpkt/s"
    return f"{rate:.0f} pkt/s"


def _duration(seconds):
    if seconds == float("inf"):
        return "--:--"
    seconds = int(seconds + 0.5)
    return f"{seconds // 60:02d}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"


class SplitResult:
    """Counters of a finished split: every packet read is in one output per copy, or counted with its cause."""

    def __init__(self, stats, outputs):
        from .engine import DROP_CAUSES
        self.outputs = outputs
        self.packets = stats["packets"]
        self.malformed = stats["input_malformed"]
        self.drops = stats["drops"]
        self.filtered = sum(brick["filtered"] for brick in stats["bricks"])
        written = {}
        for brick in stats["bricks"]:
            for output in brick["outputs"]:
                if output["name"] in outputs:
                    written[output["name"]] = output["packets"]
        self.written = [written.get(path, 0) for path in outputs]
        self.drop_causes = {cause: stats[f"output_{cause}"] for cause, _ in DROP_CAUSES if stats.get(f"output_{cause}")}

    def summary(self, input_path):
        parts = [f"{path}: {count}" for path, count in zip(self.outputs, self.written)]
        line = f"{input_path}: {self.packets} packets read; " + ", ".join(parts)
        if self.filtered:
            line += f"; {self.filtered} not matching the filter"
        if self.malformed:
            line += f"; {self.malformed} malformed records skipped"
        if self.drops:
            line += "; lost: " + ", ".join(f"{count} {cause.replace('_', ' ')}"
                                           for cause, count in self.drop_causes.items())
        return line


def run(plan, progress_stream=None, engine_name=None):
    """Runs the split to its end; the counters. Outputs are removed when it does not finish (error, Ctrl+C)."""
    from .engine import PktEngine
    engine = PktEngine.new(engine_name or f"split-{os.getpid()}")
    finished = False
    try:
        engine.link(plan.bricks())
        progress = Progress(progress_stream, os.path.getsize(plan.input_path)) if progress_stream else None
        engine.start()
        try:
            while not engine.wait(POLL_INTERVAL):
                if progress:
                    stats = engine.stats()
                    progress.update(stats["packets"], stats["bytes"])
            if progress:
                stats = engine.stats()
                progress.update(stats["packets"], stats["bytes"], force=True)
        finally:
            if progress:
                progress.close()
        engine.stop()
        if engine.run_error:
            raise BricksError(f"engine stopped: {engine.run_error}")
        result = SplitResult(engine.stats(), plan.outputs)
        finished = True
        return result
    finally:
        engine.delete()      # stops it, closes (flushes) every output
        if not finished:
            for path in plan.outputs:
                # Files only: an output may be a device or a FIFO (-o /dev/stdout), never to be removed.
                if os.path.isfile(path) and not os.path.islink(path):
                    os.remove(path)


def progress_stream_for(stream=None):
    """The stream to draw progress on: stderr when it is a terminal, else None (piped, logged: no bar)."""
    stream = stream or sys.stderr
    return stream if stream.isatty() else None
