"""The netmap back-end from Python: netmap's port-name grammar, whether the module is there, and ports opened as C sources and sinks.

netmap names a port `[netmap:]PORT[SUFFIX]`: PORT is an interface (`eth3`) or
a VALE port (`vale0:p`); SUFFIX picks rings: none = every NIC ring, `-K` = NIC
ring pair K, `^` = the host rings, `^K` = host ring pair K, `+` or `*` = NIC
and host rings, `{N` / `}N` = the master / slave end of pipe N of PORT.
"""
import os
import re
from dataclasses import dataclass
from typing import Optional

from ._ffi import error_buffer, error_text, ffi, lib, open_native
from .errors import BricksError
from .ports import NETMAP_PREFIX

DEVICE = "/dev/netmap"
MODULE_PARAMETERS = "/sys/module/netmap/parameters"
PREFIX = NETMAP_PREFIX
MAX_REQUEST_NAME = 63            # nmreq_header.nr_name holds 64 bytes with the NUL
MISSING = f"netmap back-end: {DEVICE} not found: load the netmap kernel module (see INSTALL.md)"

_VALE = re.compile(r"^(?P<switch>vale[^:{}^+*\-]*):(?P<port>[^:{}^+*]+?)")
_SUFFIX = re.compile(r"(?P<kind>[-^+*{}])(?P<number>\d*)$")


class NetmapPortError(BricksError, ValueError):
    """A netmap port name that does not follow netmap's grammar."""


@dataclass(frozen=True)
class NetmapPort:
    """A parsed netmap port: what the register request carries."""

    port: str                    # the port without ring suffix: `eth3`, `vale0:p`
    mode: int                    # NR_REG_*
    ring: int = 0                # NR_REG_ONE_NIC / NR_REG_ONE_SW: which pair
    pipe: Optional[int] = None   # pipe number, for NR_REG_PIPE_MASTER / SLAVE

    @property
    def request_name(self) -> str:
        """nmreq_header.nr_name: API 14 carries the pipe in the name (`eth3{2`)."""
        if self.mode == lib.NR_REG_PIPE_MASTER:
            return f"{self.port}{{{self.pipe}"
        if self.mode == lib.NR_REG_PIPE_SLAVE:
            return f"{self.port}}}{self.pipe}"
        return self.port

    @property
    def register_mode(self) -> int:
        """nmreq_register.nr_mode: pipes bind all (their one) ring pair by name."""
        return lib.NR_REG_ALL_NIC if self.pipe is not None else self.mode


def parse_port(text: str) -> NetmapPort:
    """Reads a netmap port name; NetmapPortError names what is wrong."""
    if not isinstance(text, str):
        raise NetmapPortError(f"netmap port name must be a string, got {text!r}")
    name = text[len(PREFIX):] if text.startswith(PREFIX) else text
    vale = _VALE.match(name)
    suffix = _SUFFIX.search(name[vale.end():] if vale else name)
    base = name[:len(name) - len(suffix.group(0))] if suffix else name
    if not base or any(char in base for char in "{}^+* /") or (":" in base and not vale) \
            or len(base) > MAX_REQUEST_NAME:
        raise NetmapPortError(f"netmap port {text!r}: {base!r} is not a port name")
    if not suffix:
        return NetmapPort(base, lib.NR_REG_ALL_NIC)
    kind, digits = suffix.group("kind"), suffix.group("number")
    number = int(digits) if digits else None
    if kind in "+*" and number is None:
        return NetmapPort(base, lib.NR_REG_NIC_SW)
    if kind == "^":
        return NetmapPort(base, lib.NR_REG_SW) if number is None else NetmapPort(base, lib.NR_REG_ONE_SW, number)
    if number is None:
        raise NetmapPortError(f"netmap port {text!r}: {kind!r} needs a number after it")
    if kind == "-":
        return NetmapPort(base, lib.NR_REG_ONE_NIC, number)
    if kind == "{":
        return NetmapPort(base, lib.NR_REG_PIPE_MASTER, pipe=number)
    if kind == "}":
        return NetmapPort(base, lib.NR_REG_PIPE_SLAVE, pipe=number)
    raise NetmapPortError(f"netmap port {text!r}: {kind!r} takes no number")


def available() -> bool:
    """Whether the netmap module is loaded (its device exists)."""
    return os.path.exists(DEVICE)


def missing_reason() -> Optional[str]:
    """None when netmap can be used, else the one line telling the operator what is missing."""
    return None if available() else MISSING


def module_loaded() -> bool:
    return os.path.isdir(os.path.dirname(MODULE_PARAMETERS))


def default_pipes() -> int:
    """The module's default_pipes parameter (pipes each port may have); 0 without the module."""
    try:
        with open(os.path.join(MODULE_PARAMETERS, "default_pipes")) as parameter:
            return int(parameter.read())
    except (OSError, ValueError):
        return 0


def enable_pipes(count: int) -> None:
    """Lets every port have at least count pipes (module parameter default_pipes).

    Only older netmap modules read it: current ones make pipes on demand and
    keep the parameter for compatibility only, so this changes nothing there.
    """
    if not module_loaded():
        raise BricksError(MISSING)
    if default_pipes() >= count:
        return
    try:
        with open(os.path.join(MODULE_PARAMETERS, "default_pipes"), "w") as parameter:
            parameter.write(str(count))
    except OSError as error:
        raise BricksError(f"netmap: cannot set default_pipes to {count}: {error.strerror}") from None


def probe(port: str, qid: int = -1) -> Optional[str]:
    """None when the module can open port (asked without binding it), else why not.

    With qid >= 0 (one engine per queue), the port must also have ring pair
    qid and more than one: on a one-queue port netmap serves a single engine,
    where the packet back-end's fan-out serves any number.
    """
    if not available():
        return MISSING
    facts = ffi.new("struct brk_netmap_port_facts *")
    error = error_buffer()
    if lib.brk_netmap_port_info(port.encode(), facts, error, len(error)) != 0:
        return error_text(error)
    return too_few_rings(port, qid, min(facts.rx_rings, facts.tx_rings))


def too_few_rings(port: str, qid: int, rings: int) -> Optional[str]:
    """Why netmap cannot give the engine of qid (>= 0) a ring pair of port's rings, or None."""
    if qid < 0 or rings > max(qid, 1):
        return None
    return (f"netmap port {port} has {rings} ring pair{'' if rings == 1 else 's'}, "
            f"too few for one engine per queue (qid {qid})")


def open_source(port: NetmapPort):
    """The RX rings of port as a C source; BricksError with netmap's reason otherwise."""
    return _open(lib.brk_source_netmap_open, port)


def open_sink(port: NetmapPort):
    """The TX rings of port as a C sink."""
    return _open(lib.brk_sink_netmap_open, port)


def _open(opener, port: NetmapPort):
    if not available():
        raise BricksError(MISSING)
    return open_native(opener, port.request_name.encode(), port.register_mode, port.ring)
