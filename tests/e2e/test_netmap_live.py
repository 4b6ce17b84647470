"""End to end on the netmap back-end (needs the netmap kernel module): bricks reads a veth in generic (emulated)
netmap mode and forwards into netmap pipes; a netmap client, here a second engine with a PcapWriter, reads each
pipe through `netmap:IF}N`, as applications do on this back-end.

Skipped, not failed, without /dev/netmap: that is missing hardware support, not missing privileges, so no `root`
marker (which CI=true turns into a failure when skipped)."""
import os
import time

import pytest

from bricks import engine as engine_module
from bricks import frames as packets
from bricks import netmap
from bricks.engine import Brick, PktEngine
from bricks.testbed import parse_pcap

pytestmark = pytest.mark.skipif(not os.path.exists(netmap.DEVICE) or os.geteuid() != 0,
                                reason="needs the netmap kernel module (/dev/netmap) and root")

SEND_RATE = 20000
ADMODE = os.path.join(netmap.MODULE_PARAMETERS, "admode")
GENERIC_ADAPTER = "2"          # NETMAP_ADMODE_GENERIC: emulated netmap on any driver, veth included


@pytest.fixture(autouse=True)
def netmap_back_end():
    with open(ADMODE) as parameter:
        previous = parameter.read().strip()
    with open(ADMODE, "w") as parameter:
        parameter.write(GENERIC_ADAPTER)
    engine_module.set_backend("netmap")
    netmap.enable_pipes(8)
    try:
        yield
    finally:
        engine_module.shutdown_all()
        engine_module.set_backend("auto")
        with open(ADMODE, "w") as parameter:
            parameter.write(previous)


def read_pipes(host_if, pipes, directory):
    """A netmap client per pipe: an engine whose PcapWriter reads `netmap:IF}N`."""
    readers = []
    for index in range(pipes):
        reader = PktEngine.new(f"netmap-reader-{index}")
        path = os.path.join(directory, f"pipe{index}.pcap")
        reader.link(Brick("PcapWriter").connect_input(f"netmap:{host_if}}}{index}").connect_output(path))
        reader.start()
        readers.append((reader, path))
    return readers


def stop_readers(readers, expected, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sum(reader.stats()["packets"] for reader, _ in readers) < expected:
        time.sleep(0.05)
    captured = []
    for reader, path in readers:
        reader.stop()
        reader.delete()
        with open(path, "rb") as capture:
            captured.append(parse_pcap(capture.read()))
    return captured


def test_backend_is_netmap():
    assert engine_module.backend_name() == "netmap"


def test_pipe_forwarding(testbed, tmp_path):
    host_if, ns_if = testbed.add_input("in")
    forwarder = PktEngine.new("netmap-dummy")
    forwarder.link(Brick("Dummy").connect_input(host_if).connect_output(f"{host_if}{{0"))
    readers = read_pipes(host_if, 1, str(tmp_path))
    forwarder.start()
    frames = packets.flow_frames(200)
    testbed.send(ns_if, frames, pps=SEND_RATE)
    captured = stop_readers(readers, len(frames))
    forwarder.stop()
    stats = forwarder.stats()
    assert captured[0] == frames
    assert stats["packets"] == len(frames) and stats["drops"] == 0


def test_load_balancer_on_a_generic_mode_veth(testbed, tmp_path):
    host_if, ns_if = testbed.add_input("in")
    balancer_engine = PktEngine.new("netmap-lb")
    balancer = Brick("LoadBalancer", 4).connect_input(host_if).connect_outputs(host_if, 4)
    balancer_engine.link(balancer)
    readers = read_pipes(host_if, 4, str(tmp_path))
    balancer_engine.start()
    frames = packets.flow_frames(1000)
    testbed.send(ns_if, frames, pps=SEND_RATE)
    captured = stop_readers(readers, len(frames))
    balancer_engine.stop()
    stats = balancer_engine.stats()
    assert sorted(frame for pipe in captured for frame in pipe) == sorted(frames)
    owner = {}
    for index, pipe in enumerate(captured):
        for frame in pipe:
            assert owner.setdefault(packets.flow_key(frame), index) == index, "a flow was split over two pipes"
    brick = stats["bricks"][0]
    assert brick["received"] == len(frames) == sum(out["packets"] + out["drops"] for out in brick["outputs"])
