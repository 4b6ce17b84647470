"""systemd pieces without a service manager: sd_notify datagrams, IFACE:N instances, the units as installed and
checked by systemd-analyze verify (which reads unit files offline: no systemd as PID 1 needed)."""
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bricks import cli, systemd
from bricks.errors import BricksError

VENV_BIN = Path(sys.executable).parent


@pytest.mark.parametrize("instance, expected", [("eth3:4", ("eth3", 4)), ("enp1s0f1:64", ("enp1s0f1", 64)),
                                                ("br-lan.10:1", ("br-lan.10", 1))])
def test_instances_name_an_interface_and_a_pipe_count(instance, expected):
    assert systemd.parse_fan_out_instance(instance) == expected


@pytest.mark.parametrize("instance, message", [
    ("eth3", "expected IFACE:N"),
    ("eth3:", "N must be a whole number from 1 to 64, got ''"),
    ("eth3:0", "N must be a whole number from 1 to 64, got '0'"),
    ("eth3:65", "got '65'"),
    ("eth3:four", "got 'four'"),
    (":4", "'' is not an interface name"),
    ("a:b:4", "'a:b' is not an interface name"),
    ("averyveryverylongname:4", "is not an interface name"),
])
def test_bad_instances_are_one_line_errors(instance, message):
    with pytest.raises(BricksError) as error:
        systemd.parse_fan_out_instance(instance)
    assert message in str(error.value)
    result = CliRunner().invoke(cli.load_balance_main, [instance], prog_name="bricks-load-balance")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"bricks: {error.value}"]


def receive(server, size=4096):
    server.settimeout(5)
    return server.recv(size).decode()


def test_notify_sends_one_datagram_to_a_path_or_an_abstract_socket(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(tmp_path / "notify"))
        assert systemd.notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert receive(server) == "READY=1\nSTATUS=x"
    name = f"bricks-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert systemd.notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert receive(server) == "STOPPING=1"


def test_notify_outside_systemd_or_to_a_vanished_socket_never_raises(tmp_path):
    assert not systemd.notify("READY=1", {})
    assert not systemd.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert "READY=1" in systemd.notify.error and "gone" in systemd.notify.error
    assert not systemd.notify("READY=1", {"NOTIFY_SOCKET": "relative"})


def test_install_units_writes_this_checkouts_paths(tmp_path):
    result = CliRunner().invoke(cli.install_units_main, ["--dir", str(tmp_path), "--no-reload"])
    assert result.exit_code == 0, result.output
    service = (tmp_path / "bricks.service").read_text()
    assert f"ExecStart={VENV_BIN}/bricks-server --foreground -f ${{BRICKS_SCRIPT}} $BRICKS_OPTIONS" in service
    template = (tmp_path / "bricks-load-balance@.service").read_text()
    assert f"ExecStart={VENV_BIN}/bricks-load-balance --foreground %I" in template
    for text in (service, template):
        assert "/usr/local/bin" not in text
        assert "Type=notify" in text and "NoNewPrivileges=yes" in text and "PrivateTmp=yes" in text
        assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_NICE CAP_CHOWN\n" in text
    result = CliRunner().invoke(cli.install_units_main, ["--dir", str(tmp_path), "--bin", str(tmp_path)])
    assert result.exit_code == 1 and "no bricks-server here" in result.output


def test_install_units_refusal_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(cli.install_units_main, ["--dir", str(tmp_path / "file" / "units"), "--no-reload"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("bricks: cannot write")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (Debian package systemd)")
def test_installed_units_pass_systemd_analyze_verify(tmp_path):
    systemd.install_units(tmp_path, reload=False)
    # An instance is verified through a unit file of its own name; ':' is written \x3a, which %I turns back
    # into eth3:4 (verify takes a ':' in a file name for something else).
    shutil.copy(tmp_path / "bricks-load-balance@.service", tmp_path / "bricks-load-balance@eth3\\x3a4.service")
    for name in ("bricks.service", "bricks-load-balance@eth3\\x3a4.service"):
        result = subprocess.run(["systemd-analyze", "verify", name], cwd=tmp_path, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0 and result.stderr == "", (name, result.stderr)
    # A unit that verify must reject, so that the check above means something.
    (tmp_path / "broken.service").write_text("[Service]\nType=notify\nExecStart=relative/bricks-server\n")
    result = subprocess.run(["systemd-analyze", "verify", "broken.service"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
