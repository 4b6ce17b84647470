"""Tunnel ports across two hosts (issue 12 item 4): the host namespace (bricks) and a testbed namespace
(the other machine, a sensor or a mirroring source) joined by a private veth link with a /30 of
198.18.0.0/15 (the benchmarking range) on it, so the tunnels' traffic goes only there.

Outputs: a LoadBalancer sends its two outputs into `vxlan:` ports whose remote is the other namespace;
tcpdump there, on the kernel VXLAN device of each VNI, sees exactly the frames the flow hash gives that
output, byte for byte. Inputs: the other namespace sends into a VXLAN device whose remote is bricks; a
`vxlan:0.0.0.0:PORT/VNI` input gets exactly those frames. And the devices are the registry's: gone when
the tree is unlinked, reclaimed after a SIGKILL, never touched while their owner lives.
"""
import os
import signal
import subprocess
import sys
import time

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.rtnl.ifinfmsg import IFF_NOARP, IFF_UP

from bricks import links
from bricks._native import ffi, lib
from bricks.engine import Brick, PktEngine, shutdown_all
from bricks.errors import BricksError
from bricks.frames import random_tcp_frames, read_pcap
from bricks.ports import parse_port_name
from bricks.testbed import wait_for_total

pytestmark = pytest.mark.root

WAIT = 10.0


def link_with_addresses(testbed):
    """The private link: (host address, namespace address), ARP on so the tunnels' packets find their way."""
    host_if, ns_if = testbed.add_egress("ln")
    base = 4 * (int(testbed.token, 16) % 16384)     # one /30 of 198.18.0.0/16 per testbed
    host_address = f"198.18.{base // 256}.{base % 256 + 1}"
    ns_address = f"198.18.{base // 256}.{base % 256 + 2}"
    for namespace, name, address in ((None, host_if, host_address), (testbed.namespace, ns_if, ns_address)):
        with (IPRoute(netns=namespace) if namespace else IPRoute()) as ipr:
            (index,) = ipr.link_lookup(ifname=name)
            ipr.link("set", index=index, flags=0, change=IFF_NOARP)
            ipr.addr("add", index=index, address=address, prefixlen=30)
    return host_address, ns_address


def namespace_vxlan(testbed, name, vni, port, remote=None):
    """A kernel VXLAN device in the other namespace, as its sensor or mirroring source would make it."""
    settings = {"vxlan_id": vni, "vxlan_port": port, "vxlan_learning": 0}
    if remote:
        settings["vxlan_group"] = remote
    with IPRoute(netns=testbed.namespace) as ipr:
        ipr.link("add", ifname=name, kind="vxlan", **settings)
        (index,) = ipr.link_lookup(ifname=name)
        links.quiet_link(ipr, index)
        ipr.link("set", index=index, flags=IFF_UP, change=IFF_UP)


def device_exists(name):
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def flow_output(frame, outputs):
    flags = ffi.new("uint32_t *")
    return lib.brk_flow_hash(frame, len(frame), 4, 0, ffi.NULL, flags) % outputs


def test_a_load_balancer_feeds_two_vxlan_sensors_on_the_other_host_each_exactly_its_share(testbed):
    host_address, ns_address = link_with_addresses(testbed)
    host_in, ns_in = testbed.add_input("in")
    vnis = [10000 + int(testbed.token, 16) * 2 + number for number in range(2)]
    for number, vni in enumerate(vnis):
        namespace_vxlan(testbed, f"vx{number}", vni, 4789)
    readers = [testbed.reader(f"vx{number}") for number in range(2)]
    outputs = [f"vxlan:{ns_address}/{vni}" for vni in vnis]
    balancer = Brick("LoadBalancer").connect_input(host_in).connect_output(*outputs)
    engine = PktEngine.new("tunnel-out")
    devices = [parse_port_name(name).device for name in outputs]
    try:
        engine.link(balancer)
        assert all(device_exists(device) for device in devices)
        engine.start()
        frames = random_tcp_frames(300, seed=12)
        testbed.send(ns_in, frames)
        assert wait_for_total(readers, len(frames), WAIT) == len(frames)
        time.sleep(0.3)     # nothing more may come
        seen = [reader.stop() for reader in readers]
        counters = balancer.stats()
    finally:
        shutdown_all()
    for number in range(2):
        assert seen[number] == [frame for frame in frames if flow_output(frame, 2) == number]
        assert counters["outputs"][number]["packets"] == len(seen[number])
    assert all(seen)
    assert not any(device_exists(device) for device in devices)    # the registry deleted them with the tree


def test_a_vxlan_input_reads_what_the_other_host_sends_into_its_tunnel(testbed, tmp_path):
    host_address, ns_address = link_with_addresses(testbed)
    vni, port = 20000 + int(testbed.token, 16), 20000 + int(testbed.token, 16) % 40000
    namespace_vxlan(testbed, "vxr", vni, port, remote=host_address)
    name = f"vxlan:0.0.0.0:{port}/{vni}"
    dummy = Brick("Dummy").connect_input(name).connect_output(str(tmp_path / "out.pcap"))
    engine = PktEngine.new("tunnel-in")
    try:
        engine.link(dummy)
        engine.start()
        frames = random_tcp_frames(200, seed=13)
        testbed.send("vxr", frames)
        deadline = time.monotonic() + WAIT
        while dummy.stats()["received"] < len(frames) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        received = dummy.stats()["received"]
    finally:
        shutdown_all()
    written = read_pcap((tmp_path / "out.pcap").read_bytes()).frames
    assert received == len(frames) and written == frames
    assert not device_exists(parse_port_name(name).device)


OWNER = """
import sys, time
from bricks import registry
from bricks.ports import parse_port_name
print(registry.use_tunnel(parse_port_name(sys.argv[1])), flush=True)
time.sleep(60)
"""


def start_owner(name):
    owner = subprocess.Popen([sys.executable, "-c", OWNER, name], stdout=subprocess.PIPE, text=True)
    device = owner.stdout.readline().strip()
    assert device == parse_port_name(name).device
    return owner


def test_tunnel_devices_of_a_living_owner_are_untouched_and_a_killed_ones_are_reclaimed(testbed):
    host_in, _ = testbed.add_input("in")
    name = f"vxlan:198.18.255.2:{30000 + os.getpid() % 20000}/{os.getpid() % 1000000}"
    device = parse_port_name(name).device
    owner = start_owner(name)
    try:
        assert device not in links.reclaim_stale_pipes() and device_exists(device)
        dummy = Brick("Dummy").connect_input(host_in).connect_output(name)
        engine = PktEngine.new("tunnel-owned")
        with pytest.raises(BricksError, match=rf"^{name}: device {device} belongs to bricks pid {owner.pid}, "
                                              r"which is running$"):
            engine.link(dummy)
        assert device_exists(device)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        shutdown_all()
    assert device in links.reclaim_stale_pipes()
    assert not device_exists(device)


def test_a_tunnel_the_kernel_cannot_make_is_a_one_line_error_and_leaves_nothing(testbed):
    host_in, _ = testbed.add_input("in")
    dummy = Brick("Dummy").connect_input(host_in).connect_output("erspan:198.18.255.2/5")
    engine = PktEngine.new("tunnel-refused")
    try:
        with pytest.raises(BricksError) as caught:
            engine.link(dummy)
    finally:
        shutdown_all()
    message = str(caught.value)
    assert message.startswith("erspan:198.18.255.2/5: ") and "\n" not in message
    assert not device_exists(parse_port_name("erspan:198.18.255.2/5").device)


def test_a_remote_shell_builds_tunnel_trees_and_a_killed_daemons_devices_are_reclaimed_by_the_next(paths, testbed):
    from tests.e2e.daemons import alive, wait_until
    host_in, _ = testbed.add_input("in")
    name = f"vxlan:198.18.255.2:{30000 + os.getpid() % 20000}/{os.getpid() % 1000000 + 7}"
    device = parse_port_name(name).device
    pid = paths.start_daemon()
    try:
        built = paths.remote(f'pe = PktEngine.new("tunnels")\n'
                             f'lb = Brick.new("LoadBalancer", 4, {{tunnels = "inner"}})\n'
                             f'lb:connect_input("{host_in}")\n'
                             f's = Brick.new("Strip", {{"vxlan", "gtp"}})\n'
                             f'lb:connect_output("{name}")\n'
                             f'pe:link(lb)\npe:start()\nprint(lb)')
        assert built.returncode == 0, built.stderr
        assert built.stdout.startswith("Brick LoadBalancer(4) {tunnels = inner}") and device_exists(device)
        bad = paths.remote('Brick.new("Dummy"):connect_output("vxlan:198.18.255.2/99999999")')
        assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
        assert "VNI '99999999' is not a number from 0 to 16777215" in bad.stderr
    finally:
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not alive(pid))
    assert device_exists(device)        # a SIGKILL leaves it behind ...
    os.unlink(paths.pid_file)
    paths.start_daemon()                # ... and the next daemon reclaims it
    assert wait_until(lambda: not device_exists(device))
