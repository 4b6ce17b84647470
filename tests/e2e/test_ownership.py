"""Kernel objects belong to the bricks process that made them: a second bricks never takes a living one's pipes,
and what a killed one left (pipes, offloads turned off) is reclaimed and restored at the next start."""
import os
import subprocess

import pytest

from bricks import frames as packets
from bricks import links
from tests.e2e.daemons import alive, bricks, wait_until
from tests.e2e.test_links import ethtool_features, set_alias

pytestmark = pytest.mark.root

BALANCE_SCRIPT = """
local interface = arg[1]
pe = PktEngine.new("e0")
lb = Brick.new("LoadBalancer", 4)
lb:connect_input(interface)
lb:connect_outputs(interface, 2)
pe:link(lb)
pe:start()
"""


@pytest.fixture
def balance_script(tmp_path):
    script = tmp_path / "lb.lua"
    script.write_text(BALANCE_SCRIPT)
    return str(script)


def pipe_indexes(interface, count):
    """The kernel's index of every end of pipes 0..count-1: a recreated pipe gets new ones."""
    return [links.interface_info(end).index for number in range(count)
            for end in (links.broker_name(interface, number), links.consumer_name(interface, number))]


def owner_alias(pid, start):
    return f"bricks pipe pid={pid} start={start}"


def test_create_pipe_refuses_a_living_owners_pipe_and_replaces_a_dead_owners(testbed):
    living = subprocess.Popen(["sleep", "60"])
    try:
        held = links.create_pipe(testbed.host_name("h"), 0, 1500)
        for end in (held.broker, held.consumer):
            set_alias(end, owner_alias(living.pid, links._process_start_time(living.pid)))
        with pytest.raises(links.LinkError) as refused:
            links.create_pipe(testbed.host_name("h"), 0, 1500)
        assert str(refused.value) == (f"{held.broker} belongs to bricks pid {living.pid}, which is running: "
                                      f"stop it or choose other pipe numbers")
        assert links.interface_exists(held.broker) and links.interface_exists(held.consumer)
        assert held.broker not in links.reclaim_stale_pipes()
    finally:
        living.kill()
        living.wait()
    first_index = links.interface_info(held.broker).index
    again = links.create_pipe(testbed.host_name("h"), 0, 1500)    # its owner is dead now: replaced
    assert links.interface_info(again.broker).index != first_index


def test_a_second_bricks_leaves_a_running_daemons_pipes_alone(paths, testbed, balance_script):
    host_if, ns_if = testbed.add_input("in")
    pid = paths.start_daemon("-f", balance_script, host_if)
    before = pipe_indexes(host_if, 2)

    second = paths.run("bricks", "-f", balance_script, host_if, stdin="BRICKS.print_status()\n")

    assert second.returncode == 1, second
    assert f"{links.broker_name(host_if, 0)} belongs to bricks pid {pid}, which is running" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert pipe_indexes(host_if, 2) == before, "the daemon's pipes were deleted or recreated"
    readers = [testbed.reader(links.consumer_name(host_if, number), in_namespace=False) for number in range(2)]
    frames = packets.flow_frames(100)
    testbed.send(ns_if, frames, pps=5000)
    assert wait_until(lambda: sum(len(reader.read_so_far()) for reader in readers) >= len(frames))
    assert sorted(frame for reader in readers for frame in reader.stop()) == sorted(frames)
    assert paths.run("bricks-kill-server").returncode == 0
    assert not alive(pid)
    assert not links.interface_exists(links.broker_name(host_if, 0))


SEGMENTATION = ("tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload")


def test_offloads_a_killed_bricks_turned_off_are_restored_at_the_next_start(paths, testbed, balance_script):
    host_if, _ = testbed.add_input("in")
    subprocess.run(["ethtool", "-K", host_if, "gro", "on", "gso", "on", "tso", "on"], check=True)
    before = ethtool_features(host_if)
    assert all(before[feature].startswith("on") for feature in SEGMENTATION), before
    # A local shell whose stdin stays open keeps running after its script.
    victim = subprocess.Popen(bricks("bricks") + ["-f", balance_script, host_if], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=paths.env)
    try:
        assert wait_until(lambda: ethtool_features(host_if)["tcp-segmentation-offload"].startswith("off"))
    finally:
        victim.kill()
        victim.wait(10)
    # (Its pipes are not checked here: any bricks starting elsewhere on this host may reclaim them now.)
    assert all(ethtool_features(host_if)[feature].startswith("off") for feature in SEGMENTATION), \
        "SIGKILL leaves the offloads off"

    again = paths.run("bricks", stdin="")

    assert again.returncode == 0, again.stderr
    assert ethtool_features(host_if) == before
    assert not links.interface_exists(links.broker_name(host_if, 0))
    assert not os.path.exists(os.path.join(paths.run_dir, links.OFFLOAD_RECORDS))


def test_offloads_of_a_living_bricks_stay_off_and_its_record_stays(paths, testbed, balance_script):
    host_if, _ = testbed.add_input("in")
    subprocess.run(["ethtool", "-K", host_if, "gso", "on", "tso", "on"], check=True)
    pid = paths.start_daemon("-f", balance_script, host_if)
    record = os.path.join(paths.run_dir, links.OFFLOAD_RECORDS, host_if)
    assert os.path.exists(record)

    assert paths.run("bricks", stdin="").returncode == 0

    assert ethtool_features(host_if)["tcp-segmentation-offload"].startswith("off")
    assert os.path.exists(record)
    assert paths.run("bricks-kill-server").returncode == 0 and not alive(pid)
    assert ethtool_features(host_if)["tcp-segmentation-offload"].startswith("on")
    assert not os.path.exists(record)
