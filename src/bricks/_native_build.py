"""The builder of bricks._native (cffi, API mode), the module that does all per-packet work.

The declarations Python sees are the per-topic headers in csrc/api/; every
csrc/*.c is compiled in, warnings as errors; each csrc/brick_<kind>.c defines
one brick kind (its descriptor names its config struct and counters), which
this builder registers in the kind table so that adding a brick touches one C
file and one Python descriptor (plus csrc/api/<kind>.h for its settings). It also compiles the XDP back-end's
program (csrc/xdp/bricks.bpf.c, clang -target bpf) to bricks.bpf.o beside the
module, and links libbpf when its headers are installed.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
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
    # The API headers internal.h does not include (those its C files do not need).
    included = set(re.findall(r'#include "(api/[^"]+)"', (CSRC / "internal.h").read_text()))
    lines += [f'#include "api/{path.name}"' for path in API_HEADERS if f"api/{path.name}" not in included]
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


BPF_SOURCE = CSRC / "xdp" / "bricks.bpf.c"
BPF_OBJECT = HERE / "bricks.bpf.o"


def multiarch_include():
    """Where Debian keeps <asm/types.h>, which <linux/types.h> needs under -target bpf."""
    try:
        triplet = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return [f"-I/usr/include/{triplet.strip()}"] if triplet.strip() else []


def build_bpf_object():
    """Compiles the XDP back-end's program next to the module (an editable install uses it in place).

    Without clang the module still builds: the XDP back-end then says, in one line, that it was not installed.
    """
    clang = shutil.which("clang")
    if clang is None:
        print("bricks: clang not found, the XDP back-end is not built (bin/setup installs it)", file=sys.stderr)
        return
    command = [clang, "-target", "bpf", "-O2", "-g", "-Wall", "-Wextra", "-Werror", f"-I{CSRC}",
               *multiarch_include(), "-c", str(BPF_SOURCE), "-o", str(BPF_OBJECT)]
    subprocess.run(command, check=True)


def have_libbpf():
    """Whether libbpf's headers are installed; without them io_xdp.c builds stubs that refuse in one line."""
    try:
        return subprocess.run(["pkg-config", "--exists", "libbpf"], check=False).returncode == 0
    except OSError:
        return Path("/usr/include/bpf/libbpf.h").exists()


build_bpf_object()
LIBBPF = have_libbpf()

ffibuilder = FFI()
ffibuilder.cdef("\n".join(path.read_text() for path in API_HEADERS)
                + "\nconst char *brk_version(void);\n")
ffibuilder.set_source(
    "bricks._native",
    preamble(),
    sources=sources(),
    include_dirs=[str(CSRC)],
    libraries=["pcap", "pthread"] + (["bpf"] if LIBBPF else []),
    define_macros=[("BRK_HAVE_LIBBPF", "1")] if LIBBPF else [],
    extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"],
)

if __name__ == "__main__":
    # A check that the sources compile; installs go through pip (setup.py).
    ffibuilder.compile(tmpdir=str(HERE.parent.parent / "build" / "cffi"))
