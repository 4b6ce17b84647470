"""Offload records (links.py): who may restore what after a kill; no root needed, nothing on a real interface."""
import json
import os
import subprocess
import sys

import pytest

from bricks import links

GONE = "btnoofl0"       # an interface name no test creates


@pytest.fixture
def records(tmp_path, monkeypatch):
    monkeypatch.setenv("BRICKS_RUN_DIR", str(tmp_path))
    directory = tmp_path / links.OFFLOAD_RECORDS
    directory.mkdir()
    return directory


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_record(directory, name, owner_pid, start, index=7):
    (directory / name).write_text(json.dumps({"owner": f"bricks pipe pid={owner_pid} start={start}",
                                              "index": index, "turned_off": ["rx-gro"]}))


def test_a_dead_owners_record_of_a_vanished_interface_is_dropped_untouched(records):
    write_record(records, GONE, dead_pid(), 1)
    assert links.reclaim_stale_offloads() == []
    assert not (records / GONE).exists()


def test_a_living_owners_record_is_kept(records):
    write_record(records, GONE, os.getpid(), links._process_start_time(os.getpid()))
    assert links.reclaim_stale_offloads() == []
    assert (records / GONE).exists()


def test_partial_writes_and_strangers_files_are_left_alone(records):
    (records / f".{GONE}.123").write_text('{"owner": ')
    (records / "notes").write_text("not a record")
    assert links.reclaim_stale_offloads() == []
    assert sorted(os.listdir(records)) == sorted([f".{GONE}.123", "notes"])


def test_no_record_directory_is_nothing_to_reclaim(tmp_path, monkeypatch):
    monkeypatch.setenv("BRICKS_RUN_DIR", str(tmp_path / "absent"))
    assert links.reclaim_stale_offloads() == []
