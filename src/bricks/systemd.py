"""bricks under systemd: the readiness protocol (sd_notify), the units' installation, load-balance instances.

sd_notify is a datagram of `KEY=value` lines to the Unix socket named by
$NOTIFY_SOCKET (a path, or an abstract name after '@'); a few lines here, so
that bricks needs no libsystemd binding. Outside systemd nothing is sent.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from .errors import BricksError

UNIT_SOURCES = Path(__file__).resolve().parent / "units"     # the unit files, shipped with the package
UNIT_FILES = ("bricks.service", "bricks-load-balance@.service")
DEFAULT_UNIT_DIRECTORY = "/etc/systemd/system"
UNIT_BIN_DIRECTORY = "/usr/local/bin"      # where the units in the repository run bricks from
CONFIG_DIRECTORY = "/etc/bricks"
MAX_OUTPUTS = 64
# A Linux interface name: 1..15 bytes, no '/', ':' or white space (dev_valid_name); so ':' parts IFACE:N.
INTERFACE_NAME = re.compile(r"[^/:\s]{1,15}")


def notify(state, environment=None):
    """Sends `state` ("READY=1", "STOPPING=1", ...) to systemd when it asked for it; True when sent.

    Never raises: a service manager that went away must not stop the broker. Errors are returned by
    notify_error() for the caller to log.
    """
    address = (environment if environment is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]      # an abstract socket
    elif not address.startswith("/"):
        notify.error = f"NOTIFY_SOCKET {address!r} is neither a path nor an abstract name"
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as connection:
            connection.sendto(state.encode(), address)
    except OSError as error:
        notify.error = f"cannot tell systemd {state.splitlines()[0]!r} through {address!r}: {error.strerror}"
        return False
    return True


notify.error = None


def parse_fan_out_instance(instance):
    """`IFACE:N` (a bricks-load-balance@ unit's instance) as (IFACE, N); BricksError in one line otherwise."""
    interface, separator, count = instance.rpartition(":")
    if not separator:
        raise BricksError(f"{instance!r}: expected IFACE:N (the interface and the number of pipes, e.g. eth3:4)")
    if not INTERFACE_NAME.fullmatch(interface):
        raise BricksError(f"{instance!r}: {interface!r} is not an interface name (1 to 15 characters, "
                          "no '/', ':' or space)")
    if not count.isdigit() or not 1 <= int(count) <= MAX_OUTPUTS:
        raise BricksError(f"{instance!r}: N must be a whole number from 1 to {MAX_OUTPUTS}, got {count!r}")
    return interface, int(count)


def render_unit(text, bin_directory):
    """A unit's text with its commands run from bin_directory instead of UNIT_BIN_DIRECTORY."""
    return text.replace(UNIT_BIN_DIRECTORY + "/", str(bin_directory).rstrip("/") + "/")


def install_units(unit_directory=DEFAULT_UNIT_DIRECTORY, bin_directory=None, reload=True):
    """Writes the units into unit_directory, running bricks from bin_directory (default: this
    interpreter's, e.g. the checkout's .venv/bin); the paths written, and what systemctl said."""
    bin_directory = Path(bin_directory or Path(sys.executable).parent)
    if not (bin_directory / "bricks-server").is_file():
        raise BricksError(f"{bin_directory}: no bricks-server here: give --bin the directory of the bricks commands")
    unit_directory = Path(unit_directory)
    try:
        unit_directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name in UNIT_FILES:
            target = unit_directory / name
            target.write_text(render_unit((UNIT_SOURCES / name).read_text(), bin_directory))
            written.append(target)
        if unit_directory == Path(DEFAULT_UNIT_DIRECTORY):
            os.makedirs(CONFIG_DIRECTORY, exist_ok=True)    # where bricks.service looks for its script
    except OSError as error:
        raise BricksError(f"cannot write {error.filename or unit_directory}: {error.strerror}"
                          + (": run as root" if error.errno in (1, 13) else "")) from None
    reloaded = None
    if reload and os.path.isdir("/run/systemd/system") and shutil.which("systemctl"):
        result = subprocess.run(["systemctl", "daemon-reload"], capture_output=True, text=True, timeout=60)
        reloaded = result.returncode == 0 or result.stderr.strip()
    return written, reloaded
