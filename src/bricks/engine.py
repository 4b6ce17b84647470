"""Packet engines: the Python API under the Lua shell (SPEC §4), their lifecycle and their thread.

pe:link(brick) plans the tree (graph.plan: checked in full, no I/O), lets the
tree's back-end (backends/) open its sources and sinks, makes its C bricks and
wires them; start() makes the C engine over every linked tree and runs it in
one Python thread with the GIL released; stats() is stats.engine_snapshot.
Linking is all or nothing: a link that fails undoes what it opened or created.
The engine's lock guards its C objects: unlink and delete free them under it,
readers in other threads (stats) read them under it.
"""
import atexit
import errno
import logging
import os
import signal
import threading

from . import backends, graph, links, registry, stats
from ._ffi import error_buffer, error_text, ffi, lib
from .backends.packet import link_call
from .catalog import FRAGMENT_TABLE_SLOTS  # noqa: F401 - importable from here, as before
from .errors import BricksError
from .graph import MAX_BATCH, MAX_QID, Brick, whole_number  # noqa: F401 - Brick: the API's, from here too
from .ports import PortKind

log = logging.getLogger("bricks")

DEFAULT_BUFFER_SLOTS = 512
DEFAULT_BATCH = 1024
STOP_TIMEOUT = 5.0
MAX_CPU = 65535                 # a CPU number beyond any host: above it the number is a mistake, not a bigger host
WATCH_INTERVAL = 0.2            # how often a running engine's inputs and outputs are checked for news

DROP_CAUSES = stats.DROP_CAUSES   # kept importable from here

_engines = {}                   # name -> PktEngine, in creation order
_engines_lock = threading.RLock()

REALTIME_ENVIRONMENT = "BRICKS_REALTIME"        # SCHED_FIFO priority of engine threads, 1..99; 0 or off: normal
REALTIME_OFF = "off"
# Engine threads run SCHED_FIFO at this priority by default where the process may (root, CAP_SYS_NICE, RLIMIT_RTPRIO):
# a packet broker's input ring overflows when other work takes the engine's CPU (bench/RESULTS.md, issue 11 item 7).
# Low on purpose: above every normal task (ksoftirqd included), below threaded interrupt handlers (50) and the
# kernel's own real-time threads (watchdogs, 99). An idle engine sleeps in poll(); a busy one leaves its CPU to
# others 5% of the time (the kernel's RT throttling, /proc/sys/kernel/sched_rt_runtime_us).
DEFAULT_REALTIME_PRIORITY = 10
STEER_PIPES_ENVIRONMENT = "BRICKS_STEER_PIPES"   # 1: pipe consumers' receive work off pinned engines' CPUs
MAX_REALTIME_PRIORITY = 99
CAP_SYS_NICE = 23               # linux/capability.h

BACKENDS = backends.CHOICES
BACKEND_ENVIRONMENT = backends.BACKEND_ENVIRONMENT


def set_default_batch(batch):
    """The batch of every pe:link(brick) given none (the command line's -b); link reads it at each call."""
    global DEFAULT_BATCH
    DEFAULT_BATCH = whole_number(batch, "batch", 1, MAX_BATCH)


def set_backend(name):
    """Chooses the back-end of the engines to come: auto, netmap, xdp or packet (SPEC §3)."""
    with _engines_lock:
        backends.set_backend(name, engines_exist=bool(_engines))


backend_name = backends.backend_name
backend_detail = backends.backend_detail


_realtime_priority = None       # SCHED_FIFO priority set by set_realtime_priority, else from the environment
_realtime_chosen = False
_realtime_announced = False     # the default's one log line (applied or refused) is written once per process
_realtime_announce_lock = threading.Lock()


def set_realtime_priority(priority):
    """Engines started from now on run SCHED_FIFO at priority (1..99), or normally with None, 0 or "off".

    Without a call, the environment variable BRICKS_REALTIME decides; unset or empty: the default,
    DEFAULT_REALTIME_PRIORITY where the process may use it (see realtime_setting).
    A real-time engine keeps its CPU against any other normal-priority load there; an idle one sleeps.
    """
    global _realtime_priority, _realtime_chosen
    _realtime_priority = _realtime_value(priority, "realtime priority")
    _realtime_chosen = True


def realtime_setting():
    """(priority, asked) for the engines to come: the SCHED_FIFO priority or None (normal scheduling), and
    whether the operator asked for it (a refusal is then an error) rather than got it by default (a warning)."""
    if _realtime_chosen:
        return _realtime_priority, True
    text = os.environ.get(REALTIME_ENVIRONMENT, "").strip()
    if not text:
        return DEFAULT_REALTIME_PRIORITY, False
    return _realtime_value(text, REALTIME_ENVIRONMENT), True


def realtime_priority():
    """The SCHED_FIFO priority engine threads ask for at start (the default included), or None."""
    return realtime_setting()[0]


def _realtime_value(priority, what):
    """A priority from a call or the environment: 1..99, or None for normal scheduling (None, 0, "0", "off")."""
    if isinstance(priority, str):
        text = priority.strip().lower()
        priority = int(text) if text.isdigit() else None if text == REALTIME_OFF else text
    if priority is None or priority == 0 and not isinstance(priority, bool):
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= MAX_REALTIME_PRIORITY:
        raise BricksError(f"{what} must be a whole number from 1 to {MAX_REALTIME_PRIORITY}, or 0 or "
                          f"{REALTIME_OFF} for normal scheduling, got {priority!r}")
    return priority


def _realtime_refusal(error):
    """Why the kernel refused SCHED_FIFO, for the operator: a missing capability, or, with the capability, a cpu
    cgroup without real-time runtime (kernels with RT group scheduling give new cgroups none)."""
    if error.errno != errno.EPERM:
        return error.strerror
    if not _has_capability(CAP_SYS_NICE):
        return f"{error.strerror} (it needs root or CAP_SYS_NICE)"
    return f"{error.strerror} (its cpu cgroup {_cpu_cgroup()} has no real-time runtime: cpu.rt_runtime_us)"


def _has_capability(number):
    with open("/proc/self/status") as status:
        effective = next(line for line in status if line.startswith("CapEff:")).split()[1]
    return bool(int(effective, 16) >> number & 1)


def _cpu_cgroup():
    """This process's cgroup in the cpu hierarchy (cgroup v1 "N:cpu,cpuacct:/path", else the v2 "0::/path")."""
    with open("/proc/self/cgroup") as groups:
        entries = [line.rstrip("\n").split(":", 2) for line in groups]
    paths = [path for _, controllers, path in entries if "cpu" in controllers.split(",")]
    return (paths or [path for _, controllers, path in entries if controllers == ""] or ["/"])[0]


def _announce_realtime_default(message, *arguments, level=logging.INFO):
    """Logs the default's outcome once per process: every engine gets the same, one line says it."""
    global _realtime_announced
    with _realtime_announce_lock:
        if _realtime_announced:
            return
        _realtime_announced = True
    log.log(level, message, *arguments)


def _steering_pipes():
    return os.environ.get(STEER_PIPES_ENVIRONMENT, "").strip() not in ("", "0")


class _Linked:
    """What one pe:link() opened: C bricks, sources, sinks; closed in reverse, then its back-ends release."""

    def __init__(self, context):
        self.context = context
        self.plan = context.plan
        self.root, self.batch, self.qid = self.plan.root, self.plan.batch, self.plan.qid
        self.backend = context.backend.name
        self.bricks = []             # Brick, parents first
        self.sources = []            # (C source, target Brick)
        self.sinks = []
        self.watched = []            # (what, read its state into PktEngine._state, call when back or None)

    @property
    def finite(self):
        """Every source is a pcap file (it ends by itself)."""
        return self.plan.finite

    def close(self):
        for source, _ in self.sources:
            lib.brk_source_close(source)
        for brick in reversed(self.bricks):
            if brick.handle is not None:
                lib.brk_brick_free(brick.handle)
                brick.handle = None
            brick.engine = None
        for sink in self.sinks:
            lib.brk_sink_close(sink)
        self.sources, self.sinks, self.bricks, self.watched = [], [], [], []
        backends.release(self.context)


class PktEngine:
    """A packet engine: one thread running the C loop over its linked bricks."""

    def __init__(self, name, buffer_slots=DEFAULT_BUFFER_SLOTS, cpu=-1):
        self.name = name
        self.buffer_slots = buffer_slots
        self.cpu = cpu
        self.linked = []             # _Linked, one per pe:link()
        self.pipes = {}              # broker end name -> links.PipePair this engine holds in the registry
        self.handle = None           # the C engine, made at start from the linked trees
        self.thread = None
        self.run_error = None
        self.deleted = False
        self.started = False         # start() has run once: wait() then has something to wait for
        # Set when the C loop of the current run has returned. Waits use it, not Thread.join: a join that
        # Ctrl-C interrupts marks a still-running thread as stopped (CPython before 3.13), and the engine
        # would then be freed under its thread.
        self.run_done = threading.Event()
        self.pin_warning = None      # why the CPU asked for was not used (the engine then runs unpinned)
        self._state = ffi.new("struct brk_io_state *")
        self._watch_lock = threading.Lock()
        # Held while C objects are freed or read from another thread (stats): no reader sees freed memory.
        self.lock = threading.RLock()
        self.problems = {}           # what -> (changes seen, one-line reason) of inputs/outputs not working
        self._changes_seen = {}      # what -> the state's change count last logged

    # -- creation and lookup (PktEngine.new / PktEngine.retrieve) --
    @classmethod
    def new(cls, name, buffer_slots=DEFAULT_BUFFER_SLOTS, cpu=-1):
        if not isinstance(name, str) or not name or len(name) > 64 or not name.isprintable():
            raise BricksError(f"PktEngine.new: engine name must be a non-empty string, got {name!r}")
        buffer_slots = whole_number(buffer_slots, "buffer size", 8, 1 << 20)
        cpu = whole_number(cpu, "cpu", -1, MAX_CPU)
        # As the original: a CPU this host (or this process's affinity) lacks is a warning, not an
        # error, so scripts written for bigger machines run here, unpinned.
        pin_warning = None
        available = usable_cpus()
        if cpu >= 0 and cpu not in available:
            pin_warning = (f"engine {name} cannot be pinned to CPU {cpu} (this process may use CPUs "
                           f"{cpu_list_text(available)}): it runs unpinned")
            cpu = -1
        with _engines_lock:
            if name in _engines:
                raise BricksError(f"PktEngine.new: an engine named {name!r} exists already")
            if not _engines:
                links.reclaim_stale_pipes()
            engine = _engines[name] = cls(name, buffer_slots, cpu)
        engine.pin_warning = pin_warning
        return engine

    @staticmethod
    def retrieve(name):
        with _engines_lock:
            return _engines.get(name)

    def __repr__(self):
        state = "running" if self.running else "stopped"
        return f"<PktEngine {self.name} {state}, {len(self.linked)} brick tree(s) linked>"

    @property
    def running(self):
        return self.thread is not None and not self.run_done.is_set()

    def _check_usable(self, action):
        if self.deleted:
            raise BricksError(f"engine {self.name} was deleted")
        if self.running:
            raise BricksError(f"cannot {action} engine {self.name} while it is running: stop it first")

    # -- link / unlink --
    def link(self, brick, batch=None, qid=-1):
        """Binds brick's tree; batch None or -1 (the original's "unspecified") is DEFAULT_BATCH as it is now."""
        self._check_usable("link")
        if not isinstance(brick, Brick):
            raise BricksError(f"link: expected a Brick, got {type(brick).__name__}")
        if batch is None or (not isinstance(batch, bool) and batch == -1):
            batch = DEFAULT_BATCH
        batch = whole_number(batch, "batch (-1: the default)", 1, MAX_BATCH)
        qid = whole_number(qid, "qid", -1, MAX_QID)
        for member in brick.walk():
            if member.engine is not None:
                raise BricksError(f"{member.kind.name} is already linked to engine {member.engine.name}")
        tree = graph.plan(brick, batch, qid)
        with _engines_lock:
            context = backends.select(tree)
        context.engine = self
        linked = _Linked(context)
        try:
            self._open_sources(linked)
            self._realise(linked)
            context.backend.realise(context)
        except BaseException:
            with self.lock:   # a stats reader may be reading the bricks opened so far
                linked.close()
            raise
        self.linked.append(linked)
        self._drop_engine_handle()
        log.info("engine %s: %s", self.name, tree_line(linked))

    def _open_sources(self, linked):
        """Opens the tree's external inputs, before any output exists: a mistyped input then fails before
        it leaves an empty PcapWriter file, a veth, or a netmap pipe whose missing parent netmap would make
        into an empty port that the input would then bind to, silently idle."""
        context = linked.context
        for source_plan in linked.plan.sources:
            port = source_plan.port
            source = backends.for_port(context, port).open_source(context, port)
            linked.sources.append((source, linked.plan.nodes[source_plan.node].brick))
            # An interface that returns (the C source opens it anew) is a new device: quiet its offloads again.
            returned = (lambda name=port.name: links.disable_offloads(name)) \
                if port.kind == PortKind.INTERFACE else None
            linked.watched.append((f"input {port.name}",
                                   lambda s=source, out=self._state: lib.brk_source_state(s, out), returned))

    def _realise(self, linked, number=0):
        """Makes node `number`'s C brick, then its outputs in order: a child not made yet first (depth first,
        the plan's order), then the edge to it, or a sink. The tree's sources are open already."""
        context, node = linked.context, linked.plan.nodes[number]
        brick = node.brick
        linked.bricks.append(brick)
        kind = lib.brk_brick_kind_find(node.kind.name.encode())
        if kind == ffi.NULL:
            raise BricksError(f"{node.kind.name}: this build of bricks has no such brick kind")
        config_type = lib.brk_brick_kind_config_type(kind)
        config = ffi.NULL if config_type == ffi.NULL else ffi.new(ffi.string(config_type).decode() + " *",
                                                                  node.config or {})
        error = error_buffer()
        handle = lib.brk_brick_new(kind, config, error, len(error))
        if handle == ffi.NULL:
            raise BricksError(f"{node.kind.name}: {error_text(error)}")
        brick.handle, brick.engine = handle, self
        if node.kind.attach:
            node.kind.attach(brick, handle)
        brick.transmit_drop_base = {}
        brick.sinks = {}
        for output in node.outputs:
            port = output.port
            if output.child is not None:
                child = linked.plan.nodes[output.child].brick
                if child.handle is None:
                    self._realise(linked, output.child)
                _added(lib.brk_brick_add_child(handle, child.handle), brick, port)
                continue
            sink = backends.for_port(context, port).open_sink(context, node, output)
            linked.sinks.append(sink)
            _added(lib.brk_brick_add_sink(handle, sink), brick, port)
            brick.sinks[output.index] = sink
            linked.watched.append((f"output {port.name}",
                                   lambda s=sink, out=self._state: lib.brk_sink_state(s, out), None))
            if port.kind in (PortKind.BROKER, PortKind.INTERFACE, PortKind.TUNNEL):
                brick.transmit_drop_base[output.index] = (port.device, links.transmit_drops(port.device))

    def hold_pipe(self, port, mtu):
        """Veth pipe `port` (a broker end) exists while this engine does: one registry reference per engine."""
        if port.name in self.pipes:
            return
        steer_cpu = self.cpu if _steering_pipes() and self.cpu >= 0 else None
        self.pipes[port.name] = _link_call(registry.use_pipe, port.interface, port.index, mtu, steer_cpu)

    def unlink(self):
        self._check_usable("unlink")
        self._drop_engine_handle()
        # The watcher's last look may still be reading these sources and sinks, a stats reader these bricks.
        with self._watch_lock, self.lock:
            for linked in reversed(self.linked):
                linked.close()
            self.linked = []
            self.problems, self._changes_seen = {}, {}

    # -- start / stop / delete --
    def start(self):
        self._check_usable("start")
        if not self.linked:
            raise BricksError(f"engine {self.name} has nothing linked: link a brick first")
        if self.handle is None:
            self._make_engine_handle()
        priority, asked = self._realtime_setting()
        self.run_error = None
        lib.brk_engine_rearm(self.handle)
        self._start_backends()
        self.started = True
        self.run_done = threading.Event()
        ready = threading.Event()
        self._refusal = None
        self.thread = threading.Thread(target=self._run, args=(priority, asked, ready), name=f"bricks-{self.name}",
                                       daemon=True)
        self.thread.start()
        ready.wait()
        if self._refusal is not None:
            self.thread.join()
            self.thread = None
            self._stop_backends()
            raise BricksError(f"engine {self.name}: {self._refusal}")
        threading.Thread(target=self._watch, args=(self.thread,), name=f"bricks-{self.name}-watch",
                         daemon=True).start()

    def _realtime_setting(self):
        """(priority, asked) for this engine's thread. The default leaves engines that read pcap files at normal
        priority: a file source is always ready, so the engine would not sleep until the file ends, and it has
        no ring to overflow."""
        priority, asked = realtime_setting()
        reads_files = any(source.port.kind == PortKind.PCAP for linked in self.linked for source in linked.plan.sources)
        if not asked and reads_files:
            return None, False
        return priority, asked

    def _run(self, priority, asked, ready):
        """The engine thread: takes its real-time priority itself (a short pcap run may end before another
        thread could set it), tells start() it is under way, then runs the C loop with the GIL released.
        A priority the operator asked for and the kernel refuses stops the start; the default's refusal is one
        warning and the engine runs at normal priority."""
        try:
            if priority is not None:
                try:
                    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
                except OSError as error:
                    if asked:
                        self._refusal = f"cannot run at real-time priority {priority}: {_realtime_refusal(error)}"
                        return
                    _announce_realtime_default(
                        "engine threads run at normal priority: the default real-time priority %d was refused: "
                        "%s; other work on their CPUs can make input rings overflow; --realtime 0 (%s=0) "
                        "runs them normally without this warning",
                        priority, _realtime_refusal(error), REALTIME_ENVIRONMENT, level=logging.WARNING)
                else:
                    if not asked:
                        _announce_realtime_default(
                            "engine threads run SCHED_FIFO at priority %d by default, so that other work on their "
                            "CPUs cannot make input rings overflow; --realtime 0 (%s=0) turns it off",
                            priority, REALTIME_ENVIRONMENT)
            ready.set()
            result = lib.brk_engine_run(self.handle)
            if result != 0:
                self.run_error = os.strerror(-result)
                log.error("engine %s: stopped on an error: %s", self.name, self.run_error)
        finally:
            self.run_done.set()
            ready.set()

    def _watch(self, thread):
        """While `thread` runs the engine: logs, once each, what happens to its inputs and outputs."""
        while thread.is_alive():
            thread.join(WATCH_INTERVAL)
            self.check_states()

    def check_states(self):
        """Reads the state of every input and output; logs each change once and keeps what is not working."""
        with self._watch_lock:
            for linked in self.linked:
                for what, read, when_back in linked.watched:
                    read()
                    changes = self._state.changes
                    if changes == self._changes_seen.get(what, 0):
                        continue
                    self._changes_seen[what] = changes
                    reason = ffi.string(self._state.reason).decode(errors="replace")
                    if self._state.status == lib.BRK_IO_UP:
                        self.problems.pop(what, None)
                        log.info("engine %s: %s", self.name, reason)
                        if when_back is not None:
                            try:
                                when_back()
                            except Exception as error:   # noqa: BLE001 - the watcher must live on
                                # e.g. ethtool refused: the input works, with its offloads on
                                log.warning("engine %s: %s: %s", self.name, what, error)
                    else:
                        self.problems[what] = reason
                        log.warning("engine %s: %s", self.name, reason)
            for linked in self.linked:   # back-ends whose inputs the C sources do not read (xdp) watch their own
                watch = getattr(linked.context.backend, "watch", None)
                if watch is not None and self.running:
                    watch(linked.context, self.name)

    def status_lines(self):
        """One line per input or output of this engine that does not work now, and the error its last run
        ended on (print_status, show_stats)."""
        self.check_states()
        run_error = [f"stopped on an error: {self.run_error}"] if self.run_error else []
        # Back-ends whose frames the C sources and sinks never see (xdp) say themselves what is not working.
        own = [line for linked in self.linked if hasattr(linked.context.backend, "problems")
               for line in linked.context.backend.problems(linked.context)]
        return [f"Engine {self.name}: {reason}" for reason in run_error + list(self.problems.values()) + own]

    def stop(self):
        if self.deleted:
            raise BricksError(f"engine {self.name} was deleted")
        if self.thread is None:
            return
        if not self.run_done.is_set():
            lib.brk_engine_stop(self.handle)
        if not self.run_done.wait(STOP_TIMEOUT):
            raise BricksError(f"engine {self.name} did not stop within {STOP_TIMEOUT:g} s")
        self.thread.join()      # at once: the C loop has returned (see run_done)
        self.thread = None
        self._stop_backends()

    def _start_backends(self):
        """Lets back-ends with work at start do it (xdp attaches its programs): all trees or none."""
        started = []
        try:
            for linked in self.linked:
                start = getattr(linked.context.backend, "start", None)
                if start is not None:
                    start(linked.context)
                    started.append(linked)
        except BricksError as error:
            for linked in reversed(started):
                linked.context.backend.stop(linked.context)
            raise BricksError(f"engine {self.name}: {error}") from None

    def _stop_backends(self):
        # Under the watcher's lock: a watch that attaches a returning input (xdp) never runs past a stop.
        with self._watch_lock:
            for linked in reversed(self.linked):
                stop = getattr(linked.context.backend, "stop", None)
                if stop is not None:
                    stop(linked.context)

    @property
    def finite(self):
        """Whether every source of the engine ends by itself (pcap files): a run then finishes on its own."""
        return bool(self.linked) and all(linked.finite for linked in self.linked)

    def wait(self, timeout=None):
        """Waits until the engine has finished (its pcap sources read to the end) or was stopped.

        True when it has, False when `timeout` seconds passed first. Without a timeout, an engine
        reading live interfaces is refused: it would never finish by itself.
        """
        if self.deleted:
            raise BricksError(f"engine {self.name} was deleted")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout >= 0):
            raise BricksError(f"wait: seconds must be a number of at least 0, got {timeout!r}")
        if not self.started:
            raise BricksError(f"engine {self.name} was never started: nothing to wait for")
        if self.thread is None:
            return True
        if timeout is None and not self.finite:
            raise BricksError(f"engine {self.name} reads live input and finishes only when stopped: "
                              "give a number of seconds to wait")
        finished = self.run_done.wait(timeout)
        if finished:
            self.check_states()   # what happened at the very end is logged before the caller goes on
        return finished

    def delete(self):
        self._check_usable("delete")
        self.stop()
        self.unlink()
        for name in self.pipes:
            registry.release_pipe(name)   # removed with its last engine
        self.pipes = {}
        self.deleted = True
        with _engines_lock:
            if _engines.get(self.name) is self:
                del _engines[self.name]

    def _make_engine_handle(self):
        """The C engine over every linked tree; all of it or, in one line, why not."""
        handle = lib.brk_engine_new(max(linked.batch for linked in self.linked), self.cpu)
        if handle == ffi.NULL:
            raise BricksError(f"engine {self.name}: out of memory")
        for linked in self.linked:
            for source, target in linked.sources:
                result = lib.brk_engine_add_source(handle, source, target.handle)
                if result != 0:
                    lib.brk_engine_free(handle)
                    raise BricksError(f"engine {self.name}: cannot add an input: {os.strerror(-result)}")
        with self.lock:
            self.handle = handle

    def _drop_engine_handle(self):
        with self.lock:
            if self.handle is not None:
                lib.brk_engine_free(self.handle)
                self.handle = None

    # -- counters --
    def stats(self):
        """This engine's counters as one snapshot (stats.engine_snapshot): safe from any thread."""
        return stats.engine_snapshot(self)

    def stats_text(self):
        return stats.engine_text(self.stats())


def tree_line(linked):
    """Which back-end runs a linked tree and why: how it runs (xdp: attached where, in which mode), or why
    the back-ends before it in its family refused it (e.g. "on packet (xdp: PcapWriter cannot run in XDP)")."""
    context = linked.context
    why = "; ".join(f"{name}: {reason}" for name, reason in context.reasons.items())
    describe = getattr(context.backend, "describe", None)
    how = describe(context) if describe is not None and context.state is not None else ""
    detail = "; ".join(part for part in (how, why) if part)
    return f"{linked.root.kind.name} tree on {linked.backend}" + (f" ({detail})" if detail else "")


def backend_lines():
    """One line per linked tree (print_status): the back-end that runs it and why."""
    return [f"Engine {known.name}: {tree_line(linked)}" for known in engines() for linked in known.linked]


def status_lines():
    """What does not work now in every engine, one line each: inputs or outputs gone, down, failing."""
    return [line for known in engines() for line in known.status_lines()]



def usable_cpus():
    """The CPUs this process may run on (its affinity), sorted: the ones an engine can be pinned to."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cpu_list_text(cpus):
    """[0, 1, 2, 5] -> '0-2,5', as /sys and taskset write CPU lists."""
    ranges, cpus = [], sorted(cpus)
    for cpu in cpus:
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in ranges)


def wait_for_finite_engines(announce=None):
    """Lets every running engine whose sources are all pcap files finish (end of shell input, SPEC §7).

    `announce(text)` is told once which engines are waited for, when any still runs after a moment.
    Ctrl-C (KeyboardInterrupt) ends the wait at once; the caller then shuts everything down.
    """
    pending = [known for known in engines() if known.running and known.finite]
    if pending and announce is not None:
        time_to_finish_quietly = 0.2
        pending[0].run_done.wait(time_to_finish_quietly)
        pending = [known for known in pending if not known.run_done.is_set()]
        if pending:
            names = ", ".join(known.name for known in pending)
            announce(f"waiting for engine{'s' if len(pending) > 1 else ''} {names} to finish reading "
                     "pcap input (Ctrl-C stops now)")
    for known in pending:
        known.run_done.wait()


def _added(result, brick, output):
    """Raises when C refused output of brick (the checks at link should have said so first)."""
    if result != 0:
        raise BricksError(f"{brick.kind.name}: output {output.name} refused: more outputs than its kind takes")


_link_call = link_call


def engines():
    with _engines_lock:
        return list(_engines.values())


def shutdown_all():
    """Stops and deletes every engine: pipes removed, writers flushed."""
    for engine in reversed(engines()):
        try:
            if engine.thread is not None:
                engine.stop()
            engine.delete()
        except BricksError:
            pass


def install_signal_handlers():
    """SIGTERM and SIGINT shut down in order (pipes removed) instead of killing.

    Only in the process that installs them: a child forked without exec
    (pyroute2 forks helpers to enter namespaces, and stops them with SIGTERM)
    exits at once instead of unwinding its copy of this process's stack, whose
    clean-ups would remove what this process still uses.
    """
    owner = os.getpid()

    def handle(signum, frame):
        if os.getpid() != owner:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _forget_inherited_engines():
    """A forked child owns none of its parent's engines: its exit must not delete their pipes."""
    _engines.clear()


atexit.register(shutdown_all)
os.register_at_fork(after_in_child=_forget_inherited_engines)
