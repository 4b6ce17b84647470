"""The XDP back-end: a linked tree run as one XDP program (bricks.xdp, io_xdp.c, xdp/bricks.bpf.c) in the input's
driver, its frames redirected into the outputs' devices without ever reaching user space.

It runs trees of LoadBalancer, Duplicator, Dummy, Merge (a Merge is the program attached to each of its
inputs) and Filter (its runtime rules, kept in the program's maps as they change; not a tcpdump expression) whose
inputs are interfaces and whose outputs are veth pipes (`X{N`, made as the packet back-end makes
them) or egress NICs (a virtual interface would drop redirected frames uncounted), within the program's
limits; its probe says in one line why any other tree runs on packet (FAMILIES puts xdp before packet).

Lifecycle: the program is loaded at link (realise), attached to the inputs when the engine starts (native
mode where the driver has it, else generic with a warning; refused in one line when any XDP program is
there already: someone else's is never replaced), with the XDP_PASS companion on each pipe's consumer end
(a veth takes redirected frames only with NAPI there; GRO stays off so no TCP segments merge), detached when
it stops, freed at unlink/delete/exit. Attachments are BPF links: a SIGKILLed process leaves nothing attached.

The engine thread reads an idle source per input (brk_source_xdp_idle_new): it sleeps in poll() until
stopped, with no per-packet work in user space. Counters come from the program's per-CPU maps
(`brick_snapshot`), with the same columns as the packet back-end's.
"""
import errno
import functools
import logging
import os
import platform
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .. import links, xdp
from .._ffi import ffi, lib
from ..errors import BricksError
from ..ports import PortKind
from .packet import input_mtu, link_call

log = logging.getLogger("bricks")

MINIMUM_KERNEL = (5, 18)      # BPF links for XDP, DEVMAP broadcast, multi-buffer (xdp.frags) programs
KINDS = {"LoadBalancer": "LoadBalancer", "Duplicator": "Duplicator", "Dummy": "Dummy", "Merge": "Dummy",
         "Filter": "Filter"}
OUTPUT_KINDS = (PortKind.BROKER, PortKind.INTERFACE)


@dataclass
class XdpTreeState:
    """What one linked tree holds in the kernel: its program, where it is attached, the counter baselines."""

    program: xdp.XdpProgram
    node_of_brick: Dict[int, int]                  # id(Brick) -> the program's node number
    inputs: List[str]
    consumers: List[str]                           # consumer ends `X}N` of the pipes it feeds
    transmit_error_base: Dict[str, int] = field(default_factory=dict)   # device -> xdp_xmit_errors at link
    attached: List[str] = field(default_factory=list)
    generic: List[str] = field(default_factory=list)    # inputs where only generic mode was possible
    input_ifindex: Dict[str, int] = field(default_factory=dict)   # input -> the device the program is on
    reattach_failed: Dict[str, str] = field(default_factory=dict)  # input -> why attaching it again failed


@functools.lru_cache(maxsize=1)
def _built_without_libbpf() -> bool:
    """The module's XDP calls are stubs (no libbpf at build): they answer ENOSYS."""
    program_id = ffi.new("uint32_t *")
    return lib.brk_xdp_attached_id(1, program_id) == -errno.ENOSYS


def kernel_reason() -> Optional[str]:
    """Why this host cannot run the program, or None."""
    if not xdp.OBJECT_PATH.exists():
        return "no bricks.bpf.o: bricks was installed without clang (bin/setup installs it)"
    if _built_without_libbpf():
        return "bricks was built without libbpf (bin/setup installs libbpf-dev, then reinstall bricks)"
    release = platform.release().split("-")[0].split(".")
    try:
        version = (int(release[0]), int(release[1]))
    except (IndexError, ValueError):
        version = MINIMUM_KERNEL
    if version < MINIMUM_KERNEL:
        return f"kernel {platform.release()} is older than {'.'.join(map(str, MINIMUM_KERNEL))}"
    if os.geteuid() != 0:
        return "loading XDP programs needs root (CAP_BPF and CAP_NET_ADMIN)"
    return None


def tree_reason(plan) -> Optional[str]:
    """Why the program cannot run plan's tree, or None: kinds, ports and the program's limits."""
    if plan.qid >= 0:
        return f"qid {plan.qid}: XDP reads every queue of the input"
    if plan.tunnel_walk_reason:   # a Strip, inner-flow balancing: the program hashes the outer flow only
        return plan.tunnel_walk_reason
    for source in plan.sources:
        if source.port.kind != PortKind.INTERFACE:
            return f"input {source.port.name}: XDP reads interfaces only"
        if source.node != 0:
            return f"{plan.nodes[source.node].kind.name} below the root reads {source.port.name}"
    duplicators = filters = outputs = 0
    for node in plan.nodes:
        if node.kind.name == "Filter" and node.brick.argument.expression:
            return "a Filter with a tcpdump expression (XDP runs a Filter's rules, not libpcap's BPF)"
        if node.kind.name not in KINDS:
            return f"{node.kind.name} cannot run in XDP"
        if len(node.outputs) > lib.BRK_XDP_MAX_NODE_OUTPUTS:
            return f"{node.kind.name} has {len(node.outputs)} outputs, XDP takes {lib.BRK_XDP_MAX_NODE_OUTPUTS}"
        duplicators += node.kind.name == "Duplicator"
        filters += node.kind.name == "Filter"
        if node.kind.name == "Duplicator" and any(output.child is not None for output in node.outputs):
            return "a Duplicator feeding another brick (XDP broadcasts to interfaces only)"
        outputs += len(node.outputs)
        for output in node.outputs:
            if output.child is None and output.port.kind not in OUTPUT_KINDS:
                return f"output {output.port.name} ({output.port.kind.described}) cannot be written from XDP"
            if output.child is None and output.port.kind == PortKind.INTERFACE:
                reason = egress_reason(output.port.interface)
                if reason:
                    return reason
    if len(plan.nodes) > lib.BRK_XDP_MAX_NODES:
        return f"{len(plan.nodes)} bricks, XDP takes {lib.BRK_XDP_MAX_NODES}"
    if duplicators > lib.BRK_XDP_MAX_DUPLICATORS:
        return f"{duplicators} Duplicators, XDP takes {lib.BRK_XDP_MAX_DUPLICATORS}"
    if filters > lib.BRK_XDP_MAX_FILTERS:
        return f"{filters} Filters, XDP takes {lib.BRK_XDP_MAX_FILTERS}"
    if outputs > lib.BRK_XDP_MAX_OUTPUTS:
        return f"{outputs} outputs, XDP takes {lib.BRK_XDP_MAX_OUTPUTS}"
    if _levels(plan, 0) > lib.BRK_XDP_MAX_LEVELS:
        return f"a chain of more than {lib.BRK_XDP_MAX_LEVELS} bricks"
    return None


def egress_reason(interface) -> Optional[str]:
    """Why frames redirected to egress interface would not be counted, or None: a virtual device (a veth whose
    peer has no NAPI, a bridge, a dummy...) loses them after the program counted them sent, counted nowhere;
    a NIC (a device in /sys) sends them. One that does not exist yet is left to open_sink to name."""
    path = f"/sys/class/net/{interface}"
    if not os.path.exists(path) or os.path.exists(f"{path}/device"):
        return None
    return f"output {interface} is a virtual interface: XDP could lose frames sent there uncounted"


def _levels(plan, number):
    children = [output.child for output in plan.nodes[number].outputs if output.child is not None]
    return 1 + max((_levels(plan, child) for child in children), default=0)


def xdp_tree(plan, number=0, trees=None):
    """plan's node `number` as an XdpTree; trees maps each XdpTree made (by id) to its plan node."""
    node = plan.nodes[number]
    outputs = [xdp_tree(plan, output.child, trees) if output.child is not None else output.port.device
               for output in node.outputs]
    split = (node.config or {}).get("split", 4)
    rules = node.brick.argument.table if node.kind.name == "Filter" else None
    tree = xdp.XdpTree(KINDS[node.kind.name], outputs, split=split, depth=node.depth, rules=rules)
    if trees is not None:
        trees[id(tree)] = number
    return tree


def _transmit_errors(device):
    """A device's XDP transmit errors; 0 for one without those counters (not a veth)."""
    try:
        return xdp.transmit_errors(device)
    except BricksError:
        return 0


class XdpBackend:
    name = "xdp"
    family = "kernel"

    def probe(self, plan):
        return kernel_reason() or tree_reason(plan)

    def open_source(self, context, port):
        link_call(links.interface_info, port.interface)   # a mistyped input fails here, in one line
        source = lib.brk_source_xdp_idle_new()
        if source == ffi.NULL:
            raise BricksError(f"input {port.name}: out of memory or descriptors")
        return source

    def open_sink(self, context, node, output):
        port = output.port
        if port.kind == PortKind.BROKER:
            context.engine.hold_pipe(port, input_mtu(context.plan))
        else:
            link_call(links.interface_info, port.interface)
        return lib.brk_sink_null_new()   # the C tree sees no frame: its sinks only stand in for the outputs

    def realise(self, context):
        plan = context.plan
        trees: Dict[int, int] = {}
        program = xdp.XdpProgram(xdp_tree(plan, 0, trees))
        context.hold(program.close)
        node_of_brick = {id(plan.nodes[trees[id(tree)]].brick): number
                         for number, tree in enumerate(program.plan.bricks)}
        outputs = [output.port for _, output in plan.sinks]
        consumers = [links.consumer_name(port.interface, port.index) for port in outputs
                     if port.kind == PortKind.BROKER]
        state = XdpTreeState(program, node_of_brick, sorted({s.port.interface for s in plan.sources}),
                             sorted(set(consumers)))
        for port in outputs:
            state.transmit_error_base[port.device] = _transmit_errors(port.device)
        for consumer in state.consumers:
            # GRO off on the end whose NAPI the companion enables: every frame arrives as it was sent.
            token = link_call(links.disable_offloads, consumer)
            context.hold(lambda token=token: links.restore_offloads(token))
        context.state = state
        for number, node in enumerate(plan.nodes):
            node.brick.xdp_view = (state, node_of_brick[id(node.brick)])
            context.hold(lambda brick=node.brick: brick.__dict__.pop("xdp_view", None))

    def start(self, context):
        """Attaches the program to the inputs and its companion to the pipes' consumer ends; all or nothing."""
        state, engine_name = context.state, context.engine.name
        try:
            for interface in state.inputs:
                self._attach_input(state, interface, engine_name)
            for consumer in state.consumers:
                state.program.attach_pass(consumer)
                state.attached.append(consumer)
        except BricksError:
            self.stop(context)
            raise
        log.info("engine %s: %s tree %s", engine_name, context.plan.root.kind.name, self.describe(context))

    @staticmethod
    def _attach_input(state, interface, engine_name):
        generic = state.program.attach(interface, "auto")
        state.input_ifindex[interface] = xdp.interface_index(interface)
        if interface not in state.attached:
            state.attached.append(interface)
        if generic:
            state.generic.append(interface)
            log.warning("engine %s: %s has no native XDP: the program runs in generic mode (slower)",
                        engine_name, interface)

    def watch(self, context, engine_name):
        """While the engine runs: an input that returned (a device of the same name, a new index) gets the
        program again, as the packet back-end reads a returning input again; its old link went with the old
        device."""
        state = context.state
        if state is None or not state.attached:
            return
        for interface in state.inputs:
            old = state.input_ifindex.get(interface)
            try:
                now = xdp.interface_index(interface)
            except BricksError:
                continue   # gone: problems() says so
            if old is None or now == old:
                continue
            state.program.detach(old)
            state.generic = [name for name in state.generic if name != interface]
            try:
                self._attach_input(state, interface, engine_name)
            except BricksError as error:
                if state.reattach_failed.get(interface) != str(error):
                    log.warning("engine %s: input %s is back, but the program could not attach: %s",
                                engine_name, interface, error)
                state.reattach_failed[interface] = str(error)
                continue
            state.reattach_failed.pop(interface, None)
            log.info("engine %s: input %s is back: the XDP program runs on it again", engine_name, interface)

    def stop(self, context):
        state = context.state
        for ifindex in list(state.program.attached):   # by index: an interface gone meanwhile has no name
            state.program.detach(ifindex)
        state.attached, state.generic, state.input_ifindex = [], [], {}

    def release(self, context):
        context.state = None   # the program closes with context.held

    def problems(self, context):
        """One line per input or output of a running tree that is gone (print_status, show_stats). A returning
        input gets the program again (watch); a returning output only by linking the tree again."""
        state = context.state
        if state is None or not state.attached:
            return []
        lines = [f"input {name} gone: the program left with it (attached again when it returns)"
                 for name in state.inputs if not links.interface_exists(name)]
        lines += [f"input {name} is back, but the program could not attach: {reason}"
                  for name, reason in state.reattach_failed.items()]
        lines += [f"output {device} gone: its frames count as output gone (link the tree again once it is back)"
                  for device in state.transmit_error_base if not links.interface_exists(device)]
        return lines

    def describe(self, context):
        """How the tree runs, for print_status and the log."""
        state = context.state
        if state is None:
            return "not loaded"
        if not state.attached:
            return f"loaded, attached to {', '.join(state.inputs)} when the engine starts"
        modes = [f"{name} ({'generic' if name in state.generic else 'native'})" for name in state.inputs]
        return "attached to " + ", ".join(modes)


def brick_snapshot(brick):
    """The counters of a brick of an XDP tree, as stats.brick_snapshot gives a packet one: received =
    every output's packets + drops (a Duplicator: on each output). Drops by cause: `gone` a redirect that
    failed (no device in its slot), `full` a pipe that could not take the frame (its broker end's XDP transmit
    errors, which the program had counted delivered), `too_big` a frame a Duplicator cannot broadcast."""
    state, number = brick.xdp_view
    program = state.program
    node = program.node_counters(number)
    outputs = []
    for index, (port, counters) in enumerate(zip(brick.outputs, program.output_counters(number))):
        full = 0
        device = port.device if port.kind in OUTPUT_KINDS else None
        if device in state.transmit_error_base and program.plan.output_ifindexes[
                program.plan.first_outputs[number] + index]:
            full = max(0, _transmit_errors(device) - state.transmit_error_base[device])
        too_big = node["jumbo_drops"] if brick.kind.name == "Duplicator" else 0
        packets = max(0, counters["packets"] - full)
        output = {"name": port.name, "packets": packets, "bytes": counters["bytes"], "kernel_drops": 0,
                  "queued": 0, "full": full, "too_big": too_big, "too_short": 0,
                  "gone": counters["redirect_failures"], "write_errors": 0}
        output["drops"] = full + too_big + output["gone"]
        outputs.append(output)
    snapshot = {"kind": brick.kind.name, "received": node["received_packets"],
                "received_bytes": node["received_bytes"], "malformed": node["malformed"],
                "fragment_fallbacks": node["fragment_fallbacks"], "filtered": node["filtered"],
                "outputs": outputs, "backend": "xdp"}
    if brick.kind.name == "Filter":   # the Filter brick's own columns; XDP runs no expression
        snapshot.update(passed=node["passed"], rule_dropped=node["rule_dropped"], rule_allowed=node["rule_allowed"],
                        expression_rejected=0)
    return snapshot


BACKEND = XdpBackend()
