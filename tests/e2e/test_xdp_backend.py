"""The XDP back-end through the engine API and Lua, on testbed veths: `--backend xdp` (set_backend) and auto.

The same checks as the packet back-end's suites, in the kernel's fast path: every frame delivered once, byte for
byte (a TCP stream unmerged, fragments following their first), both directions of a flow on one pipe, and each
frame on the very pipe the packet back-end (the C engine) puts it on, by running the same frames through both;
Duplicators complete; chains in one program; trees XDP cannot run fall back to packet and print_status says
why; counters exact with drops by cause (a full pipe); nothing left attached and no pipe left after stop,
delete, SIGTERM or SIGKILL; someone else's program refused in one line, never replaced."""
import collections
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from bricks import engine as engine_module
from bricks import frames as packets
from bricks import links
from bricks.engine import Brick, PktEngine
from bricks.errors import BricksError
from bricks.lua import LuaRuntime
from bricks.testbed import wait_for_total
from bricks.xdp import XdpProgram, XdpTree, attached_program
from tests.e2e.test_engine_e2e import assert_accounted
from tests.e2e.test_xdp_redirect import GRO_HOLD_NS, assert_nothing_attached, set_napi, traffic

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("engines_removed")]

SEND_PPS = 4000
ARRIVAL_TIMEOUT_S = 20
EXIT_TIMEOUT_S = 10


def use_backend(name):
    """No engine exists between runs: each run may choose its back-end (as --backend does)."""
    engine_module.shutdown_all()
    engine_module.set_backend(name)


def consumers(interface, indexes):
    return [links.consumer_name(interface, index) for index in indexes]


def run_tree(testbed, backend, make_tree, ns_if, frames, outputs, copies=1):
    """Links make_tree() on a new engine with back-end `backend`, sends frames, returns (what each output
    `X}i` captured, the engine's stats, the back-end the tree ran on)."""
    use_backend(backend)
    engine = PktEngine.new(f"run-{backend}")
    engine.link(make_tree())
    readers = [testbed.reader(name, in_namespace=False) for name in outputs]
    engine.start()
    testbed.send(ns_if, frames, pps=SEND_PPS)
    assert wait_for_total(readers, copies * len(frames), ARRIVAL_TIMEOUT_S) == copies * len(frames)
    engine.stop()
    captured = [reader.stop() for reader in readers]
    ran_on = engine.linked[0].backend
    stats = engine.stats()
    engine.delete()
    return captured, stats, ran_on


def assert_xdp_accounted(stats, frames):
    assert stats["packets"] == len(frames) and stats["drops"] == 0, stats
    assert_accounted(stats)


@pytest.mark.parametrize("split", [2, 4])
def test_load_balancer_every_frame_once_on_the_packet_backends_pipe(testbed, split):
    host_if, ns_if = testbed.add_input("in")
    frames = traffic()   # both directions of 300 flows, IPv6, QinQ, fragment trains, a TCP stream

    def tree():
        return Brick("LoadBalancer", split).connect_input(host_if).connect_outputs(host_if, 4)

    outputs = consumers(host_if, range(4))
    on_packet, _, packet_backend = run_tree(testbed, "packet", tree, ns_if, frames, outputs)
    on_xdp, stats, xdp_backend = run_tree(testbed, "xdp", tree, ns_if, frames, outputs)
    assert (packet_backend, xdp_backend) == ("packet", "xdp")
    assert collections.Counter(frame for pipe in on_xdp for frame in pipe) == collections.Counter(frames)
    assert [collections.Counter(pipe) for pipe in on_xdp] == [collections.Counter(pipe) for pipe in on_packet]
    two_way = set(packets.flow_frames(300, packets_per_direction=2, seed=50))   # traffic()'s IPv4 flows
    owner = {}
    for index, pipe in enumerate(on_xdp):
        for frame in two_way.intersection(pipe):
            assert owner.setdefault(packets.flow_key(frame), index) == index, "a flow was split"
    assert len(owner) == 300
    assert_xdp_accounted(stats, frames)
    assert [output["packets"] for output in stats["bricks"][0]["outputs"]] == [len(pipe) for pipe in on_xdp]


def test_auto_runs_a_duplicator_in_xdp_and_every_pipe_gets_every_frame(testbed):
    host_if, ns_if = testbed.add_input("in")
    frames = packets.flow_frames(200, 2, seed=61)

    def tree():
        return Brick("Duplicator").connect_input(host_if).connect_outputs(host_if, 3)

    captured, stats, ran_on = run_tree(testbed, "auto", tree, ns_if, frames, consumers(host_if, range(3)), copies=3)
    assert ran_on == "xdp"
    assert [collections.Counter(pipe) for pipe in captured] == [collections.Counter(frames)] * 3
    assert stats["packets"] == len(frames) and stats["drops"] == 0
    assert_accounted(stats)


def test_chains_run_in_one_program_as_the_packet_backend_runs_them(testbed):
    """Dummy -> LoadBalancer(2) -> LoadBalancer(4), internal edges (no veth for them): the same pipes as packet."""
    host_if, ns_if = testbed.add_input("in")
    frames = packets.flow_frames(300, 2, seed=62)

    def tree():
        dummy = Brick("Dummy").connect_input(host_if).connect_output(f"{host_if}{{0")
        first = Brick("LoadBalancer", 2).connect_input(f"{host_if}}}0").connect_output(f"{host_if}{{1",
                                                                                        f"{host_if}{{2")
        second = Brick("LoadBalancer", 4).connect_input(f"{host_if}}}2").connect_output(
            f"{host_if}{{3", f"{host_if}{{4", f"{host_if}{{5")
        first.link(second)
        dummy.link(first)
        return dummy

    outputs = consumers(host_if, (1, 3, 4, 5))
    on_packet, _, _ = run_tree(testbed, "packet", tree, ns_if, frames, outputs)
    on_xdp, stats, ran_on = run_tree(testbed, "xdp", tree, ns_if, frames, outputs)
    assert ran_on == "xdp"
    assert collections.Counter(frame for pipe in on_xdp for frame in pipe) == collections.Counter(frames)
    assert all(on_xdp), "every output got some flows"
    assert [collections.Counter(pipe) for pipe in on_xdp] == [collections.Counter(pipe) for pipe in on_packet]
    assert_xdp_accounted(stats, frames)
    assert [brick["received"] for brick in stats["bricks"]] == \
        [len(frames), len(frames), sum(map(len, on_xdp[1:]))]


def test_a_duplicator_feeding_a_brick_runs_on_packet(testbed):
    host_if, _ = testbed.add_input("in")
    use_backend("xdp")
    engine = PktEngine.new("dupchain")
    duplicator = Brick("Duplicator").connect_input(host_if).connect_output(f"{host_if}{{0", f"{host_if}{{1")
    duplicator.link(Brick("LoadBalancer", 4).connect_input(f"{host_if}}}0").connect_outputs(host_if, 2))
    engine.link(duplicator)
    assert engine_module.backend_lines() == [
        "Engine dupchain: Duplicator tree on packet (xdp: a Duplicator feeding another brick "
        "(XDP broadcasts to interfaces only))"]


def test_a_tree_with_a_pcap_writer_falls_back_to_packet_and_print_status_says_why(testbed, tmp_path):
    host_if, ns_if = testbed.add_input("in")
    written_if, written_ns = testbed.add_input("wr")
    printed = []
    lua = LuaRuntime(output=printed.append)
    lua.execute(textwrap.dedent(f"""
        BRICKS.set_backend("auto")
        xdp_engine = PktEngine.new("fast")
        lb = Brick.new("LoadBalancer", 4)
        lb:connect_input("{host_if}")
        lb:connect_output("{host_if}{{0", "{host_if}{{1")
        xdp_engine:link(lb)
        writer_engine = PktEngine.new("writer")
        w = Brick.new("PcapWriter")
        w:connect_input("{written_if}")
        w:connect_output("{tmp_path}/all.pcap")
        writer_engine:link(w)
        xdp_engine:start()
        writer_engine:start()
        BRICKS.print_status()
    """))
    status = "\n".join(printed)
    assert f"Engine fast: LoadBalancer tree on xdp (attached to {host_if} (native))" in status, status
    assert "Engine writer: PcapWriter tree on packet (xdp: PcapWriter cannot run in XDP)" in status, status
    readers = [testbed.reader(name, in_namespace=False) for name in consumers(host_if, range(2))]
    frames = packets.flow_frames(100, seed=63)
    testbed.send(ns_if, frames, pps=SEND_PPS)
    assert wait_for_total(readers, len(frames), ARRIVAL_TIMEOUT_S) == len(frames)
    testbed.send(written_ns, frames, pps=SEND_PPS)
    writer = engine_module.PktEngine.retrieve("writer")
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    while writer.stats()["packets"] < len(frames) and time.monotonic() < deadline:
        time.sleep(0.05)
    lua.execute('xdp_engine:stop(); writer_engine:stop()')
    assert collections.Counter(frame for reader in readers for frame in reader.stop()) == \
        collections.Counter(frames)
    assert engine_module.PktEngine.retrieve("fast").stats()["packets"] == len(frames)
    assert writer.stats()["packets"] == len(frames)


def test_start_attaches_stop_detaches_delete_and_shutdown_free_the_pipes(testbed):
    host_if, _ = testbed.add_input("in")
    use_backend("xdp")
    engine = PktEngine.new("life")
    engine.link(Brick("LoadBalancer", 4).connect_input(host_if).connect_outputs(host_if, 2))
    ends = [host_if] + consumers(host_if, range(2))
    assert_nothing_attached(ends)          # loaded at link, attached only when started
    for _ in range(2):
        engine.start()
        assert all(attached_program(name) for name in ends)
        engine.stop()
        assert_nothing_attached(ends)
    engine.stop()
    engine.delete()                        # frees the program, removes the pipes
    assert not any(links.interface_exists(links.broker_name(host_if, index)) for index in range(2))
    engine = PktEngine.new("again")
    engine.link(Brick("LoadBalancer", 4).connect_input(host_if).connect_outputs(host_if, 2))
    engine.start()
    engine_module.shutdown_all()           # what exit does: stops, detaches, frees, removes the pipes
    assert_nothing_attached([host_if])
    assert not any(links.interface_exists(links.broker_name(host_if, index)) for index in range(2))


def test_someone_elses_program_makes_start_fail_in_one_line(testbed):
    host_if, _ = testbed.add_input("in")
    use_backend("xdp")
    with XdpProgram(XdpTree("Dummy", [testbed.add_egress("other")[0]])) as other:
        other.attach(host_if)
        owner = attached_program(host_if)
        engine = PktEngine.new("refused")
        engine.link(Brick("LoadBalancer", 4).connect_input(host_if).connect_outputs(host_if, 2))
        with pytest.raises(BricksError) as raised:
            engine.start()
        assert str(raised.value) == (f"engine refused: XDP: {host_if} already runs XDP program {owner}: "
                                     "not replacing it")
        assert not engine.running and attached_program(host_if) == owner
        assert_nothing_attached(consumers(host_if, range(2)))
        engine.delete()
        assert attached_program(host_if) == owner


_ENGINE_PROCESS = r"""
import sys, time
from bricks import engine
from bricks.engine import Brick, PktEngine
engine.install_signal_handlers()
engine.set_backend("xdp")
e = PktEngine.new("child")
e.link(Brick("LoadBalancer", 4).connect_input(sys.argv[1]).connect_outputs(sys.argv[1], 2))
e.start()
print("started", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_an_ended_process_leaves_nothing_attached(testbed, signum):
    """SIGTERM/SIGINT: shut down in order (detached, freed, pipes removed); SIGKILL: the BPF links die with
    the process, and the pipes are reclaimed by the next bricks to create an engine."""
    host_if, _ = testbed.add_input("in")
    ends = [host_if] + consumers(host_if, range(2))
    process = subprocess.Popen([sys.executable, "-c", _ENGINE_PROCESS, host_if], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "started", process.stderr.read()
        assert all(attached_program(name) for name in ends)
        process.send_signal(signum)
        process.wait(EXIT_TIMEOUT_S)
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while attached_program(host_if) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_nothing_attached([host_if])
    if signum == signal.SIGKILL:
        use_backend("xdp")
        PktEngine.new("next")   # the first engine of a process reclaims dead processes' pipes
    assert not any(links.interface_exists(links.broker_name(host_if, index)) for index in range(2))


_FILTER_PROCESS = r"""
import sys
from bricks import engine
from bricks.engine import Brick, PktEngine
engine.set_backend(sys.argv[2])
e = PktEngine.new("child")
f = Brick("Filter").connect_input(sys.argv[1]).connect_output(sys.argv[1] + "{0")
e.link(f)
e.start()
f.drop({"src": "10.0.0.1"})
print("started on", e.linked[0].backend, flush=True)
"""


@pytest.mark.parametrize("backend", ["xdp", "packet"])
def test_a_process_that_ends_with_a_filter_running_exits_cleanly(testbed, backend):
    """The end of the script with an engine still running a Filter with rules: the engines shut down at exit
    before the rule tables go (a table freed first crashed the XDP program's close: exit 139)."""
    host_if, _ = testbed.add_input("in")
    ended = subprocess.run([sys.executable, "-c", _FILTER_PROCESS, host_if, backend], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=EXIT_TIMEOUT_S * 3)
    assert (ended.returncode, ended.stdout, ended.stderr) == (0, f"started on {backend}\n", "")
    assert_nothing_attached([host_if])
    assert not links.interface_exists(links.broker_name(host_if, 0))


def test_a_full_pipe_counts_exactly_what_it_dropped(testbed):
    """A consumer that polls slowly fills its pipe: the frames XDP redirected but the veth could not take are
    the output's `full` drops (subtracted from delivered), and with what arrived they account for every frame."""
    host_if, ns_if = testbed.add_input("in")
    use_backend("xdp")
    engine = PktEngine.new("full")
    engine.link(Brick("Dummy").connect_input(host_if).connect_output(f"{host_if}{{0"))
    consumer = links.consumer_name(host_if, 0)
    set_napi(consumer, gro_flush_timeout=GRO_HOLD_NS, napi_defer_hard_irqs=100)   # a slow consumer
    reader = testbed.reader(consumer, in_namespace=False)
    frames = packets.flow_frames(500, seed=64)
    engine.start()
    testbed.send(ns_if, frames)   # as fast as the sender goes
    time.sleep(1)
    stats = engine.stats()
    output = stats["bricks"][0]["outputs"][0]
    arrived = reader.wait_for(output["packets"], timeout=5)
    engine.stop()
    assert output["full"] > 0 and output["drops"] == output["full"]
    assert len(arrived) == output["packets"] and output["packets"] + output["full"] == len(frames)
    assert stats["packets"] == len(frames) and stats["drops"] == output["full"] == stats["output_full"]
    assert_accounted(stats)
    assert "at full outputs" in engine.stats_text()


def test_a_merge_is_the_program_on_each_input(testbed):
    first_host, first_ns = testbed.add_input("ma")
    second_host, second_ns = testbed.add_input("mb")
    use_backend("xdp")
    engine = PktEngine.new("merge")
    merge = Brick("Merge").connect_input(first_host, second_host).connect_output(f"{first_host}{{0")
    balancer = Brick("LoadBalancer", 4).connect_input(f"{first_host}}}0").connect_output(f"{first_host}{{1",
                                                                                         f"{first_host}{{2")
    merge.link(balancer)
    engine.link(merge)
    readers = [testbed.reader(name, in_namespace=False) for name in consumers(first_host, (1, 2))]
    first, second = packets.flow_frames(150, 2, seed=65), packets.flow_frames(150, 2, seed=66)
    engine.start()
    assert attached_program(first_host) and attached_program(second_host)
    testbed.send(first_ns, first, pps=SEND_PPS)
    testbed.send(second_ns, second, pps=SEND_PPS)
    total = len(first) + len(second)
    assert wait_for_total(readers, total, ARRIVAL_TIMEOUT_S) == total
    engine.stop()
    assert collections.Counter(frame for reader in readers for frame in reader.stop()) == \
        collections.Counter(first + second)
    stats = engine.stats()
    assert [brick["received"] for brick in stats["bricks"]] == [total, total]
    assert stats["packets"] == total and stats["drops"] == 0
    assert_accounted(stats)
    assert_nothing_attached([first_host, second_host])


def test_generic_mode_is_said_and_works(testbed, monkeypatch, caplog):
    """An input without native XDP (forced here on a veth, which has it) runs the program in generic mode:
    one warning, print_status says so, every frame still arrives."""
    original = XdpProgram.attach
    monkeypatch.setattr(XdpProgram, "attach", lambda self, interface, mode="auto": original(self, interface,
                                                                                           "generic"))
    host_if, ns_if = testbed.add_input("in")
    frames = packets.flow_frames(100, seed=67)

    def tree():
        return Brick("LoadBalancer", 4).connect_input(host_if).connect_outputs(host_if, 2)

    use_backend("xdp")
    engine = PktEngine.new("generic")
    engine.link(tree())
    readers = [testbed.reader(name, in_namespace=False) for name in consumers(host_if, range(2))]
    with caplog.at_level("WARNING", logger="bricks"):
        engine.start()
    assert [record.getMessage() for record in caplog.records] == [
        f"engine generic: {host_if} has no native XDP: the program runs in generic mode (slower)"]
    assert engine_module.backend_lines() == [f"Engine generic: LoadBalancer tree on xdp (attached to {host_if} "
                                             "(generic))"]
    testbed.send(ns_if, frames, pps=SEND_PPS)
    assert wait_for_total(readers, len(frames), ARRIVAL_TIMEOUT_S) == len(frames)
    engine.stop()
    assert collections.Counter(frame for reader in readers for frame in reader.stop()) == \
        collections.Counter(frames)
    assert_xdp_accounted(engine.stats(), frames)


def thread_cpu_seconds(native_id):
    """User + system CPU time of one thread of this process."""
    with open(f"/proc/self/task/{native_id}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_engine_thread_of_an_xdp_tree_sleeps_while_frames_flow(testbed):
    """No user-space work per packet: the engine thread sleeps in poll() while the program forwards."""
    host_if, ns_if = testbed.add_input("in")
    use_backend("xdp")
    engine = PktEngine.new("asleep")
    engine.link(Brick("LoadBalancer", 4).connect_input(host_if).connect_outputs(host_if, 2))
    readers = [testbed.reader(name, in_namespace=False) for name in consumers(host_if, range(2))]
    frames = packets.flow_frames(2000, seed=68)
    engine.start()
    before = thread_cpu_seconds(engine.thread.native_id)
    testbed.send(ns_if, frames)
    assert wait_for_total(readers, len(frames), ARRIVAL_TIMEOUT_S) == len(frames)
    used = thread_cpu_seconds(engine.thread.native_id) - before
    engine.stop()
    assert used <= 0.05, f"the engine thread used {used:.2f} s of CPU for {len(frames)} frames it never sees"
    assert engine.stats()["packets"] == len(frames)


def test_an_egress_veth_runs_on_packet_where_xdp_would_lose_frames_uncounted(testbed):
    """A veth whose peer has no NAPI drops redirected frames after the program counted them sent: such a tree
    runs on packet, said so, and every frame arrives at the egress."""
    host_if, ns_if = testbed.add_input("in")
    egress_host, egress_ns = testbed.add_egress("out")
    use_backend("xdp")
    engine = PktEngine.new("egress")
    engine.link(Brick("Dummy").connect_input(host_if).connect_output(egress_host))
    assert engine_module.backend_lines() == [
        f"Engine egress: Dummy tree on packet (xdp: output {egress_host} is a virtual interface: XDP could lose "
        "frames sent there uncounted)"]
    reader = testbed.reader(egress_ns)
    frames = packets.flow_frames(100, seed=69)
    engine.start()
    testbed.send(ns_if, frames, pps=SEND_PPS)
    assert sorted(reader.wait_for(len(frames), timeout=ARRIVAL_TIMEOUT_S)) == sorted(frames)
    engine.stop()


def test_a_deleted_pipe_is_said_and_its_frames_count_as_output_gone(testbed):
    host_if, ns_if = testbed.add_input("in")
    use_backend("xdp")
    engine = PktEngine.new("gone")
    engine.link(Brick("LoadBalancer", 2).connect_input(host_if).connect_outputs(host_if, 2))
    reader = testbed.reader(links.consumer_name(host_if, 0), in_namespace=False)
    engine.start()
    subprocess.run(["ip", "link", "del", links.broker_name(host_if, 1)], check=True)
    frames = packets.flow_frames(200, seed=70)
    testbed.send(ns_if, frames, pps=SEND_PPS)
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    while engine.stats()["packets"] < len(frames) and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = engine.stats()
    kept, lost = stats["bricks"][0]["outputs"]
    assert len(reader.wait_for(kept["packets"], timeout=5)) == kept["packets"] > 0
    assert (lost["packets"], lost["gone"], lost["drops"]) == (0, len(frames) - kept["packets"], lost["gone"])
    assert stats["drops"] == stats["output_gone"] == lost["gone"]
    assert_accounted(stats)
    assert stats["problems"] == [f"Engine gone: output {links.broker_name(host_if, 1)} gone: its frames count as "
                                 "output gone (link the tree again once it is back)"]
    assert f"{lost['gone']} output gone" in engine.stats_text()
    engine.stop()


def test_a_deleted_input_is_said_and_the_program_runs_on_it_again_when_it_returns(testbed, caplog):
    host_if, _ = testbed.add_input("in")
    use_backend("xdp")
    caplog.set_level(logging.INFO, logger="bricks")
    engine = PktEngine.new("noinput")
    engine.link(Brick("Dummy").connect_input(host_if).connect_output(f"{host_if}{{0"))
    engine.start()
    subprocess.run(["ip", "link", "del", host_if], check=True)
    assert engine.stats()["problems"] == [f"Engine noinput: input {host_if} gone: the program left with it "
                                          "(attached again when it returns)"]
    # An interface of the same name returns: the program runs on it again, by itself.
    host_if_again, ns_if_again = testbed.add_input("in")
    assert host_if_again == host_if
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while engine.stats()["problems"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.stats()["problems"] == []
    assert attached_program(host_if) != 0
    reader = testbed.reader(links.consumer_name(host_if, 0), in_namespace=False)
    frames = packets.flow_frames(40, seed=73)
    testbed.send(ns_if_again, frames, pps=SEND_PPS)
    assert sorted(reader.wait_for(len(frames))) == sorted(frames)
    assert caplog.text.count(f"input {host_if} is back: the XDP program runs on it again") == 1, caplog.text
    engine.stop()
    assert attached_program(host_if) == 0
    engine.delete()
    assert not links.interface_exists(links.broker_name(host_if, 0))


def test_the_daemon_says_where_each_tree_runs_counts_them_and_cleans_up_on_sigterm(testbed, paths, tmp_path):
    """bricks-server --backend xdp: its log and print_status name each tree's back-end and why, pe:show_stats
    counts what the program forwarded, and SIGTERM leaves no program attached and no pipe."""
    host_if, ns_if = testbed.add_input("in")
    written_if, _ = testbed.add_input("wr")
    pid = paths.start_daemon("--backend", "xdp")
    setup = paths.remote(textwrap.dedent(f"""
        fast = PktEngine.new("fast")
        lb = Brick.new("LoadBalancer", 4)
        lb:connect_input("{host_if}")
        lb:connect_output("{host_if}{{0", "{host_if}{{1")
        fast:link(lb)
        fast:start()
        writer = PktEngine.new("writer")
        w = Brick.new("PcapWriter")
        w:connect_input("{written_if}")
        w:connect_output("{tmp_path}/all.pcap")
        writer:link(w)
        BRICKS.print_status()
    """))
    assert setup.returncode == 0, setup.stderr
    assert setup.stdout.splitlines()[1:] == [
        "Back-end: xdp (set to xdp)",
        f"Engine fast: LoadBalancer tree on xdp (attached to {host_if} (native))",
        "Engine writer: PcapWriter tree on packet (xdp: PcapWriter cannot run in XDP)"], setup.stdout
    readers = [testbed.reader(name, in_namespace=False) for name in consumers(host_if, range(2))]
    frames = packets.flow_frames(100, seed=71)
    testbed.send(ns_if, frames, pps=SEND_PPS)
    assert wait_for_total(readers, len(frames), ARRIVAL_TIMEOUT_S) == len(frames)
    shown = paths.remote('PktEngine.retrieve("fast"):show_stats()').stdout
    assert shown.startswith(f"Engine fast: {len(frames)} packets, ") and " 0 dropped (" in shown, shown
    with open(paths.log) as log:
        text = log.read()
    assert "engine fast: LoadBalancer tree on xdp (loaded, attached to" in text, text
    assert f"engine fast: LoadBalancer tree attached to {host_if} (native)" in text, text
    assert "engine writer: PcapWriter tree on packet (xdp: PcapWriter cannot run in XDP)" in text, text
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    # The daemon removes its pipes one after the other: wait for all of them (or the deadline), then check.
    while (any(links.interface_exists(links.broker_name(host_if, index)) for index in range(2))
           and time.monotonic() < deadline):
        time.sleep(0.05)
    assert_nothing_attached([host_if])
    assert not any(links.interface_exists(links.broker_name(host_if, index)) for index in range(2))


def test_jumbo_frames_a_duplicator_cannot_broadcast_count_as_too_big(testbed):
    """At MTU 9000 a frame in several buffers cannot be cloned by XDP: the Duplicator drops it, and show_stats
    counts it "too big" on every output, so received = delivered + dropped holds on each."""
    host_if, ns_if = testbed.add_input("in", mtu=9000)
    use_backend("xdp")
    engine = PktEngine.new("jumbo")
    engine.link(Brick("Duplicator").connect_input(host_if).connect_outputs(host_if, 2))
    readers = [testbed.reader(name, in_namespace=False) for name in consumers(host_if, range(2))]
    frames = [packets.tcp_frame(f"10.40.{n}.1", "10.40.0.2", 1000 + n, 443, bytes([n]) * size)
              for n, size in enumerate([8900, 5000, 1400, 60] * 5)]
    small = [frame for frame in frames if len(frame) <= 1500]
    engine.start()
    testbed.send(ns_if, frames, pps=SEND_PPS)
    assert wait_for_total(readers, 2 * len(small), ARRIVAL_TIMEOUT_S) == 2 * len(small)
    time.sleep(0.5)   # time for a wrongly delivered frame to show
    engine.stop()
    assert [collections.Counter(reader.stop()) for reader in readers] == [collections.Counter(small)] * 2
    stats = engine.stats()
    outputs = stats["bricks"][0]["outputs"]
    assert [(output["packets"], output["too_big"], output["drops"]) for output in outputs] == \
        [(len(small), len(frames) - len(small), len(frames) - len(small))] * 2
    assert stats["packets"] == len(frames) and stats["output_too_big"] == 2 * (len(frames) - len(small))
    assert_accounted(stats)
    assert "too big for the output" in engine.stats_text()


def filter_in_lua(host_if, engine_name, expression=None, then=""):
    """A LuaRuntime (auto back-end) in which `f` is a Filter from host_if to its pipe 0 and `pe` its engine,
    after running `then`; returns it and what it printed."""
    use_backend("auto")
    printed = []
    lua = LuaRuntime(output=printed.append)
    argument = f', "{expression}"' if expression else ""
    lua.execute(textwrap.dedent(f"""
        pe = PktEngine.new("{engine_name}")
        f = Brick.new("Filter"{argument})
        f:connect_input("{host_if}")
        f:connect_output("{host_if}{{0")
    """) + textwrap.dedent(then))
    return lua, printed


def test_a_filter_and_its_load_balancer_run_in_one_program_while_rules_change(testbed):
    """Filter -> LoadBalancer(4) in XDP, rules added and removed from Lua while frames flow: every frame that a
    rule did not drop arrives once, on the pipe the packet back-end's C engine chooses, each flow on one pipe;
    received = passed + filtered, and the rules' hits (read from the kernel) add up to the frames filtered."""
    host_if, ns_if = testbed.add_input("in")
    lua, printed = filter_in_lua(host_if, "shunt", then=f"""
        lb = Brick.new("LoadBalancer", 4)
        lb:connect_input("{host_if}}}0")
        lb:connect_output("{host_if}{{1", "{host_if}{{2", "{host_if}{{3", "{host_if}{{4")
        f:link(lb)
        pe:link(f)
        pe:start()
        permanent = f:drop{{src = "10.77.0.0/16"}}
        BRICKS.print_status()
    """)
    status = "\n".join(printed)
    assert f"Engine shunt: Filter tree on xdp (attached to {host_if} (native))" in status, status
    flows = packets.flow_frames(200, packets_per_direction=3, seed=71)
    shunted = [packets.pad(packets.tcp_frame(f"10.77.{n}.1", "10.1.0.9", 1000 + n, 80)) for n in range(40)]
    frames = flows + shunted * 3
    readers = [testbed.reader(name, in_namespace=False) for name in consumers(host_if, (1, 2, 3, 4))]
    changes = []

    def change_rules():   # rules for addresses no frame has: every publication must leave the flows alone
        for round_number in range(60):
            ids = lua.execute(f'return f:drop{{src = "172.31.{round_number}.0/24"}}, '
                              f'f:drop{{dst = "172.30.{round_number}.7", dport = 53, proto = "udp"}}')
            lua.execute(f"f:remove({ids[0]})")
            changes.append(ids)

    changer = threading.Thread(target=change_rules)
    changer.start()
    testbed.send(ns_if, frames, pps=SEND_PPS)
    changer.join(60)
    assert len(changes) == 60
    assert wait_for_total(readers, len(flows), ARRIVAL_TIMEOUT_S) == len(flows)
    time.sleep(0.3)   # anything extra would show up now
    lua.execute("pe:stop()")
    on_xdp = [reader.stop() for reader in readers]
    assert collections.Counter(frame for pipe in on_xdp for frame in pipe) == collections.Counter(flows)
    owner = {}
    for index, pipe in enumerate(on_xdp):
        for frame in pipe:
            assert owner.setdefault(packets.flow_key(frame), index) == index, "a flow was split"
    stats = engine_module.PktEngine.retrieve("shunt").stats()
    filter_stats, balancer_stats = stats["bricks"]
    assert filter_stats["received"] == len(frames) == filter_stats["passed"] + filter_stats["filtered"]
    assert filter_stats["filtered"] == filter_stats["rule_dropped"] == len(shunted) * 3
    assert balancer_stats["received"] == len(flows)
    rules = lua.execute("local total = 0; for _, r in ipairs(f:rules()) do total = total + r.hits end; "
                        "return f:rules()[1].id, f:rules()[1].hits, total")
    assert rules == [1, len(shunted) * 3, len(shunted) * 3]

    use_backend("packet")   # the same frames through the C engine: the same pipes
    engine = PktEngine.new("reference")
    reference_filter = Brick("Filter").connect_input(host_if).connect_output(f"{host_if}{{0")
    reference_filter.drop({"src": "10.77.0.0/16"})
    reference_filter.link(Brick("LoadBalancer", 4).connect_input(f"{host_if}}}0").connect_output(
        *(f"{host_if}{{{index}" for index in (1, 2, 3, 4))))
    engine.link(reference_filter)
    readers = [testbed.reader(name, in_namespace=False) for name in consumers(host_if, (1, 2, 3, 4))]
    engine.start()
    testbed.send(ns_if, frames, pps=SEND_PPS)
    assert wait_for_total(readers, len(flows), ARRIVAL_TIMEOUT_S) == len(flows)
    engine.stop()
    on_packet = [reader.stop() for reader in readers]
    assert [collections.Counter(pipe) for pipe in on_xdp] == [collections.Counter(pipe) for pipe in on_packet]


def test_a_filter_with_an_expression_runs_on_packet_and_print_status_says_why(testbed):
    host_if, _ = testbed.add_input("in")
    _, printed = filter_in_lua(host_if, "expr", "tcp port 80", then="""
        pe:link(f)
        BRICKS.print_status()
    """)
    assert ("Engine expr: Filter tree on packet (xdp: a Filter with a tcpdump expression "
            "(XDP runs a Filter's rules, not libpcap's BPF))") in "\n".join(printed)
