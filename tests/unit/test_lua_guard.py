"""The Lua guard without root: interrupts and time limits stop any chunk, restricted environments hold."""
import threading
import time

import pytest

from bricks.errors import BricksError
from bricks.lua import LuaRuntime

RUNAWAY = "while true do end"
STUBBORN = "while true do pcall(function() while true do end end) end"
# A loop LuaJIT would compile to a trace at once; the hook must still reach it.
HOT_LOOP = "local x = 0 while true do x = x + 1 end"


@pytest.fixture
def runtime():
    return LuaRuntime(output=lambda text: None)


def stopped_after(runtime, chunk, interrupt_after=None, time_limit=None, environment=None):
    """(the error of `chunk`, seconds it ran), interrupted from another thread after `interrupt_after` s."""
    timer = threading.Timer(interrupt_after, runtime.interrupt) if interrupt_after else None
    started = time.monotonic()
    if timer:
        timer.start()
    try:
        with runtime.guarded(time_limit, environment), pytest.raises(BricksError) as raised:
            runtime.evaluate_line(chunk)
    finally:
        if timer:
            timer.cancel()
    return str(raised.value), time.monotonic() - started


@pytest.mark.parametrize("chunk", [RUNAWAY, STUBBORN, HOT_LOOP, "bricks_sleep(60)"])
def test_an_interrupt_stops_any_chunk_with_one_word(runtime, chunk):
    error, took = stopped_after(runtime, chunk, interrupt_after=0.3)
    assert error == "interrupted" and 0.3 <= took < 2


@pytest.mark.parametrize("chunk", [RUNAWAY, STUBBORN, "bricks_sleep(60)"])
def test_the_time_limit_stops_any_chunk(runtime, chunk):
    error, took = stopped_after(runtime, chunk, time_limit=0.3)
    assert error == "chunk exceeded 0.3 s" and 0.3 <= took < 2


def test_the_next_chunk_runs_normally_and_within_its_limit(runtime):
    stopped_after(runtime, RUNAWAY, interrupt_after=0.1)
    with runtime.guarded(time_limit=5):
        assert runtime.execute("bricks_sleep(0.05) local x = 0 for i = 1, 1e6 do x = x + i end return x") == [
            500000500000]
    assert runtime.execute("return 1") == [1]      # outside a guarded scope too: no stale interrupt


def test_restricted_environment_has_the_api_and_no_way_out(runtime):
    environment = runtime.restricted_environment()
    closed = ("os", "io", "debug", "loadfile", "dofile", "require", "package", "load", "loadstring", "getfenv",
              "setfenv", "jit", "module", "python")
    with runtime.guarded(environment=environment):
        for name in closed:
            with pytest.raises(BricksError, match=rf"^stdin:1: {name} is for root only \(this client is restricted\)$"):
                runtime.evaluate_line(f"x = {name}")
        assert runtime.execute("return " + ", ".join(f"rawget(_G, '{name}')" for name in closed)) == [None] * 14
        assert runtime.execute("return string.dump, getmetatable(_G), undefined_name") == [None, False, None]
        assert runtime.execute("return type(PktEngine.new), type(BRICKS.show_stats), type(Brick.new), "
                               "type(bricks_sleep), string.format('%02d', 7)") == [
            "function", "function", "function", "function", "07"]
        runtime.execute("mine = 1; string.format = nil")
        assert runtime.execute("return coroutine.wrap(function() return mine end)()") == [1]
        with pytest.raises(BricksError, match="files are for root only"):
            runtime.execute('Brick.new("LoadBalancer"):connect_output("/tmp/out.pcap")')
    # Nothing leaked into the real globals, and the real string library is whole.
    assert runtime.execute("return mine, type(string.format), type(os.execute)") == [None, "function", "function"]
    assert runtime.execute('return Brick.new("LoadBalancer"):connect_output("/tmp/out.pcap") ~= nil') == [True]
