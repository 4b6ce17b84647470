"""The Filter brick's Python side: its expression, drop/allow rule validation, the rule table, JSON lines files.

Python validates and fills `struct brk_filter_rule`; the C table
(csrc/filter_rules.c) matches packets and counts. The table belongs to the
Brick object, not to the C brick, so rules and their counters survive
pe:stop()/pe:start() and unlink/link.
"""
import ipaddress
import json
import math
import threading
import time
import weakref
from collections import namedtuple

from ._ffi import error_buffer, error_text, ffi, lib
from .errors import BricksError
from .ports import strip_netmap_prefix

FIELDS = ("src", "dst", "sport", "dport", "proto", "bidirectional", "timeout")
MATCH_FIELDS = ("src", "dst", "sport", "dport", "proto")
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmp6": 58, "icmpv6": 58, "sctp": 132}
PORT_PROTOCOLS = (6, 17, 132, 136)
MAX_TIMEOUT = 10 * 365 * 86400
ACTIONS = {"drop": lib.BRK_FILTER_DROP, "allow": lib.BRK_FILTER_ALLOW}
FILTER_COUNTERS = ("passed", "expression_rejected", "rule_dropped", "rule_allowed")   # what filter_stats shows
METHODS = ("drop", "allow", "rules", "remove", "clear", "save", "load", "filter_stats")

HELP = """\
Filter commands (f = Brick.new("Filter" [, "tcpdump expression"]), or Filter.retrieve(name)):
  f:drop{src=, dst=, sport=, dport=, proto=, bidirectional=, timeout=}
                             a drop rule (any of the fields; src/dst an address or
                             CIDR, IPv4 or IPv6; proto tcp, udp, icmp or a number;
                             bidirectional default true; timeout in seconds, absent
                             = forever); returns its id
  f:allow{...}               the same fields; an allow rule wins over a drop rule
  f:rules()                  the live rules: id, action, fields, hits, bytes, time_left
  f:remove(id)               removes one rule
  f:clear()                  removes every rule
  f:save(path)               writes the rules as JSON lines
  f:load(path)               adds the rules of a JSON lines file; returns their ids
  f:filter_stats()           passed, expression_rejected, rule_dropped, rule_allowed
  Filter.retrieve(name)      the Filter whose first output is name (e.g. "eth3{4"), or nil
  Filter.help()              this list
"""

RuleState = namedtuple("RuleState", "id hits bytes remaining_ns")

_filters = []                      # weak references to every Filter Brick, oldest first, for retrieve()
_filters_lock = threading.Lock()


class Rule:
    """One validated rule: the fields as given (for listing and saving) and its C form."""

    def __init__(self, action, fields, where):
        if action not in ACTIONS:
            raise BricksError(f"{where}: action must be drop or allow, got {action!r}")
        if not isinstance(fields, dict):
            raise BricksError(f"{where}: expected a table of fields ({', '.join(FIELDS)}), "
                              f"got {_type_name(fields)}")
        for name in fields:
            if name not in FIELDS:
                raise BricksError(f"{where}: unknown field {name!r} (fields: {', '.join(FIELDS)})")
        if not any(fields.get(name) is not None for name in MATCH_FIELDS):
            raise BricksError(f"{where}: a rule needs at least one of {', '.join(MATCH_FIELDS)}")
        self.action = action
        self.src = _network(fields.get("src"), f"{where}: src")
        self.dst = _network(fields.get("dst"), f"{where}: dst")
        if self.src and self.dst and self.src.version != self.dst.version:
            raise BricksError(f"{where}: src is IPv{self.src.version} but dst is IPv{self.dst.version}")
        self.family = (self.src or self.dst).version if (self.src or self.dst) else 0
        self.sport = _port(fields.get("sport"), f"{where}: sport")
        self.dport = _port(fields.get("dport"), f"{where}: dport")
        self.proto = _protocol(fields.get("proto"), f"{where}: proto")
        protocol, protocol6 = self._protocol_numbers()
        if (self.sport or self.dport) and protocol is not None and protocol not in PORT_PROTOCOLS:
            raise BricksError(f"{where}: ports need proto tcp, udp or sctp, got {self.proto!r}")
        bidirectional = fields.get("bidirectional", True)
        if not isinstance(bidirectional, bool):
            raise BricksError(f"{where}: bidirectional must be true or false, got {bidirectional!r}")
        self.bidirectional = bidirectional
        self.timeout = _timeout(fields.get("timeout"), f"{where}: timeout")

    def _protocol_numbers(self):
        """(number for IPv4 packets, number for IPv6 packets), or (None, None) for any protocol."""
        if self.proto is None:
            return None, None
        if self.proto == "icmp":
            return 1, 58
        number = PROTOCOLS.get(self.proto, self.proto)
        return number, number

    def fields(self):
        """The rule as drop{...}/allow{...} would take it back."""
        fields = {}
        for name in ("src", "dst"):
            network = getattr(self, name)
            if network is not None:
                fields[name] = str(network.network_address) if network.prefixlen == network.max_prefixlen \
                    else str(network)
        for name in ("sport", "dport", "proto"):
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        fields["bidirectional"] = self.bidirectional
        return fields

    def fill(self, rule_id, native):
        native.id = rule_id
        native.action = ACTIONS[self.action]
        native.family = self.family
        for name in ("src", "dst"):
            network = getattr(self, name)
            if network is not None:
                packed = network.network_address.packed
                ffi.memmove(getattr(native, name), packed, len(packed))
                setattr(native, f"{name}_prefix", network.prefixlen)
        flags = lib.BRK_FILTER_BIDIRECTIONAL if self.bidirectional else 0
        if self.sport is not None:
            native.sport, flags = self.sport, flags | lib.BRK_FILTER_MATCH_SPORT
        if self.dport is not None:
            native.dport, flags = self.dport, flags | lib.BRK_FILTER_MATCH_DPORT
        protocol, protocol6 = self._protocol_numbers()
        if protocol is not None:
            native.protocol, native.protocol6 = protocol, protocol6
            flags |= lib.BRK_FILTER_MATCH_PROTOCOL
        native.flags = flags
        native.timeout_ns = int(self.timeout * 1e9) if self.timeout else 0


def _type_name(value):
    """The type a Lua user would name: string, number, boolean, or the Python type."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _whole(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value)


def _network(value, what):
    if value is None:
        return None
    if not isinstance(value, str):
        raise BricksError(f"{what} must be an address or CIDR string, got {value!r}")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as error:
        raise BricksError(f"{what}: {value!r} is not an address or CIDR ({error})") from None


def _port(value, what):
    if value is None:
        return None
    number = _whole(value)
    if number is None or not 1 <= number <= 65535:
        raise BricksError(f"{what} must be a port number from 1 to 65535, got {value!r}")
    return number


def _protocol(value, what):
    if value is None:
        return None
    if isinstance(value, str):
        name = value.strip().lower()
        if name in PROTOCOLS:
            return name
        if not name.isdigit():
            raise BricksError(f"{what}: unknown protocol {value!r} (one of {', '.join(PROTOCOLS)} or 0-255)")
        value = int(name)
    number = _whole(value)
    if number is None or not 0 <= number <= 255:
        raise BricksError(f"{what} must be a protocol name or a number from 0 to 255, got {value!r}")
    return number


def _timeout(value, what):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= MAX_TIMEOUT:
        raise BricksError(f"{what} must be a number of seconds above 0, got {value!r}")
    return float(value)


class FilterRules:
    """The rule table of one Filter brick: its compiled expression and runtime rules, with counters."""

    def __init__(self, expression=None):
        if expression is not None and not isinstance(expression, str):
            raise BricksError(f"Filter expression must be a tcpdump expression string, got {expression!r}")
        self.expression = expression.strip() if expression else None
        error = error_buffer()
        table = lib.brk_filter_table_new(self.expression.encode() if self.expression else ffi.NULL,
                                         error, len(error))
        if table == ffi.NULL:
            raise BricksError(f"Filter: {error_text(error)}")
        self.table = table
        self._free = weakref.finalize(self, lib.brk_filter_table_free, table)
        # Not at exit: the engines shut down then (atexit), and an XDP program or a C brick still using the
        # table would read freed memory; the process's end frees it anyway.
        self._free.atexit = False
        self.lock = threading.Lock()
        self.next_id = 1
        self.rules_by_id = {}        # id -> Rule, in insertion order
        self.brick = None            # weak reference to the Brick this table belongs to

    def __repr__(self):
        return f"<Filter {self.expression or 'no expression'}, {len(self.rules_by_id)} rules>"

    # -- the C brick --
    def attach(self, handle):
        error = error_buffer()
        if lib.brk_filter_attach(handle, self.table, error, len(error)) != 0:
            raise BricksError(f"Filter: {error_text(error)}")

    # -- rules --
    def drop(self, fields=None):
        return self.add([("drop", fields)], "drop")[0]

    def allow(self, fields=None):
        return self.add([("allow", fields)], "allow")[0]

    def add(self, requests, where="add"):
        """Adds (action, fields) pairs all or nothing, in one atomic update; returns their ids."""
        rules = [Rule(action, fields if fields is not None else {}, where) for action, fields in requests]
        if not rules:
            return []
        with self.lock:
            ids = list(range(self.next_id, self.next_id + len(rules)))
            natives = ffi.new("struct brk_filter_rule[]", len(rules))
            for rule_id, rule, native in zip(ids, rules, natives):
                rule.fill(rule_id, native)
            error = error_buffer()
            if lib.brk_filter_add(self.table, natives, len(rules), error, len(error)) != 0:
                raise BricksError(f"{where}: {error_text(error)}")
            self.next_id += len(rules)
            self.rules_by_id.update(zip(ids, rules))
        return ids

    def remove(self, rule_id=None):
        number = _whole(rule_id)
        if number is None or number < 1:
            raise BricksError(f"remove: expected a rule id, got {rule_id!r}")
        with self.lock:
            if lib.brk_filter_remove(self.table, number) != 0:
                self._forget_expired(self._states())
                raise BricksError(f"remove: no rule {number} (expired or removed?)")
            self.rules_by_id.pop(number, None)

    def clear(self):
        with self.lock:
            lib.brk_filter_clear(self.table)
            self.rules_by_id.clear()

    def _states(self):
        room = len(self.rules_by_id) + 16
        while True:
            states = ffi.new("struct brk_filter_rule_state[]", room)
            count = lib.brk_filter_list(self.table, states, room)
            if count <= room:   # copied out: the items would not keep the array alive
                return [RuleState(state.id, state.hits, state.bytes, state.remaining_ns)
                        for state in ffi.unpack(states, count)]
            room = count + 16

    def _forget_expired(self, states):
        live = {state.id for state in states}
        for rule_id in [rule_id for rule_id in self.rules_by_id if rule_id not in live]:
            del self.rules_by_id[rule_id]

    def rules(self):
        """Every live rule: id, action, its fields, hits, bytes and time_left (seconds; absent = forever)."""
        with self.lock:
            states = self._states()
            self._forget_expired(states)
            listing = []
            for state in states:
                rule = self.rules_by_id.get(state.id)
                if rule is None:
                    continue
                entry = {"id": state.id, "action": rule.action, **rule.fields(),
                         "hits": state.hits, "bytes": state.bytes}
                if state.remaining_ns >= 0:
                    entry["time_left"] = round(state.remaining_ns / 1e9, 3)
                listing.append(entry)
            return listing

    def publications(self):
        return lib.brk_filter_publications(self.table)

    # -- JSON lines --
    def save(self, path=None):
        """Writes the live rules, one JSON object a line; a timed rule keeps its wall-clock expiry. Each line
        names the filter (its first output) when it has one, so the file also serves as a daemon's --rules."""
        if not isinstance(path, str) or not path:
            raise BricksError(f"save: expected a file path, got {path!r}")
        brick = self.brick() if self.brick is not None else None
        named = {"filter": brick.outputs[0].name} if brick is not None and brick.outputs else {}
        return _write_lines(path, [json.dumps({**named, **entry}, sort_keys=True)
                                   for entry in self.saved_entries()], "save")

    def saved_entries(self):
        """The live rules as save() writes them."""
        now = time.time()
        for entry in self.rules():
            saved = {key: value for key, value in entry.items() if key not in ("id", "hits", "bytes", "time_left")}
            if "time_left" in entry:
                saved["expires_at"] = round(now + entry["time_left"], 3)
            yield saved

    def load(self, path=None):
        """Adds the rules of a JSON lines file (all or nothing); expired ones are skipped. Returns their ids."""
        if not isinstance(path, str) or not path:
            raise BricksError(f"load: expected a file path, got {path!r}")
        try:
            with open(path) as file:
                text = file.read()
        except OSError as error:
            raise BricksError(f"load: {path}: {error.strerror}") from None
        return self.add(parse_rule_lines(enumerate(text.splitlines(), 1), f"load {path}"), f"load {path}")

    # -- counters --
    def filter_stats(self):
        """Passed / rejected counters of the linked C brick (zeros while not linked), from its published
        snapshot (the brick's stats)."""
        brick = self.brick() if self.brick is not None else None
        counters = (brick.stats() if brick is not None else None) or {}
        return {name: counters.get(name, 0) for name in FILTER_COUNTERS}


def _write_lines(path, lines, where):
    try:
        with open(path, "w") as file:
            file.write("".join(line + "\n" for line in lines))
    except OSError as error:
        raise BricksError(f"{where}: {path}: {error.strerror}") from None
    return len(lines)


def parse_rule_lines(numbered_lines, where):
    """(action, fields) pairs from (line number, JSON line) pairs; `expires_at` (wall clock) becomes a
    timeout, and an expired line is skipped."""
    requests = []
    now = time.time()
    for number, line in numbered_lines:
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except ValueError as error:
            raise BricksError(f"{where}:{number}: not JSON ({error})") from None
        if not isinstance(fields, dict):
            raise BricksError(f"{where}:{number}: expected a JSON object")
        action = fields.pop("action", None)
        fields.pop("filter", None)
        expires_at = fields.pop("expires_at", None)
        if expires_at is not None:
            if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)):
                raise BricksError(f"{where}:{number}: expires_at must be a time in seconds, got {expires_at!r}")
            if expires_at <= now:
                continue
            fields["timeout"] = expires_at - now
        Rule(action, fields, f"{where}:{number}")    # checked here to name the line
        requests.append((action, fields))
    return requests


# -- the catalog's hooks (see catalog.BrickKind) --
def parse_expression(kind_name, argument):
    """Brick.new("Filter" [, expression]): the argument becomes the brick's rule table."""
    return FilterRules(argument)


def attach(brick, handle):
    brick.argument.attach(handle)


def register(brick):
    brick.argument.brick = weakref.ref(brick)
    with _filters_lock:
        _filters[:] = [reference for reference in _filters if reference() is not None]
        _filters.append(weakref.ref(brick))


def retrieve(name):
    """The Filter brick whose first output is name (e.g. "eth3{4"), or None."""
    if not isinstance(name, str):
        raise BricksError(f"Filter.retrieve: expected an output name, got {name!r}")
    name = strip_netmap_prefix(name)
    named = [brick for brick in _live_filters() if brick.outputs and brick.outputs[0].name == name]
    # A name is bound like a variable: the linked filter, else the newest one, wins over an abandoned one.
    linked = [brick for brick in named if brick.engine is not None]
    return (linked or named or [None])[-1]


def _live_filters():
    with _filters_lock:
        return [brick for brick in (reference() for reference in _filters) if brick is not None]


def save_all(path):
    """Writes the rules of every Filter reachable by name to one JSON lines file, each line naming its
    filter (what load_rule_file reads back)."""
    bricks = [brick for brick in _live_filters() if brick.outputs]
    lines = [json.dumps({"filter": brick.outputs[0].name, **entry}, sort_keys=True)
             for brick in bricks for entry in brick.argument.saved_entries()]
    return _write_lines(path, lines, "save")


def load_rule_file(path):
    """For the daemon at start, once its script built the filters: adds each line's rule to the Filter
    its `filter` key names (the name of that filter's first output). Every line is checked before any
    rule is added. Returns the number of rules added."""
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except OSError as error:
        raise BricksError(f"{path}: {error.strerror}") from None
    per_filter = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            name = json.loads(line).get("filter")
        except (ValueError, AttributeError):
            name = None
        brick = retrieve(name) if isinstance(name, str) else None
        if brick is None:
            raise BricksError(f"{path}:{number}: no Filter named {name!r} (the name of its first output)")
        per_filter.setdefault(id(brick), (brick, []))[1].append((number, line))
    parsed = [(brick, parse_rule_lines(entries, path)) for brick, entries in per_filter.values()]
    return sum(len(brick.argument.add(requests, f"load {path}")) for brick, requests in parsed)
