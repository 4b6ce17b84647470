"""End to end: Filter rules changed from every kind of shell while traffic flows, and kept by a daemon restart.

A Filter reads the host end of a veth pair and writes pipe IF{0, read by
tcpdump. Rules are added and removed from the local Lua state, from an
interactive remote shell and from `bricks-shell -c`, each finding the filter
with Filter.retrieve("IF{0"); what reaches the pipe is checked frame by frame.
On both back-ends that run the rules: packet (the C brick) and xdp (the XDP
program's maps).
"""
import re
import time

import pexpect
import pytest

from bricks import engine as engine_module
from bricks import links
from bricks.frames import pad, tcp_frame
from bricks.lua import LuaError, LuaRuntime
from bricks.testbed import wait_for_total
from tests.e2e.daemons import PROMPT, alive

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("engines_removed")]

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
SCRIPT = """\
local interface = arg[1]
local filter = Brick.new("Filter")
filter:connect_input(interface)
filter:connect_output(interface .. "{0")
local pe = PktEngine.new("flt")
pe:link(filter)
pe:start()
"""


def frames_of(*flows, copies=1):
    return [pad(tcp_frame(*flow)) for flow in flows] * copies


def send_and_capture(testbed, ns_if, reader, frames, expected):
    """Sends frames; returns the frames the pipe got from them (the reader's new ones), once expected arrived."""
    before = len(reader.read_so_far())
    testbed.send(ns_if, frames, pps=20000)
    wait_for_total([reader], before + expected)
    time.sleep(0.2)       # anything extra would show up now
    return reader.read_so_far()[before:]


def rule_hits(paths, name):
    result = paths.remote(f'for _, r in ipairs(Filter.retrieve("{name}"):rules()) do '
                          'print(r.id, r.action, r.hits) end')
    assert result.returncode == 0, result.stderr
    return [tuple(line.split("\t")) for line in result.stdout.splitlines()]


def test_rules_from_the_local_lua_state_while_the_engine_runs(testbed, rules_backend):
    host_if, ns_if = testbed.add_input("in")
    printed = []
    lua = LuaRuntime(output=printed.append)
    lua.execute(f'arg = {{"{host_if}"}}\n' + SCRIPT)
    assert engine_module.PktEngine.retrieve("flt").linked[0].backend == rules_backend
    reader = testbed.reader(links.consumer_name(host_if, 0), in_namespace=False)
    dropped, kept = (C, A, 7, 80), (A, B, 7, 80)
    assert lua.execute(f'f = Filter.retrieve("{host_if}{{0"); return f:drop{{src="{C}"}}') == [1]
    assert sorted(send_and_capture(testbed, ns_if, reader, frames_of(dropped, kept, copies=4), 4)) == \
        frames_of(kept, copies=4)
    with pytest.raises(LuaError, match=r"^stdin:1: Filter:drop: dport must be a port number"):
        lua.execute('f:drop{dport="http"}')
    assert lua.execute("local r = f:rules(); return #r, r[1].hits") == [1, 4]
    lua.execute("f:remove(1)")
    assert sorted(send_and_capture(testbed, ns_if, reader, frames_of(dropped, copies=3), 3)) == \
        frames_of(dropped, copies=3)


def test_remote_shells_change_rules_on_a_running_daemon_and_a_restart_keeps_them(paths, testbed, tmp_path,
                                                                                rules_backend):
    host_if, ns_if = testbed.add_input("in")
    name = f"{host_if}{{0"
    script = tmp_path / "filter.lua"
    script.write_text(SCRIPT)
    paths.start_daemon("--backend", rules_backend, "-f", str(script), host_if)
    reader = testbed.reader(links.consumer_name(host_if, 0), in_namespace=False)

    added = paths.remote(f'print(Filter.retrieve("{name}"):drop{{src="{C}"}})')
    assert (added.returncode, added.stdout) == (0, "1\n"), added.stderr
    refused = paths.remote(f'Filter.retrieve("{name}"):drop{{src="{C}", dport=70000, proto="tcp"}}')
    assert refused.returncode == 1
    assert re.fullmatch(r"\S+:1: Filter:drop: dport must be a port number from 1 to 65535, got 70000\n",
                        refused.stderr), refused.stderr
    shell = paths.spawn("bricks-shell")
    try:
        shell.expect_exact(PROMPT)
        for line, answer in ((f'f = Filter.retrieve("{name}")', ""), ('=f:drop{dport=81, proto="tcp"}', "2"),
                             (f'=f:allow{{src="{C}", dport=22, proto="tcp"}}', "3")):
            shell.sendline(line)
            shell.expect_exact(PROMPT)
            assert shell.before.split("\r\n", 1)[1].strip() == answer, shell.before

        by_address, allowed, by_port, kept = (C, A, 7, 5), (C, A, 7, 22), (A, B, 7, 81), (A, B, 7, 80)
        captured = send_and_capture(testbed, ns_if, reader, frames_of(by_address, allowed, by_port, kept,
                                                                     copies=5), 10)
        assert sorted(captured) == sorted(frames_of(allowed, kept, copies=5))
        assert rule_hits(paths, name) == [("1", "drop", "5"), ("2", "drop", "5"), ("3", "allow", "5")]
        status = paths.remote("BRICKS.print_status()")
        assert f"Filter tree on {rules_backend}" in status.stdout, status.stdout

        shell.sendline("f:remove(2)")
        shell.expect_exact(PROMPT)
        assert "error" not in shell.before
        assert sorted(send_and_capture(testbed, ns_if, reader, frames_of(by_port, copies=3), 3)) == \
            frames_of(by_port, copies=3)
        shell.sendeof()
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)

    saved = tmp_path / "rules.jsonl"
    assert paths.remote(f'Filter.retrieve("{name}"):save("{saved}")').returncode == 0
    stopped = paths.run("bricks-kill-server")
    assert stopped.returncode == 0, stopped.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text(saved.read_text() + '{"filter": "%s", "action": "drop", "src": "10.0.0.0/33"}\n' % name)
    refused = paths.run("bricks-server", "-f", str(script), "--rules", str(bad), host_if, timeout=60)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "bad.jsonl:3: src: '10.0.0.0/33' is not an address or CIDR" in refused.stderr
    assert not links.interface_exists(name)

    daemon = paths.start_daemon("--backend", rules_backend, "-f", str(script), "--rules", str(saved), host_if)
    reader = testbed.reader(links.consumer_name(host_if, 0), in_namespace=False)
    assert sorted(send_and_capture(testbed, ns_if, reader, frames_of(by_address, allowed, kept, copies=3), 6)) == \
        sorted(frames_of(allowed, kept, copies=3))
    assert rule_hits(paths, name) == [("1", "drop", "3"), ("2", "allow", "3")]
    assert "rules: 2 loaded from" in open(paths.log).read()
    assert paths.run("bricks-kill-server").returncode == 0
    assert not alive(daemon)
