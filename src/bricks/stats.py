"""Counters: one snapshot per engine, and every text form rendered from snapshots.

`engine_snapshot(engine)` reads an engine's C counters under the engine's lock
(unlink and delete free the C objects under the same lock, so a metrics thread
never reads freed memory) and returns a plain dict, ready for JSON and
Prometheus:

    {"name", "time" (seconds since the epoch), "running", "finished",
     "packets", "bytes", "drops", "kernel_drops", "output_drops", "transmit_drops", "queued",
     "output_full", "output_too_big", ... (one per DROP_CAUSES), "input_malformed",
     "problems": [one line per input or output not working, or the error the run ended on],
     "bricks": [{"kind", "received", "received_bytes", "malformed", "fragment_fallbacks", "filtered", "deduplicated",
                 ... (every counter its C descriptor names: a Filter's passed, rule_dropped ...),
                 "outputs": [{"name", "packets", "bytes", "drops", "kernel_drops", "queued",
                              "full", "too_big", ... (one per DROP_CAUSES)}]}]}

received packets = delivered + every drop + queued (+ filtered + deduplicated for a brick that removes packets on
purpose), per output and in total.
`engine_text` (pe:show_stats) and `engines_table` (BRICKS.show_stats) render
snapshots; nothing else formats counters.
"""
import time

from . import links
from ._ffi import ffi, lib
from .backends import xdp as xdp_backend

# Why an output dropped packets: the C counter, and how show_stats names it.
DROP_CAUSES = (("full", "at full outputs"), ("too_big", "too big for the output"),
               ("too_short", "too short to send"), ("gone", "output gone"), ("write_errors", "write error"))
# Kind counters every brick snapshot carries (0 for a kind without them): the text tables read them.
COMMON_KIND_COUNTERS = ("malformed", "fragment_fallbacks", "filtered", "deduplicated")
_counter_names = {}   # kind name -> the names of its C counters, as its C descriptor lists them


def kind_counter_names(kind_name):
    """The names of brk_brick_stats.counters[0..] of a kind, from its C descriptor."""
    names = _counter_names.get(kind_name)
    if names is None:
        kind = lib.brk_brick_kind_find(kind_name.encode())
        names = []
        while kind != ffi.NULL:
            name = lib.brk_brick_kind_counter(kind, len(names))
            if name == ffi.NULL:
                break
            names.append(ffi.string(name).decode())
        names = _counter_names[kind_name] = tuple(names)
    return names


def brick_snapshot(brick):
    """The counters of one linked brick; the caller holds its engine's lock. None when not linked."""
    if brick.handle is None:
        return None
    if getattr(brick, "xdp_view", None) is not None:   # a tree running in XDP: the program's counters
        snapshot = dict.fromkeys(COMMON_KIND_COUNTERS, 0)   # what XDP cannot count (or do) stays 0
        snapshot.update(xdp_backend.brick_snapshot(brick))
        return snapshot
    brick_stats = ffi.new("struct brk_brick_stats *")
    lib.brk_brick_stats(brick.handle, brick_stats)
    counters = ffi.new("struct brk_counters *")
    outputs = []
    for index, port in enumerate(brick.outputs):
        device, base = brick.transmit_drop_base.get(index, (None, 0))
        transmit_drops = links.transmit_drops(device) - base if device else 0
        lib.brk_brick_output_stats(brick.handle, index, counters)   # after: refused never lags behind
        # A frame the device refused counts in its tx_dropped, but it stays queued and is tried again (and
        # counted again): those are not packets lost.
        kernel_drops = max(0, transmit_drops - counters.refused)
        output = {"name": port.name, "packets": counters.packets, "bytes": counters.bytes,
                  "drops": counters.drops, "kernel_drops": kernel_drops, "queued": counters.queued}
        output.update((cause, getattr(counters, cause)) for cause, _ in DROP_CAUSES)
        outputs.append(output)
    snapshot = {"kind": brick.kind.name, "received": brick_stats.received_packets,
                "received_bytes": brick_stats.received_bytes}
    snapshot.update((name, 0) for name in COMMON_KIND_COUNTERS)
    snapshot.update((name, brick_stats.counters[index])
                    for index, name in enumerate(kind_counter_names(brick.kind.name)))
    snapshot["outputs"] = outputs
    return snapshot


def engine_snapshot(engine):
    """The snapshot of one engine (see the module docstring)."""
    engine_stats = ffi.new("struct brk_engine_stats *")
    with engine.lock:
        if engine.handle is not None:
            lib.brk_engine_stats(engine.handle, engine_stats)
        bricks = [brick_snapshot(brick) for linked in engine.linked for brick in linked.bricks]
        # Trees running in XDP: their C bricks see nothing; their roots' counters are the engine's input.
        xdp_roots = [brick_snapshot(linked.root) for linked in engine.linked
                     if getattr(linked.root, "xdp_view", None) is not None]
    bricks = [brick for brick in bricks if brick is not None]
    xdp_drops = {cause: sum(output[cause] for brick in bricks if brick.get("backend") == "xdp"
                            for output in brick["outputs"]) for cause, _ in DROP_CAUSES}
    transmit_drops = sum(output["kernel_drops"] for brick in bricks for output in brick["outputs"])
    output_drops = engine_stats.output_drops + sum(xdp_drops.values())
    snapshot = {"name": engine.name, "time": time.time(),
                "packets": engine_stats.received_packets + sum(root["received"] for root in xdp_roots),
                "bytes": engine_stats.received_bytes + sum(root["received_bytes"] for root in xdp_roots),
                "drops": engine_stats.kernel_drops + output_drops + transmit_drops,
                "kernel_drops": engine_stats.kernel_drops, "output_drops": output_drops,
                "transmit_drops": transmit_drops, "queued": engine_stats.output_queued,
                "input_malformed": engine_stats.input_malformed,
                "running": engine.running, "finished": bool(engine_stats.finished), "bricks": bricks,
                "problems": engine.status_lines()}
    snapshot.update((f"output_{cause}", getattr(engine_stats, f"output_{cause}") + xdp_drops[cause])
                    for cause, _ in DROP_CAUSES)
    return snapshot


def column_widths(rows, minimums):
    """The width of each column: the widest cell of rows, at least its minimum."""
    return tuple(max([minimum] + [len(str(row[column])) for row in rows]) for column, minimum in enumerate(minimums))


def engine_text(stats):
    """pe:show_stats: the engine's totals and drop causes, then each brick and its outputs, then problems."""
    # The usual cause always, the others only once they happened.
    causes = [f"{stats['output_full']} at full outputs"] + [
        f"{stats['output_' + cause]} {text}" for cause, text in DROP_CAUSES[1:] if stats["output_" + cause]]
    lines = [f"Engine {stats['name']}: {stats['packets']} packets, {stats['bytes']} bytes, "
             f"{stats['drops']} dropped ({stats['kernel_drops']} by the kernel on input, "
             f"{', '.join(causes)}, {stats['transmit_drops']} by the kernel on output)"
             + (f", {stats['queued']} queued" if stats["queued"] else "")
             + (f", {stats['input_malformed']} malformed input records skipped"
                if stats["input_malformed"] else "")]
    outputs = [[(output["name"], output["packets"], output["bytes"], output["drops"] + output["kernel_drops"])
                for output in brick["outputs"]] for brick in stats["bricks"]]
    # One width per column over every brick's outputs: long names (pcap paths) keep the numbers aligned.
    widths = column_widths([row for rows in outputs for row in rows], (16, 12, 14, 10))
    for brick, rows in zip(stats["bricks"], outputs):
        removed = "".join(f", {brick[name]} {name}" for name in ("filtered", "deduplicated") if brick[name])
        lines.append(f"  {brick['kind']}: {brick['received']} received, {brick['malformed']} malformed{removed}")
        for name, packets, size, dropped in rows:
            lines.append(f"    -> {name:<{widths[0]}} {packets:>{widths[1]}} packets "
                         f"{size:>{widths[2]}} bytes {dropped:>{widths[3]}} dropped")
    lines += stats["problems"]
    return "\n".join(lines)


def engines_table(snapshots):
    """BRICKS.show_stats: Engine, Packet Cnt, Byte Cnt, Packet Drop of every engine, then a Total row."""
    header = ("Engine", "Packet Cnt", "Byte Cnt", "Packet Drop")
    rows = [(stats["name"], stats["packets"], stats["bytes"], stats["drops"]) for stats in snapshots]
    total = ("Total",) + tuple(sum(row[column] for row in rows) for column in (1, 2, 3))
    widths = column_widths(rows + [header, total], (0, 14, 18, 14))   # long names, big counts: still aligned

    def line(row):
        cells = [f"{value:>{width}}" for value, width in zip(row[1:], widths[1:])]
        return "  ".join([f"{row[0]:<{widths[0]}}"] + cells)

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(header), rule] + [line(row) for row in rows] + [rule, line(total)])
