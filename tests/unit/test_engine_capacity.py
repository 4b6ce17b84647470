"""What the C engine's capacity and return codes mean to an operator (issue 10): any number of trees on one
engine all deliver, a C refusal is a one-line BricksError, an error the run ends on is reported, and counters can
be read from another thread while engines are linked, started, unlinked and deleted.

Pcap files only: runs without root."""
import errno
import threading
import time

import pytest

from bricks import engine as engine_module
from bricks import stats as stats_module
from bricks.engine import Brick, PktEngine
from bricks.errors import BricksError
from bricks.frames import read_pcap, udp_frame, pad, write_pcap

FRAMES_PER_TREE = 5
STRESS_SECONDS = 3.0
FREE_WINDOW = 0.001


@pytest.fixture(autouse=True)
def no_engines_left():
    yield
    engine_module.shutdown_all()
    assert engine_module.engines() == []


def tree_frames(tree):
    return [pad(udp_frame("10.0.0.1", "10.0.0.2", 1000 + tree, 2000 + number)) for number in range(FRAMES_PER_TREE)]


def reader_tree(tmp_path, tree):
    """PcapReader tree number `tree`: its own input file of distinct frames, its own output file."""
    source = tmp_path / f"in{tree}.pcap"
    write_pcap(source, tree_frames(tree))
    return Brick("PcapReader").connect_input(str(source)).connect_output(str(tmp_path / f"out{tree}.pcap"))


@pytest.mark.parametrize("trees", [17, 18, 300])
def test_every_one_of_many_pcap_trees_on_one_engine_delivers(tmp_path, trees):
    """Past 16 sources the C engine used to refuse silently: the last trees got nothing."""
    engine = PktEngine.new("many")
    for tree in range(trees):
        engine.link(reader_tree(tmp_path, tree))
    engine.start()
    assert engine.wait(60)
    stats = engine.stats()
    assert stats["packets"] == stats["bytes"] // 60 == trees * FRAMES_PER_TREE and stats["drops"] == 0
    assert [brick["outputs"][0]["packets"] for brick in stats["bricks"]] == [FRAMES_PER_TREE] * trees
    engine.delete()   # flushes and closes every writer
    for tree in range(trees):
        assert read_pcap((tmp_path / f"out{tree}.pcap").read_bytes()).frames == tree_frames(tree)


class _FailingRun:
    """The native library, except that a run ends at once on EIO (poll failing under the loop)."""

    def __init__(self, lib):
        self._lib = lib

    def brk_engine_run(self, handle):
        return -errno.EIO

    def __getattr__(self, name):
        return getattr(self._lib, name)


def test_an_error_a_run_ends_on_is_reported_in_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(engine_module, "lib", _FailingRun(engine_module.lib))
    engine = PktEngine.new("failing")
    engine.link(reader_tree(tmp_path, 0))
    engine.start()
    assert engine.wait(10)
    assert engine.status_lines() == ["Engine failing: stopped on an error: Input/output error"]
    assert engine.stats()["problems"] == engine.status_lines()
    assert "stopped on an error: Input/output error" in caplog.text


def test_a_refused_output_is_a_one_line_error_and_nothing_stays_linked(tmp_path, monkeypatch):
    class RefusingSinks(_FailingRun):
        def brk_brick_add_sink(self, brick, sink):
            return -1
    monkeypatch.setattr(engine_module, "lib", RefusingSinks(engine_module.lib))
    engine = PktEngine.new("refusing")
    brick = reader_tree(tmp_path, 0)
    with pytest.raises(BricksError) as error:
        engine.link(brick)
    assert str(error.value) == f"PcapReader: output {tmp_path}/out0.pcap refused: more outputs than its kind takes"
    assert engine.linked == [] and brick.handle is None and brick.engine is None


class _FreedMemoryGuard:
    """The native library, recording every C brick and engine freed and failing any read of one after its free:
    the refcount check of the stats race (a read after brk_brick_free would be a use after free)."""

    def __init__(self, lib):
        self._lib = lib
        self.freed = set()
        self.reads = 0
        self.late_reads = []
        self.lock = threading.Lock()

    def _read(self, handle):
        with self.lock:
            self.reads += 1
            if int(engine_module.ffi.cast("uintptr_t", handle)) in self.freed:
                self.late_reads.append(handle)

    def _free(self, handle):
        with self.lock:
            self.freed.add(int(engine_module.ffi.cast("uintptr_t", handle)))
        time.sleep(FREE_WINDOW)   # the reader gets the GIL right after a free: a missing lock shows at once

    def _alive(self, handle):
        with self.lock:   # malloc may hand the same address out again
            self.freed.discard(int(engine_module.ffi.cast("uintptr_t", handle)))
        return handle

    def brk_brick_new(self, *arguments):
        return self._alive(self._lib.brk_brick_new(*arguments))

    def brk_engine_new(self, *arguments):
        return self._alive(self._lib.brk_engine_new(*arguments))

    def brk_brick_stats(self, handle, out):
        self._read(handle)
        return self._lib.brk_brick_stats(handle, out)

    def brk_brick_output_stats(self, handle, index, out):
        self._read(handle)
        return self._lib.brk_brick_output_stats(handle, index, out)

    def brk_engine_stats(self, handle, out):
        self._read(handle)
        return self._lib.brk_engine_stats(handle, out)

    def brk_brick_free(self, handle):
        self._free(handle)
        return self._lib.brk_brick_free(handle)

    def brk_engine_free(self, handle):
        self._free(handle)
        return self._lib.brk_engine_free(handle)

    def __getattr__(self, name):
        return getattr(self._lib, name)


def test_stats_from_another_thread_never_read_a_freed_brick(tmp_path, monkeypatch):
    guard = _FreedMemoryGuard(engine_module.lib)
    monkeypatch.setattr(engine_module, "lib", guard)      # frees
    monkeypatch.setattr(stats_module, "lib", guard)       # reads
    done = threading.Event()
    failures = []
    bricks = []

    def hammer():
        while not done.is_set():
            try:
                for known in engine_module.engines():
                    known.stats()
                for brick in list(bricks):
                    brick.stats()
            except BricksError as error:   # e.g. an engine deleted under the reader: never a crash
                failures.append(error)

    reader = threading.Thread(target=hammer, daemon=True)
    reader.start()
    deadline = threading.Event()
    threading.Timer(STRESS_SECONDS, deadline.set).start()
    rounds = 0
    try:
        while not deadline.is_set():
            engine = PktEngine.new(f"churn{rounds}")
            bricks[:] = [reader_tree(tmp_path, tree) for tree in range(3)]
            for brick in bricks:
                engine.link(brick)
            engine.start()
            engine.wait(10)
            engine.unlink()
            engine.link(bricks[0])
            engine.delete()
            rounds += 1
    finally:
        done.set()
        reader.join(10)
    assert rounds >= 3 and guard.reads > 100
    assert guard.late_reads == [] and failures == []
