"""`bricks split`: by flow as the live LoadBalancer, copies, filters; byte-exact records; progress only on a terminal."""
import os
import pty
import random
import select
import subprocess
import sys
import time

import pytest

from bricks import split as splitting
from bricks._native import lib
from bricks.engine import FRAGMENT_TABLE_SLOTS, PktEngine
from bricks.errors import BricksError
from bricks.frames import pcap_bytes, random_tcp_frames, read_pcap, udp_frame
from tests.native import Graph, memory_source, opened

RUN_TIMEOUT_S = 30
BRICKS = [sys.executable, "-m", "bricks", "bricks", "split"]


def varied_capture(path, count=5000, seed=7):
    """TCP flows of 60..1514 bytes, some cut short (caplen < len): the records written, in order."""
    rng = random.Random(seed)
    records = []
    for index, frame in enumerate(random_tcp_frames(count, seed=seed, size=60)):
        frame += bytes(rng.randint(0, 1454))
        captured = frame[:len(frame) // 2] if index % 53 == 0 else frame
        records.append((1_700_000_000 + index // 1000, index % 1_000_000, len(frame), captured))
    path.write_bytes(pcap_bytes(records))
    return records


def records_of(path):
    capture = read_pcap(path.read_bytes())
    assert capture.cut_bytes == 0
    return capture.records


def split(tmp_path, *arguments):
    result = subprocess.run(BRICKS + [str(argument) for argument in arguments], cwd=tmp_path, capture_output=True,
                            text=True, timeout=RUN_TIMEOUT_S)
    return result


def test_balance_lands_each_frame_where_the_live_load_balancer_sends_it(tmp_path):
    records = varied_capture(tmp_path / "in.pcap")
    result = split(tmp_path, "in.pcap", "--balance", 4, "-o", "out-{n}.pcap")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""     # piped: no progress bar
    split_outputs = [records_of(tmp_path / f"out-{index}.pcap") for index in range(4)]
    assert result.stdout.strip() == ("in.pcap: 5000 packets read; "
                                     + ", ".join(f"out-{index}.pcap: {len(split_outputs[index])}" for index in range(4)))
    # The same frames through a LoadBalancer(4) brick at the top of an engine, as on a live input.
    reference_paths = [tmp_path / f"lb-{index}.pcap" for index in range(4)]
    with Graph() as graph:
        balancer = graph.brick("LoadBalancer", split=4, depth=0, frag_slots=FRAGMENT_TABLE_SLOTS)
        for path in reference_paths:
            graph.sink(balancer, opened(lib.brk_sink_pcap_open, str(path).encode(), 0))
        graph.source(memory_source([data for _, _, _, data in records]), balancer)
        graph.run()
    for index in range(4):
        assert [data for _, _, _, data in split_outputs[index]] == [data for _, _, _, data in
                                                                     records_of(reference_paths[index])]
        assert split_outputs[index]    # every output got some flows
    # Every frame in exactly one output, byte for byte, each output in the input's order.
    assert sorted(record for output in split_outputs for record in output) == sorted(records)
    position = {record: index for index, record in enumerate(records)}
    for output in split_outputs:
        assert [position[record] for record in output] == sorted(position[record] for record in output)


def test_a_flow_stays_in_one_output_and_split_2_keeps_ip_pairs_together(tmp_path):
    frames = [udp_frame("10.0.0.1", "10.0.0.2", 1000 + index % 50, 53) for index in range(500)]
    frames += [udp_frame("10.0.0.2", "10.0.0.1", 53, 1000 + index % 50) for index in range(500)]
    (tmp_path / "in.pcap").write_bytes(pcap_bytes([(1, index, len(frame), frame)
                                                   for index, frame in enumerate(frames)]))
    assert split(tmp_path, "in.pcap", "--balance", 3, "--split", 2, "-o", "p{n}.pcap").returncode == 0
    sizes = [len(records_of(tmp_path / f"p{index}.pcap")) for index in range(3)]
    assert sorted(sizes) == [0, 0, 1000]      # one IP pair: one output, both directions
    assert split(tmp_path, "in.pcap", "--balance", 3, "-o", "q{n}.pcap").returncode == 0
    outputs = [{record[3][26:38] for record in records_of(tmp_path / f"q{index}.pcap")} for index in range(3)]
    for first in range(3):                     # a 4-tuple (either direction) in one output only
        for second in range(first + 1, 3):
            flows = lambda keys: {tuple(sorted((key[0:8] + key[8:10], key[4:8] + key[10:12]))) for key in keys}
            assert not flows(outputs[first]) & flows(outputs[second])


def test_duplicate_copies_every_record_and_filter_keeps_the_matching_ones(tmp_path):
    records = varied_capture(tmp_path / "in.pcap", count=2000)
    result = split(tmp_path, "in.pcap", "--duplicate", 3, "-o", "copy-{n}.pcap")
    assert result.returncode == 0, result.stderr
    for index in range(3):
        assert records_of(tmp_path / f"copy-{index}.pcap") == records
    frames = [udp_frame("10.1.0.1", "10.1.0.2", 2000, 53 if index % 3 == 0 else 80) for index in range(3000)]
    (tmp_path / "udp.pcap").write_bytes(pcap_bytes([(1, index, len(frame), frame) for index, frame in enumerate(frames)]))
    result = split(tmp_path, "udp.pcap", "--filter", "udp dst port 53", "-o", "dns.pcap")
    assert result.returncode == 0, result.stderr
    assert len(records_of(tmp_path / "dns.pcap")) == 1000
    assert result.stdout.strip() == "udp.pcap: 3000 packets read; dns.pcap: 1000; 2000 not matching the filter"
    result = split(tmp_path, "udp.pcap", "--filter", "udp dst port 53", "--balance", 2, "-o", "dns-{n}.pcap")
    assert result.returncode == 0, result.stderr
    kept = [records_of(tmp_path / f"dns-{index}.pcap") for index in range(2)]
    assert sum(map(len, kept)) == 1000 and min(map(len, kept)) == 0     # one flow: one output


def test_filter_then_balance_sends_each_kept_frame_where_balance_alone_does(tmp_path):
    records = varied_capture(tmp_path / "in.pcap", count=3000)
    assert split(tmp_path, "in.pcap", "--balance", 4, "-o", "all-{n}.pcap").returncode == 0
    result = split(tmp_path, "in.pcap", "--balance", 4, "--filter", "tcp[13] & 8 != 0 and len > 600",
                   "-o", "some-{n}.pcap")
    assert result.returncode == 0, result.stderr
    kept_total = 0
    for index in range(4):
        kept = records_of(tmp_path / f"some-{index}.pcap")
        everything = records_of(tmp_path / f"all-{index}.pcap")
        assert kept == [record for record in everything if record[2] > 600]
        kept_total += len(kept)
    assert 0 < kept_total < len(records)


@pytest.mark.parametrize("arguments, message", [
    (["in.pcap", "-o", "x.pcap"], "nothing to do: give --balance N, --duplicate N or --filter EXPR"),
    (["in.pcap", "--balance", "2", "-o", "x.pcap"], "-o x.pcap: 2 outputs need {n} in the name"),
    (["in.pcap", "--balance", "2", "--duplicate", "2", "-o", "x{n}"], "--balance and --duplicate cannot be used"),
    (["nope.pcap", "--balance", "2", "-o", "x{n}"], "nope.pcap: no such pcap file"),
    (["in.pcap", "--filter", "tcp port", "-o", "x.pcap"], "bad filter expression 'tcp port'"),
    (["in.pcap", "--filter", "tcp", "-o", "in.pcap"], "in.pcap: the output would overwrite the input"),
    (["text.pcap", "--balance", "2", "-o", "t{n}"], "text.pcap"),
])
def test_mistakes_are_one_line_and_leave_no_output(tmp_path, arguments, message):
    varied_capture(tmp_path / "in.pcap", count=10)
    (tmp_path / "text.pcap").write_text("not a capture\n")
    before = set(os.listdir(tmp_path))
    result = split(tmp_path, *arguments)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert set(os.listdir(tmp_path)) == before


def test_progress_bar_on_a_terminal_only(tmp_path):
    varied_capture(tmp_path / "in.pcap", count=3000)
    leader, follower = pty.openpty()
    process = subprocess.Popen(BRICKS + ["in.pcap", "--balance", "2", "-o", "o{n}.pcap"], cwd=tmp_path,
                               stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    shown, deadline = b"", time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 0.5)[0]:
            try:
                piece = os.read(leader, 4096)
            except OSError:
                break        # the terminal closed: the command ended
            if not piece:
                break
            shown += piece
        elif process.poll() is not None:
            break
    os.close(leader)
    assert process.wait(RUN_TIMEOUT_S) == 0
    text = shown.decode()
    assert "100.0%" in text and "3,000 packets" in text and "pkt/s" in text and "ETA 00:00" in text
    assert text.rstrip().endswith("o1.pcap: " + str(len(records_of(tmp_path / "o1.pcap"))))


def test_output_paths_and_plan_checks(tmp_path):
    assert splitting.output_paths("a-{n}.pcap", 3) == ["a-0.pcap", "a-1.pcap", "a-2.pcap"]
    assert splitting.output_paths("one.pcap", 1) == ["one.pcap"]
    with pytest.raises(BricksError):
        splitting.output_paths("same.pcap", 2)
    assert splitting._duration(3725) == "1h02" and splitting._duration(75) == "01:15"


class InterruptingTerminal:
    """A progress stream that is Ctrl+C'd at its first drawing."""

    def write(self, text):
        raise KeyboardInterrupt

    def flush(self):
        pass


def test_an_interrupted_split_removes_its_outputs_and_its_engine(tmp_path):
    varied_capture(tmp_path / "in.pcap", count=2000)
    plan = splitting.SplitPlan(str(tmp_path / "in.pcap"), str(tmp_path / "out-{n}.pcap"), balance=2)
    with pytest.raises(KeyboardInterrupt):
        splitting.run(plan, progress_stream=InterruptingTerminal(), engine_name="split-interrupted")
    assert sorted(os.listdir(tmp_path)) == ["in.pcap"]
    assert PktEngine.retrieve("split-interrupted") is None


def test_a_full_disk_is_counted_per_packet_and_fails_the_command(tmp_path):
    varied_capture(tmp_path / "in.pcap", count=300)
    result = split(tmp_path, "in.pcap", "--filter", "tcp", "-o", "/dev/full")
    assert result.returncode == 1
    assert result.stdout.strip() == "in.pcap: 300 packets read; /dev/full: 0; lost: 300 write errors"
    assert "write error on /dev/full (No space left on device)" in result.stderr
    assert os.path.exists("/dev/full")
