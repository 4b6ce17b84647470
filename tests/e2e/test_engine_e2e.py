"""End to end: real packets through real veths, bricks in between, tcpdump at every pipe.

Each test sends frames from inside a private namespace into the host end of a
veth pair that bricks reads, and checks what each consumer captured: every
packet accounted for (received = delivered + dropped), each flow (both
directions) on exactly one output, nothing left behind.
"""
import signal
import subprocess
import sys
import textwrap

import pytest

from bricks import engine as engine_module
from bricks import links
from bricks.engine import Brick, PktEngine
from bricks.testbed import wait_for_total
from bricks import frames as packets

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("engines_removed")]

SEND_RATE = 20000


def assert_accounted(stats):
    """received = delivered + dropped + still queued in an output's ring, for every brick and every output."""
    for brick in stats["bricks"]:
        offered = [output["packets"] + output["drops"] + output["queued"] for output in brick["outputs"]]
        if brick["kind"] == "Duplicator":
            assert offered == [brick["received"]] * len(offered), brick
        else:
            assert sum(offered) == brick["received"], brick


def run_to_pipes(testbed, brick, pipes, frames, engine_name):
    """Links brick (not connected yet) from a new testbed input to its pipes 0..pipes-1 on a new engine, sends
    frames into the input and waits for them; returns (the stopped engine, what each pipe captured)."""
    host_if, ns_if = testbed.add_input("in")
    engine = PktEngine.new(engine_name)
    engine.link(brick.connect_input(host_if).connect_outputs(host_if, pipes))
    readers = [testbed.reader(links.consumer_name(host_if, index), in_namespace=False) for index in range(pipes)]
    engine.start()
    testbed.send(ns_if, frames, pps=SEND_RATE)
    wait_for_total(readers, len(frames))
    engine.stop()
    return engine, [reader.stop() for reader in readers]


def balance(testbed, split, pipes, frames):
    return run_to_pipes(testbed, Brick("LoadBalancer", split), pipes, frames, f"lb{split}")


@pytest.mark.parametrize("split", [2, 4])
def test_load_balancer_every_packet_once_flows_together(testbed, split):
    frames = packets.flow_frames(1000)
    engine, captured = balance(testbed, split, 4, frames)
    stats = engine.stats()
    assert sorted(frame for pipe in captured for frame in pipe) == sorted(frames)
    assert stats["packets"] == len(frames) and stats["drops"] == 0
    assert_accounted(stats)
    owner = {}
    for index, pipe in enumerate(captured):
        for frame in pipe:
            assert owner.setdefault(packets.flow_key(frame), index) == index, "a flow was split over two pipes"
    per_pipe = [sum(1 for pipe in owner.values() if pipe == index) for index in range(4)]
    assert all(187 <= count <= 313 for count in per_pipe), per_pipe   # 1000 flows, 250 each within 25%


def test_duplicator_gives_every_pipe_every_packet(testbed):
    host_if, ns_if = testbed.add_input("in")
    engine = PktEngine.new("dup")
    duplicator = Brick("Duplicator").connect_input(host_if).connect_outputs(host_if, 3)
    engine.link(duplicator)
    readers = [testbed.reader(links.consumer_name(host_if, index), in_namespace=False) for index in range(3)]
    frames = packets.flow_frames(200, 2)
    engine.start()
    testbed.send(ns_if, frames, pps=SEND_RATE)
    wait_for_total(readers, 3 * len(frames))
    engine.stop()
    for reader in readers:
        assert reader.stop() == frames or sorted(reader.frames) == sorted(frames)
    assert_accounted(engine.stats())


def test_merge_two_inputs_one_output(testbed):
    first_host, first_ns = testbed.add_input("a")
    second_host, second_ns = testbed.add_input("b")
    engine = PktEngine.new("merge")
    merge = Brick("Merge").connect_input(first_host, second_host).connect_output(f"{first_host}{{0")
    engine.link(merge)
    reader = testbed.reader(links.consumer_name(first_host, 0), in_namespace=False)
    first, second = packets.flow_frames(150, 2, seed=2), packets.flow_frames(150, 2, seed=3)
    engine.start()
    testbed.send(first_ns, first, pps=SEND_RATE)
    testbed.send(second_ns, second, pps=SEND_RATE)
    got = reader.wait_for(len(first) + len(second))
    engine.stop()
    assert sorted(got) == sorted(first + second)
    stats = engine.stats()
    assert stats["packets"] == len(first) + len(second)
    assert_accounted(stats)


def test_duplicator_to_load_balancer_is_an_internal_edge(testbed):
    host_if, ns_if = testbed.add_input("in")
    engine = PktEngine.new("chain")
    duplicator = Brick("Duplicator").connect_input(host_if).connect_output(f"{host_if}{{0", f"{host_if}{{1")
    balancer = Brick("LoadBalancer", 4).connect_input(f"{host_if}}}0").connect_output(
        f"{host_if}{{2", f"{host_if}{{3")
    duplicator.link(balancer)
    engine.link(duplicator)
    assert not links.interface_exists(f"{host_if}{{0"), "an internal edge must not create a veth"
    assert links.interface_exists(f"{host_if}{{1") and links.interface_exists(f"{host_if}{{3")
    readers = {index: testbed.reader(links.consumer_name(host_if, index), in_namespace=False)
               for index in (1, 2, 3)}
    frames = packets.flow_frames(300, 2)
    engine.start()
    testbed.send(ns_if, frames, pps=SEND_RATE)
    wait_for_total(list(readers.values()), 2 * len(frames))
    engine.stop()
    captured = {index: reader.stop() for index, reader in readers.items()}
    assert sorted(captured[1]) == sorted(frames)
    assert sorted(captured[2] + captured[3]) == sorted(frames)
    assert captured[2] and captured[3]
    keys2 = {packets.flow_key(frame) for frame in captured[2]}
    assert not keys2 & {packets.flow_key(frame) for frame in captured[3]}
    assert_accounted(engine.stats())


def test_egress_to_a_real_interface(testbed):
    host_if, ns_if = testbed.add_input("in")
    egress_host, egress_ns = testbed.add_egress("out")
    engine = PktEngine.new("egress")
    balancer = Brick("LoadBalancer", 4).connect_input(host_if).connect_output(f"{host_if}{{0", egress_host)
    engine.link(balancer)
    pipe_reader = testbed.reader(links.consumer_name(host_if, 0), in_namespace=False)
    egress_reader = testbed.reader(egress_ns)
    frames = packets.flow_frames(300, 2)
    engine.start()
    testbed.send(ns_if, frames, pps=SEND_RATE)
    wait_for_total([pipe_reader, egress_reader], len(frames))
    engine.stop()
    on_pipe, on_egress = pipe_reader.stop(), egress_reader.stop()
    assert on_pipe and on_egress
    assert sorted(on_pipe + on_egress) == sorted(frames)
    assert_accounted(engine.stats())


def test_two_engines_with_qids_share_one_interface(testbed):
    host_if, ns_if = testbed.add_input("in")
    engines = []
    for qid in (0, 1):
        engine = PktEngine.new(f"q{qid}", 512, qid)
        engine.link(Brick("Dummy").connect_input(host_if).connect_output(f"{host_if}{{{qid}"), 256, qid)
        engines.append(engine)
    readers = [testbed.reader(links.consumer_name(host_if, qid), in_namespace=False) for qid in (0, 1)]
    for engine in engines:
        engine.start()
    frames = packets.flow_frames(500)
    testbed.send(ns_if, frames, pps=SEND_RATE)
    wait_for_total(readers, len(frames))
    for engine in engines:
        engine.stop()
    shares = [reader.stop() for reader in readers]
    assert shares[0] and shares[1]
    assert sorted(shares[0] + shares[1]) == sorted(frames)   # complete, and disjoint (no frame twice)
    keys = [{packets.flow_key(frame) for frame in share} for share in shares]
    assert not keys[0] & keys[1], "a flow reached both engines"
    assert sum(engine.stats()["packets"] for engine in engines) == len(frames)


def test_truncated_and_malformed_frames_are_counted_and_forwarded(testbed):
    good = packets.flow_frames(50, 2)
    tcp = packets.tcp_frame("10.0.0.1", "10.0.0.2", 1000, 80)
    ip6 = packets.tcp_frame("2001:db8::1", "2001:db8::2", 1000, 80)
    malformed = [tcp[:14 + 10], tcp[:14 + 20 + 2], ip6[:14 + 30], ip6[:14 + 40 + 3],
                 tcp[:14] + b"\x4f" + tcp[15:],               # header length beyond the frame
                 packets.ether(b"\x45\x00", packets.ETHERTYPE_IPV4,    # IPv4 cut behind a VLAN tag
                               vlans=[(packets.ETHERTYPE_VLAN, 7)]),
                 packets.ether(b"", packets.ETHERTYPE_IPV4)]
    host_if, ns_if = testbed.add_input("in")
    engine = PktEngine.new("odd")
    engine.link(Brick("LoadBalancer", 4).connect_input(host_if).connect_outputs(host_if, 2))
    readers = [testbed.reader(links.consumer_name(host_if, index), in_namespace=False) for index in range(2)]
    engine.start()
    testbed.send(ns_if, good + malformed * 3, pps=SEND_RATE)
    wait_for_total(readers, len(good) + 3 * len(malformed))
    engine.stop()
    captured = [frame for reader in readers for frame in reader.stop()]
    assert sorted(captured) == sorted(good + malformed * 3)
    stats = engine.stats()
    assert stats["bricks"][0]["malformed"] == 3 * len(malformed)
    assert_accounted(stats)


def test_link_while_running_is_refused_and_delete_removes_pipes(testbed):
    host_if, _ = testbed.add_input("in")
    engine = PktEngine.new("life")
    engine.link(Brick("Duplicator").connect_input(host_if).connect_outputs(host_if, 2))
    assert links.interface_exists(f"{host_if}{{1") and links.interface_exists(f"{host_if}}}1")
    engine.start()
    with pytest.raises(engine_module.BricksError) as error:
        engine.link(Brick("Dummy").connect_input(host_if).connect_output(f"{host_if}{{5"))
    assert "running" in str(error.value)
    with pytest.raises(engine_module.BricksError):
        engine.delete()
    engine.stop()
    engine.delete()
    for index in (0, 1):
        assert not links.interface_exists(f"{host_if}{{{index}")
        assert not links.interface_exists(f"{host_if}}}{index}")


DAEMON = textwrap.dedent("""
    import sys, time
    from bricks.engine import Brick, PktEngine, install_signal_handlers
    install_signal_handlers()
    engine = PktEngine.new("victim")
    engine.link(Brick("LoadBalancer").connect_input(sys.argv[1]).connect_outputs(sys.argv[1], 3))
    engine.start()
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")


def start_victim(interface):
    process = subprocess.Popen([sys.executable, "-c", DAEMON, interface], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_pipes_removed_on_signal(testbed, signal_number):
    host_if, _ = testbed.add_input("in")
    process = start_victim(host_if)
    assert links.interface_exists(f"{host_if}{{2")
    process.send_signal(signal_number)
    assert process.wait(10) == 128 + signal_number
    assert not any(links.interface_exists(f"{host_if}{{{index}") for index in range(3))
    assert not any(links.interface_exists(f"{host_if}}}{index}") for index in range(3))


def test_pipes_of_a_killed_run_are_reclaimed(testbed):
    host_if, _ = testbed.add_input("in")
    process = start_victim(host_if)
    process.kill()
    process.wait(10)
    assert links.interface_exists(f"{host_if}{{0"), "SIGKILL leaves the pipes behind"
    assert engine_module.engines() == []
    PktEngine.new("next")    # the first engine of a run reclaims what dead runs left
    for index in range(3):
        assert not links.interface_exists(f"{host_if}{{{index}")
        assert not links.interface_exists(f"{host_if}}}{index}")


def test_dead_and_stalled_consumers_do_not_stall_the_other_outputs(testbed):
    host_if, ns_if = testbed.add_input("in")
    engine = PktEngine.new("dead", 64)
    engine.link(Brick("Duplicator").connect_input(host_if).connect_outputs(host_if, 3))
    live = testbed.reader(links.consumer_name(host_if, 0), in_namespace=False)
    stalled = testbed.reader(links.consumer_name(host_if, 2), in_namespace=False)
    stalled.process.send_signal(signal.SIGSTOP)
    subprocess.run(["ip", "link", "set", links.consumer_name(host_if, 1), "down"], check=True)
    frames = packets.flow_frames(500)
    try:
        engine.start()
        testbed.send(ns_if, frames, pps=SEND_RATE)
        got = live.wait_for(len(frames))
        engine.stop()
    finally:
        stalled.process.send_signal(signal.SIGCONT)
    assert sorted(got) == sorted(frames)
    stats = engine.stats()
    assert stats["packets"] == len(frames)
    assert_accounted(stats)
    dead_output = stats["bricks"][0]["outputs"][1]
    assert dead_output["drops"] >= len(frames) - 64, dead_output   # at most one ring of 64 slots queued
    assert stats["bricks"][0]["outputs"][0]["drops"] == 0
