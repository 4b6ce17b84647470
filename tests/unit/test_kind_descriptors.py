"""Brick kinds are described once in C (config struct, counter names) and once in catalog.py: both agree, and the
counters reach the stats snapshot by the names C gives."""
import pytest

from bricks import catalog, stats
from bricks._native import ffi, lib
from bricks.engine import Brick, PktEngine, shutdown_all
from bricks.frames import pad, udp_frame, write_pcap


@pytest.mark.parametrize("name", sorted(catalog.KINDS))
def test_every_catalog_kind_has_its_c_descriptor_and_config(name):
    kind = lib.brk_brick_kind_find(name.encode())
    assert kind != ffi.NULL
    config_type = lib.brk_brick_kind_config_type(kind)
    assert (config_type != ffi.NULL) == (catalog.KINDS[name].config is not None)
    if config_type != ffi.NULL:   # the fields Python fills are exactly the struct's
        fields = {field for field, _ in ffi.typeof(ffi.string(config_type).decode()).fields}
        kind_descriptor = catalog.KINDS[name]
        assert set(kind_descriptor.config(kind_descriptor.check_argument(None), 0, None)) == fields


def test_counter_names_come_from_c():
    assert stats.kind_counter_names("Filter") == ("filtered", "passed", "expression_rejected", "rule_dropped",
                                                  "rule_allowed")
    assert stats.kind_counter_names("LoadBalancer") == ("malformed", "fragment_fallbacks")
    assert stats.kind_counter_names("Dummy") == ()


def test_a_filters_own_counters_reach_the_snapshot_and_filter_stats(tmp_path):
    frames = [pad(udp_frame("10.0.0.1", "10.0.0.2", 1000 + number, 53)) for number in range(6)]
    write_pcap(tmp_path / "in.pcap", frames)
    reader = Brick("PcapReader").connect_input(str(tmp_path / "in.pcap")).connect_output("cap{0")
    keep = Brick("Filter", "udp src port 1000 or udp src port 1001").connect_input("cap}0")
    keep.connect_output(str(tmp_path / "out.pcap"))
    reader.link(keep)
    engine = PktEngine.new("descriptors")
    try:
        engine.link(reader)
        engine.start()
        assert engine.wait(10)
        filter_snapshot = engine.stats()["bricks"][1]
        assert (filter_snapshot["kind"], filter_snapshot["received"]) == ("Filter", 6)
        assert (filter_snapshot["passed"], filter_snapshot["expression_rejected"], filter_snapshot["filtered"]) == \
            (2, 4, 4)
        assert keep.filter_stats() == {"passed": 2, "expression_rejected": 4, "rule_dropped": 0, "rule_allowed": 0}
    finally:
        shutdown_all()
    assert keep.filter_stats()["passed"] == 0   # not linked: zeros
