"""Filter brick on frames shorter than their headers (issue 8.12): every frame of 0..60 bytes is counted once and
nothing past its end is read; the last check is a build of the C code under AddressSanitizer and UBSan."""
import shutil
import subprocess
from pathlib import Path

import pytest

from bricks.filter import FilterRules
from bricks.frames import tcp_frame, udp_frame
from tests.native import Graph, brick_stats, memory_source, output_packets

LONGEST = 60
CSRC = Path(__file__).resolve().parents[2] / "src" / "bricks" / "csrc"
DRIVER = Path(__file__).resolve().parents[1] / "sanitized" / "filter_short_frames.c"
# The files the driver needs: the engine, the Filter and its rules, the in-memory back-end.
DRIVER_SOURCES = ["engine.c", "brick_filter.c", "filter_rules.c", "io_memory.c"]


def prefixes(frame):
    """frame cut to every length from 0 to LONGEST bytes."""
    frame = frame.ljust(LONGEST, b"\0")
    return [frame[:length] for length in range(LONGEST + 1)]


def test_every_short_frame_is_counted_once():
    rules = FilterRules()
    dropped_source = "10.0.0.1"
    rules.drop({"src": dropped_source, "proto": "tcp"})
    rules.drop({"dst": "2001:db8::/32"})
    frames = prefixes(tcp_frame(dropped_source, "10.0.0.2", 1, 80)) + prefixes(udp_frame("10.0.0.3", "10.0.0.4", 5, 6))
    with Graph() as graph:
        brick = graph.brick("Filter")
        rules.attach(brick)
        graph.null_sinks(brick, 1)
        graph.source(memory_source(frames, rounds=2), brick)
        graph.run()
        passed, = output_packets(brick, 1)
        counted = brick_stats(brick)
    assert counted.received_packets == 2 * len(frames) == passed + counted.filtered
    # A TCP frame from the dropped source is only recognised once its IPv4 header is whole (14 + 20 bytes).
    assert counted.filtered == 2 * (LONGEST + 1 - 34)


def sanitizing_compiler():
    for compiler in ("gcc", "clang"):
        if shutil.which(compiler):
            return compiler
    return None


def test_no_read_past_a_short_frame_under_address_sanitizer(tmp_path):
    compiler = sanitizing_compiler()
    if compiler is None:
        pytest.skip("no C compiler")
    binary = tmp_path / "filter_short_frames"
    build = subprocess.run(
        [compiler, "-g", "-O1", "-std=gnu11", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         f"-I{CSRC}", str(DRIVER), *(str(CSRC / name) for name in DRIVER_SOURCES),
         "-lpcap", "-lpthread", "-o", str(binary)],
        capture_output=True, text=True, timeout=120)
    if build.returncode != 0 and "asan" in build.stderr.lower():
        pytest.skip(f"{compiler} cannot link the sanitizers here")
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=120,
                         env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert run.returncode == 0, run.stderr[-4000:]
    # Both frame kinds, lengths 0..60, 3 rounds each.
    assert run.stdout.split() == ["ok", str(2 * (LONGEST + 1) * 3)]
