"""End to end through Lua: the README walkthrough, every sample setup and both startup scripts, real traffic.

Frames are sent from a testbed namespace into the interface bricks reads;
tcpdump captures every pipe (and the egress interface); pcap outputs are read
back from disk. Each case checks that every frame arrived where the brick tree
says, and nowhere else.
"""
import os
import time

import pytest

from bricks import engine as engine_module
from bricks import frames as frame_builder
from bricks import links
from bricks.testbed import parse_pcap, wait_for_total
from tests.unit.test_lua_api import REPOSITORY, Console

pytestmark = pytest.mark.root

SEND_RATE = 20000
SETTLE_TIMEOUT = 10.0
SINGLE_SETUPS = os.path.join(REPOSITORY, "scripts", "configs", "single-threaded-setups.lua")


@pytest.fixture
def lua():
    yield Console()
    engine_module.shutdown_all()


def pipe_readers(testbed, interface, indexes):
    return [testbed.reader(links.consumer_name(interface, index), in_namespace=False) for index in indexes]


def assert_balanced(captures, sent):
    """Every frame exactly once over the captures, each flow (both directions) in one of them."""
    assert sorted(frame for capture in captures for frame in capture) == sorted(sent)
    owner = {}
    for index, capture in enumerate(captures):
        for frame in capture:
            assert owner.setdefault(frame_builder.flow_key(frame), index) == index, "a flow was split"
    assert sum(1 for capture in captures if capture) > 1, "everything went to one output"


def assert_copies(captures, sent):
    for capture in captures:
        assert sorted(capture) == sorted(sent)


def read_file_frames(path):
    with open(path, "rb") as capture:
        return parse_pcap(capture.read())


# ---------------------------------------------------------------- the README walkthrough

def test_readme_walkthrough(testbed, lua):
    host_if, ns_if = testbed.add_input("in")
    egress_host, egress_ns = testbed.add_egress("out")
    shell = lua.runtime
    for line in [f'IF = "{host_if}"', f'EGRESS = "{egress_host}"',
                 'pe = PktEngine.new("e0", 1024, 1)',
                 'lb = Brick.new("LoadBalancer", 2)',
                 "lb:connect_input(IF)",
                 'lb:connect_output(IF.."{0", IF.."{1", IF.."{2", IF.."{3", EGRESS)',
                 "pe:link(lb)",
                 "pe:start()"]:
        shell.evaluate_line(line)
    readers = pipe_readers(testbed, host_if, range(4)) + [testbed.reader(egress_ns)]
    sent = frame_builder.flow_frames(200, seed=11)
    testbed.send(ns_if, sent, pps=SEND_RATE)
    wait_for_total(readers, len(sent))
    lua.output()

    shell.evaluate_line("pe:show_stats()")
    assert lua.output().startswith(f"Engine e0: {len(sent)} packets")
    shell.evaluate_line("BRICKS.show_stats()")
    total = [line.split() for line in lua.output().splitlines() if line.startswith("Total")]
    assert total and int(total[0][1]) == len(sent) and int(total[0][3]) == 0
    shell.evaluate_line("BRICKS.print_status()")
    assert lua.output().startswith("BRICKS is online.\nBack-end: packet (")
    with pytest.raises(Exception) as refused:
        shell.evaluate_line('pe:link(Brick.new("Dummy"):connect_input(IF):connect_output(IF.."{5"))')
    assert "while it is running" in str(refused.value)
    assert not links.interface_exists(f"{host_if}{{5")

    shell.evaluate_line("pe:stop()")
    captures = [reader.stop() for reader in readers]
    assert_balanced(captures, sent)
    shell.evaluate_line("BRICKS.print_status()")
    assert lua.output().startswith("BRICKS is offline.\nBack-end: packet (")
    shell.evaluate_line("pe:unlink()")
    shell.evaluate_line("pe:delete()")
    assert not any(links.interface_exists(f"{host_if}{{{index}") for index in range(4))
    shell.evaluate_line("BRICKS.shutdown()")
    assert lua.output() == "Goodbye!\n" and shell.shutdown_requested


# ---------------------------------------------------------------- single-threaded configurations

def wait_for_engine(name, packets, timeout=SETTLE_TIMEOUT):
    deadline = time.monotonic() + timeout
    while engine_module.PktEngine.retrieve(name).stats()["packets"] < packets and time.monotonic() < deadline:
        time.sleep(0.05)


def run_setup(testbed, lua, call, readers_of, sends, expected, engine_packets=0):
    """Links `call` to engine pe and starts it, sends, waits until the engine has counted
    `engine_packets` and the readers `expected` frames (a callable: computed then); returns the captures."""
    lua.run(f'setups = dofile("{SINGLE_SETUPS}"); pe = PktEngine.new("e0")')
    lua.run(call)
    readers = readers_of()
    lua.run("pe:start()")
    for ns_if, sent in sends:
        testbed.send(ns_if, sent, pps=SEND_RATE)
    wait_for_engine("e0", engine_packets)
    wait_for_total(readers, expected() if callable(expected) else expected)
    lua.run("pe:stop()")
    return [reader.stop() for reader in readers]


def test_lb_config_with_egress(testbed, lua):
    host_if, ns_if = testbed.add_input("in")
    egress_host, egress_ns = testbed.add_egress("out")
    sent = frame_builder.flow_frames(150, seed=1)
    captures = run_setup(testbed, lua, f'setups:lb_config(pe, "{host_if}", "{egress_host}")',
                         lambda: pipe_readers(testbed, host_if, range(4)) + [testbed.reader(egress_ns)],
                         [(ns_if, sent)], len(sent))
    assert_balanced(captures, sent)


@pytest.mark.parametrize("setup, pipes", [("simple_lbconfig", 4), ("lbconfig", 3)])
def test_load_balancing_setups(testbed, lua, setup, pipes):
    host_if, ns_if = testbed.add_input("in")
    sent = frame_builder.flow_frames(150, seed=2)
    count = ", 3" if setup == "lbconfig" else ""
    captures = run_setup(testbed, lua, f'setups.{setup}(pe, "{host_if}"{count})',
                         lambda: pipe_readers(testbed, host_if, range(pipes)), [(ns_if, sent)], len(sent))
    assert not links.interface_exists(f"{host_if}{{{pipes}")
    assert_balanced(captures, sent)


@pytest.mark.parametrize("setup, pipes", [("dup_config", 4), ("dupconfig", 2)])
def test_duplicating_setups(testbed, lua, setup, pipes):
    host_if, ns_if = testbed.add_input("in")
    sent = frame_builder.flow_frames(100, seed=3)
    count = ", 2" if setup == "dupconfig" else ""
    captures = run_setup(testbed, lua, f'setups:{setup}(pe, "{host_if}"{count})',
                         lambda: pipe_readers(testbed, host_if, range(pipes)), [(ns_if, sent)], pipes * len(sent))
    assert_copies(captures, sent)


def test_duplb_config(testbed, lua):
    host_if, ns_if = testbed.add_input("in")
    sent = frame_builder.flow_frames(150, seed=4)
    copy, *shares = run_setup(testbed, lua, f'setups:duplb_config(pe, "{host_if}")',
                              lambda: pipe_readers(testbed, host_if, (1, 2, 3)), [(ns_if, sent)], 2 * len(sent))
    assert not links.interface_exists(f"{host_if}{{0"), "an internal edge needs no pipe"
    assert_copies([copy], sent)
    assert_balanced(shares, sent)


def test_lbmrg_config(testbed, lua):
    host_if, ns_if = testbed.add_input("in")
    sent = frame_builder.flow_frames(150, seed=5)
    captures = run_setup(testbed, lua, f'setups:lbmrg_config(pe, "{host_if}")',
                         lambda: pipe_readers(testbed, host_if, (3,)), [(ns_if, sent)], len(sent))
    assert_copies(captures, sent)


def test_mrg_config(testbed, lua):
    first_host, first_ns = testbed.add_input("a")
    second_host, second_ns = testbed.add_input("b")
    first, second = frame_builder.flow_frames(100, seed=6), frame_builder.flow_frames(100, seed=7)
    captures = run_setup(testbed, lua, f'setups:mrg_config(pe, "{first_host}", "{second_host}")',
                         lambda: pipe_readers(testbed, second_host, range(2, 6)),
                         [(first_ns, first), (second_ns, second)], len(first) + len(second))
    assert_balanced(captures, first + second)


def test_dummy_config(testbed, lua):
    host_if, ns_if = testbed.add_input("in")
    sent = frame_builder.flow_frames(100, seed=8)
    captures = run_setup(testbed, lua, f'setups:dummy_config(pe, "{host_if}")',
                         lambda: pipe_readers(testbed, host_if, (0,)), [(ns_if, sent)], len(sent))
    assert captures[0] == sent


def test_lbfilt_config(testbed, lua):
    """Share 0 goes through a Filter into pipe {4; a drop-everything rule added from Lua empties it, counted."""
    host_if, ns_if = testbed.add_input("in")
    sent = frame_builder.flow_frames(150, seed=15)

    def balancer_outputs():
        return engine_module.PktEngine.retrieve("e0").stats()["bricks"][0]["outputs"]

    call = (f'setups:lbfilt_config(pe, "{host_if}"); '
            f'Filter.retrieve("{host_if}{{4"):drop{{src = "0.0.0.0/0"}}')
    captures = run_setup(testbed, lua, call, lambda: pipe_readers(testbed, host_if, (1, 2, 3, 4)),
                         [(ns_if, sent)], lambda: sum(output["packets"] for output in balancer_outputs()[1:]),
                         engine_packets=len(sent))
    *shares, filtered_pipe = captures
    bricks = engine_module.PktEngine.retrieve("e0").stats()["bricks"]
    filter_stats = next(brick for brick in bricks if brick["kind"] == "Filter")
    assert filtered_pipe == []
    assert filter_stats["received"] == balancer_outputs()[0]["packets"] > 0
    assert filter_stats["filtered"] == filter_stats["received"]
    assert sum(len(share) for share in shares) + filter_stats["filtered"] == len(sent)
    owner = {}
    for index, share in enumerate(shares):
        for frame in share:
            assert owner.setdefault(frame_builder.flow_key(frame), index) == index, "a flow was split"


def test_lbmrgpcap_config(testbed, lua, tmp_path):
    host_if, ns_if = testbed.add_input("in")
    sent = frame_builder.flow_frames(150, seed=9)
    path = tmp_path / "merged.pcap"
    run_setup(testbed, lua, f'setups:lbmrgpcap_config(pe, "{host_if}", "{path}")', lambda: [],
              [(ns_if, sent)], 0, engine_packets=len(sent))
    lua.run("pe:delete()")
    assert sorted(read_file_frames(path)) == sorted(sent)


def test_pcapw_config(testbed, lua, tmp_path):
    host_if, ns_if = testbed.add_input("in")
    sent = frame_builder.flow_frames(200, seed=10)

    def forwarded_to_pipes():
        outputs = engine_module.PktEngine.retrieve("e0").stats()["bricks"][0]["outputs"]
        return outputs[1]["packets"] + outputs[3]["packets"]

    on_pipes = run_setup(testbed, lua, f'setups:pcapw_config(pe, "{host_if}", "{tmp_path}")',
                         lambda: pipe_readers(testbed, host_if, (1, 3)), [(ns_if, sent)], forwarded_to_pipes,
                         engine_packets=len(sent))
    lua.run("pe:delete()")
    in_files = [read_file_frames(tmp_path / name) for name in ("0.pcap", "2.pcap")]
    assert_balanced(on_pipes + in_files, sent)
    assert in_files[0] and in_files[1]


def test_pcapr_config(testbed, lua, tmp_path):
    host_if, _ = testbed.add_input("in")
    sent = frame_builder.flow_frames(150, seed=12)
    frame_builder.write_pcap(tmp_path / "capture.pcap", sent)
    captures = run_setup(testbed, lua, f'setups:pcapr_config(pe, "{host_if}", "{tmp_path}")',
                         lambda: pipe_readers(testbed, host_if, (0,)), [], len(sent))
    assert captures[0] == sent


# ---------------------------------------------------------------- startup scripts

def test_startup_multi_threads_two_engines_share_one_interface(testbed, lua, monkeypatch):
    host_if, ns_if = testbed.add_input("in")
    monkeypatch.chdir(REPOSITORY)
    lua.runtime.execute_file("scripts/startup-multi-threads.lua", [host_if, "2"])
    assert "BRICKS is online.\nBack-end: " in lua.output()
    assert [engine.name for engine in engine_module.engines()] == ["e0", "e1"]
    readers = pipe_readers(testbed, host_if, (0, 1))
    sent = frame_builder.flow_frames(250, seed=13)
    testbed.send(ns_if, sent, pps=SEND_RATE)
    wait_for_total(readers, len(sent))
    lua.run("stop4()")
    shares = [reader.stop() for reader in readers]
    assert_balanced(shares, sent)     # complete, disjoint, flows kept whole
    assert engine_module.engines() == []
    assert not links.interface_exists(f"{host_if}{{0") and not links.interface_exists(f"{host_if}{{1")


def test_startup_one_thread_from_another_directory(testbed, lua, monkeypatch, tmp_path):
    host_if, ns_if = testbed.add_input("in")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRICKS_IFACE", host_if)
    monkeypatch.setenv("BRICKS_EGRESS", "")
    lua.runtime.execute_file(os.path.join(REPOSITORY, "scripts", "startup-one-thread.lua"))
    assert "BRICKS is online.\nBack-end: " in lua.output()
    readers = pipe_readers(testbed, host_if, range(4))
    sent = frame_builder.flow_frames(150, seed=14)
    testbed.send(ns_if, sent, pps=SEND_RATE)
    wait_for_total(readers, len(sent))
    lua.run("stop()")
    assert_balanced([reader.stop() for reader in readers], sent)
    assert engine_module.engines() == []
