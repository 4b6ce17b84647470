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


def _whole_number(kind_name, option, value, least, most):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not least <= value <= most:
        raise BricksError(f"{kind_name} {option} must be a whole number from {least} to {most}, got {value!r}")
    return int(value)


def _options(kind_name, argument, allowed):
    """A Lua table / dict argument's options, each name checked against allowed."""
    unknown = sorted(str(key) for key in argument if key not in allowed)
    if unknown:
        raise BricksError(f"{kind_name} has no option {unknown[0]!r} (options: {', '.join(allowed)})")
    return argument


def _as_list(kind_name, option, value):
    """A Lua list (a table {1 = ..., 2 = ...} arrives as a dict) or a Python list/tuple."""
    if isinstance(value, dict):
        if sorted(value) != list(range(1, len(value) + 1)):
            raise BricksError(f"{kind_name} {option} must be a list, got {value!r}")
        return [value[key] for key in sorted(value)]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [value]
    raise BricksError(f"{kind_name} {option} must be a list, got {value!r}")


# Dedup (csrc/brick_dedup.c, csrc/api/dedup.h): what it may ignore, as the enum brk_dedup_ignore bits.
DEDUP_IGNORABLE = {"ttl": 1, "vlan": 2, "mac": 4, "dscp": 8, "checksum": 16}
DEDUP_DEFAULT_IGNORE = ("ttl", "vlan", "checksum")
DEDUP_DEFAULT_WINDOW_US = 1000
DEDUP_DEFAULT_SIZE = 65536           # frames remembered: 1 ms at 65 Mpps
DEDUP_STORE_BYTES_PER_FRAME = 256    # the byte store per remembered frame: 16 MiB by default, 1 ms of 134 Gbit/s
DEDUP_OPTIONS = ("window_us", "ignore", "size", "bytes")


def _dedup_argument(kind_name, argument):
    """struct brk_dedup_config (csrc/api/dedup.h) from nil, a window in microseconds, or a table of options."""
    if isinstance(argument, dict) and "window_ns" in argument:
        return argument   # already parsed
    if argument is None:
        argument = {}
    elif not isinstance(argument, dict):
        argument = {"window_us": argument}
    options = _options(kind_name, argument, DEDUP_OPTIONS)
    window_us = _whole_number(kind_name, "window_us", options.get("window_us", DEDUP_DEFAULT_WINDOW_US),
                              1, 60_000_000)
    ignored = _as_list(kind_name, "ignore", options.get("ignore", list(DEDUP_DEFAULT_IGNORE)))
    ignore = 0
    for field in ignored:
        if field not in DEDUP_IGNORABLE:
            raise BricksError(f"{kind_name} cannot ignore {field!r} (one of {', '.join(DEDUP_IGNORABLE)})")
        ignore |= DEDUP_IGNORABLE[field]
    size = _whole_number(kind_name, "size", options.get("size", DEDUP_DEFAULT_SIZE), 1, 1 << 26)
    store = _whole_number(kind_name, "bytes", options.get("bytes", size * DEDUP_STORE_BYTES_PER_FRAME),
                          128, 1 << 36)
    return {"window_ns": window_us * 1000, "table_size": size, "ignore": ignore, "store_bytes": store}


SLICE_OPTIONS = ("length", "payload", "fix_lengths")
SLICE_MOST = 65535


def _slice_argument(kind_name, argument):
    """struct brk_slice_config (csrc/api/slice.h) from N (bytes kept) or a table: length = N, or payload = N
    (the headers up to the end of the L4 header, then N bytes), and fix_lengths = true."""
    if isinstance(argument, dict) and "after_headers" in argument:
        return argument   # already parsed
    if argument is None:
        raise BricksError(f"{kind_name} needs the bytes to keep: Slice(128), or {{payload = 64}}")
    if not isinstance(argument, dict):
        argument = {"length": argument}
    options = _options(kind_name, argument, SLICE_OPTIONS)
    if ("length" in options) == ("payload" in options):
        raise BricksError(f"{kind_name} takes one of length = N (bytes of the frame) or payload = N "
                          f"(bytes past the L4 header)")
    fix = options.get("fix_lengths", False)
    if not isinstance(fix, bool):
        raise BricksError(f"{kind_name} fix_lengths must be true or false, got {fix!r}")
    if "length" in options:
        return {"length": _whole_number(kind_name, "length", options["length"], 1, SLICE_MOST),
                "after_headers": 0, "fix_lengths": int(fix)}
    return {"length": _whole_number(kind_name, "payload", options["payload"], 0, SLICE_MOST),
            "after_headers": 1, "fix_lengths": int(fix)}


def _parsed_config(kind_name, parse):
    """config(argument, depth, options) for a kind whose parsed argument is its C config."""
    return lambda argument, depth, options=None: parse(kind_name, argument)


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
    list_argument: bool = False              # its argument may be a Lua table: a list ({"vxlan", "gre"}), options
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
    BrickKind("Dedup", "drops copies of a frame seen again within a window (TTL, VLAN tags, IP checksum ignored)",
              inputs=(1, 1), outputs=(1, 1), input_kinds=LIVE_INPUTS,
              output_kinds=LIVE_OUTPUTS + PCAP, parse_argument=_dedup_argument,
              config=_parsed_config("Dedup", _dedup_argument), list_argument=True),
    BrickKind("Slice", "cuts frames to N bytes, or to the L4 header plus N bytes (wire length kept)",
              inputs=(1, 1), outputs=(1, 1), input_kinds=LIVE_INPUTS,
              output_kinds=LIVE_OUTPUTS + PCAP, parse_argument=_slice_argument,
              config=_parsed_config("Slice", _slice_argument), list_argument=True),
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
