"""Port-name parsing (SPEC §2): interfaces, pipe ends, the netmap: prefix and pcap paths."""
import pytest

from bricks.errors import BricksError
from bricks.links import LinkError, PortName, PortNameError, broker_name, consumer_name, parse_port_name
from bricks.ports import PortKind


@pytest.mark.parametrize("text, expected", [
    ("eth3", PortName("eth3", "interface")),
    ("eth3{0", PortName("eth3", "broker", 0)),
    ("eth3}63", PortName("eth3", "consumer", 63)),
    ("netmap:eth3}5", PortName("eth3", "consumer", 5)),
    ("netmap:eth3{12", PortName("eth3", "broker", 12)),
    ("netmap:eth3", PortName("eth3", "interface")),
    ("  enp1s0f1  ", PortName("enp1s0f1", "interface")),
    ("abcdefghijklmno", PortName("abcdefghijklmno", "interface")),
    ("abcdefghijkl{63", PortName("abcdefghijkl", "broker", 63)),
    ("capture.pcap", PortName("capture.pcap", "pcap")),
    ("/var/tmp/in", PortName("/var/tmp/in", "pcap")),
    ("out/dir/", PortName("out/dir/", "pcap")),
])
def test_good_names(text, expected):
    assert parse_port_name(text) == expected


def test_existing_directory_is_pcap(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "traces").mkdir()
    assert parse_port_name("traces") == PortName("traces", "pcap")
    assert parse_port_name("nothere") == PortName("nothere", "interface")


@pytest.mark.parametrize("text, culprit", [
    ("", "empty"),
    ("   ", "empty"),
    ("netmap:", "empty"),
    ("eth3{64", "64"),
    ("eth3}100", "100"),
    ("eth3{", "''"),
    ("eth3{-1", "-1"),
    ("eth3{x", "'x'"),
    ("eth3{01", "'01'"),
    ("eth3{1{2", "eth3{1"),
    ("{3", "no interface"),
    ("}0", "no interface"),
    ("et h0", "'et h0'"),
    ("eth:0", "'eth:0'"),
    ("abcdefghijklmnop", "longer than 15"),
    ("abcdefghijklmn{0", "longer than 15"),
    ("abcdefghijklm}10", "longer than 15"),
])
def test_bad_names_give_one_line_naming_the_culprit(text, culprit):
    with pytest.raises(PortNameError) as caught:
        parse_port_name(text)
    message = str(caught.value)
    assert culprit in message
    assert "\n" not in message


def test_long_pipe_message_names_the_pipe():
    with pytest.raises(LinkError, match=r"^pipe name 'abcdefghijklmn\{0' is longer than 15 characters$"):
        parse_port_name("abcdefghijklmn{0")


def test_errors_are_bricks_errors_and_value_errors():
    with pytest.raises(BricksError):
        parse_port_name("eth3{64")
    with pytest.raises(ValueError):
        parse_port_name("eth3{64")


def test_canonical_name_drops_netmap_prefix():
    assert parse_port_name("netmap:eth3}5").name == "eth3}5"
    assert parse_port_name("netmap:eth3{5").name == "eth3{5"
    assert broker_name("eth3", 7) == "eth3{7" and consumer_name("eth3", 7) == "eth3}7"


@pytest.mark.parametrize("text, expected", [
    ("vxlan:10.0.0.2/42", PortName("10.0.0.2", PortKind.TUNNEL, 42, "vxlan", 4789)),
    ("vxlan:10.0.0.2:8472/42", PortName("10.0.0.2", PortKind.TUNNEL, 42, "vxlan", 8472)),
    ("vxlan:0.0.0.0/42", PortName("0.0.0.0", PortKind.TUNNEL, 42, "vxlan", 4789)),
    ("gretap:10.0.0.2/4294967295", PortName("10.0.0.2", PortKind.TUNNEL, 4294967295, "gretap")),
    ("gretap:10.0.0.2", PortName("10.0.0.2", PortKind.TUNNEL, None, "gretap")),
    ("erspan:192.0.2.1/1023", PortName("192.0.2.1", PortKind.TUNNEL, 1023, "erspan")),
])
def test_tunnel_names_are_tunnels_not_pcap_paths(text, expected):
    port = parse_port_name(text)
    assert port == expected and port.kind != "pcap" and port.name == text


@pytest.mark.parametrize("text, culprit", [
    ("vxlan:10.0.0.2", "VNI ''"),
    ("vxlan:10.0.0.2:70000/4", "UDP port '70000'"),
    ("erspan:10.0.0.2", "session ''"),
    ("gretap:fd00::2/1", "tunnel remotes are IPv4 addresses"),
    ("vxlan:10.0.0.2/16777216", "16777216"),
    ("erspan:10.0.0.2/1024", "1024"),
    ("gretap:host/1", "'host' is not an IP address"),
])
def test_bad_tunnel_names_give_one_line(text, culprit):
    with pytest.raises(PortNameError) as caught:
        parse_port_name(text)
    assert culprit in str(caught.value) and "\n" not in str(caught.value)


def test_live_bricks_take_tunnel_ports_and_each_spelling_has_its_own_short_device():
    from bricks.engine import Brick
    brick = Brick("Dummy").connect_input("vxlan:0.0.0.0/42").connect_output("gretap:10.0.0.2")
    assert [port.kind for port in brick.inputs + brick.outputs] == [PortKind.TUNNEL, PortKind.TUNNEL]
    devices = {parse_port_name(text).device for text in ("vxlan:10.0.0.2/1", "vxlan:10.0.0.2/2",
                                                         "vxlan:10.0.0.2:8472/1", "gretap:10.0.0.2", "erspan:10.0.0.2/1")}
    assert len(devices) == 5 and all(len(device) <= 15 for device in devices)
    with pytest.raises(BricksError, match=r"^PcapWriter cannot write to 'vxlan:10.0.0.2/42' \(a tunnel\)$"):
        Brick("PcapWriter").connect_output("vxlan:10.0.0.2/42")


def test_port_kinds_compare_as_their_names():
    assert PortKind.PCAP == "pcap" and parse_port_name("eth0").kind == "interface"
