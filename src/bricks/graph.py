"""The brick model and the graph plan: what a linked tree is, checked in full, before any I/O.

`Brick` is what the shells build (kind, argument, ports, children). `plan(root, batch, qid)` turns a tree
into a `Plan`: its nodes in the order their C bricks are made (depth first, parents first), each with its
kind, its C config and depth, its internal edges and its endpoints (the external inputs that become
sources and the outputs that become sinks), and the interfaces it reads and writes. Planning is pure: it
opens nothing, creates nothing and touches no kernel object, so a back-end can probe a Plan (can it run
this tree?) and a compiler (XDP) can translate one. Every limit the C engine has is checked here, at link
time, in one line: outputs per kind and per brick (BRK_MAX_OUTPUTS), inputs per kind, the batch, qid.

engine.py realises a Plan through a back-end (backends/) and runs it; stats.py reads its counters.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .catalog import UNLIMITED, BrickKind, find_kind
from .errors import BricksError
from . import ports
from .ports import PortKind, PortName

MAX_BATCH = 65536
MAX_QID = 65535


def _port(name, side):
    if not isinstance(name, str):
        raise BricksError(f"{side} name must be a string, got {type(name).__name__}")
    return ports.parse_port_name(name)


class Brick:
    """One brick: a kind, its ports and its children; a C brick while linked."""

    def __init__(self, kind, argument=None, options=None):
        self.kind = find_kind(kind)
        self.argument = self.kind.check_argument(argument)
        self.options = self.kind.check_options(options)   # the third argument: a table of named settings
        self.inputs = []             # ports.PortName
        self.outputs = []
        self.children = []
        self.stands_for = None       # kinds that stand for an interface (PcapReader): the one files were read on
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
        if self.kind.stands_for_interface and len(names) == 2:
            interface = _port(names.pop(), "interface")
            if interface.kind != PortKind.INTERFACE:
                raise BricksError(f"{self.kind.name}: {interface.name!r} is not an interface name")
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
            if port.kind == PortKind.CONSUMER:
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
        count = whole_number(count, "connect_outputs: count", 1, UNLIMITED)
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
        """Counters of this brick while linked: received, malformed, and per output (None when not linked).

        Safe from any thread: the engine's lock keeps unlink from freeing the C brick while it is read."""
        from .stats import brick_snapshot   # stats reads the C counters; the model itself does not
        engine = self.engine
        if engine is None:
            return None
        with engine.lock:
            return brick_snapshot(self)


def _edge(output, port):
    """Whether output `X{N` and input `X}N` are the two ends of one pipe: an internal edge."""
    return output.kind == PortKind.BROKER and port.kind == PortKind.CONSUMER and \
        (output.interface, output.index) == (port.interface, port.index)


def _feeds(output, child):
    """Whether output is an internal edge into child."""
    return any(_edge(output, port) for port in child.inputs)


def _describe(port):
    return port.kind.described




@dataclass(frozen=True)
class Output:
    """Output `index` of a node: an internal edge to node `child`, or (child None) a sink on `port`."""

    index: int
    port: PortName
    child: Optional[int] = None


@dataclass(frozen=True)
class Node:
    """One brick of a plan, with everything its C brick is made from."""

    brick: "Brick"
    kind: BrickKind
    depth: int                   # spreading bricks above it (the hash's per-level seed)
    config: Optional[Dict[str, int]]   # the fields of the kind's C config struct, None for a kind without
    outputs: Tuple[Output, ...]


@dataclass(frozen=True)
class Source:
    """An external input of the tree: `port`, read into node `node`."""

    node: int
    port: PortName


@dataclass(frozen=True)
class Plan:
    """A validated linked tree (see the module docstring). Nodes are indexed in creation order."""

    root: "Brick"
    batch: int
    qid: int
    nodes: Tuple[Node, ...]
    sources: Tuple[Source, ...]  # in the order they are opened: before any sink (a mistyped input fails first)
    index: Dict[int, int] = field(default_factory=dict, compare=False)   # id(brick) -> node index

    def node_of(self, brick: "Brick") -> Node:
        return self.nodes[self.index[id(brick)]]

    @property
    def sinks(self) -> List[Tuple[int, Output]]:
        """(node index, output) of every output that is not an internal edge, in creation order."""
        return [(number, output) for number, node in enumerate(self.nodes) for output in node.outputs
                if output.child is None]

    @property
    def edges(self) -> List[Tuple[int, int, int]]:
        """(parent node, output index, child node) of every internal edge."""
        return [(number, output.index, output.child) for number, node in enumerate(self.nodes)
                for output in node.outputs if output.child is not None]

    @property
    def finite(self) -> bool:
        """Whether every source ends by itself (pcap files)."""
        return all(source.port.kind == PortKind.PCAP for source in self.sources)

    def ports(self, *kinds: PortKind) -> List[PortName]:
        """Every endpoint port (sources, then sinks) of the given kinds."""
        endpoints = [source.port for source in self.sources] + [output.port for _, output in self.sinks]
        return [port for port in endpoints if port.kind in kinds]

    @property
    def interfaces(self) -> List[str]:
        """Every interface whose device or netmap port the tree opens, sorted (pipe ends name their parent)."""
        return sorted({port.interface for port in self.ports(PortKind.INTERFACE, PortKind.BROKER,
                                                              PortKind.CONSUMER)})

    @property
    def tunnel_walk_reason(self) -> Optional[str]:
        """One line naming the first brick that needs the C engine's tunnel walk (a Strip, a balancing brick
        with tunnels = "inner"), None when there is none: what a back-end that cannot run it (xdp) refuses."""
        for node in self.nodes:
            if node.kind.name == "Strip":
                return "a Strip brick needs the C engine's tunnel walk"
            if (node.brick.options or {}).get("tunnels") == "inner":
                return f'{node.kind.name} with tunnels = "inner" needs the C engine\'s tunnel walk'
        return None

    @property
    def interfaces_read(self) -> List[str]:
        return sorted({source.port.interface for source in self.sources if source.port.kind == PortKind.INTERFACE})


def whole_number(value, what, lowest, highest):
    """value as an int, or a one-line error: the one check of every number the API takes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not lowest <= value <= highest:
        raise BricksError(f"{what} must be a whole number from {lowest} to {highest}, got {value!r}")
    return int(value)


def plan(root: "Brick", batch: int, qid: int = -1) -> Plan:
    """The checked plan of root's tree; BricksError in one line for anything the C engine would refuse."""
    if not isinstance(root, Brick):
        raise BricksError(f"link: expected a Brick, got {type(root).__name__}")
    batch = whole_number(batch, "batch (-1: the default)", 1, MAX_BATCH)
    qid = whole_number(qid, "qid", -1, MAX_QID)
    tree = root.walk()
    for brick in tree:
        _check_brick(brick)
    order: List["Brick"] = []
    depths: Dict[int, int] = {}
    _creation_order(root, 0, order, depths)
    index = {id(brick): number for number, brick in enumerate(order)}
    nodes = tuple(_node(brick, depths[id(brick)], index) for brick in order)
    sources = tuple(_sources(tree, index))
    return Plan(root, batch, qid, nodes, sources, index)


def _check_brick(brick: "Brick") -> None:
    fewest, most = brick.kind.outputs
    if not fewest <= len(brick.outputs) <= most:
        raise BricksError(f"{brick.kind.name} has {len(brick.outputs)} outputs, needs "
                          f"{fewest}" + (f" to {most}" if most > fewest else ""))
    if len(brick.outputs) > UNLIMITED:   # the C core's BRK_MAX_OUTPUTS, whatever a descriptor says
        raise BricksError(f"{brick.kind.name} has {len(brick.outputs)} outputs, at most {UNLIMITED} are possible")
    if not brick.inputs:
        raise BricksError(f"{brick.kind.name} has no input: connect_input first")
    fewest, most = brick.kind.inputs
    if len(brick.inputs) > most:
        raise BricksError(f"{brick.kind.name} takes at most {most} input{'s' if most > 1 else ''}")


def _creation_order(brick, depth, order, depths):
    """Depth first, parents first: the order engine.py makes C bricks and opens sinks in."""
    order.append(brick)
    depths[id(brick)] = depth
    # Only a brick that does spread (two outputs or more) moves its children to the next hash: a PcapReader
    # with one output before a LoadBalancer then leaves it the hash a live LoadBalancer has.
    child_depth = depth + 1 if brick.kind.balances and len(brick.outputs) > 1 else depth
    for output in brick.outputs:
        child = _child_fed_by(brick, output)
        if child is not None and id(child) not in depths:
            _creation_order(child, child_depth, order, depths)


def _child_fed_by(brick, output):
    return next((child for child in brick.children if _feeds(output, child)), None)


def _node(brick, depth, index) -> Node:
    config = brick.kind.config(brick.argument, depth, brick.options) if brick.kind.config else None
    outputs = []
    for number, port in enumerate(brick.outputs):
        child = _child_fed_by(brick, port)
        outputs.append(Output(number, port, None if child is None else index[id(child)]))
    return Node(brick, brick.kind, depth, config, tuple(outputs))


def _sources(tree, index):
    """The inputs no parent feeds, brick by brick in walk order (breadth first)."""
    for brick in tree:
        parents = [parent for parent in tree if brick in parent.children]
        for port in brick.inputs:
            if not any(_edge(output, port) for parent in parents for output in parent.outputs):
                yield Source(index[id(brick)], port)
