"""The only importer of the compiled module: checks that it matches this package.

A stale build (sources changed, module not rebuilt) fails loudly here instead
of misbehaving later.
"""
from . import __version__
from ._native import ffi, lib
from .errors import BricksError

_built = ffi.string(lib.brk_version()).decode()
if _built != __version__:
    raise ImportError(f"bricks._native was built for bricks {_built}, this is {__version__}: reinstall bricks")


def error_buffer():
    """A buffer for the one-line error messages the C constructors write."""
    return ffi.new("char[]", 256)


def error_text(buffer):
    return ffi.string(buffer).decode(errors="replace")


def open_native(constructor, *arguments):
    """Calls a C constructor whose last two arguments are an error buffer and its size: its handle, or
    BricksError with the one-line message it wrote when it returns NULL."""
    error = error_buffer()
    handle = constructor(*arguments, error, len(error))
    if handle == ffi.NULL:
        raise BricksError(error_text(error))
    return handle


__all__ = ["ffi", "lib", "error_buffer", "error_text", "open_native"]
