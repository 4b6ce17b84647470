"""Builds a driver of tests/sanitized/ with the C files it needs under -fsanitize=address,undefined, and runs it.

A finding aborts the driver (-fno-sanitize-recover=all), so a test only checks the exit status and the output.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CSRC = HERE.parents[1] / "src" / "bricks" / "csrc"
TIMEOUT_S = 120


def sanitizing_compiler():
    return next((compiler for compiler in ("gcc", "clang") if shutil.which(compiler)), None)


def build(driver, sources, directory):
    """tests/sanitized/`driver` linked with csrc/`sources`, built in `directory`; skips the test without a way
    to build it."""
    compiler = sanitizing_compiler()
    if compiler is None:
        pytest.skip("no C compiler")
    binary = Path(directory) / Path(driver).stem
    result = subprocess.run(
        [compiler, "-g", "-O1", "-std=gnu11", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         f"-I{CSRC}", str(HERE / driver), *(str(CSRC / name) for name in sources),
         "-lpcap", "-lpthread", "-o", str(binary)],
        capture_output=True, text=True, timeout=TIMEOUT_S)
    if result.returncode != 0 and "asan" in result.stderr.lower():
        pytest.skip(f"{compiler} cannot link the sanitizers here")
    assert result.returncode == 0, result.stderr
    return binary


def run(binary, *arguments):
    """Runs a built driver; its stdout split in lines. Fails the test on any sanitizer finding."""
    result = subprocess.run([str(binary), *map(str, arguments)], capture_output=True, text=True, timeout=TIMEOUT_S,
                            env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout.splitlines()
