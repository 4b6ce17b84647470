"""The dissector's tunnel walk compiled for BPF: it passes the kernel's verifier and, run by the kernel on every
frame of test_dissect_tunnels.py (and their prefixes), fills exactly the key the host fills.

tests/unit/bpf/dissect_tunnels.bpf.c drives dissect.h's own steps as the product's XDP program does; this
module compiles it with clang -target bpf, loads it with libbpf (ctypes: the product's loader is for its own
program) and runs it with BPF_PROG_RUN (nothing transmitted). Needs root, clang and libbpf.
"""
import ctypes
import ctypes.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bricks._native import ffi, lib
from tests.unit.test_dissect_tunnels import ALL, ERSPAN_I, walk

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "bpf" / "dissect_tunnels.bpf.c"
CSRC = HERE.parents[1] / "src" / "bricks" / "csrc"
XDP_PASS = 2
LOG_SIZE = 1 << 20
BPF_LOG_STATS = 4


class RunOptions(ctypes.Structure):
    """libbpf's struct bpf_test_run_opts."""
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p), ("ctx_size_in", ctypes.c_uint32),
                ("ctx_size_out", ctypes.c_uint32), ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int),
                ("duration", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
                ("batch_size", ctypes.c_uint32)]


def libbpf():
    path = ctypes.util.find_library("bpf")
    if path is None:
        pytest.skip("libbpf is not installed")
    bpf = ctypes.CDLL(path, use_errno=True)
    for name, result, arguments in [
        ("bpf_object__open_file", ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_void_p]),
        ("bpf_object__load", ctypes.c_int, [ctypes.c_void_p]),
        ("bpf_object__close", None, [ctypes.c_void_p]),
        ("bpf_object__find_program_by_name", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
        ("bpf_object__find_map_fd_by_name", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
        ("bpf_program__fd", ctypes.c_int, [ctypes.c_void_p]),
        ("bpf_program__set_log_buf", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]),
        ("bpf_program__set_log_level", ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32]),
        ("bpf_map_update_elem", ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]),
        ("bpf_map_lookup_elem", ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]),
        ("bpf_prog_test_run_opts", ctypes.c_int, [ctypes.c_int, ctypes.POINTER(RunOptions)]),
    ]:
        function = getattr(bpf, name)
        function.restype, function.argtypes = result, arguments
    return bpf


class TunnelWalkProgram:
    """The compiled, verified test program: run(frame, max_tunnels, options) -> struct brk_tunnel_keys."""

    def __init__(self, object_path):
        self.bpf = libbpf()
        self.object = self.bpf.bpf_object__open_file(str(object_path).encode(), None)
        assert self.object, f"libbpf cannot open {object_path}"
        program = self.bpf.bpf_object__find_program_by_name(self.object, b"brk_test_dissect_tunnels")
        self.log = ctypes.create_string_buffer(LOG_SIZE)
        self.bpf.bpf_program__set_log_buf(program, self.log, LOG_SIZE)
        self.bpf.bpf_program__set_log_level(program, BPF_LOG_STATS)
        if self.bpf.bpf_object__load(self.object) != 0:
            self.close()
            pytest.fail("the verifier refused the tunnel walk:\n" + self.log.value.decode(errors="replace")[-4000:])
        self.program_fd = self.bpf.bpf_program__fd(program)
        self.keys_fd = self.bpf.bpf_object__find_map_fd_by_name(self.object, b"brk_test_keys")
        self.config_fd = self.bpf.bpf_object__find_map_fd_by_name(self.object, b"brk_test_config")

    def instructions(self):
        """The verifier's count of processed instructions over all functions."""
        return sum(int(count) for count in re.findall(rb"processed (\d+) insns", self.log.value))

    def run(self, frame, max_tunnels, options=0):
        zero = ctypes.c_uint32(0)
        config = (ctypes.c_uint32 * 2)(max_tunnels, options)
        assert self.bpf.bpf_map_update_elem(self.config_fd, ctypes.byref(zero), config, 0) == 0
        data = ctypes.create_string_buffer(bytes(frame), len(frame))
        run = RunOptions(sz=ctypes.sizeof(RunOptions), data_in=ctypes.cast(data, ctypes.c_void_p),
                             data_size_in=len(frame), repeat=1)
        assert self.bpf.bpf_prog_test_run_opts(self.program_fd, ctypes.byref(run)) == 0, ctypes.get_errno()
        assert run.retval == XDP_PASS
        keys = ffi.new("struct brk_tunnel_keys *")
        assert self.bpf.bpf_map_lookup_elem(self.keys_fd, ctypes.byref(zero),
                                            ctypes.c_void_p(int(ffi.cast("uintptr_t", keys)))) == 0
        return keys

    def close(self):
        if self.object:
            self.bpf.bpf_object__close(self.object)
            self.object = None


def multiarch_include():
    """Where Debian keeps <asm/types.h>, which <linux/types.h> needs under -target bpf."""
    triplet = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout.strip()
    return [f"-I/usr/include/{triplet}"] if triplet else []


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed")
    object_path = tmp_path_factory.mktemp("bpf") / "dissect_tunnels.bpf.o"
    subprocess.run(["clang", "-target", "bpf", "-O2", "-g", "-Wall", "-Wextra", "-Werror", f"-I{CSRC}",
                    *multiarch_include(), "-c", str(SOURCE), "-o", str(object_path)], check=True)
    loaded = TunnelWalkProgram(object_path)
    yield loaded
    loaded.close()


def as_bytes(keys):
    return bytes(ffi.buffer(keys))


def test_the_verifier_accepts_the_tunnel_walk(program):
    print(f"verifier: {program.instructions()} instructions processed")
    assert 0 < program.instructions() < 1_000_000


@pytest.mark.parametrize("name", sorted(ALL) + ["erspan i"])
def test_the_kernel_fills_the_host_s_key_on_every_prefix(program, name):
    frame = bytes(ERSPAN_I if name == "erspan i" else ALL[name])
    # XDP needs an Ethernet header in the frame; the host walk of shorter ones is covered by the host tests.
    for length in range(14, len(frame) + 1):
        for max_tunnels, options in [(8, 0), (1, lib.BRK_DISSECT_PARSE_FIRST_FRAGMENT)]:
            host = walk(frame[:length], max_tunnels=max_tunnels, options=options)
            assert as_bytes(program.run(frame[:length], max_tunnels, options)) == as_bytes(host), length
