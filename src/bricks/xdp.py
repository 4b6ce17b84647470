"""The XDP back-end's foundation in Python: a tree of bricks compiled into the node table of the one XDP program
(csrc/xdp/bricks.bpf.c), loaded, attached to input interfaces, run once on a frame and read back, through
io_xdp.c. Not wired into the engine yet: engine.py will build an `XdpTree` from a linked tree.

    tree = XdpTree("LoadBalancer", [XdpTree("Dummy", ["pipe0"]), "pipe1"], split=4)
    with XdpProgram(tree) as program:
        program.attach("eth0")
        program.output_counters()      # [{"packets": ..., "bytes": ..., "redirect_failures": ...}, ...]
"""
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from ._ffi import error_buffer, error_text, ffi, lib
from .errors import BricksError

OBJECT_PATH = Path(__file__).resolve().parent / "bricks.bpf.o"
KINDS = {"Dummy": lib.BRK_XDP_DUMMY, "LoadBalancer": lib.BRK_XDP_LOADBALANCER, "Duplicator": lib.BRK_XDP_DUPLICATOR,
         "Filter": lib.BRK_XDP_FILTER}
MODES = {"auto": lib.BRK_XDP_MODE_AUTO, "native": lib.BRK_XDP_MODE_NATIVE, "generic": lib.BRK_XDP_MODE_GENERIC}
NODE_COUNTERS = ("received_packets", "received_bytes", "malformed", "fragment_fallbacks", "jumbo_drops",
                 "filtered", "passed", "rule_dropped", "rule_allowed")
OUTPUT_COUNTERS = ("packets", "bytes", "redirect_failures")
XDP_ACTIONS = {0: "aborted", 1: "drop", 2: "pass", 3: "tx", 4: "redirect"}


@dataclass
class XdpTree:
    """One brick and its outputs, in order: each another XdpTree or an interface (name or ifindex)."""
    kind: str
    outputs: List[Union["XdpTree", str, int]] = field(default_factory=list)
    split: int = 4
    depth: Optional[int] = None   # LoadBalancer: its hash level; None: the LoadBalancers above it (graph.plan's
                                  # own count differs for one with a single output, and the engine passes it)
    rules: object = None          # Filter: its rule table (a `brk_filter_table *`), run in the program while it lives


def interface_index(interface: Union[str, int]) -> int:
    if isinstance(interface, int):
        return interface
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise BricksError(f"XDP: no interface {interface}") from None


class _Plan:
    """The tree flattened as io_xdp.c takes it: nodes in breadth-first order (the root first), each brick's
    outputs contiguous in the program's output list, depth = LoadBalancers above (as the C engine counts)."""

    def __init__(self, root: XdpTree):
        self.bricks: List[XdpTree] = []
        self.depths: List[int] = []
        self.first_outputs: List[int] = []
        self.output_ifindexes: List[int] = []
        pending = [(root, 0)]
        while pending:
            brick, depth = pending.pop(0)
            if brick.kind not in KINDS:
                raise BricksError(f"XDP: {brick.kind} cannot run in XDP")
            self.bricks.append(brick)
            self.depths.append(depth if brick.depth is None else brick.depth)
            self.first_outputs.append(len(self.output_ifindexes))
            for output in brick.outputs:
                child = isinstance(output, XdpTree)
                self.output_ifindexes.append(0 if child else interface_index(output))
                if child:
                    pending.append((output, depth + (brick.kind == "LoadBalancer")))
        if len(self.bricks) > lib.BRK_XDP_MAX_NODES:
            raise BricksError(f"XDP: {len(self.bricks)} bricks, the program takes at most {lib.BRK_XDP_MAX_NODES}")

    def nodes(self):
        nodes = ffi.new("struct brk_xdp_node[]", len(self.bricks))
        next_index = 1
        duplicators = filters = 0
        for index, brick in enumerate(self.bricks):
            node = nodes[index]
            node.kind = KINDS[brick.kind]
            node.split = brick.split
            node.depth = self.depths[index]
            node.output_count = len(brick.outputs)
            node.first_output = self.first_outputs[index]
            if brick.kind == "Duplicator":
                node.duplicator = duplicators
                duplicators += 1
            if brick.kind == "Filter":
                node.filter = filters
                filters += 1
            for slot in range(len(node.child)):
                node.child[slot] = -1
            for slot, output in enumerate(brick.outputs[:len(node.child)]):
                if isinstance(output, XdpTree):
                    node.child[slot] = next_index   # breadth-first: children numbered in the order queued
                    next_index += 1
        return nodes


class XdpProgram:
    """One loaded program for one tree; a context manager that detaches and frees it (nothing is pinned)."""

    def __init__(self, root: XdpTree, object_path: Optional[Path] = None):
        path = Path(object_path or OBJECT_PATH)
        if not path.exists():
            raise BricksError(f"XDP: {path} is missing: bricks was installed without clang (bin/setup installs it)")
        self.plan = _Plan(root)
        nodes = self.plan.nodes()
        ifindexes = ffi.new("int[]", self.plan.output_ifindexes or [0])
        error = error_buffer()
        self._handle = lib.brk_xdp_open(str(path).encode(), nodes, len(self.plan.bricks), ifindexes,
                                        len(self.plan.output_ifindexes), error, len(error))
        if self._handle == ffi.NULL:
            raise BricksError(error_text(error))
        self.attached: Dict[int, bool] = {}   # ifindex -> generic mode
        filters = [brick for brick in self.plan.bricks if brick.kind == "Filter"]
        for number, brick in enumerate(filters):
            if brick.rules is not None and lib.brk_xdp_filter_bind(self._handle, number, brick.rules, error,
                                                                   len(error)) != 0:
                self.close()
                raise BricksError(f"Filter: {error_text(error)}")

    def __enter__(self) -> "XdpProgram":
        return self

    def __exit__(self, *exception_info) -> None:
        self.close()

    def _live(self):
        if self._handle is None:
            raise BricksError("XDP: the program is closed")
        return self._handle

    def attach(self, interface: Union[str, int], mode: str = "auto") -> bool:
        """Runs the program on frames arriving at interface; True when only generic mode was possible."""
        ifindex = interface_index(interface)
        generic = ffi.new("int *")
        error = error_buffer()
        if lib.brk_xdp_attach(self._live(), ifindex, MODES[mode], generic, error, len(error)) != 0:
            raise BricksError(error_text(error).replace(f"ifindex {ifindex}", str(interface)))
        self.attached[ifindex] = bool(generic[0])
        return self.attached[ifindex]

    def attach_pass(self, interface: Union[str, int]) -> None:
        """Gives the consumer end of a pipe fed by an output the NAPI it needs (native XDP_PASS); without it
        redirected frames vanish uncounted. Keep GRO off there, or that NAPI merges TCP segments."""
        ifindex = interface_index(interface)
        error = error_buffer()
        if lib.brk_xdp_attach_pass(self._live(), ifindex, error, len(error)) != 0:
            raise BricksError(error_text(error).replace(f"ifindex {ifindex}", str(interface)))
        self.attached[ifindex] = False

    def detach(self, interface: Union[str, int]) -> None:
        ifindex = interface_index(interface)
        lib.brk_xdp_detach(self._live(), ifindex)
        self.attached.pop(ifindex, None)

    def close(self) -> None:
        if self._handle is not None:
            lib.brk_xdp_close(self._handle)
            self._handle = None
            self.attached.clear()

    def run(self, frame: bytes) -> str:
        """The action ("redirect", "drop"...) of one run on frame (BPF_PROG_RUN: nothing is transmitted)."""
        return self._test_run(frame, 1)[0]

    def time_per_run(self, frame: bytes, repeat: int = 100000) -> int:
        """The kernel's mean nanoseconds per run of the program on frame (counters count every run)."""
        return self._test_run(frame, repeat)[1]

    def _test_run(self, frame: bytes, repeat: int):
        action, nanoseconds = ffi.new("uint32_t *"), ffi.new("uint32_t *")
        error = error_buffer()
        if lib.brk_xdp_test_run(self._live(), frame, len(frame), repeat, action, nanoseconds, error, len(error)) != 0:
            raise BricksError(error_text(error))
        return XDP_ACTIONS.get(action[0], str(action[0])), nanoseconds[0]

    def node_counters(self, node: int = 0) -> Dict[str, int]:
        """The counters of the brick numbered node (breadth-first from the root, 0), summed over the CPUs."""
        counters = ffi.new("struct brk_xdp_node_counters *")
        if lib.brk_xdp_node_counters(self._live(), node, counters) != 0:
            raise BricksError(f"XDP: cannot read the counters of brick {node}")
        return {name: getattr(counters, name) for name in NODE_COUNTERS}

    def output_counters(self, node: Optional[int] = None) -> List[Dict[str, int]]:
        """The counters of every program output, or of the outputs of brick node only."""
        if node is None:
            outputs: Sequence[int] = range(len(self.plan.output_ifindexes))
        else:
            first = self.plan.first_outputs[node]
            outputs = range(first, first + len(self.plan.bricks[node].outputs))
        result = []
        counters = ffi.new("struct brk_xdp_output_counters *")
        for output in outputs:
            if lib.brk_xdp_output_counters(self._live(), output, counters) != 0:
                raise BricksError(f"XDP: cannot read the counters of output {output}")
            result.append({name: getattr(counters, name) for name in OUTPUT_COUNTERS})
        return result


def attached_program(interface: Union[str, int]) -> int:
    """The id of the XDP program on interface, 0 when none."""
    program_id = ffi.new("uint32_t *")
    if lib.brk_xdp_attached_id(interface_index(interface), program_id) != 0:
        raise BricksError(f"XDP: cannot query {interface}")
    return program_id[0]


def transmit_errors(interface: str) -> int:
    """Frames XDP redirected to interface that it could not take (a full veth pipe): dropped after the program
    counted them delivered, so the back-end subtracts them per output."""
    errors = ffi.new("uint64_t *")
    if lib.brk_xdp_transmit_errors(interface.encode(), errors) != 0:
        raise BricksError(f"XDP: {interface} has no XDP transmit counters")
    return errors[0]
