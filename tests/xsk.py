"""The tests' AF_XDP reader (tests/xsk_reader.c): built once with libbpf, run on an interface, returning every frame
its XSK socket received byte for byte, with the socket's own drop counters."""
import atexit
import re
import shutil
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent / "xsk_reader.c"
START_TIMEOUT_S = 10
_built = {}


def reader_binary():
    """xsk_reader, compiled on first use (gcc -Wall -Wextra -Werror, -lbpf); skips without a compiler or libbpf."""
    if "path" not in _built:
        compiler = shutil.which("gcc") or shutil.which("cc")
        if compiler is None or not Path("/usr/include/bpf/libbpf.h").exists():
            pytest.skip("the AF_XDP reader needs a C compiler and libbpf-dev (bin/setup installs them)")
        directory = tempfile.mkdtemp(prefix="xsk-reader-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        binary = Path(directory) / "xsk_reader"
        result = subprocess.run([compiler, "-O2", "-Wall", "-Wextra", "-Werror", str(SOURCE), "-o", str(binary),
                                 "-lbpf"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        _built["path"] = binary
    return _built["path"]


class XskReader:
    """An XSK socket on queue 0 of interface, with its own redirecting XDP program there, reading until count
    frames arrived (or timeout). stop() returns the frames; counters holds received/dropped/ring_full/fill_empty."""

    def __init__(self, interface, count, timeout):
        self.interface = interface
        self.process = subprocess.Popen([str(reader_binary()), interface, str(count), str(timeout)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.output = bytearray()
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()
        ready = self.process.stderr.readline().decode().strip()
        if ready != "ready":
            try:
                self.process.wait(START_TIMEOUT_S)     # it exits by itself after saying why
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            rest = self.process.stderr.read().decode()
            raise AssertionError(f"xsk_reader on {interface}: {' '.join((ready + ' ' + rest).split())}")
        self.counters = {}

    def _collect(self):
        # Read while it runs: a full pipe would stall the reader and its socket would drop frames.
        for chunk in iter(lambda: self.process.stdout.read1(1 << 16), b""):
            self.output += chunk

    def stop(self, timeout):
        """Waits for the reader to finish (count reached or its own timeout) and returns its frames in order."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait()
        self._collector.join()
        summary = self.process.stderr.read().decode()
        found = re.search(r"received (\d+) dropped (\d+) ring_full (\d+) fill_empty (\d+)", summary)
        assert found and self.process.returncode == 0, f"xsk_reader on {self.interface}: {summary}"
        self.counters = dict(zip(("received", "dropped", "ring_full", "fill_empty"), map(int, found.groups())))
        frames, offset = [], 0
        while offset < len(self.output):
            (length,) = struct.unpack_from("<I", self.output, offset)
            frames.append(bytes(self.output[offset + 4:offset + 4 + length]))
            offset += 4 + length
        return frames
