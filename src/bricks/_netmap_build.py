"""cffi builder (API mode) for bricks._native, the module that does all per-packet work.

The declarations Python sees are the per-topic headers in csrc/api/; every
csrc/*.c is compiled in; each csrc/brick_<kind>.c defines one brick kind,
which this builder registers in the kind table so that adding a brick touches
one C file and one Python descriptor.
"""
import os
import re
import shlex
import subprocess
import sysconfig
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
API_HEADERS = sorted((CSRC / "api").glob("*.h"))
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "__init__.py").read_text()).group(1)


def brick_kind_symbols():
    """The `brk_brick_<stem>` symbol each brick_<stem>.c defines."""
    return ["brk_brick_" + path.stem[len("brick_"):] for path in sorted(CSRC.glob("brick_*.c"))]


def preamble():
    kinds = brick_kind_symbols()
    lines = ['#include "internal.h"']
    lines += [f"extern const struct brk_brick_kind {symbol};" for symbol in kinds]
    lines.append("const struct brk_brick_kind *const brk_brick_kinds[] = {")
    lines += [f"    &{symbol}," for symbol in kinds]
    lines.append("    NULL,\n};")
    lines.append(f'const char *brk_version(void) {{ return "{VERSION}"; }}')
    return "\n".join(lines)


def sources():
    return [str(path) for path in sorted(CSRC.glob("*.c"))]


PCAP_HEADER = "pcap/pcap.h"
PCAP_MISSING = ("bricks: libpcap's C headers (pcap/pcap.h) are missing: install them (Debian/Ubuntu: "
                "apt-get install libpcap-dev; Fedora: dnf install libpcap-devel), then install bricks again")


def compiler_search_dirs():
    """Where the C compiler looks for <...> headers: -I of CFLAGS/CPPFLAGS, CPATH, then its own list."""
    dirs = []
    for variable in ("CPPFLAGS", "CFLAGS"):
        words = shlex.split(os.environ.get(variable, ""))
        dirs += [word[2:] for word in words if word.startswith("-I") and len(word) > 2]
    for variable in ("CPATH", "C_INCLUDE_PATH"):
        dirs += [part for part in os.environ.get(variable, "").split(":") if part]
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    try:
        listing = subprocess.run(compiler + ["-E", "-v", "-x", "c", os.devnull, "-o", os.devnull],
                                 capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        listing = ""    # no compiler: the build says so itself, in its own words
    inside = False
    for line in listing.splitlines():
        if line.startswith("#include <...>"):
            inside = True
        elif line.startswith("End of search list"):
            inside = False
        elif inside:
            dirs.append(line.strip())
    return dirs or ["/usr/local/include", "/usr/include"]


def check_pcap_headers(search_dirs=None):
    """Ends the build with one line naming the package when libpcap's headers are absent.

    Checked before compiling, because the compiler's own error (a missing
    include deep in a cffi temp file) does not say what to install.
    """
    dirs = compiler_search_dirs() if search_dirs is None else search_dirs
    if not any(os.path.isfile(os.path.join(directory, PCAP_HEADER)) for directory in dirs):
        raise SystemExit(PCAP_MISSING)


check_pcap_headers()
ffibuilder = FFI()
ffibuilder.cdef("\n".join(path.read_text() for path in API_HEADERS)
                + "\nconst char *brk_version(void);\n")
ffibuilder.set_source(
    "bricks._native",
    preamble(),
    sources=sources(),
    include_dirs=[str(CSRC)],
    libraries=["pcap", "pthread"],
    extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    # A check that the sources compile; installs go through pip (setup.py).
    ffibuilder.compile(tmpdir=str(HERE.parent.parent / "build" / "cffi"))
