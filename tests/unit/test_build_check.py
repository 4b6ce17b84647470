"""The build's check for libpcap's headers: one line naming the package instead of a compiler error."""
import subprocess
import sys
from pathlib import Path

import pytest

from bricks import _native_build as build

BUILDER = Path(build.__file__)


def test_missing_headers_end_the_build_with_one_line(tmp_path):
    (tmp_path / "include").mkdir()
    with pytest.raises(SystemExit) as stop:
        build.check_pcap_headers([str(tmp_path / "include"), str(tmp_path / "absent")])
    message = str(stop.value)
    assert "\n" not in message and "libpcap-dev" in message and "pcap/pcap.h" in message


def test_headers_found_in_a_given_directory(tmp_path):
    (tmp_path / "pcap").mkdir()
    (tmp_path / "pcap" / "pcap.h").write_text("/* stand-in */\n")
    build.check_pcap_headers([str(tmp_path)])    # no exit


def test_the_compiler_search_list_includes_cpath_and_finds_this_machines_headers(tmp_path, monkeypatch):
    monkeypatch.setenv("CPATH", str(tmp_path))
    dirs = build.compiler_search_dirs()
    assert str(tmp_path) in dirs
    build.check_pcap_headers()    # bin/setup installed libpcap-dev here


def test_the_builder_run_as_pip_runs_it_stops_before_compiling(tmp_path):
    """The builder module as setup.py loads it, with a compiler whose search list holds no pcap.h."""
    fake_compiler = tmp_path / "cc"
    fake_compiler.write_text("#!/bin/sh\n"
                             f"printf '#include <...> search starts here:\\n {tmp_path}\\nEnd of search list.\\n' >&2\n")
    fake_compiler.chmod(0o755)
    result = subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(BUILDER)!r})"],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "CC": str(fake_compiler)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [build.PCAP_MISSING]
