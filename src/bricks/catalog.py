"""One descriptor per brick kind: its name, its ports, its argument, its C config and its doc.

A brick kind is defined in two places only: here, and in its C file
csrc/brick_<kind>.c, whose `name` field equals `BrickKind.name` (plus, for a
kind with settings, their struct and counters in csrc/api/<kind>.h). The C
descriptor names the kind's config struct and its counters; `config` here
fills the struct, and stats.py lists the counters by the names C gives.
"""
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from . import filter as filter_rules
from .errors import BricksError
from .ports import PortKind

UNLIMITED = 64   # the C core's output limit (BRK_MAX_OUTPUTS)

# What a port name may be, per side of a brick (see ports.parse_port_name).
LIVE_INPUTS = (PortKind.INTERFACE, PortKind.CONSUMER, PortKind.TUNNEL)
LIVE_OUTPUTS = (PortKind.INTERFACE, PortKind.BROKER, PortKind.TUNNEL)
PCAP = (PortKind.PCAP,)


def _no_argument(kind_name, argument):
    if argument is not None:
        raise BricksError(f"{kind_name} takes no argument, got {argument!r}")
    return None


FRAGMENT_TABLE_SLOTS = 4096


# Which flow a balancing brick hashes (its `tunnels` option): enum brk_balance_tunnels (csrc/api/balance.h).
BALANCE_TUNNELS = {"outer": 0, "inner": 1}


def _balance_config(argument, depth, options=None):
    """struct brk_balance_config (csrc/api/balance.h)."""
    tunnels = (options or {}).get("tunnels", "outer")
    return {"split": argument, "depth": depth, "frag_slots": FRAGMENT_TABLE_SLOTS,
            "tunnels": BALANCE_TUNNELS[tunnels]}


def _no_options(kind_name, options):
    if options is not None:
        raise BricksError(f"{kind_name} takes no options, got {options!r}")
    return None


def _balance_options(kind_name, options):
    """`{tunnels = "inner"}`: hash the innermost flow of tunnelled frames; "outer" (the default) the original's."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise BricksError(f"{kind_name} options must be a table such as {{tunnels = \"inner\"}}, got {options!r}")
    unknown = [str(key) for key in options if key != "tunnels"]
    if unknown:
        raise BricksError(f"{kind_name}: unknown option {unknown[0]!r} (known: tunnels)")
    tunnels = options.get("tunnels", "outer")
    if tunnels not in BALANCE_TUNNELS:
        raise BricksError(f"{kind_name}: tunnels must be \"outer\" or \"inner\", got {tunnels!r}")
    return {"tunnels": tunnels}


# The encapsulations a Strip brick removes, by name: the bit of each is 1 << enum brk_layer_kind (api/dissect.h).
STRIP_LAYERS = {"vlan": 2, "mpls": 3, "vxlan": 11, "geneve": 12, "gre": 7, "erspan": 8, "gtp": 13}


def _strip_layers(kind_name, argument):
    """None (all of them) or a list of STRIP_LAYERS names (a Lua table arrives as {1: name, 2: name...})."""
    if argument is None:
        return tuple(STRIP_LAYERS)
    if isinstance(argument, str):
        argument = [argument]
    if isinstance(argument, dict):
        if sorted(argument) != list(range(1, len(argument) + 1)):
            raise BricksError(f"{kind_name} takes a list of layer names such as {{\"vxlan\", \"gre\"}}, "
                              f"got {argument!r}")
        argument = [argument[key] for key in sorted(argument)]
    if not isinstance(argument, (list, tuple)) or not argument:
        raise BricksError(f"{kind_name} takes a list of layer names (some of {', '.join(STRIP_LAYERS)}), "
                          f"got {argument!r}")
    for name in argument:
        if name not in STRIP_LAYERS:
            raise BricksError(f"{kind_name}: unknown layer {name!r} (one of {', '.join(STRIP_LAYERS)})")
    return tuple(dict.fromkeys(argument))


def _strip_config(argument, depth, options=None):
    """struct brk_strip_config (csrc/api/strip.h)."""
    return {"layers": sum(1 << STRIP_LAYERS[name] for name in argument)}


def _split(kind_name, argument):
    if argument is None:
        return 4
    if isinstance(argument, bool) or not isinstance(argument, (int, float)) or argument not in (2, 4):
        raise BricksError(f"{kind_name} split must be 2 (IP pair) or 4 (IP pair + ports), got {argument!r}")
    return int(argument)


@dataclass(frozen=True)
class BrickKind:
    name: str
    summary: str
    inputs: Tuple[int, int]          # (fewest, most) input ports
    outputs: Tuple[int, int]         # (fewest, most) output ports
    input_kinds: Tuple[str, ...]
    output_kinds: Tuple[str, ...]
    parse_argument: Callable = _no_argument
    parse_options: Callable = _no_options    # parse_options(kind name, options table or None) -> options
    list_argument: bool = False              # its argument may be a list (a Lua table such as {"vxlan", "gre"})
    balances: bool = False           # spreads packets by flow hash: a brick below it is one level deeper
    config: Optional[Callable] = None     # config(argument, depth, options) -> the fields of its C config struct
    stands_for_interface: bool = False    # connect_input(files, interface): the interface the files were read on
    # Kinds with Python-side state (Filter: its rule table, made by parse_argument):
    register: Optional[Callable] = None    # register(brick) once the Brick exists
    attach: Optional[Callable] = None      # attach(brick, handle) after brk_brick_new, before any packet
    methods: Tuple[str, ...] = ()          # methods of brick.argument callable on the Brick itself
    # Kinds with methods may also be found by name from any shell (Lua: `<Kind>.retrieve(name)`):
    retrieve: Optional[Callable] = None    # retrieve(name) -> the Brick, or None
    help: str = ""                         # `<Kind>.help()`: its methods

    def check_argument(self, argument):
        return self.parse_argument(self.name, argument)

    def check_options(self, options):
        return self.parse_options(self.name, options)


KINDS = {kind.name: kind for kind in (
    BrickKind("LoadBalancer", "output = flow hash % number of outputs",
              inputs=(1, 1), outputs=(1, UNLIMITED), input_kinds=LIVE_INPUTS,
              output_kinds=LIVE_OUTPUTS + PCAP, parse_argument=_split, balances=True, config=_balance_config,
              parse_options=_balance_options),
    BrickKind("Duplicator", "every packet to every output",
              inputs=(1, 1), outputs=(1, UNLIMITED), input_kinds=LIVE_INPUTS,
              output_kinds=LIVE_OUTPUTS + PCAP),
    BrickKind("Merge", "several inputs to one output",
              inputs=(1, 16), outputs=(1, 1), input_kinds=LIVE_INPUTS,
              output_kinds=LIVE_OUTPUTS + PCAP),
    BrickKind("Dummy", "forwards unchanged (performance testing)",
              inputs=(1, 1), outputs=(1, 1), input_kinds=LIVE_INPUTS,
              output_kinds=LIVE_OUTPUTS + PCAP),
    BrickKind("Filter", "tcpdump expression, then drop/allow rules; output 0 passed, output 1 (if any) rejected",
              inputs=(1, 1), outputs=(1, 2), input_kinds=LIVE_INPUTS,
              output_kinds=LIVE_OUTPUTS + PCAP, parse_argument=filter_rules.parse_expression,
              register=filter_rules.register, attach=filter_rules.attach, methods=filter_rules.METHODS,
              retrieve=filter_rules.retrieve, help=filter_rules.HELP),
    BrickKind("PcapReader", "reads pcap files as the source; several outputs are balanced by flow",
              inputs=(1, 1), outputs=(1, UNLIMITED), input_kinds=PCAP,
              output_kinds=LIVE_OUTPUTS + PCAP, parse_argument=_split, balances=True, config=_balance_config,
              parse_options=_balance_options, stands_for_interface=True),
    BrickKind("Strip", "removes VLAN, MPLS, VXLAN, GENEVE, GRE, ERSPAN, GTP-U headers (all, or the ones named); "
              "forwards the inner Ethernet frame to every output",
              inputs=(1, 1), outputs=(1, UNLIMITED), input_kinds=LIVE_INPUTS,
              output_kinds=LIVE_OUTPUTS + PCAP, parse_argument=_strip_layers, config=_strip_config,
              list_argument=True),
    BrickKind("PcapWriter", "writes what reaches it to pcap files",
              inputs=(1, 1), outputs=(1, UNLIMITED), input_kinds=LIVE_INPUTS,
              output_kinds=PCAP),
)}


def find_kind(name) -> BrickKind:
    kind: Optional[BrickKind] = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise BricksError(f"unknown brick kind {name!r} (one of {', '.join(KINDS)})")
    return kind
