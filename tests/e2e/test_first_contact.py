"""A newcomer's first hour, end to end (issue 9): banner and prompts, tables printed readably in both
shells, `bricks --version`, the startup script without an egress, pcap conversion scripts run to the end.

The shells run under a pseudo-terminal (pexpect) with private paths (the
`paths` fixture); pcap conversions need no root.
"""
import os
import pathlib
import re
import signal
import subprocess

import pexpect
import pytest

from bricks import __version__
from bricks import frames as frame_builder
from bricks.frames import read_pcap, write_pcap
from bricks.testbed import wait_for_total
from tests.e2e.daemons import PROMPT, WAIT, bricks
from tests.e2e.test_lua_configs import SEND_RATE, assert_balanced, pipe_readers
from tests.unit.test_lua_api import REPOSITORY

BANNER = re.compile(r"BRICKS Version " + re.escape(__version__) + r" \([^\r\n]+\); BRICKS.help\(\) lists")
RULE_ONE = re.compile(r'\{\r\n  action = "drop",\r\n  bidirectional = true,\r\n  bytes = 0,\r\n  dport = 80,\r\n'
                      r'  hits = 0,\r\n  id = 1,\r\n  proto = "tcp",\r\n  src = "10.0.0.0/8",\r\n'
                      r'  time_left = (30|29\.\d+)\r\n\}\r\n')


def pcap_frames(path):
    with open(path, "rb") as capture:
        return [record[3] for record in read_pcap(capture.read()).records]


def converter(tmp_path, source):
    """conv.lua: PcapReader(source) -> LoadBalancer over two internal edges -> two PcapWriters."""
    script = tmp_path / "conv.lua"
    script.write_text(f"""
        local reader = Brick.new("PcapReader", "4")
        reader:connect_input("{source}"):connect_output("cv{{0", "cv{{1")
        for index = 0, 1 do
           reader:link(Brick.new("PcapWriter"):connect_input("cv}}" .. index)
                                               :connect_output("{tmp_path}/out" .. index .. ".pcap"))
        end
        PktEngine.new("conv"):link(reader):start()
    """)
    return str(script)


def session_checks(shell):
    """Banner, the original's continuation prompt, and tables printed readably: the same in both shells."""
    shell.expect(BANNER)
    shell.expect_exact(PROMPT)
    shell.sendline("for i = 1, 2 do")
    shell.expect_exact("bricks?>> ")
    shell.sendline('  print("line " .. i)')
    shell.expect_exact("bricks?>> ")
    shell.sendline("end")
    shell.expect_exact("line 1\r\nline 2\r\n")
    shell.expect_exact(PROMPT)
    shell.sendline('f = Brick.new("Filter"):connect_input("eth9"):connect_output("eth9{4")')
    shell.expect_exact(PROMPT)
    shell.sendline('f:drop{src = "10.0.0.0/8", dport = 80, proto = "tcp", timeout = 30}')
    shell.expect_exact(PROMPT)
    shell.sendline("=f:rules()[1]")
    shell.expect(RULE_ONE)
    shell.expect_exact(PROMPT)
    shell.sendline("f:filter_stats()")
    shell.expect_exact("{expression_rejected = 0, passed = 0, rule_allowed = 0, rule_dropped = 0}\r\n")
    shell.expect_exact(PROMPT)
    shell.sendline("f:rules()")
    shell.expect_exact("{\r\n  {\r\n    action = \"drop\",")
    shell.expect_exact(PROMPT)
    assert "table: 0x" not in shell.before
    shell.sendline("BRICKS.shutdown()")
    shell.expect_exact("Goodbye!")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 0


@pytest.mark.root
def test_local_shell_banner_prompts_and_tables(paths):
    session_checks(paths.spawn("bricks"))


@pytest.mark.root
def test_remote_shell_banner_prompts_and_tables(paths):
    paths.start_daemon()
    session_checks(paths.spawn("bricks-shell"))


def test_version_of_every_command():
    for command in ("bricks", "bricks-server", "bricks-shell", "bricks-load-balance", "bricks-duplicate",
                    "bricks-kill-server"):
        result = subprocess.run(bricks(command) + ["--version"], capture_output=True, text=True, timeout=WAIT)
        assert (result.returncode, result.stdout, result.stderr) == (0, f"BRICKS Version {__version__}\n", "")


def test_a_conversion_script_runs_to_the_end_of_its_input(tmp_path):
    """`bricks -f conv.lua </dev/null`: end of input lets the pcap engine finish; every frame is written."""
    sent = frame_builder.random_tcp_frames(200_000, seed=910)
    write_pcap(tmp_path / "in.pcap", sent)
    result = subprocess.run(bricks("bricks") + ["-f", converter(tmp_path, tmp_path / "in.pcap")],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = [pcap_frames(tmp_path / f"out{index}.pcap") for index in range(2)]
    assert sorted(written[0] + written[1]) == sorted(sent)
    assert written[0] and written[1]
    owner = {}
    for index, frames in enumerate(written):
        for frame in frames:
            assert owner.setdefault(frame_builder.flow_key(frame), index) == index


def test_ctrl_c_stops_a_conversion_at_once(tmp_path):
    """End of input waits for the pcap engine, announced on stderr; Ctrl-C still stops it at once."""
    write_pcap(tmp_path / "in.pcap", frame_builder.random_tcp_frames(100_000, seed=911))
    many = tmp_path / "many"
    many.mkdir()
    copies = 200      # 20 million frames: far longer than this test waits
    for index in range(copies):
        os.symlink(tmp_path / "in.pcap", many / f"{index:03d}.pcap")
    shell = pexpect.spawn(bricks("bricks")[0], bricks("bricks")[1:] + ["-f", converter(tmp_path, many)],
                          cwd=str(tmp_path), encoding="utf-8", timeout=WAIT, env=dict(os.environ, HOME=str(tmp_path)))
    try:
        shell.expect_exact(PROMPT)
        shell.sendeof()
        shell.expect_exact("waiting for engine conv to finish reading pcap input (Ctrl-C stops now)")
        shell.sendintr()
        shell.expect(pexpect.EOF, timeout=10)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 128 + signal.SIGINT or shell.signalstatus == signal.SIGINT
    written = sum(len(pcap_frames(tmp_path / f"out{index}.pcap")) for index in range(2))
    assert 0 < written < copies * 100_000      # stopped mid-way; what was written is whole frames


@pytest.mark.root
def test_startup_script_runs_without_an_egress_and_says_how_to_give_one(testbed, tmp_path):
    """The README's `bricks -f scripts/startup-one-thread.lua IFACE` on a host without eth2 (9.8)."""
    host_if, ns_if = testbed.add_input("in")
    environment = {name: value for name, value in os.environ.items() if name != "BRICKS_EGRESS"}
    script = os.path.join(REPOSITORY, "scripts", "startup-one-thread.lua")
    shell = pexpect.spawn(bricks("bricks")[0], bricks("bricks")[1:] + ["-f", script, host_if], cwd=REPOSITORY,
                          encoding="utf-8", timeout=WAIT, env=dict(environment, HOME=str(tmp_path)))
    try:
        shell.expect_exact("BRICKS is online.")
        shell.expect_exact(PROMPT)
        readers = pipe_readers(testbed, host_if, range(4))
        sent = frame_builder.flow_frames(200, seed=98)
        testbed.send(ns_if, sent, pps=SEND_RATE)
        wait_for_total(readers, len(sent))
        shell.sendline("stop()")
        shell.expect_exact(PROMPT)
        shell.sendeof()
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 0
    assert_balanced([reader.stop() for reader in readers], sent)
    missing = subprocess.run(bricks("bricks") + ["-f", script, host_if, "bkmissing0"], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=WAIT, cwd=REPOSITORY, env=environment)
    assert missing.returncode == 1
    assert missing.stderr == ("egress bkmissing0: no such interface (give the egress as the script's second argument "
                              "or in $BRICKS_EGRESS, or neither for none)\n")


def test_the_readme_conversion_example(tmp_path):
    """README's conv.lua, verbatim: every frame of in.pcap lands in out0.pcap or out1.pcap, and pe:wait says done."""
    text = (pathlib.Path(REPOSITORY) / "README.md").read_text()
    block = re.search(r"```lua\n(-- conv\.lua.*?)```", text, re.S).group(1)
    (tmp_path / "conv.lua").write_text(block)
    sent = frame_builder.random_tcp_frames(50_000, seed=912)
    write_pcap(tmp_path / "in.pcap", sent)
    result = subprocess.run(bricks("bricks") + ["-f", "conv.lua"], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")
    assert sorted(pcap_frames(tmp_path / "out0.pcap") + pcap_frames(tmp_path / "out1.pcap")) == sorted(sent)
