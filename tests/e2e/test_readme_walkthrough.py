"""The README's walkthrough, read from README.md and typed verbatim into a local and a remote shell.

Only the first line (which names the interfaces) is replaced by the testbed's
names; real traffic flows between `pe:start()` and `pe:show_stats()`, and
what the shell prints and what the pipes and the egress received is checked.
"""
import pathlib
import re

import pexpect
import pytest

from bricks import frames as packets
from bricks import links
from bricks.testbed import wait_for_total
from tests.e2e.daemons import PROMPT, alive, wait_until

pytestmark = pytest.mark.root

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
FLOWS = 300


def walkthrough_lines():
    text = README.read_text()
    section = text[text.index("## Walkthrough"):]
    block = re.search(r"```lua\n(.*?)```", section, re.S).group(1)
    lines = block.strip().splitlines()
    assert lines[0].startswith("IF, EGRESS = ")
    return lines


def type_walkthrough(shell, testbed, prompt):
    """Types every line; returns what each printed, and the frames the consumers captured."""
    host_if, ns_if = testbed.add_input("in")
    egress_host, egress_ns = testbed.add_egress("out")
    lines = walkthrough_lines()
    lines[0] = f'IF, EGRESS = "{host_if}", "{egress_host}"'
    printed, readers, frames = {}, [], packets.flow_frames(FLOWS)
    for line in lines:
        if line == "pe:show_stats()":   # the engine runs: traffic now
            readers = [testbed.reader(links.consumer_name(host_if, index), in_namespace=False)
                       for index in range(4)] + [testbed.reader(egress_ns)]
            testbed.send(ns_if, frames, pps=20000)
            wait_for_total(readers, len(frames))
        shell.sendline(line)
        if line == "BRICKS.shutdown()":
            shell.expect("Goodbye!")
            shell.expect(pexpect.EOF)
            printed[line] = shell.before
            break
        shell.expect_exact(prompt)
        printed[line] = shell.before.split("\n", 1)[1] if "\n" in shell.before else ""
    captured = [reader.stop() for reader in readers]
    return host_if, printed, captured, frames


def check(host_if, printed, captured, frames):
    assert f"{len(frames)} packets" in printed["pe:show_stats()"], printed["pe:show_stats()"]
    total = [line for line in printed["BRICKS.show_stats()"].splitlines() if line.startswith("Total")]
    assert total and total[0].split()[1] == str(len(frames)), printed["BRICKS.show_stats()"]
    assert "BRICKS is online." in printed["BRICKS.print_status()"]
    assert sorted(frame for capture in captured for frame in capture) == sorted(frames)
    owner = {}
    for index, capture in enumerate(captured):
        for frame in capture:
            assert owner.setdefault(packets.flow_key(frame), index) == index
    assert sum(1 for capture in captured if capture) >= 3
    for index in range(4):
        assert not links.interface_exists(links.broker_name(host_if, index))
    for line, output in printed.items():
        assert "error" not in output.lower(), (line, output)


def test_walkthrough_in_the_local_shell(paths, testbed):
    shell = paths.spawn("bricks")
    shell.expect_exact(PROMPT)
    check(*type_walkthrough(shell, testbed, PROMPT))
    shell.close()
    assert shell.exitstatus == 0


def test_walkthrough_in_a_remote_shell(paths, testbed):
    daemon_pid = paths.start_daemon()
    shell = paths.spawn("bricks-shell")
    shell.expect_exact(PROMPT)
    check(*type_walkthrough(shell, testbed, PROMPT))
    shell.close()
    assert shell.exitstatus == 0
    assert wait_until(lambda: not alive(daemon_pid), 10), "BRICKS.shutdown() from a remote shell ends the daemon"
