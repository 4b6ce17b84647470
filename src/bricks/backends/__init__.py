"""Back-ends: how a planned tree's ports are opened, one module per back-end, chosen per linked tree.

The protocol (what `xdp` implements to drop in as one more module):

    class Backend:
        name: str            # "packet", "netmap", "pcap", "xdp" ...: what print_status and the log say
        family: str          # back-ends of one family share their pipes: "kernel" (veth pipes: packet, xdp),
                             # "netmap" (netmap pipes), "file" (pcap). A process settles one live family.
        def probe(self, plan) -> Optional[str]
            # None when this back-end can run every live port of plan (graph.Plan: kinds, depths, edges,
            # sources and sinks, plan.qid), else one line saying why not (print_status shows it). Pure: opens
            # nothing, or only what it closes before returning.
        def open_source(self, context, port) -> brk_source *
        def open_sink(self, context, node, output) -> brk_sink *
            # one C source or sink, or BricksError in one line. Called in plan order: every source first,
            # then the sinks depth first. The engine closes what they return (brk_source_close/sink_close).
            # What else they take (offloads, pipes, programs) they record in context.held or take from the
            # registry for the engine (context.hold_pipe).
        def realise(self, context) -> None
            # once every C brick, source and sink of the tree exists, before the engine runs: e.g. load
            # and attach a program made from context.plan. May raise BricksError: the link is then undone.
        def release(self, context) -> None
            # undoes what open_*/realise took beyond the C sources and sinks; called once per link, on
            # unlink and on a failed link, whatever went wrong.
        def start(self, context) -> None      # optional: when the engine starts (xdp attaches its program);
        def stop(self, context) -> None       # may raise BricksError: the engine then does not start
        def describe(self, context) -> str    # optional: how the tree runs now, for print_status

`LinkContext` is what one pe:link() gives its back-ends: the engine, the plan, the live back-end, and
`held` (what release must undo). Pcap ports are always opened by the pcap module (`for_port`); every
other port by the tree's live back-end, which `select(plan)` chooses:

* `set_backend(name)` (or BRICKS_BACKEND, --backend): that back-end for every tree it accepts, the ones
  after it in its family (`FAMILIES`) for the others;
* auto: the first tree with interfaces settles the process's family: netmap when its probe accepts the
  tree, else packet (a netmap pipe and a veth of the same name cannot meet, so every later tree stays in
  that family). Within a family, `select` takes the first module of `FAMILIES[family]` whose probe
  accepts the tree, so a back-end that runs only some trees (xdp) goes before packet there and packet
  is each tree's fallback; `context.reasons` keeps why the ones before it refused.
"""
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol

from .. import netmap as netmap_module
from ..errors import BricksError
from ..ports import PortKind
from . import netmap, packet, pcap, xdp

BACKEND_ENVIRONMENT = "BRICKS_BACKEND"   # the back-end of this process and its children, as --backend


class Backend(Protocol):
    name: str
    family: str

    def probe(self, plan) -> Optional[str]: ...

    def open_source(self, context: "LinkContext", port) -> Any: ...

    def open_sink(self, context: "LinkContext", node, output) -> Any: ...

    def realise(self, context: "LinkContext") -> None: ...

    def release(self, context: "LinkContext") -> None: ...


@dataclass
class LinkContext:
    """What one pe:link() hands its back-ends."""

    engine: Any                      # the PktEngine: name, buffer_slots, cpu, hold_pipe()
    plan: Any                        # graph.Plan
    backend: Backend                 # the tree's live back-end
    reasons: Dict[str, str] = field(default_factory=dict)    # back-end name -> why its probe refused the tree
    held: List[Callable[[], None]] = field(default_factory=list)   # undo actions release() runs, newest first
    state: Any = None                # what the live back-end keeps for the tree (xdp: its loaded program)

    def hold(self, undo: Callable[[], None]) -> None:
        self.held.append(undo)


MODULES: Dict[str, Backend] = {module.BACKEND.name: module.BACKEND for module in (packet, netmap, pcap, xdp)}
# The live back-ends a process may settle on, by family, in the order select() tries them.
# The last of each family runs any tree (its probe is not asked). xdp goes before packet in "kernel".
FAMILIES: Dict[str, List[str]] = {"netmap": ["netmap"], "kernel": ["xdp", "packet"]}
CHOICES = ("auto", "netmap", "xdp", "packet")   # what set_backend, --backend and BRICKS_BACKEND take

_lock = threading.RLock()


def _environment_choice():
    """BRICKS_BACKEND when it names a back-end, else auto (the CLI rejects a bad value in one line)."""
    name = os.environ.get(BACKEND_ENVIRONMENT, "").strip()
    return name if name in CHOICES else "auto"


_chosen = _environment_choice()
_family: Optional[str] = None if _chosen == "auto" else MODULES[_chosen].family   # set, or settled by a link
_detail = "" if _chosen == "auto" else f"set to {_chosen} by {BACKEND_ENVIRONMENT}"


def set_backend(name, engines_exist=False):
    """Chooses the back-end of the engines to come: auto, netmap, xdp or packet (SPEC §3)."""
    global _chosen, _family, _detail
    if name not in CHOICES:
        raise BricksError(f"unknown back-end {name!r} (one of {', '.join(CHOICES)})")
    with _lock:
        if engines_exist and name != _chosen:
            raise BricksError("the back-end must be chosen before the first engine is created")
        if name == "netmap" and netmap_module.missing_reason():
            raise BricksError(netmap_module.missing_reason())
        if name == "xdp" and xdp.kernel_reason():
            raise BricksError(f"xdp: {xdp.kernel_reason()}")
        _chosen = name
        _family = None if name == "auto" else MODULES[name].family
        _detail = "" if name == "auto" else f"set to {name}"


def backend_name():
    """The back-end engines use, netmap, xdp or packet (before auto settles: what it would pick). In the kernel
    family xdp runs the trees it can and packet the others (backend_lines says which tree runs where)."""
    if _chosen != "auto":
        return _chosen
    if _family == "netmap" or (_family is None and netmap_module.available()):
        return "netmap"
    return "packet" if xdp.kernel_reason() else "xdp"


def kernel_choice():
    """What auto runs in the kernel family, as the status says it."""
    return "packet" if xdp.kernel_reason() else "xdp or packet per tree"


def backend_detail():
    """One line saying why the back-end is what it is, for the status and the log."""
    if _detail:
        return _detail
    if netmap_module.available():
        return "auto: netmap found"
    reason = xdp.kernel_reason()
    return f"auto: {netmap_module.DEVICE} not found, {kernel_choice()}" + (f" (xdp: {reason})" if reason else "")


def select(plan) -> LinkContext:
    """The live back-end of plan's tree (see the module docstring), in a fresh LinkContext without engine."""
    global _family, _detail
    with _lock:
        reasons: Dict[str, str] = {}
        if _chosen == "auto" and _family is None:
            if not plan.interfaces and not plan.ports(PortKind.TUNNEL):
                return LinkContext(None, plan, MODULES[backend_name()], reasons)   # files only: nothing settles
            reason = MODULES["netmap"].probe(plan)
            _family = "kernel" if reason else "netmap"
            _detail = (f"auto: {kernel_choice()} ({reason})" if reason
                       else f"auto: netmap opens {', '.join(plan.interfaces)}")
        family = FAMILIES[_family]
        # A back-end chosen by name is tried first, then the ones after it in its family (its fallbacks).
        candidates = family[family.index(_chosen):] if _chosen != "auto" else family
        for name in candidates[:-1]:
            reason = MODULES[name].probe(plan)
            if reason is None:
                return LinkContext(None, plan, MODULES[name], reasons)
            reasons[name] = reason
        return LinkContext(None, plan, MODULES[candidates[-1]], reasons)


def for_port(context: LinkContext, port) -> Backend:
    """The back-end that opens port: pcap files always by the pcap module, the rest by the tree's."""
    return MODULES["pcap"] if port.kind == PortKind.PCAP else context.backend


def release(context: LinkContext) -> None:
    """Every back-end of the tree undoes what it took (the tree's live one and pcap), newest first."""
    for backend in (context.backend, MODULES["pcap"]):
        backend.release(context)
    while context.held:
        context.held.pop()()
