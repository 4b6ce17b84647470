"""Scripts written in the original packet-bricks' call patterns run unmodified, with real traffic (issue 9).

The scripts in original_scripts/ (see its README.md) are installed as the
original's build did: `@prefix@` replaced by a prefix whose
etc/bricks-scripts is this repository's scripts/, and the interface name
`ix1` by a testbed interface. Nothing else is changed. Each test then checks
every frame sent: where it arrived, and what the engines counted.
"""
import os
import pathlib
import re

import pytest

from bricks import engine as engine_module
from bricks import frames as frame_builder
from bricks import links
from bricks.testbed import wait_for_total
from tests.e2e.daemons import alive, wait_until
from tests.e2e.test_lua_configs import SEND_RATE, assert_balanced, assert_copies, lua, pipe_readers  # noqa: F401
from tests.unit.test_lua_api import REPOSITORY

pytestmark = pytest.mark.root

ORIGINAL_SCRIPTS = pathlib.Path(__file__).resolve().parent / "original_scripts"


def install(prefix, name, interface):
    """original_scripts/<name>.lua.in as the original's build installs it; returns the installed path."""
    etc = prefix / "etc"
    (prefix / "var").mkdir(parents=True, exist_ok=True)
    etc.mkdir(parents=True, exist_ok=True)
    if not (etc / "bricks-scripts").exists():
        (etc / "bricks-scripts").symlink_to(os.path.join(REPOSITORY, "scripts"))
    text = (ORIGINAL_SCRIPTS / f"{name}.lua.in").read_text()
    installed = etc / f"{name}.lua"
    installed.write_text(text.replace("@prefix@", str(prefix)).replace('"ix1', f'"{interface}'))
    return str(installed)


def engine_packets(shown):
    """The packet count of `Engine <name>: N packets, ...` lines of pe:show_stats()."""
    return [int(count) for count in re.findall(r"^Engine \S+: (\d+) packets", shown, re.M)]


@pytest.mark.parametrize("script, split, check", [
    ("load-balance", "4", assert_balanced),
    ("duplicate", "3", assert_copies),
])
def test_fan_out_scripts_read_the_split_as_a_string_from_a_file(testbed, paths, tmp_path, script, split, check):
    """The original's load-balance / duplicate: lines_from(file) gives "4", lbconfig/dupconfig take it."""
    host_if, ns_if = testbed.add_input("in")
    prefix = tmp_path / "prefix"
    path = install(prefix, script, host_if)
    (prefix / "var" / "bricks.iface").write_text(host_if + "\n")
    (prefix / "var" / "bricks.split").write_text(split + "\n")
    daemon = paths.start_daemon("-f", path)      # returns once the script (and its stats loop) is done
    outputs = int(split)
    readers = pipe_readers(testbed, host_if, range(outputs))
    sent = frame_builder.flow_frames(200, seed=len(script))
    testbed.send(ns_if, sent, pps=SEND_RATE)
    wait_for_total(readers, len(sent) * (1 if check is assert_balanced else outputs))
    shown = paths.remote('pe = PktEngine.retrieve("e0"); pe.show_stats()')
    assert shown.returncode == 0, shown.stderr
    assert engine_packets(shown.stdout) == [len(sent)]
    check([reader.stop() for reader in readers], sent)
    assert paths.remote("BRICKS.shutdown()").returncode == 0
    assert wait_until(lambda: not alive(daemon), 10)
    assert not any(links.interface_exists(links.broker_name(host_if, index)) for index in range(outputs))
    log = pathlib.Path(paths.log).read_text()
    assert log.count("Total") == 3, log       # its statistics loop ran STATS_PRINT_CYCLE_DEFAULT + 1 times


def test_startup_one_thread_init_start_stop_from_the_shell(testbed, lua, tmp_path):
    host_if, ns_if = testbed.add_input("in")
    lua.runtime.execute_file(install(tmp_path / "prefix", "startup-one-thread", host_if))
    lua.run("init()")
    lua.run("start()")
    assert lua.output().count("Total") == 3
    readers = pipe_readers(testbed, host_if, range(4))
    sent = frame_builder.flow_frames(200, seed=31)
    testbed.send(ns_if, sent, pps=SEND_RATE)
    wait_for_total(readers, len(sent))
    lua.run("stop()")
    assert "Stopping engine e0" in lua.output()
    assert_balanced([reader.stop() for reader in readers], sent)
    assert engine_module.engines() == []


def test_startup_multi_threads_pins_to_cpus_the_host_may_lack(testbed, lua, tmp_path):
    """Four engines on CPUs 0-3: CPUs this host lacks are one warning each; together they see every frame once."""
    host_if, ns_if = testbed.add_input("in")
    lua.runtime.execute_file(install(tmp_path / "prefix", "startup-multi-threads", host_if))
    lua.run("init4()")
    warnings = [line for line in lua.output().splitlines() if "warning" in line]
    missing = [cpu for cpu in range(4) if cpu not in engine_module.usable_cpus()]
    assert [re.search(r"CPU (\d+)", line).group(1) for line in warnings] == [str(cpu) for cpu in missing]
    assert [engine.cpu for engine in engine_module.engines()] == [cpu if cpu not in missing else -1
                                                                  for cpu in range(4)]
    lua.run("start4()")
    readers = pipe_readers(testbed, host_if, range(4))
    sent = frame_builder.flow_frames(400, seed=32)
    testbed.send(ns_if, sent, pps=SEND_RATE)
    wait_for_total(readers, len(sent))
    counts = [engine.stats()["packets"] for engine in engine_module.engines()]
    lua.run("stop4()")
    shares = [reader.stop() for reader in readers]
    assert_balanced(shares, sent)       # disjoint and complete over the four engines, flows whole
    assert counts == [len(share) for share in shares]
    assert engine_module.engines() == []


def test_readme_session_with_unspecified_values_and_chained_calls(testbed, lua, tmp_path):
    """pe:link(lb, -1, -1), chained calls, pe:help(), pe.show_stats(), a CPU beyond the host, BRICKS._VERSION."""
    from bricks import __version__
    host_if, ns_if = testbed.add_input("in")
    lua.runtime.execute_file(install(tmp_path / "prefix", "readme-session", host_if))
    printed = lua.output()
    assert printed.startswith(f"BRICKS-{__version__}\nPktEngine.new: warning: engine e0 cannot be pinned to CPU 1000")
    assert "PktEngine commands:" in printed and engine_packets(printed) == [0]
    engine = engine_module.PktEngine.retrieve("e0")
    assert (engine.cpu, engine.linked[0].batch, engine.linked[0].qid) == (-1, engine_module.DEFAULT_BATCH, -1)
    readers = pipe_readers(testbed, host_if, range(4))
    sent = frame_builder.flow_frames(200, seed=33)
    testbed.send(ns_if, sent, pps=SEND_RATE)
    wait_for_total(readers, len(sent))
    lua.run("pe.show_stats()")
    assert engine_packets(lua.output()) == [len(sent)]
    assert_balanced([reader.stop() for reader in readers], sent)
