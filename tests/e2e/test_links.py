"""Veth pipes, stale-pipe reclaim, offloads and the testbed itself, on real kernel links."""
import os
import socket
import struct
import subprocess
import sys
import time

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.rtnl.ifinfmsg import IFF_MULTICAST, IFF_NOARP, IFF_UP

from bricks import links
from bricks.frames import random_tcp_frames
from bricks.testbed import Reader, send_frames

pytestmark = pytest.mark.root

QUIET_PERIOD = 2.0


def make_frames(count, sizes=(60, 61, 128, 577, 1000, 1514)):
    """Distinct frames of a local experimental EtherType, which no kernel stack answers."""
    frames = []
    for number in range(count):
        size = sizes[number % len(sizes)]
        header = bytes.fromhex("020000000001" "020000000002" "88b5") + struct.pack("!I", number)
        frames.append(header + bytes((number + offset) & 0xFF for offset in range(size - len(header))))
    return frames


def link_of(name):
    with IPRoute() as ipr:
        found = ipr.get_links(ifname=name)
        return found[0]


def ipv6_addresses(name):
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)[0]
        return ipr.get_addr(family=socket.AF_INET6, index=index)


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def set_alias(name, alias):
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], ifalias=alias)


def test_pipe_ends_have_exact_names_are_up_quiet_and_deleted(testbed):
    pair = links.create_pipe(testbed.host_name("p"), 3, 9000)
    try:
        assert (pair.broker, pair.consumer) == (testbed.host_name("p") + "{3", testbed.host_name("p") + "}3")
        for end in (pair.broker, pair.consumer):
            link = link_of(end)
            assert link.get("ifname") == end
            assert link.get("mtu") == 9000
            assert link.get(("linkinfo", "kind")) == "veth"
            assert link["flags"] & (IFF_UP | IFF_NOARP | IFF_MULTICAST) == IFF_UP | IFF_NOARP
            with open(f"/proc/sys/net/ipv6/conf/{end}/disable_ipv6") as setting:
                assert setting.read().strip() == "1"
            assert ipv6_addresses(end) == ()
        with Reader(pair.consumer) as reader:
            time.sleep(QUIET_PERIOD)
            assert reader.read_so_far() == [], "a pipe must not chatter"
            # The reader was really listening: what bricks writes arrives, byte-exact.
            frames = make_frames(3)
            send_frames(pair.broker, frames)
            assert reader.wait_for(3) == frames
    finally:
        pair.delete()
    assert not links.interface_exists(pair.broker)
    assert not links.interface_exists(pair.consumer)
    pair.delete()


def test_pipe_mtu_is_at_least_1500_and_at_most_veth_maximum(testbed):
    small = links.create_pipe(testbed.host_name("s"), 0, 1400)
    large = links.create_pipe(testbed.host_name("l"), 0, 65536)
    assert links.interface_info(small.consumer).mtu == 1500
    assert links.interface_info(large.consumer).mtu == 65535


def test_create_pipe_replaces_a_pipe_of_ours_and_refuses_a_foreign_one(testbed):
    first = links.create_pipe(testbed.host_name("r"), 1, 1500)
    first_index = links.interface_info(first.broker).index
    again = links.create_pipe(testbed.host_name("r"), 1, 1600)
    assert links.interface_info(again.broker).index != first_index
    assert links.interface_info(again.consumer).mtu == 1600

    foreign = testbed.host_name("f") + "{0"
    with IPRoute() as ipr:
        ipr.link("add", ifname=foreign, kind="veth", peer={"ifname": testbed.host_name("f") + "}0"})
    with pytest.raises(links.LinkError, match=r"^.*\{0: exists and was not created by bricks$"):
        links.create_pipe(testbed.host_name("f"), 0, 1500)
    assert links.interface_exists(foreign)


def test_too_long_pipe_name_is_a_one_line_error():
    with pytest.raises(links.LinkError) as caught:
        links.create_pipe("abcdefghijklm", 10, 1500)
    assert str(caught.value) == "pipe name 'abcdefghijklm{10' is longer than 15 characters"
    assert not links.interface_exists("abcdefghijklm}10")


def test_interface_info_of_a_missing_interface():
    with pytest.raises(links.LinkError, match=r"^btnothere: no such interface$"):
        links.interface_info("btnothere")


def test_reclaim_removes_pipes_of_dead_owners_and_keeps_live_ones(testbed):
    live = links.create_pipe(testbed.host_name("a"), 0, 1500)
    dead = links.create_pipe(testbed.host_name("b"), 0, 1500)
    reused = links.create_pipe(testbed.host_name("c"), 0, 1500)
    for end in (dead.broker, dead.consumer):
        set_alias(end, f"bricks pipe pid={dead_pid()} start=1")
    for end in (reused.broker, reused.consumer):    # our pid, another process's start time
        set_alias(end, f"bricks pipe pid={os.getpid()} start=1")

    deleted = links.reclaim_stale_pipes()

    assert {dead.broker, dead.consumer} & set(deleted)
    assert {reused.broker, reused.consumer} & set(deleted)
    for gone in (dead.broker, dead.consumer, reused.broker, reused.consumer):
        assert not links.interface_exists(gone)
    assert links.interface_exists(live.broker) and links.interface_exists(live.consumer)
    assert live.broker not in deleted and live.consumer not in deleted


def ethtool_features(name):
    shown = subprocess.run(["ethtool", "-k", name], capture_output=True, text=True, check=True).stdout
    return dict(line.strip().split(": ", 1) for line in shown.splitlines() if ": " in line)


def test_offloads_disabled_then_restored(testbed):
    host_if, _ = testbed.add_input("o")
    subprocess.run(["ethtool", "-K", host_if, "gro", "on", "gso", "on", "tso", "on"], check=True)
    before = ethtool_features(host_if)
    assert before["generic-receive-offload"].startswith("on")

    token = links.disable_offloads(host_if)
    during = ethtool_features(host_if)
    for feature in ("generic-receive-offload", "generic-segmentation-offload", "tcp-segmentation-offload"):
        assert during[feature].startswith("off"), feature
    assert during["large-receive-offload"].startswith("off")

    links.restore_offloads(token)
    assert ethtool_features(host_if) == before


def test_restore_offloads_after_the_interface_is_gone(testbed):
    pair = links.create_pipe(testbed.host_name("g"), 0, 1500)
    token = links.disable_offloads(pair.broker)
    pair.delete()
    links.restore_offloads(token)


def test_testbed_frames_sent_in_namespace_arrive_byte_exact(testbed):
    host_if, ns_if = testbed.add_input("in")
    frames = make_frames(200)
    reader = testbed.reader(host_if, in_namespace=False)
    testbed.send(ns_if, frames, pps=2000)
    assert reader.wait_for(len(frames)) == frames
    assert reader.stop() == frames


def test_testbed_reader_in_namespace_sees_what_the_host_end_gets(testbed):
    host_if, ns_if = testbed.add_egress("eg")
    frames = make_frames(20)
    reader = testbed.reader(ns_if)
    send_frames(host_if, frames)
    assert reader.wait_for(len(frames)) == frames


def test_rps_mask_spells_cpu_sets_as_sysfs_does():
    assert links.rps_mask([0]) == "00000001"
    assert links.rps_mask([1, 2]) == "00000006"
    assert links.rps_mask([0, 33]) == "00000002,00000001"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a CPU besides the engine's")
def test_steer_receive_sends_the_consumer_end_receive_work_to_the_other_cpus(testbed):
    pair = links.create_pipe(testbed.host_name("r"), 0, 1500)
    engine_cpu = min(os.sched_getaffinity(0))
    try:
        assert links.steer_receive(pair.consumer, engine_cpu) is not None
        with open(f"/sys/class/net/{pair.consumer}/queues/rx-0/rps_cpus") as setting:
            written = int(setting.read().strip().replace(",", ""), 16)
        assert written == sum(1 << cpu for cpu in os.sched_getaffinity(0) - {engine_cpu})
        frames = random_tcp_frames(200, seed=5)    # IP flows: RPS hashes them (it leaves hashless frames alone)
        with Reader(pair.consumer) as reader:
            send_frames(pair.broker, frames)
            assert sorted(reader.wait_for(len(frames))) == sorted(frames), "steered frames all arrive"
    finally:
        pair.delete()
