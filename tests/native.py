"""C-level engine set-ups for the tests: sources, bricks and sinks wired through cffi, run, counted and freed."""
import threading
import types
import time

from bricks._native import ffi, lib

ERROR_SIZE = 512
DEFAULT_BATCH = 256
STOP_TIMEOUT_S = 10


def opened(open_function, *arguments):
    """open_function(*arguments, error, error_size), which must succeed: its error message otherwise."""
    error = ffi.new("char[]", ERROR_SIZE)
    handle = open_function(*arguments, error, len(error))
    assert handle != ffi.NULL, ffi.string(error).decode()
    return handle


def new_brick(kind, **config):
    """A C brick of `kind` ("Dummy", "LoadBalancer", "Filter"...) with `config` fields of the kind's own config
    struct (a kind that takes none ignores them)."""
    found = lib.brk_brick_kind_find(kind.encode())
    assert found != ffi.NULL, kind
    config_type = lib.brk_brick_kind_config_type(found)
    own = ffi.new(ffi.string(config_type).decode() + " *", config) if config_type != ffi.NULL else ffi.NULL
    return opened(lib.brk_brick_new, found, own)


def memory_source(frames, rounds=1):
    """A source replaying `frames` `rounds` times (the C side keeps its own copy)."""
    lengths = ffi.new("uint32_t[]", [len(frame) for frame in frames])
    source = lib.brk_source_memory_new(b"".join(frames), lengths, len(frames), rounds)
    assert source != ffi.NULL
    return source


def output_counters(brick, output=0):
    counters = ffi.new("struct brk_counters *")
    assert lib.brk_brick_output_stats(brick, output, counters) == 0
    return counters


def output_packets(brick, outputs):
    """The packets each of the first `outputs` outputs of `brick` passed on."""
    return [output_counters(brick, output).packets for output in range(outputs)]


def brick_stats(brick):
    """The brick's published counters: received_packets, received_bytes, outputs and its kind's by name."""
    stats = ffi.new("struct brk_brick_stats *")
    lib.brk_brick_stats(brick, stats)
    counted = types.SimpleNamespace(received_packets=stats.received_packets, received_bytes=stats.received_bytes,
                                    outputs=stats.outputs)
    kind = lib.brk_brick_kind_of(brick)
    for index in range(len(stats.counters)):
        name = lib.brk_brick_kind_counter(kind, index)
        if name == ffi.NULL:
            break
        setattr(counted, ffi.string(name).decode(), stats.counters[index])
    return counted


class Graph:
    """One C engine and every source, brick and sink given to it; a context manager that stops and frees them all."""

    def __init__(self, batch=DEFAULT_BATCH):
        self.engine = lib.brk_engine_new(batch, -1)
        assert self.engine != ffi.NULL
        self.sources, self.bricks, self.sinks = [], [], []
        self.thread = None

    def __enter__(self) -> "Graph":
        return self

    def __exit__(self, *exception_info) -> None:
        self.close()

    def brick(self, kind, **config):
        self.bricks.append(new_brick(kind, **config))
        return self.bricks[-1]

    def child(self, parent, kind, **config):
        """A new brick fed by the next output of `parent`."""
        child = self.brick(kind, **config)
        assert lib.brk_brick_add_child(parent, child) == 0
        return child

    def sink(self, brick, sink):
        """Takes `sink` over and makes it the next output of `brick`."""
        self.sinks.append(sink)
        assert lib.brk_brick_add_sink(brick, sink) == 0
        return sink

    def null_sinks(self, brick, count):
        return [self.sink(brick, lib.brk_sink_null_new()) for _ in range(count)]

    def source(self, source, brick):
        """Takes `source` over and makes the engine push what it reads into `brick`.

        Call it once the tree below `brick` is complete: the engine collects that tree's bricks and sinks now.
        """
        self.sources.append(source)
        assert lib.brk_engine_add_source(self.engine, source, brick) == 0
        return source

    def run(self):
        """Runs the engine in this thread until its input is exhausted."""
        assert lib.brk_engine_run(self.engine) == 0
        return self

    def start(self):
        """Runs the engine in a thread (cffi releases the GIL) until stop()."""
        self.thread = threading.Thread(target=lib.brk_engine_run, args=(self.engine,), daemon=True)
        self.thread.start()
        return self

    def finished(self, timeout):
        """Whether a started engine ended by itself (exhausted input) within `timeout` seconds."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def stop(self):
        """Stops a started engine; returns how long its thread took to end."""
        began = time.monotonic()
        lib.brk_engine_stop(self.engine)
        self.thread.join(STOP_TIMEOUT_S)
        assert not self.thread.is_alive(), "the engine did not stop"
        return time.monotonic() - began

    def stats(self):
        stats = ffi.new("struct brk_engine_stats *")
        lib.brk_engine_stats(self.engine, stats)
        return stats

    def close(self):
        if self.thread is not None and self.thread.is_alive():
            self.stop()
        lib.brk_engine_free(self.engine)
        for source in self.sources:
            lib.brk_source_close(source)
        for brick in self.bricks:
            lib.brk_brick_free(brick)
        for sink in self.sinks:
            lib.brk_sink_close(sink)
        self.sources, self.bricks, self.sinks = [], [], []
