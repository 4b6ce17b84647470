"""cffi builder (API mode) for bricks._native, the module that does all per-packet work.

The declarations Python sees are the per-topic headers in csrc/api/; every
csrc/*.c is compiled in; each csrc/brick_<kind>.c defines one brick kind,
which this builder registers in the kind table so that adding a brick touches
one C file and one Python descriptor.
"""
import re
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
