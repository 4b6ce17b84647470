"""Packet engines and bricks: the Python API under the Lua shell (SPEC §4).

Python only builds and tears down; every packet is handled by the C engine in
bricks._native, run by one Python thread per engine with the GIL released.
Linking is all or nothing: a link that fails undoes what it opened or created.
"""
import atexit
import glob
import logging
import os
import signal
import threading
import zlib

from . import links, netmap
from ._ffi import error_buffer, error_text, ffi, lib
from .catalog import UNLIMITED, find_kind
from .errors import BricksError

log = logging.getLogger("bricks")

DEFAULT_BUFFER_SLOTS = 512
DEFAULT_BATCH = 1024
PCAP_PIPE_MTU = 9000           # pcap inputs carry no MTU: pipes fed from files take jumbo frames
FRAGMENT_TABLE_SLOTS = 4096
MAX_NAME = 15                   # IFNAMSIZ - 1
RX_RING_BYTES_PER_SLOT = 8192   # buffer_sz slots of RX ring, each room for a jumbo frame
MIN_RX_RING_BYTES = 16 << 20   # ~10,000 full-size frames: tens of ms of engine stall at line rate
STOP_TIMEOUT = 5.0
MAX_CPU = 65535                 # a CPU number beyond any host: above it the number is a mistake, not a bigger host
WATCH_INTERVAL = 0.2            # how often a running engine's inputs and outputs are checked for news

# Why an output dropped packets: the C counter, and how show_stats names it.
DROP_CAUSES = (("full", "at full outputs"), ("too_big", "too big for the output"),
               ("too_short", "too short to send"), ("gone", "output gone"), ("write_errors", "write error"))

_engines = {}                   # name -> PktEngine, in creation order
_engines_lock = threading.RLock()

REALTIME_ENVIRONMENT = "BRICKS_REALTIME"        # SCHED_FIFO priority of engine threads, 1..99; unset: normal
STEER_PIPES_ENVIRONMENT = "BRICKS_STEER_PIPES"   # 1: pipe consumers' receive work off pinned engines' CPUs
MAX_REALTIME_PRIORITY = 99

BACKENDS = ("auto", "netmap", "packet")
BACKEND_ENVIRONMENT = "BRICKS_BACKEND"   # the back-end of this process and its children, as --backend


def _environment_backend():
    """BRICKS_BACKEND when it names a back-end, else auto (the CLI rejects a bad value in one line)."""
    name = os.environ.get(BACKEND_ENVIRONMENT, "").strip()
    return name if name in BACKENDS else "auto"


_backend_chosen = _environment_backend()
_backend_active = None if _backend_chosen == "auto" else _backend_chosen   # set, or settled by the first link
_backend_detail = "" if _backend_chosen == "auto" else f"set to {_backend_chosen} by {BACKEND_ENVIRONMENT}"


def set_backend(name):
    """Chooses the back-end of the engines to come: auto, netmap or packet (SPEC §3)."""
    global _backend_chosen, _backend_active, _backend_detail
    if name not in BACKENDS:
        raise BricksError(f"unknown back-end {name!r} (one of {', '.join(BACKENDS)})")
    with _engines_lock:
        if _engines and name != _backend_chosen:
            raise BricksError("the back-end must be chosen before the first engine is created")
        if name == "netmap" and netmap.missing_reason():
            raise BricksError(netmap.missing_reason())
        _backend_chosen = name
        _backend_active = None if name == "auto" else name
        _backend_detail = "" if name == "auto" else f"set to {name}"


def backend_name():
    """The back-end engines use, netmap or packet (before auto settles: what it would pick)."""
    if _backend_active is not None:
        return _backend_active
    return "netmap" if netmap.available() else "packet"


def backend_detail():
    """One line saying why the back-end is what it is, for the status and the log."""
    if _backend_detail:
        return _backend_detail
    return "auto: " + ("netmap found" if netmap.available() else f"{netmap.DEVICE} not found")


def _settle_backend(root, qid=-1):
    """auto becomes netmap when the module opens every interface of root's tree (and, with qid >= 0, serves
    one engine per queue there), else packet; once per process."""
    global _backend_active, _backend_detail
    with _engines_lock:
        if _backend_active is not None:
            return _backend_active
        interfaces = sorted({port.interface for brick in root.walk() for port in brick.inputs + brick.outputs
                             if port.kind in ("interface", "broker", "consumer")})
        if not interfaces:
            return backend_name()   # files only: nothing to settle yet
        read = {port.interface for brick in root.walk() for port in brick.inputs if port.kind == "interface"}
        reason = netmap.missing_reason()
        for interface in interfaces:
            reason = reason or netmap.probe(interface, qid if interface in read else -1)
        _backend_active = "packet" if reason else "netmap"
        _backend_detail = f"auto: packet ({reason})" if reason else f"auto: netmap opens {', '.join(interfaces)}"
        return _backend_active


_realtime_priority = None       # SCHED_FIFO priority set by set_realtime_priority, else from the environment
_realtime_chosen = False


def set_realtime_priority(priority):
    """Engines started from now on run SCHED_FIFO at priority (1..99), or normally with None.

    Without a call, the environment variable BRICKS_REALTIME decides (unset or empty: normally).
    A real-time engine keeps its CPU against any other normal-priority load there; an idle one sleeps.
    """
    global _realtime_priority, _realtime_chosen
    _realtime_priority = None if priority is None else _realtime_value(priority, "realtime priority")
    _realtime_chosen = True


def realtime_priority():
    """The SCHED_FIFO priority engine threads get at start, or None."""
    if _realtime_chosen:
        return _realtime_priority
    text = os.environ.get(REALTIME_ENVIRONMENT, "").strip()
    if not text:
        return None
    return _realtime_value(int(text) if text.isdigit() else text, REALTIME_ENVIRONMENT)


def _realtime_value(priority, what):
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= MAX_REALTIME_PRIORITY:
        raise BricksError(f"{what} must be a whole number from 1 to {MAX_REALTIME_PRIORITY}, got {priority!r}")
    return priority


def _steering_pipes():
    return os.environ.get(STEER_PIPES_ENVIRONMENT, "").strip() not in ("", "0")


def _port(name, side):
    if not isinstance(name, str):
        raise BricksError(f"{side} name must be a string, got {type(name).__name__}")
    try:
        return links.parse_port_name(name)
    except (links.LinkError, ValueError) as error:
        raise BricksError(str(error)) from None


class Brick:
    """One brick: a kind, its ports and its children; a C brick while linked."""

    def __init__(self, kind, argument=None):
        self.kind = find_kind(kind)
        self.argument = self.kind.check_argument(argument)
        self.inputs = []             # links.PortName
        self.outputs = []
        self.children = []
        self.stands_for = None       # PcapReader: the interface its files were captured on
        self.engine = None           # the PktEngine this brick is linked to
        self.handle = None           # the C brick while linked
        self.transmit_drop_base = {}  # output index -> (device, its tx_dropped when linked)
        self.sinks = {}               # output index -> its C sink while linked
        if self.kind.register:
            self.kind.register(self)

    def __getattr__(self, name):
        """Kind-specific methods (a Filter's drop, allow, rules...) live on the brick's argument."""
        kind = self.__dict__.get("kind")
        if kind is not None and name in kind.methods:
            return getattr(self.__dict__["argument"], name)
        raise AttributeError(f"{type(self).__name__} {kind.name if kind else ''} has no attribute {name!r}")

    def __repr__(self):
        outputs = ", ".join(port.name for port in self.outputs) or "none"
        inputs = ", ".join(port.name for port in self.inputs) or "none"
        return f"<Brick {self.kind.name} in: {inputs} out: {outputs}>"

    def _check_unlinked(self):
        if self.engine is not None:
            raise BricksError(f"{self.kind.name} is linked to engine {self.engine.name}: unlink it first")

    def connect_input(self, *names):
        self._check_unlinked()
        names = list(names)
        if self.kind.name == "PcapReader" and len(names) == 2:
            interface = _port(names.pop(), "interface")
            if interface.kind != "interface":
                raise BricksError(f"PcapReader: {interface.name!r} is not an interface name")
            self.stands_for = interface.interface
        ports = [_port(name, "input") for name in names]
        if not ports:
            raise BricksError(f"{self.kind.name}:connect_input needs at least one name")
        for port in ports:
            if port.kind not in self.kind.input_kinds:
                raise BricksError(f"{self.kind.name} cannot read from {port.name!r} ({_describe(port)})")
        fewest, most = self.kind.inputs
        if len(self.inputs) + len(ports) > most:
            raise BricksError(f"{self.kind.name} takes at most {most} input{'s' if most > 1 else ''}")
        self.inputs.extend(ports)
        return self

    def connect_output(self, *names):
        self._check_unlinked()
        ports = [_port(name, "output") for name in names]
        if not ports:
            raise BricksError(f"{self.kind.name}:connect_output needs at least one name")
        for port in ports:
            if port.kind == "consumer":
                raise BricksError(f"{port.name!r} is the consumer end of a pipe: bricks writes to "
                                  f"'{port.interface}{{{port.index}'")
            if port.kind not in self.kind.output_kinds:
                raise BricksError(f"{self.kind.name} cannot write to {port.name!r} ({_describe(port)})")
            if any(port.name == known.name for known in self.outputs) or \
                    [port.name for port in ports].count(port.name) > 1:
                raise BricksError(f"{self.kind.name}: output {port.name!r} given twice")
        most = self.kind.outputs[1]
        if len(self.outputs) + len(ports) > most:
            raise BricksError(f"{self.kind.name} takes at most {most} output{'s' if most > 1 else ''}")
        self.outputs.extend(ports)
        return self

    def connect_outputs(self, interface, count):
        if not isinstance(count, (int, float)) or isinstance(count, bool) or count != int(count) \
                or not 1 <= count <= UNLIMITED:
            raise BricksError(f"connect_outputs: count must be a whole number from 1 to {UNLIMITED}, got {count!r}")
        if not isinstance(interface, str):
            raise BricksError(f"connect_outputs: interface must be a string, got {type(interface).__name__}")
        return self.connect_output(*[f"{interface}{{{index}" for index in range(int(count))])

    def link(self, *children):
        self._check_unlinked()
        for child in children:
            if not isinstance(child, Brick):
                raise BricksError(f"link: expected a Brick, got {type(child).__name__}")
            if child is self or child in self.children:
                raise BricksError(f"link: {child.kind.name} is already linked here")
            if not any(_feeds(output, child) for output in self.outputs):
                wanted = ", ".join(p.name for p in child.inputs) or "no input"
                raise BricksError(f"link: {child.kind.name} reads {wanted}, which is not the consumer end "
                                  f"of an output of this {self.kind.name}")
        self.children.extend(children)
        return self

    def walk(self):
        """This brick and every brick below it, each once, parents first."""
        seen, order, pending = set(), [], [self]
        while pending:
            brick = pending.pop(0)
            if id(brick) not in seen:
                seen.add(id(brick))
                order.append(brick)
                pending.extend(brick.children)
        return order

    def stats(self):
        """Counters of this brick while linked: received, malformed, and per output."""
        if self.handle is None:
            return None
        brick_stats = ffi.new("struct brk_brick_stats *")
        lib.brk_brick_stats(self.handle, brick_stats)
        counters = ffi.new("struct brk_counters *")
        outputs = []
        for index, port in enumerate(self.outputs):
            device, base = self.transmit_drop_base.get(index, (None, 0))
            transmit_drops = links.transmit_drops(device) - base if device else 0
            lib.brk_brick_output_stats(self.handle, index, counters)   # after: refused never lags behind
            # A frame the device refused counts in its tx_dropped, but it stays queued and is tried again (and
            # counted again): those are not packets lost.
            kernel_drops = max(0, transmit_drops - counters.refused)
            output = {"name": port.name, "packets": counters.packets, "bytes": counters.bytes,
                      "drops": counters.drops, "kernel_drops": kernel_drops, "queued": counters.queued}
            output.update((cause, getattr(counters, cause)) for cause, _ in DROP_CAUSES)
            outputs.append(output)
        return {"kind": self.kind.name, "received": brick_stats.received_packets,
                "received_bytes": brick_stats.received_bytes, "malformed": brick_stats.malformed,
                "fragment_fallbacks": brick_stats.fragment_fallbacks, "filtered": brick_stats.filtered,
                "outputs": outputs}


def _edge(output, port):
    """Whether output `X{N` and input `X}N` are the two ends of one pipe: an internal edge."""
    return output.kind == "broker" and port.kind == "consumer" and \
        (output.interface, output.index) == (port.interface, port.index)


def _feeds(output, child):
    """Whether output is an internal edge into child."""
    return any(_edge(output, port) for port in child.inputs)


def _describe(port):
    return {"interface": "an interface", "broker": "the broker end of a pipe",
            "consumer": "the consumer end of a pipe", "pcap": "a pcap path"}[port.kind]


def _pcap_files(path):
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.pcap")))
        if not files:
            raise BricksError(f"{path}: no *.pcap file in this directory")
        return files
    if not os.path.isfile(path):
        raise BricksError(f"{path}: no such pcap file or directory")
    return [path]


class _SharedResources:
    """Offloads and pipes are per interface, not per engine: counted references."""

    def __init__(self):
        self.lock = threading.Lock()
        self.offloads = {}           # interface -> [restore token, users]

    def quiet_input(self, interface):
        with self.lock:
            entry = self.offloads.get(interface)
            if entry is None:
                entry = self.offloads[interface] = [links.disable_offloads(interface), 0]
            entry[1] += 1

    def release_input(self, interface):
        with self.lock:
            entry = self.offloads.get(interface)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del self.offloads[interface]
                links.restore_offloads(entry[0])


_shared = _SharedResources()


class _Linked:
    """What one pe:link() opened: C bricks, sources, sinks; closed in reverse."""

    def __init__(self, root, batch, qid, backend="packet"):
        self.root, self.batch, self.qid, self.backend = root, batch, qid, backend
        self.bricks = []             # Brick, parents first
        self.sources = []            # (C source, target Brick)
        self.sinks = []
        self.inputs_quieted = []
        self.finite = True           # every source opened is a pcap file (it ends by itself)
        self.watched = []            # (what, read its state into PktEngine._state, call when back or None)

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
        for interface in self.inputs_quieted:
            _shared.release_input(interface)
        self.sources, self.sinks, self.bricks, self.inputs_quieted, self.watched = [], [], [], [], []


class PktEngine:
    """A packet engine: one thread running the C loop over its linked bricks."""

    def __init__(self, name, buffer_slots=DEFAULT_BUFFER_SLOTS, cpu=-1):
        self.name = name
        self.buffer_slots = buffer_slots
        self.cpu = cpu
        self.linked = []             # _Linked, one per pe:link()
        self.pipes = {}              # broker end name -> links.PipePair created for this engine
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
        self.problems = {}           # what -> (changes seen, one-line reason) of inputs/outputs not working
        self._changes_seen = {}      # what -> the state's change count last logged

    # -- creation and lookup (PktEngine.new / PktEngine.retrieve) --
    @classmethod
    def new(cls, name, buffer_slots=DEFAULT_BUFFER_SLOTS, cpu=-1):
        if not isinstance(name, str) or not name or len(name) > 64 or not name.isprintable():
            raise BricksError(f"PktEngine.new: engine name must be a non-empty string, got {name!r}")
        buffer_slots = _whole(buffer_slots, "buffer size", 8, 1 << 20)
        cpu = _whole(cpu, "cpu", -1, MAX_CPU)
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
        batch = _whole(batch, "batch (-1: the default)", 1, 65536)
        qid = _whole(qid, "qid", -1, 65535)
        for member in brick.walk():
            if member.engine is not None:
                raise BricksError(f"{member.kind.name} is already linked to engine {member.engine.name}")
        self._check_tree(brick)
        linked = _Linked(brick, batch, qid, _settle_backend(brick, qid))
        try:
            self._open_sources(linked)
            self._open(linked, brick, depth=0)
        except BaseException:
            linked.close()
            raise
        self.linked.append(linked)
        self._drop_engine_handle()

    def _check_tree(self, root):
        for brick in root.walk():
            fewest, most = brick.kind.outputs
            if not fewest <= len(brick.outputs) <= most:
                raise BricksError(f"{brick.kind.name} has {len(brick.outputs)} outputs, needs "
                                  f"{fewest}" + (f" to {most}" if most > fewest else ""))
            if not brick.inputs:
                raise BricksError(f"{brick.kind.name} has no input: connect_input first")

    def _open_sources(self, linked):
        """Opens the tree's external inputs, before any output exists: a mistyped input then fails before
        it leaves an empty PcapWriter file, a veth, or a netmap pipe whose missing parent netmap would make
        into an empty port that the input would then bind to, silently idle."""
        tree = linked.root.walk()
        for brick in tree:
            parents = [parent for parent in tree if brick in parent.children]
            for port in brick.inputs:
                if any(_edge(output, port) for parent in parents for output in parent.outputs):
                    continue   # an internal edge: fed by its parent, no kernel round trip
                source = self._open_source(linked, port)
                linked.sources.append((source, brick))
                # An interface that returns (the C source opens it anew) is a new device: quiet its offloads again.
                returned = (lambda name=port.name: links.disable_offloads(name)) if port.kind == "interface" else None
                linked.watched.append((f"input {port.name}",
                                       lambda s=source, out=self._state: lib.brk_source_state(s, out), returned))

    def _open(self, linked, brick, depth):
        """Creates brick's C object, its sinks and children (its sources are open already)."""
        linked.bricks.append(brick)
        config = ffi.new("struct brk_brick_config *")
        config.split = brick.argument if brick.kind.balances else 4
        config.depth = depth
        config.frag_slots = FRAGMENT_TABLE_SLOTS if brick.kind.balances else 0
        kind = lib.brk_brick_kind_find(brick.kind.name.encode())
        if kind == ffi.NULL:
            raise BricksError(f"{brick.kind.name}: this build of bricks has no such brick kind")
        error = error_buffer()
        handle = lib.brk_brick_new(kind, config, error, len(error))
        if handle == ffi.NULL:
            raise BricksError(f"{brick.kind.name}: {error_text(error)}")
        brick.handle, brick.engine = handle, self
        if brick.kind.attach:
            brick.kind.attach(brick, handle)
        # Only a brick that does spread (two outputs or more) moves its children to the next hash: a PcapReader
        # with one output before a LoadBalancer then leaves it the hash a live LoadBalancer has.
        child_depth = depth + 1 if brick.kind.balances and len(brick.outputs) > 1 else depth
        brick.transmit_drop_base = {}
        brick.sinks = {}
        for index, output in enumerate(brick.outputs):
            child = next((c for c in brick.children if _feeds(output, c)), None)
            if child is not None:
                if child.handle is None:
                    self._open(linked, child, child_depth)
                lib.brk_brick_add_child(handle, child.handle)
            else:
                sink = self._open_sink(linked, brick, output)
                lib.brk_brick_add_sink(handle, sink)
                brick.sinks[index] = sink
                linked.watched.append((f"output {output.name}",
                                       lambda s=sink, out=self._state: lib.brk_sink_state(s, out), None))
                if output.kind in ("broker", "interface"):
                    device = output.name
                    brick.transmit_drop_base[index] = (device, links.transmit_drops(device))

    def _input_mtu(self, linked):
        mtus = [links.interface_info(port.interface).mtu for port in linked.root.inputs
                if port.kind in ("interface", "consumer")]
        return max(mtus + [1500]) if mtus else PCAP_PIPE_MTU

    def _open_sink(self, linked, brick, port):
        error = error_buffer()
        if port.kind == "pcap":
            sink = lib.brk_sink_pcap_open(port.name.encode(), 262144, error, len(error))
        elif linked.backend == "netmap":
            sink = netmap.open_sink(_netmap_port(port, qid=-1))   # a pipe master: no veth to create
        else:
            name = port.name if port.kind == "interface" else f"{port.interface}{{{port.index}"
            if port.kind == "broker":
                self._ensure_pipe(port, self._input_mtu(linked))
                mtu = self._input_mtu(linked)
            else:
                mtu = _link_call(links.interface_info, port.interface).mtu
            sink = lib.brk_sink_afpacket_open(name.encode(), self.buffer_slots, mtu, error, len(error))
        if sink == ffi.NULL:
            raise BricksError(error_text(error))
        linked.sinks.append(sink)
        return sink

    def _ensure_pipe(self, port, mtu):
        name = f"{port.interface}{{{port.index}"
        if name in self.pipes:
            return
        for other in _engines.values():
            if other is not self and name in other.pipes:
                return   # another engine's pipe: share it, it owns its removal
        pipe = self.pipes[name] = _link_call(links.create_pipe, port.interface, port.index, mtu)
        if _steering_pipes() and self.cpu >= 0:
            _link_call(links.steer_receive, pipe.consumer, self.cpu)

    def _open_source(self, linked, port):
        error = error_buffer()
        linked.finite = linked.finite and port.kind == "pcap"
        if port.kind == "pcap":
            files = [path.encode() for path in _pcap_files(port.name)]
            paths = [ffi.new("char[]", path) for path in files]
            source = lib.brk_source_pcap_open(ffi.new("char *[]", paths), len(paths), error, len(error))
        elif linked.backend == "netmap":
            if port.kind == "interface":
                if not links.interface_exists(port.interface):
                    raise BricksError(f"{port.interface}: no such interface")
                _link_call(_shared.quiet_input, port.interface)   # netmap forwards no offloaded frame either
                linked.inputs_quieted.append(port.interface)
            source = netmap.open_source(_netmap_port(port, linked.qid))
        else:
            name = port.name if port.kind == "interface" else f"{port.interface}}}{port.index}"
            info = _link_call(links.interface_info, name)
            if port.kind == "interface":
                _link_call(_shared.quiet_input, name)
                linked.inputs_quieted.append(name)
            ring_bytes = max(MIN_RX_RING_BYTES, self.buffer_slots * RX_RING_BYTES_PER_SLOT)
            fanout = _fanout_group(info.index) if linked.qid >= 0 else -1
            source = lib.brk_source_afpacket_open(name.encode(), ring_bytes, fanout, error, len(error))
        if source == ffi.NULL:
            raise BricksError(error_text(error))
        return source

    def unlink(self):
        self._check_usable("unlink")
        self._drop_engine_handle()
        with self._watch_lock:   # the watcher's last look may still be reading these sources and sinks
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
            self.handle = lib.brk_engine_new(max(linked.batch for linked in self.linked), self.cpu)
            if self.handle == ffi.NULL:
                self.handle = None
                raise BricksError(f"engine {self.name}: out of memory")
            for linked in self.linked:
                for source, target in linked.sources:
                    lib.brk_engine_add_source(self.handle, source, target.handle)
        priority = realtime_priority()
        self.run_error = None
        lib.brk_engine_rearm(self.handle)
        self.started = True
        self.run_done = threading.Event()
        ready = threading.Event()
        self._refusal = None
        self.thread = threading.Thread(target=self._run, args=(priority, ready), name=f"bricks-{self.name}",
                                       daemon=True)
        self.thread.start()
        ready.wait()
        if self._refusal is not None:
            self.thread.join()
            self.thread = None
            raise BricksError(f"engine {self.name}: {self._refusal}")
        threading.Thread(target=self._watch, args=(self.thread,), name=f"bricks-{self.name}-watch",
                         daemon=True).start()

    def _run(self, priority, ready):
        """The engine thread: takes its real-time priority itself (a short pcap run may end before another
        thread could set it), tells start() it is under way, then runs the C loop with the GIL released."""
        try:
            if priority is not None:
                try:
                    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
                except OSError as error:
                    self._refusal = (f"cannot run at real-time priority {priority}: {error.strerror} "
                                      "(it needs root or CAP_SYS_NICE)")
                    return
            ready.set()
            result = lib.brk_engine_run(self.handle)
            if result != 0:
                self.run_error = os.strerror(-result)
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

    def status_lines(self):
        """One line per input or output of this engine that does not work now (print_status, show_stats)."""
        self.check_states()
        return [f"Engine {self.name}: {reason}" for reason in self.problems.values()]

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
        for pipe in self.pipes.values():
            pipe.delete()
        self.pipes = {}
        self.deleted = True
        with _engines_lock:
            if _engines.get(self.name) is self:
                del _engines[self.name]

    def _drop_engine_handle(self):
        if self.handle is not None:
            lib.brk_engine_free(self.handle)
            self.handle = None

    # -- counters --
    def stats(self):
        """Counters: received packets = delivered + every drop cause + queued, per output and in total.

        drops = kernel_drops + output_drops + transmit_drops; output_drops is the sum of the causes in
        DROP_CAUSES (output_full, output_too_big, ...); queued packets sit in output rings, not yet taken by
        the kernel; input_malformed counts records of input files that could not be read (never received).
        """
        engine_stats = ffi.new("struct brk_engine_stats *")
        if self.handle is not None:
            lib.brk_engine_stats(self.handle, engine_stats)
        bricks = [brick.stats() for linked in self.linked for brick in linked.bricks]
        transmit_drops = sum(output["kernel_drops"] for brick in bricks for output in brick["outputs"])
        stats = {"name": self.name, "packets": engine_stats.received_packets,
                 "bytes": engine_stats.received_bytes,
                 "drops": engine_stats.kernel_drops + engine_stats.output_drops + transmit_drops,
                 "kernel_drops": engine_stats.kernel_drops, "output_drops": engine_stats.output_drops,
                 "transmit_drops": transmit_drops, "queued": engine_stats.output_queued,
                 "input_malformed": engine_stats.input_malformed,
                 "running": self.running, "finished": bool(engine_stats.finished), "bricks": bricks,
                 "problems": self.status_lines()}
        stats.update((f"output_{cause}", getattr(engine_stats, f"output_{cause}")) for cause, _ in DROP_CAUSES)
        return stats

    def stats_text(self):
        stats = self.stats()
        # The usual cause always, the others only once they happened.
        causes = [f"{stats['output_full']} at full outputs"] + [
            f"{stats['output_' + cause]} {text}" for cause, text in DROP_CAUSES[1:] if stats["output_" + cause]]
        lines = [f"Engine {self.name}: {stats['packets']} packets, {stats['bytes']} bytes, "
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
            lines.append(f"  {brick['kind']}: {brick['received']} received, {brick['malformed']} malformed")
            for name, packets, size, dropped in rows:
                lines.append(f"    -> {name:<{widths[0]}} {packets:>{widths[1]}} packets "
                             f"{size:>{widths[2]}} bytes {dropped:>{widths[3]}} dropped")
        lines += stats["problems"]
        return "\n".join(lines)


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


def column_widths(rows, minimums):
    """The width of each column: the widest cell of rows, at least its minimum."""
    return tuple(max([minimum] + [len(str(row[column])) for row in rows]) for column, minimum in enumerate(minimums))


def _whole(value, what, lowest, highest):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not lowest <= value <= highest:
        raise BricksError(f"{what} must be a whole number from {lowest} to {highest}, got {value!r}")
    return int(value)


def _link_call(function, *args):
    try:
        return function(*args)
    except links.LinkError as error:
        raise BricksError(str(error)) from None


def _netmap_port(port, qid):
    """The netmap port a bricks port names: qid >= 0 reads that one NIC ring pair (SPEC §3)."""
    if port.kind == "broker":
        return netmap.NetmapPort(port.interface, lib.NR_REG_PIPE_MASTER, pipe=port.index)
    if port.kind == "consumer":
        return netmap.NetmapPort(port.interface, lib.NR_REG_PIPE_SLAVE, pipe=port.index)
    if qid >= 0:
        return netmap.NetmapPort(port.interface, lib.NR_REG_ONE_NIC, ring=qid)
    return netmap.NetmapPort(port.interface, lib.NR_REG_ALL_NIC)


def _fanout_group(ifindex):
    """A PACKET_FANOUT group id shared by this process's engines on one interface."""
    return zlib.crc32(f"{os.getpid()}:{ifindex}".encode()) & 0xFFFF


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
