"""The netmap source and sink, without the kernel module: a memory region laid out as netmap lays it out (netmap_if,
rings, buffers, at the offsets test_netmap_abi derives from netmap's headers) and a stand-in for the kernel that fills
RX slots and advances tail, takes TX slots and gives them back, and checks every ownership rule, while the real C
engine, bricks and back-end forward between them."""
import collections
import errno
import struct
import threading

import pytest

from bricks import frames
from bricks._native import ffi, lib

from tests.native import Graph, brick_stats, opened, output_counters

from .test_netmap_abi import layout

SLOT_SIZE, _, SLOT = layout("struct netmap_slot")
_, _, RING = layout("struct netmap_ring")
_, _, INTERFACE = layout("struct netmap_if")
BUFFER_SIZE = 2048
FIRST_BUFFER = 2                   # netmap never hands out buffers 0 and 1
RING_AREA = 0x4000                 # netmap_if objects below, rings from here
POISON = b"POISON-kernel-owned-slot"
RUN_TIMEOUT = 20.0
BATCH = 8                          # small: the rings wrap many times


class Ring:
    """One ring in the region, seen from the kernel's side: hwcur, the buffer it last saw in each slot."""

    def __init__(self, region, offset, slots, direction):
        self.region, self.offset, self.slots, self.direction = region, offset, slots, direction
        self.hwcur = 0
        self.known = []             # slot -> buffer index the kernel put or last took back there
        self.wraps = 0

    def field(self, name, value=None):
        at = self.offset + RING[name]
        if value is None:
            return struct.unpack_from("<I", self.region.memory, at)[0]
        struct.pack_into("<I", self.region.memory, at, value)

    def slot(self, index):
        return struct.unpack_from("<IHH", self.region.memory, self.offset + RING["slot"] + index * SLOT_SIZE)

    def set_slot(self, index, buffer, length, flags):
        struct.pack_into("<IHH", self.region.memory, self.offset + RING["slot"] + index * SLOT_SIZE,
                         buffer, length, flags)

    def advance(self, index):
        return 0 if index + 1 == self.slots else index + 1

    def walk(self, start, end):
        while start != end:
            yield start
            start = self.advance(start)

    def owned_by_user(self, start, end):
        """Whether end lies in [start, tail]: the user may not move head past tail."""
        return end in set(self.walk(start, self.field("tail"))) | {self.field("tail")}


class Region:
    """One memory allocator: its ports' netmap_if objects, rings and one buffer pool, as a region the C code maps."""

    def __init__(self, buffers, ring_area=0x40000):
        self.pool = RING_AREA + ring_area
        self.size = self.pool + (FIRST_BUFFER + buffers) * BUFFER_SIZE
        self.cdata = ffi.new("uint8_t[]", self.size)
        self.memory = ffi.buffer(self.cdata)
        self.next_interface, self.next_ring = 0x100, RING_AREA
        self.next_buffer, self.last_buffer = FIRST_BUFFER, FIRST_BUFFER + buffers
        self.rings = []

    def buffer_offset(self, index):
        return self.pool + index * BUFFER_SIZE

    def write_buffer(self, index, data):
        self.memory[self.buffer_offset(index):self.buffer_offset(index) + len(data)] = data

    def read_buffer(self, index, length):
        return bytes(self.memory[self.buffer_offset(index):self.buffer_offset(index) + length])

    def new_ring(self, slots, direction, ring_id):
        offset = self.next_ring
        self.next_ring += RING["slot"] + slots * SLOT_SIZE
        self.next_ring = (self.next_ring + 127) // 128 * 128
        assert self.next_ring <= self.pool and self.next_buffer + slots <= self.last_buffer, "region too small"
        ring = Ring(self, offset, slots, direction)
        struct.pack_into("<q", self.memory, offset + RING["buf_ofs"], self.pool - offset)
        struct.pack_into("<IIHH", self.memory, offset + RING["num_slots"], slots, BUFFER_SIZE, ring_id, direction)
        for index in range(slots):
            ring.set_slot(index, self.next_buffer, 0, 0)
            ring.known.append(self.next_buffer)
            if direction == lib.BRK_NETMAP_RX:
                self.write_buffer(self.next_buffer, POISON)
                ring.set_slot(index, self.next_buffer, 60, 0)   # a plausible frame: reading it would forward it
            self.next_buffer += 1
        ring.field("tail", slots - 1 if direction == lib.BRK_NETMAP_TX else 0)
        self.rings.append(ring)
        return ring

    def new_interface(self, name, tx_rings, rx_rings, host_rings):
        """A netmap_if listing NIC TX rings, host TX rings, NIC RX rings, host RX rings, in this order."""
        offset = self.next_interface
        self.next_interface += INTERFACE["ring_ofs"] + 8 * (len(tx_rings) + len(rx_rings) + 2 * host_rings)
        assert self.next_interface <= RING_AREA
        self.memory[offset:offset + len(name)] = name.encode()
        struct.pack_into("<IIIIIII", self.memory, offset + INTERFACE["ni_version"], lib.NETMAP_API, 0,
                         len(tx_rings), len(rx_rings), 0, host_rings, host_rings)
        host_tx = [self.new_ring(4, lib.BRK_NETMAP_TX, len(tx_rings) + k) for k in range(host_rings)]
        host_rx = [self.new_ring(4, lib.BRK_NETMAP_RX, len(rx_rings) + k) for k in range(host_rings)]
        listed = tx_rings + host_tx + rx_rings + host_rx
        struct.pack_into(f"<{len(listed)}q", self.memory, offset + INTERFACE["ring_ofs"],
                         *[ring.offset - offset for ring in listed])
        return offset

    def buffer_owners(self):
        return collections.Counter(ring.slot(index)[0] for ring in self.rings for index in range(ring.slots))

    def check_every_buffer_owned_once(self):
        owners = self.buffer_owners()
        assert sorted(owners) == list(range(FIRST_BUFFER, self.next_buffer))
        assert set(owners.values()) == {1}


class Port:
    """A bound port and the kernel's side of it: frames waiting to be received, frames transmitted."""

    def __init__(self, kernel, region, name, tx_slots=(), rx_slots=(), host_rings=1):
        self.kernel, self.region, self.name = kernel, region, name
        self.tx = [region.new_ring(slots, lib.BRK_NETMAP_TX, k) for k, slots in enumerate(tx_slots)]
        self.rx = [region.new_ring(slots, lib.BRK_NETMAP_RX, k) for k, slots in enumerate(rx_slots)]
        self.interface = region.new_interface(name, self.tx, self.rx, host_rings)
        self.pending = [collections.deque() for _ in self.rx]
        self.transmitted = []          # (data, wire length, buffer index, buffer changed)
        self.received_buffer = {}      # data -> the buffer it was received in
        self.returned_changed = 0      # RX slots given back with a new buffer (NS_BUF_CHANGED)
        self.stalled = False           # a consumer that takes nothing: TX slots never come back
        self.handle = ffi.new_handle(self)

    def binding(self):
        binding = ffi.new("struct brk_netmap_binding *")
        binding.region = self.region.cdata
        binding.region_size = self.region.size
        binding.interface_offset = self.interface
        binding.fd = -1
        binding.first_tx_ring, binding.tx_rings = 0, len(self.tx)
        binding.first_rx_ring, binding.rx_rings = 0, len(self.rx)
        binding.sync = self.kernel.sync_callback
        binding.sync_context = self.handle
        return binding

    def receive(self, frame, ring=0):
        """Queues frame (bytes, or a list of fragments) to arrive on RX ring `ring`."""
        self.pending[ring].append(frame)

    def rxsync(self):
        for ring, pending in zip(self.rx, self.pending):
            head = ring.field("head")
            if ring.field("cur") != head or not ring.owned_by_user(ring.hwcur, head):
                raise AssertionError(f"{self.name}: RX head {head} moved past tail {ring.field('tail')}")
            for index in ring.walk(ring.hwcur, head):
                buffer, _, flags = ring.slot(index)
                if buffer != ring.known[index]:
                    if not flags & lib.NS_BUF_CHANGED:
                        raise AssertionError(f"{self.name}: RX slot {index} got a new buffer without NS_BUF_CHANGED")
                    self.returned_changed += 1
                ring.known[index] = buffer
                self.region.write_buffer(buffer, POISON)
                ring.set_slot(index, buffer, 60, 0)
            ring.wraps += head < ring.hwcur
            ring.hwcur = head
            tail = ring.field("tail")
            while pending and ring.advance(tail) != ring.hwcur:
                fragments = pending[0] if isinstance(pending[0], list) else [pending[0]]
                free = (ring.hwcur - tail - 1) % ring.slots
                if len(fragments) > free:
                    break
                pending.popleft()
                for number, fragment in enumerate(fragments):
                    buffer = ring.slot(tail)[0]
                    self.region.write_buffer(buffer, fragment)
                    more = lib.NS_MOREFRAG if number + 1 < len(fragments) else 0
                    ring.set_slot(tail, buffer, len(fragment), more)
                    self.received_buffer[fragment] = buffer
                    tail = ring.advance(tail)
            ring.field("tail", tail)

    def txsync(self):
        for ring in self.tx:
            head = ring.field("head")
            if ring.field("cur") != head or not ring.owned_by_user(ring.hwcur, head):
                raise AssertionError(f"{self.name}: TX head {head} moved past tail {ring.field('tail')}")
            for index in ring.walk(ring.hwcur, head):
                buffer, length, flags = ring.slot(index)
                changed = buffer != ring.known[index]
                if changed and not flags & lib.NS_BUF_CHANGED:
                    raise AssertionError(f"{self.name}: TX slot {index} got a new buffer without NS_BUF_CHANGED")
                self.transmitted.append((self.region.read_buffer(buffer, length), buffer, changed))
                ring.known[index] = buffer
                ring.set_slot(index, buffer, length, 0)
            ring.wraps += head < ring.hwcur
            ring.hwcur = head
            if not self.stalled:
                ring.field("tail", (head - 1) % ring.slots)

    def drained(self):
        return not any(self.pending) and all(ring.hwcur == ring.field("tail") for ring in self.rx)

    def frames_out(self):
        return [data for data, _, _ in self.transmitted]


class FakeKernel:
    """Plays netmap's part for every port: the sync callback the C code calls instead of NIOCTXSYNC / NIOCRXSYNC."""

    def __init__(self):
        self.ports = []
        self.errors = []
        self.done = threading.Event()
        self.sync_callback = ffi.callback("int(void *, int, int)", self.sync)

    def port(self, region, name, **rings):
        port = Port(self, region, name, **rings)
        self.ports.append(port)
        return port

    def sync(self, context, fd, direction):
        port = ffi.from_handle(context)
        try:
            port.rxsync() if direction == lib.BRK_NETMAP_RX else port.txsync()
        except Exception as error:   # noqa: BLE001 - reported by the test, not lost in a C callback
            self.errors.append(str(error))
            self.done.set()
            return -5
        if all(p.drained() for p in self.ports):
            self.done.set()
        return 0


def udp_frames(count, flows=16):
    """count frames over flows UDP flows; each carries its sequence number, so every frame is distinct."""
    return [frames.pad(frames.udp_frame(f"10.0.{n % flows}.1", "10.1.0.1", 1000 + n % flows, 53,
                                         struct.pack("!I", n) + bytes(8))) for n in range(count)]


def expected_output(frame, outputs):
    flags = ffi.new("uint32_t *")
    return lib.brk_flow_hash(frame, len(frame), 4, 0, ffi.NULL, flags) % outputs


def attach(opener, port):
    return opened(opener, port.binding())


def forward(kernel, graph, source_port, brick, sink_ports):
    """Runs graph's engine over source_port -> brick -> sink_ports until the kernel has every RX slot back;
    returns (packets received, (packets, drops) of each of the first len(sink_ports) outputs of brick)."""
    for port in sink_ports:
        graph.sink(brick, attach(lib.brk_sink_netmap_attach, port))
    graph.source(attach(lib.brk_source_netmap_attach, source_port), brick)
    graph.start()
    try:
        assert kernel.done.wait(RUN_TIMEOUT), "the engine did not drain the RX rings in time"
    finally:
        graph.stop()
    assert kernel.errors == []
    counters = [output_counters(brick, index) for index in range(len(sink_ports))]
    return graph.stats().received_packets, [(output.packets, output.drops) for output in counters]


@pytest.fixture
def kernel():
    return FakeKernel()


def test_load_balancer_swaps_buffers_into_pipes(kernel):
    region = Region(buffers=200)
    nic = kernel.port(region, "eth0", tx_slots=[8], rx_slots=[16, 16, 16])   # RX rings listed after TX + host TX
    pipes = [kernel.port(region, f"eth0{{{k}", tx_slots=[16], host_rings=0) for k in range(4)]
    sent = udp_frames(300, flows=64)
    for number, frame in enumerate(sent):
        nic.receive(frame, ring=(number % 64) % 3)           # a flow stays on one RX ring, as RSS keeps it
    with Graph(batch=BATCH) as graph:
        brick = graph.brick("LoadBalancer", split=4)
        received, counters = forward(kernel, graph, nic, brick, pipes)

    assert received == len(sent)
    for index, pipe in enumerate(pipes):
        wanted = [frame for frame in sent if expected_output(frame, len(pipes)) == index]
        out = pipe.frames_out()
        assert sorted(out) == sorted(wanted)
        for flow in {frame[26:30] for frame in wanted}:       # per flow, in arrival order
            assert [f for f in out if f[26:30] == flow] == [f for f in wanted if f[26:30] == flow]
        assert counters[index] == (len(wanted), 0)
        # Zero copy: each frame left in the very buffer it arrived in, marked NS_BUF_CHANGED.
        assert all(changed for _, _, changed in pipe.transmitted)
        assert all(buffer == nic.received_buffer[data] for data, buffer, _ in pipe.transmitted)
    assert nic.returned_changed == len(sent)
    assert all(ring.wraps >= 5 for ring in nic.rx) and sum(ring.wraps for p in pipes for ring in p.tx) >= 15
    region.check_every_buffer_owned_once()


def test_wrap_around_keeps_order_and_content(kernel):
    region = Region(buffers=32)
    nic = kernel.port(region, "eth1", tx_slots=[4], rx_slots=[4])
    pipe = kernel.port(region, "eth1{0", tx_slots=[4], host_rings=0)
    sent = udp_frames(50)
    for frame in sent:
        nic.receive(frame)
    with Graph(batch=3) as graph:
        brick = graph.brick("Dummy", split=4)
        received, counters = forward(kernel, graph, nic, brick, [pipe])
    assert received == 50 and counters == [(50, 0)]
    assert pipe.frames_out() == sent
    assert nic.rx[0].wraps >= 12 and pipe.tx[0].wraps >= 12
    assert not any(POISON in data for data in pipe.frames_out())   # no slot read past tail
    region.check_every_buffer_owned_once()


def test_full_pipe_drops_and_counts_without_blocking(kernel):
    region = Region(buffers=40)
    nic = kernel.port(region, "eth2", tx_slots=[4], rx_slots=[8])
    pipe = kernel.port(region, "eth2{0", tx_slots=[8], host_rings=0)
    pipe.stalled = True
    sent = udp_frames(30)
    for frame in sent:
        nic.receive(frame)
    with Graph(batch=4) as graph:
        brick = graph.brick("Merge", split=4)
        received, counters = forward(kernel, graph, nic, brick, [pipe])
        stats = brick_stats(brick)
    usable = pipe.tx[0].slots - 1                 # one slot always stays the kernel's
    assert counters == [(usable, len(sent) - usable)]
    assert received == stats.received_packets == len(sent) == sum(counters[0])
    assert pipe.frames_out() == sent[:usable]
    assert nic.returned_changed == usable          # the dropped ones kept their RX buffer
    region.check_every_buffer_owned_once()


def test_duplicator_copies_into_every_pipe(kernel):
    region = Region(buffers=60)
    nic = kernel.port(region, "eth3", tx_slots=[4], rx_slots=[8, 8])
    pipes = [kernel.port(region, f"eth3{{{k}", tx_slots=[8], host_rings=0) for k in range(3)]
    sent = udp_frames(40)
    for number, frame in enumerate(sent):
        nic.receive(frame, ring=number % 2)
    with Graph(batch=BATCH) as graph:
        brick = graph.brick("Duplicator", split=4)
        received, counters = forward(kernel, graph, nic, brick, pipes)
    assert received == 40 and counters == [(40, 0)] * 3
    for pipe in pipes:
        assert sorted(pipe.frames_out()) == sorted(sent)
        assert not any(changed for _, _, changed in pipe.transmitted)
    assert nic.returned_changed == 0
    region.check_every_buffer_owned_once()


def test_internal_edges_and_one_output_duplicators_still_swap(kernel):
    region = Region(buffers=60)
    nic = kernel.port(region, "eth4", tx_slots=[4], rx_slots=[8])
    pipes = [kernel.port(region, f"eth4{{{k}", tx_slots=[8], host_rings=0) for k in range(2)]
    sent = udp_frames(40)
    for frame in sent:
        nic.receive(frame)
    with Graph(batch=BATCH) as graph:
        balancer = graph.brick("LoadBalancer", split=2)
        duplicator = graph.child(balancer, "Duplicator", split=4)   # an internal edge: still one ring per packet
        graph.sink(duplicator, attach(lib.brk_sink_netmap_attach, pipes[0]))
        received, counters = forward(kernel, graph, nic, balancer, pipes[1:])
    assert received == 40
    assert len(pipes[0].transmitted) + len(pipes[1].transmitted) == 40
    assert all(changed for pipe in pipes for _, _, changed in pipe.transmitted)
    region.check_every_buffer_owned_once()


def test_ports_of_different_regions_copy(kernel):
    nic_region, pipe_region = Region(buffers=30), Region(buffers=40)
    nic = kernel.port(nic_region, "eth5", tx_slots=[4], rx_slots=[8])
    pipes = [kernel.port(pipe_region, f"vale0:p{k}", tx_slots=[8], host_rings=0) for k in range(2)]
    sent = udp_frames(60)
    for frame in sent:
        nic.receive(frame)
    with Graph(batch=BATCH) as graph:
        brick = graph.brick("LoadBalancer", split=4)
        received, counters = forward(kernel, graph, nic, brick, pipes)
    assert received == 60 and sum(packets for packets, _ in counters) == 60
    assert sorted(pipes[0].frames_out() + pipes[1].frames_out()) == sorted(sent)
    assert not any(changed for pipe in pipes for _, _, changed in pipe.transmitted)
    nic_region.check_every_buffer_owned_once()
    pipe_region.check_every_buffer_owned_once()


def test_multi_slot_frame_is_copied_as_its_first_buffer(kernel):
    region = Region(buffers=30)
    nic = kernel.port(region, "eth6", tx_slots=[4], rx_slots=[8])
    pipe = kernel.port(region, "eth6{0", tx_slots=[8], host_rings=0)
    single, first, rest = udp_frames(3)[0], b"F" * 100, b"R" * 40
    nic.receive(single)
    nic.receive([first, rest])
    nic.receive(udp_frames(3)[1])
    with Graph(batch=BATCH) as graph:
        brick = graph.brick("Dummy", split=4)
        received, counters = forward(kernel, graph, nic, brick, [pipe])
        output = output_counters(brick)
    assert received == 3 and counters == [(3, 0)]
    assert pipe.frames_out() == [single, first, udp_frames(3)[1]]
    assert [changed for _, _, changed in pipe.transmitted] == [True, False, True]
    assert output.bytes == len(single) + 140 + len(udp_frames(3)[1])   # counted at wire length
    region.check_every_buffer_owned_once()


def test_attach_refuses_a_binding_outside_its_region():
    region = Region(buffers=16)
    kernel = FakeKernel()
    port = kernel.port(region, "eth7", tx_slots=[4], rx_slots=[4])
    binding = port.binding()
    binding.region_size = port.interface + 8
    error = ffi.new("char[]", 256)
    assert lib.brk_source_netmap_attach(binding, error, len(error)) == ffi.NULL
    assert "outside" in ffi.string(error).decode()
    binding = port.binding()
    binding.rx_rings = 0
    assert lib.brk_source_netmap_attach(binding, error, len(error)) == ffi.NULL
    assert ffi.string(error).decode() == "netmap: the port has no RX ring bound"


class FakeNetmap:
    """The netmap module, for the engine: ports opened by name on the kernel's simulated rings, in order."""

    def __init__(self, kernel, region, interface, pipes):
        self.interface = interface
        self.nic = kernel.port(region, interface, tx_slots=[4], rx_slots=[8])
        self.pipes = {f"{interface}{{{k}": kernel.port(region, f"{interface}{{{k}", tx_slots=[8], host_rings=0)
                      for k in range(pipes)}
        self.opened = []         # (source or sink, request name, register mode, ring), in opening order

    def opener(self, what, opener, ports):
        def open_port(port):
            self.opened.append((what, port.request_name, port.register_mode, port.ring))
            return attach(opener, ports[port.request_name])
        return open_port


@pytest.fixture
def fake_netmap(kernel, monkeypatch):
    """The engine on the netmap back-end over simulated rings: interface nmtest0 and its pipes nmtest0{0..1."""
    from bricks import engine, links, netmap, registry

    fake = FakeNetmap(kernel, Region(buffers=80), "nmtest0", pipes=2)
    monkeypatch.setattr(netmap, "available", lambda: True)
    monkeypatch.setattr(netmap, "probe", lambda port, qid=-1: None)
    monkeypatch.setattr(netmap, "open_source", fake.opener("source", lib.brk_source_netmap_attach,
                                                           {fake.interface: fake.nic}))
    monkeypatch.setattr(netmap, "open_sink", fake.opener("sink", lib.brk_sink_netmap_attach, fake.pipes))
    monkeypatch.setattr(links, "interface_exists", lambda name: name == fake.interface)
    monkeypatch.setattr(registry, "quiet_input", lambda interface: None)
    monkeypatch.setattr(registry, "release_input", lambda interface: None)
    monkeypatch.setattr(links, "create_pipe", lambda *args: pytest.fail("a veth was created on netmap"))
    engine.set_backend("auto")
    yield fake
    engine.shutdown_all()
    engine.set_backend("auto")


def test_engine_on_netmap_opens_pipes_by_name_and_creates_no_veth(kernel, fake_netmap):
    from bricks import engine

    sent = udp_frames(50)
    for frame in sent:
        fake_netmap.nic.receive(frame)
    made = engine.PktEngine.new("netmap-fake-kernel")
    try:
        made.link(engine.Brick("LoadBalancer", 4).connect_input("netmap:nmtest0").connect_outputs("nmtest0", 2))
        assert engine.backend_name() == "netmap" and "netmap opens nmtest0" in engine.backend_detail()
        made.start()
        assert kernel.done.wait(RUN_TIMEOUT)
        made.stop()
        stats = made.stats()
    finally:
        made.delete()
    assert kernel.errors == []
    # The input first: a missing one fails before any output port exists (issue 9 item 14).
    assert fake_netmap.opened == [("source", "nmtest0", lib.NR_REG_ALL_NIC, 0),
                                  ("sink", "nmtest0{0", lib.NR_REG_ALL_NIC, 0),
                                  ("sink", "nmtest0{1", lib.NR_REG_ALL_NIC, 0)]
    assert stats["packets"] == 50 and stats["drops"] == 0
    pipes = fake_netmap.pipes
    assert sorted(pipes["nmtest0{0"].frames_out() + pipes["nmtest0{1"].frames_out()) == sorted(sent)
    fake_netmap.nic.region.check_every_buffer_owned_once()


def test_a_mistyped_input_on_netmap_fails_before_any_output_opens(fake_netmap):
    from bricks import engine
    from bricks.errors import BricksError

    engine.set_backend("netmap")
    made = engine.PktEngine.new("netmap-mistyped")
    balancer = engine.Brick("LoadBalancer", 4).connect_input("nmtset0").connect_outputs("nmtest0", 2)
    with pytest.raises(BricksError) as raised:
        made.link(balancer)
    assert str(raised.value) == "nmtset0: no such interface"
    assert fake_netmap.opened == []          # no pipe made into an empty port the input could bind to
    assert made.linked == [] and balancer.handle is None and balancer.engine is None


class RingCountModule:
    """The netmap module's answer to a port-info request, for a port with `rings` ring pairs."""

    def __init__(self, rings):
        self.rings = rings

    def brk_netmap_port_info(self, port, facts, error, error_size):
        facts.rx_rings = facts.tx_rings = self.rings
        return 0


@pytest.mark.parametrize("rings, qid, backend", [
    (1, -1, "netmap"),       # every ring to one engine
    (1, 0, "packet"),        # one engine per queue on a one-queue port: fan-out serves any number
    (1, 1, "packet"),        # qid 1 on a one-queue port: no ring pair 1
    (4, 1, "netmap"),
    (4, 4, "packet"),
])
def test_auto_falls_back_to_packet_when_netmap_cannot_serve_the_qid(monkeypatch, rings, qid, backend):
    from bricks import backends, engine, graph, netmap

    monkeypatch.setattr(netmap, "available", lambda: True)
    monkeypatch.setattr(netmap, "lib", RingCountModule(rings))
    engine.set_backend("auto")
    try:
        tree = engine.Brick("LoadBalancer", 4).connect_input("eth9").connect_outputs("eth9", 2)
        assert backends.select(graph.plan(tree, 1024, qid)).backend.name == backend
        detail = engine.backend_detail()
    finally:
        engine.set_backend("auto")
    if backend == "packet":
        assert detail == (f"auto: {backends.kernel_choice()} (netmap port eth9 has {rings} ring pair{'s' if rings > 1 else ''}, "
                          f"too few for one engine per queue (qid {qid}))")
    else:
        assert detail == "auto: netmap opens eth9"


def test_a_ring_the_port_lacks_is_named_not_blamed_on_an_old_module():
    error = ffi.new("char[]", 256)
    lib.brk_netmap_refusal(b"eth0", lib.NR_REG_ONE_NIC, 1, errno.EINVAL, 1, error, len(error))
    assert ffi.string(error).decode() == ("netmap port eth0 has no ring pair 1 (it has 1, so qid 0..0): link fewer "
                                          "engines per queue, or use --backend packet, which fans out to any number")
    lib.brk_netmap_refusal(b"eth0", lib.NR_REG_ALL_NIC, 0, errno.ENXIO, 1, error, len(error))
    assert ffi.string(error).decode() == "netmap port eth0: No such device or address"
    lib.brk_netmap_refusal(b"eth0", lib.NR_REG_ONE_NIC, 1, errno.EINVAL, 0, error, len(error))   # count unknown
    assert ffi.string(error).decode() == "netmap port eth0: Invalid argument"


@pytest.mark.parametrize("name, qid, request_name, mode, ring", [
    ("eth3", -1, "eth3", "NR_REG_ALL_NIC", 0),
    ("eth3", 2, "eth3", "NR_REG_ONE_NIC", 2),              # qid names one NIC ring pair
    ("eth3{4", -1, "eth3{4", "NR_REG_PIPE_MASTER", 0),
    ("netmap:eth3}4", -1, "eth3}4", "NR_REG_PIPE_SLAVE", 0),
])
def test_bricks_ports_become_netmap_ports(name, qid, request_name, mode, ring):
    from bricks import ports
    from bricks.backends.netmap import netmap_port

    port = netmap_port(ports.parse_port_name(name), qid)
    assert (port.request_name, port.mode, port.ring) == (request_name, getattr(lib, mode), ring)


def test_a_brick_that_moves_data_never_sends_the_buffers_stale_bytes(kernel):
    """The zero-copy rule: TestShift cuts 4 bytes off each packet but keeps its swappable slot (a Strip brick
    that forgot brk_packet_moved); the sink sees that data no longer starts at the slot's buffer and copies."""
    region = Region(buffers=40)
    nic = kernel.port(region, "eth9", tx_slots=[4], rx_slots=[8])
    pipe = kernel.port(region, "eth9{0", tx_slots=[8], host_rings=0)
    sent = udp_frames(30)
    for frame in sent:
        nic.receive(frame)
    with Graph(batch=BATCH) as graph:
        brick = graph.brick("TestShift")
        received, counters = forward(kernel, graph, nic, brick, [pipe])
    assert received == len(sent) and counters == [(len(sent), 0)]
    assert pipe.frames_out() == [frame[4:] for frame in sent]
    assert not any(changed for _, _, changed in pipe.transmitted)   # copied, not swapped
    assert nic.returned_changed == 0
    region.check_every_buffer_owned_once()
