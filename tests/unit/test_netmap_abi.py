"""bricks' netmap binding matches netmap's ABI: struct layouts, ioctl numbers and constants are derived here from the
field lists of netmap's sys/net/netmap.h (API 14) and netmap_legacy.h, and compared with what the C build reports.
Also netmap's port-name grammar and the back-end switch."""
import os
import struct
import subprocess
import sys

import pytest

from bricks import backends, engine, netmap
from bricks._native import ffi, lib
from bricks.errors import BricksError

pytestmark = pytest.mark.skipif(struct.calcsize("P") != 8 or not os.uname().sysname == "Linux",
                                reason="the expected layouts below are those of 64-bit Linux")

# C scalar types on 64-bit Linux: (size, alignment).
SCALARS = {"char": (1, 1), "uint8_t": (1, 1), "uint16_t": (2, 2), "uint32_t": (4, 4), "uint64_t": (8, 8),
           "int64_t": (8, 8), "ssize_t": (8, 8), "long": (8, 8)}
CACHE_ALIGN = 128      # NM_CACHE_ALIGN: netmap_ring.sem is __aligned__ to it
IFNAMSIZ = 16
REQ_IFNAMSIZ = 64      # NETMAP_REQ_IFNAMSIZ

# Field lists as the headers declare them: (name, type, array length or None, forced alignment or None).
# An array of length 0 is the flexible member that ends a struct.
HEADER_STRUCTS = {
    "struct timeval": [("tv_sec", "long", None, None), ("tv_usec", "long", None, None)],
    "struct netmap_slot": [("buf_idx", "uint32_t", None, None), ("len", "uint16_t", None, None),
                           ("flags", "uint16_t", None, None), ("ptr", "uint64_t", None, None)],
    "struct netmap_ring": [("buf_ofs", "int64_t", None, None), ("num_slots", "uint32_t", None, None),
                           ("nr_buf_size", "uint32_t", None, None), ("ringid", "uint16_t", None, None),
                           ("dir", "uint16_t", None, None), ("head", "uint32_t", None, None),
                           ("cur", "uint32_t", None, None), ("tail", "uint32_t", None, None),
                           ("flags", "uint32_t", None, None), ("ts", "struct timeval", None, None),
                           ("sem", "uint8_t", 128, CACHE_ALIGN), ("slot", "struct netmap_slot", 0, None)],
    "struct netmap_if": [("ni_name", "char", IFNAMSIZ, None), ("ni_version", "uint32_t", None, None),
                         ("ni_flags", "uint32_t", None, None), ("ni_tx_rings", "uint32_t", None, None),
                         ("ni_rx_rings", "uint32_t", None, None), ("ni_bufs_head", "uint32_t", None, None),
                         ("ni_host_tx_rings", "uint32_t", None, None), ("ni_host_rx_rings", "uint32_t", None, None),
                         ("ni_spare1", "uint32_t", 3, None), ("ring_ofs", "ssize_t", 0, None)],
    "struct nmreq_header": [("nr_version", "uint16_t", None, None), ("nr_reqtype", "uint16_t", None, None),
                            ("nr_reserved", "uint32_t", None, None), ("nr_name", "char", REQ_IFNAMSIZ, None),
                            ("nr_options", "uint64_t", None, None), ("nr_body", "uint64_t", None, None)],
    "struct nmreq_register": [("nr_offset", "uint64_t", None, None), ("nr_memsize", "uint64_t", None, None),
                              ("nr_tx_slots", "uint32_t", None, None), ("nr_rx_slots", "uint32_t", None, None),
                              ("nr_tx_rings", "uint16_t", None, None), ("nr_rx_rings", "uint16_t", None, None),
                              ("nr_host_tx_rings", "uint16_t", None, None),
                              ("nr_host_rx_rings", "uint16_t", None, None),
                              ("nr_mem_id", "uint16_t", None, None), ("nr_ringid", "uint16_t", None, None),
                              ("nr_mode", "uint32_t", None, None), ("nr_extra_bufs", "uint32_t", None, None),
                              ("nr_flags", "uint64_t", None, None)],
    "struct nmreq_port_info_get": [("nr_memsize", "uint64_t", None, None), ("nr_tx_slots", "uint32_t", None, None),
                                   ("nr_rx_slots", "uint32_t", None, None), ("nr_tx_rings", "uint16_t", None, None),
                                   ("nr_rx_rings", "uint16_t", None, None),
                                   ("nr_host_tx_rings", "uint16_t", None, None),
                                   ("nr_host_rx_rings", "uint16_t", None, None),
                                   ("nr_mem_id", "uint16_t", None, None), ("pad", "uint16_t", 3, None)],
    "struct nmreq": [("nr_name", "char", IFNAMSIZ, None), ("nr_version", "uint32_t", None, None),
                     ("nr_offset", "uint32_t", None, None), ("nr_memsize", "uint32_t", None, None),
                     ("nr_tx_slots", "uint32_t", None, None), ("nr_rx_slots", "uint32_t", None, None),
                     ("nr_tx_rings", "uint16_t", None, None), ("nr_rx_rings", "uint16_t", None, None),
                     ("nr_ringid", "uint16_t", None, None), ("nr_cmd", "uint16_t", None, None),
                     ("nr_arg1", "uint16_t", None, None), ("nr_arg2", "uint16_t", None, None),
                     ("nr_arg3", "uint32_t", None, None), ("nr_flags", "uint32_t", None, None),
                     ("spare2", "uint32_t", 1, None)],
}


def _align(value, alignment):
    return (value + alignment - 1) // alignment * alignment


def layout(struct_name):
    """(size, alignment, {field: offset}) by the C rules: each field at its alignment, the size a multiple of the largest."""
    offset, largest, offsets = 0, 1, {}
    for name, type_name, length, forced in HEADER_STRUCTS[struct_name]:
        size, alignment = SCALARS[type_name] if type_name in SCALARS else layout(type_name)[:2]
        alignment = max(alignment, forced or 1)
        offset = _align(offset, alignment)
        offsets[name] = offset
        offset += size * (1 if length is None else length)
        largest = max(largest, alignment)
    return _align(offset, largest), largest, offsets


# Linux's asm-generic/ioctl.h: 8 bits number, 8 bits type, 14 bits size, 2 bits direction (write 1, read 2).
def _ioc(direction, kind, number, size):
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | number


def _io(kind, number):
    return _ioc(0, kind, number, 0)


def _iowr(kind, number, struct_name):
    return _ioc(1 | 2, kind, number, layout(struct_name)[0])


IOCTLS = {
    "NIOCGINFO": _iowr("i", 145, "struct nmreq"),
    "NIOCREGIF": _iowr("i", 146, "struct nmreq"),
    "NIOCTXSYNC": _io("i", 148),
    "NIOCRXSYNC": _io("i", 149),
    "NIOCCTRL": _iowr("i", 151, "struct nmreq_header"),
}


def expected_facts():
    facts = dict(IOCTLS)
    for struct_name in HEADER_STRUCTS:
        if struct_name == "struct timeval":
            continue
        size, _, offsets = layout(struct_name)
        facts[f"sizeof({struct_name})"] = size
        for field, offset in offsets.items():
            facts[f"offsetof({struct_name}, {field})"] = offset
    return facts


def reported_facts():
    facts, index = {}, 0
    while (name := lib.brk_netmap_abi_fact_name(index)) != ffi.NULL:
        facts[ffi.string(name).decode()] = lib.brk_netmap_abi_fact_value(index)
        index += 1
    return facts


def test_the_header_facts_give_netmaps_well_known_sizes():
    # Cross-checks of the derivation itself (netmap's documentation of these sizes).
    assert layout("struct netmap_slot")[0] == 16
    assert layout("struct netmap_ring")[2]["slot"] == 256        # slots start after the cache-aligned sem
    assert layout("struct netmap_if")[2]["ring_ofs"] == 56
    assert IOCTLS["NIOCCTRL"] == 0xC0586997


@pytest.mark.parametrize("name, value", sorted(reported_facts().items()))
def test_c_layout_matches_netmap_abi(name, value):
    assert value == expected_facts()[name]


def test_every_struct_and_ioctl_is_reported():
    # Padding and spares aside, every field of every declared struct, and every ioctl.
    unused = {name for name in expected_facts() if name.endswith((" pad)", " spare2)"))}
    assert set(reported_facts()) == set(expected_facts()) - unused


@pytest.mark.parametrize("name, value", [
    ("NS_BUF_CHANGED", 0x0001), ("NS_REPORT", 0x0002), ("NS_FORWARD", 0x0004), ("NS_NO_LEARN", 0x0008),
    ("NS_INDIRECT", 0x0010), ("NS_MOREFRAG", 0x0020),
    ("NR_TIMESTAMP", 0x0002), ("NR_FORWARD", 0x0004), ("NI_PRIV_MEM", 0x1),
    ("NR_REG_DEFAULT", 0), ("NR_REG_ALL_NIC", 1), ("NR_REG_SW", 2), ("NR_REG_NIC_SW", 3), ("NR_REG_ONE_NIC", 4),
    ("NR_REG_PIPE_MASTER", 5), ("NR_REG_PIPE_SLAVE", 6), ("NR_REG_NULL", 7), ("NR_REG_ONE_SW", 8),
    ("NR_MONITOR_TX", 0x100), ("NR_MONITOR_RX", 0x200), ("NR_ZCOPY_MON", 0x400), ("NR_EXCLUSIVE", 0x800),
    ("NR_RX_RINGS_ONLY", 0x2000), ("NR_TX_RINGS_ONLY", 0x4000), ("NR_ACCEPT_VNET_HDR", 0x8000),
    ("NR_DO_RX_POLL", 0x10000), ("NR_NO_TX_POLL", 0x20000),
    ("NETMAP_REQ_REGISTER", 1), ("NETMAP_REQ_PORT_INFO_GET", 2), ("NETMAP_API", 14),
])
def test_constants_match_netmap_headers(name, value):
    assert getattr(lib, name) == value


# ---------------------------------------------------------------- port names

@pytest.mark.parametrize("text, port, mode, ring, pipe, request_name", [
    ("netmap:eth3", "eth3", "NR_REG_ALL_NIC", 0, None, "eth3"),
    ("eth3", "eth3", "NR_REG_ALL_NIC", 0, None, "eth3"),
    ("netmap:eth3-2", "eth3", "NR_REG_ONE_NIC", 2, None, "eth3"),
    ("eth3^", "eth3", "NR_REG_SW", 0, None, "eth3"),
    ("eth3^1", "eth3", "NR_REG_ONE_SW", 1, None, "eth3"),
    ("eth3+", "eth3", "NR_REG_NIC_SW", 0, None, "eth3"),
    ("eth3*", "eth3", "NR_REG_NIC_SW", 0, None, "eth3"),
    ("netmap:eth3{5", "eth3", "NR_REG_PIPE_MASTER", 0, 5, "eth3{5"),
    ("eth3}12", "eth3", "NR_REG_PIPE_SLAVE", 0, 12, "eth3}12"),
    ("vale0:p", "vale0:p", "NR_REG_ALL_NIC", 0, None, "vale0:p"),
    ("netmap:vale1:port-1", "vale1:port", "NR_REG_ONE_NIC", 1, None, "vale1:port"),
    ("br-lan", "br-lan", "NR_REG_ALL_NIC", 0, None, "br-lan"),
])
def test_port_name_grammar(text, port, mode, ring, pipe, request_name):
    parsed = netmap.parse_port(text)
    assert (parsed.port, parsed.mode, parsed.ring, parsed.pipe) == (port, getattr(lib, mode), ring, pipe)
    assert parsed.request_name == request_name
    # API 14 binds a pipe by its name, with every ring of the pipe port.
    assert parsed.register_mode == (lib.NR_REG_ALL_NIC if pipe is not None else getattr(lib, mode))


@pytest.mark.parametrize("text", ["", "netmap:", "eth3{", "eth3}x", "eth3-", "{1", "eth 3", "a:b", "eth3+2",
                                  "x" * 64])
def test_bad_port_names_are_refused(text):
    with pytest.raises(netmap.NetmapPortError):
        netmap.parse_port(text)


# ---------------------------------------------------------------- the back-end switch

@pytest.fixture
def backend_restored():
    yield
    engine.set_backend("auto")


@pytest.mark.skipif(os.path.exists(netmap.DEVICE), reason="netmap is loaded here")
def test_netmap_without_the_module_fails_in_one_line(backend_restored):
    engine.set_backend("auto")      # the tests run on packet (conftest): a refused choice leaves auto here
    with pytest.raises(BricksError) as raised:
        engine.set_backend("netmap")
    message = str(raised.value)
    assert "\n" not in message and "/dev/netmap not found" in message and "INSTALL.md" in message
    assert engine.backend_name() == ("packet" if backends.xdp.kernel_reason() else "xdp")
    assert "not found" in engine.backend_detail()


@pytest.mark.skipif(os.path.exists(netmap.DEVICE), reason="netmap is loaded here")
def test_opening_a_port_without_the_module_names_the_device():
    error = ffi.new("char[]", 256)
    assert lib.brk_source_netmap_open(b"eth0", lib.NR_REG_ALL_NIC, 0, error, len(error)) == ffi.NULL
    assert ffi.string(error).decode() == "netmap port eth0: /dev/netmap: No such file or directory"
    assert lib.brk_sink_netmap_open(b"eth0{1", lib.NR_REG_ALL_NIC, 0, error, len(error)) == ffi.NULL
    assert netmap.probe("eth0") == netmap.MISSING


def test_backend_is_chosen_before_engines_exist(backend_restored):
    engine.set_backend("packet")
    assert engine.backend_name() == "packet"
    with pytest.raises(BricksError, match="unknown back-end"):
        engine.set_backend("dpdk")
    made = engine.PktEngine.new("netmap-abi-switch")
    try:
        with pytest.raises(BricksError, match="before the first engine"):
            engine.set_backend("auto")
        engine.set_backend("packet")     # the same choice again changes nothing
    finally:
        made.delete()


def test_tests_and_the_commands_they_start_run_on_packet_even_where_netmap_is_loaded(monkeypatch):
    monkeypatch.setattr(netmap, "available", lambda: True)      # as on a machine with /dev/netmap
    assert engine.backend_name() == "packet"                    # conftest's pin, not auto's pick
    assert os.environ[engine.BACKEND_ENVIRONMENT] == "packet"
    module = subprocess.run([sys.executable, "-c", "from bricks import engine\n"
                             "print(engine.backend_name(), engine.backend_detail())"],
                            capture_output=True, text=True, timeout=60)
    assert module.stdout == "packet set to packet by BRICKS_BACKEND\n"
    command = subprocess.run([sys.executable, "-m", "bricks"], input="BRICKS.print_status()\n",
                             capture_output=True, text=True, timeout=60)
    assert "Back-end: packet (set to packet)" in command.stdout.splitlines()   # chosen, not auto's pick
