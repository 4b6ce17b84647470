"""Compiles a benchmark's own C loops (a reference hash, the dissector's walks) into a throwaway cffi module.

The loops are built here with -O3, never shipped; the loaded library stays mapped after its build
directory is removed."""
import shutil
import sys
import tempfile

from cffi import FFI


def compile_module(name, cdef, source, **options):
    """Builds source (declaring cdef) as the cffi module name in a temporary directory and imports it."""
    builder = FFI()
    builder.cdef(cdef)
    builder.set_source(name, source, extra_compile_args=["-O3", "-Wall", "-Wextra"], **options)
    build_dir = tempfile.mkdtemp(prefix="bricks-bench-")
    try:
        builder.compile(tmpdir=build_dir, verbose=False)
        sys.path.insert(0, build_dir)
        try:
            return __import__(name)
        finally:
            sys.path.remove(build_dir)
    finally:
        shutil.rmtree(build_dir)
