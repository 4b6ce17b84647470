"""Commands without root: argument rules, the socket protocol, pid-file locking and the daemon's service loop (fake Lua)."""
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import lupa
import pytest
from click.testing import CliRunner

from bricks import cli, lua_service, protocol, server
from bricks.client import ClientError, RemoteSession
from bricks.errors import BricksError
from bricks.frames import pcap_bytes

WAIT = 10.0


class FakeRuntime:
    """The LuaRuntime API over a toy language: `print X`, `fail X`, `sleep S`, `shutdown`; a trailing `\\` is unfinished.

    `sleep` ends early, as an error, on interrupt() or the guarded time limit, as bricks_sleep does."""

    def __init__(self, output):
        self.output = output
        self.shutdown_requested = False
        self.evaluated = []
        self.stop_reason = None
        self.stopped = threading.Event()
        self.time_limit = None

    @contextlib.contextmanager
    def guarded(self, time_limit=None, environment=None):
        self.stop_reason, self.time_limit = None, time_limit
        self.stopped.clear()
        yield

    def interrupt(self, reason="interrupted"):
        self.stop_reason = reason
        self.stopped.set()

    def _sleep(self, seconds):
        limited = min(seconds, self.time_limit) if self.time_limit else seconds
        if self.stopped.wait(limited):
            raise BricksError(self.stop_reason)
        if limited < seconds:
            raise BricksError(f"chunk exceeded {self.time_limit:g} s")

    def execute(self, chunk, chunk_name="=stdin"):
        for line in chunk.splitlines():
            word, _, rest = line.partition(" ")
            if word == "print":
                self.output(rest + "\n")
            elif word == "fail":
                raise BricksError(rest)
            elif word == "sleep":
                self._sleep(float(rest))
            elif word == "shutdown":
                self.shutdown_requested = True
                self.output("Goodbye!\n")
        return []

    def evaluate_line(self, line):
        self.evaluated.append(line)
        return self.execute(line)

    def is_incomplete(self, chunk):
        return chunk.endswith("\\")

    def completions(self, prefix):
        return [name for name in ("BRICKS.help", "BRICKS.print_status", "Brick.new") if name.startswith(prefix)]


@pytest.fixture
def daemon(tmp_path):
    """An in-process daemon on a private socket, serving a FakeRuntime."""
    service = server.LuaService(FakeRuntime)
    running = server.Daemon(service, str(tmp_path / "run" / "bricks.sock"))
    running.bind()
    thread = threading.Thread(target=running.serve, daemon=True)
    thread.start()
    yield running
    running.stop()
    thread.join(WAIT)
    running.close()


def connect(daemon):
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(WAIT)
    connection.connect(daemon.socket_path)
    assert server.receive_message(connection) == {"hello": "bricks", "version": server.PROTOCOL_VERSION}
    return connection


def run(connection, chunk, mode="script"):
    """(printed text, final message) of one chunk over a raw connection."""
    server.send_message(connection, {"op": "run", "chunk": chunk, "mode": mode})
    printed = ""
    while True:
        message = server.receive_message(connection)
        if "output" in message:
            printed += message["output"]
        else:
            return printed, message


# ---------------------------------------------------------------- protocol and daemon

def test_messages_round_trip_and_oversized_ones_are_refused():
    left, right = socket.socketpair()
    with left, right:
        server.send_message(left, {"chunk": "print('é')"})
        assert server.receive_message(right) == {"chunk": "print('é')"}
        left.sendall((server.MAX_MESSAGE + 1).to_bytes(4, "big"))
        with pytest.raises(ValueError):
            server.receive_message(right)
        left.close()
        assert server.receive_message(right) is None


def test_chunk_output_errors_and_incomplete_flag(daemon):
    with connect(daemon) as connection:
        assert run(connection, "print one\nprint two") == (
            "one\ntwo\n", {"done": True, "error": None, "incomplete": False, "shutdown": False})
        printed, result = run(connection, "print before\nfail stdin:1: boom")
        assert printed == "before\n" and result["error"] == "stdin:1: boom"
        printed, result = run(connection, "print x\\", mode="interactive")
        assert printed == "" and result["incomplete"] is True
        assert run(connection, "print x\\", mode="line")[1]["incomplete"] is False
        server.send_message(connection, {"op": "complete", "prefix": "BRICKS.p"})
        assert server.receive_message(connection) == {"completions": ["BRICKS.print_status"]}
        server.send_message(connection, {"op": "nonsense"})
        assert "bad request" in server.receive_message(connection)["error"]


def test_line_mode_uses_repl_semantics(daemon):
    with connect(daemon) as connection:
        run(connection, "print a", mode="line")
        run(connection, "print b", mode="script")
    assert daemon.service.runtime.evaluated == ["print a"]


def test_two_clients_each_get_only_their_own_output(daemon):
    results = {}

    def client(name):
        with connect(daemon) as connection:
            results[name] = [run(connection, f"sleep 0.01\nprint {name}-{turn}")[0] for turn in range(20)]

    threads = [threading.Thread(target=client, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    for name in ("left", "right"):
        assert results[name] == [f"{name}-{turn}\n" for turn in range(20)]


def test_a_client_leaving_mid_chunk_harms_nothing(daemon):
    connection = connect(daemon)
    server.send_message(connection, {"op": "run", "chunk": "sleep 0.3\nprint lost", "mode": "script"})
    connection.close()
    with connect(daemon) as other:
        assert run(other, "print still here")[0] == "still here\n"


def test_interrupt_stops_the_clients_own_chunk_and_a_waiting_one_is_answered_busy(daemon, monkeypatch):
    monkeypatch.setattr(lua_service, "BUSY_WAIT", 0.3)
    with connect(daemon) as runner, connect(daemon) as waiter:
        server.send_message(runner, {"op": "run", "chunk": "print started\nsleep 30", "mode": "script"})
        assert server.receive_message(runner) == {"output": "started\n"}
        started = time.monotonic()
        printed, result = run(waiter, "print never")
        assert printed == "" and result["error"].startswith("busy: another client's chunk has been running for ")
        assert time.monotonic() - started < 2
        server.send_message(waiter, {"op": "complete", "prefix": "B"})
        assert server.receive_message(waiter) == {"completions": []}       # Tab does not wait behind it
        server.send_message(runner, {"op": "interrupt"})
        assert server.receive_message(runner)["error"] == "interrupted"
        server.send_message(runner, {"op": "interrupt"})                   # too late: ignored, no answer
        assert run(runner, "print next") == ("next\n", {"done": True, "error": None, "incomplete": False,
                                                       "shutdown": False})
        assert run(waiter, "print served")[0] == "served\n"


def test_a_chunk_called_off_while_waiting_never_runs(daemon):
    with connect(daemon) as runner, connect(daemon) as waiter:
        server.send_message(runner, {"op": "run", "chunk": "sleep 0.5", "mode": "script"})
        time.sleep(0.1)
        server.send_message(waiter, {"op": "run", "chunk": "print too late", "mode": "script"})
        server.send_message(waiter, {"op": "interrupt"})
        assert server.receive_message(waiter) == {"done": True, "error": "interrupted", "incomplete": False,
                                                  "shutdown": False}
        assert server.receive_message(runner)["error"] is None         # another client's Ctrl+C is not theirs


def test_time_limit_of_the_daemon(daemon):
    daemon.chunk_timeout = 0.2
    with connect(daemon) as connection:
        assert run(connection, "sleep 5")[1]["error"] == "chunk exceeded 0.2 s"


def test_big_output_comes_in_bounded_pieces(daemon, monkeypatch):
    monkeypatch.setattr(protocol, "OUTPUT_PIECE", 1000)
    with connect(daemon) as connection:
        server.send_message(connection, {"op": "run", "chunk": "print " + "é" * 2500, "mode": "script"})
        pieces = []
        while "output" in (message := server.receive_message(connection)):
            pieces.append(message["output"])
    assert [len(piece) for piece in pieces] == [1000, 1000, 501] and "".join(pieces) == "é" * 2500 + "\n"


@pytest.mark.parametrize("body, error", [
    (b"[" * 100_000 + b"]" * 100_000, "bad request: message nested too deeply"),
    (b"{nope", "bad request: message is not JSON"),
    (b"[1]", "bad request: a message must be a JSON object"),
])
def test_malformed_messages_are_answered_in_one_line_and_the_connection_serves_on(daemon, body, error):
    with connect(daemon) as connection:
        connection.sendall(len(body).to_bytes(4, "big") + body)
        answer = server.receive_message(connection)
        assert answer["done"] is True and answer["error"].startswith(error)
        assert run(connection, "print after")[0] == "after\n"


def test_an_oversized_message_ends_the_connection_not_the_daemon(daemon):
    with connect(daemon) as connection:
        connection.sendall((server.MAX_MESSAGE + 1).to_bytes(4, "big"))
        assert "over the 16777216 byte limit" in server.receive_message(connection)["error"]
        assert server.receive_message(connection) is None
    with connect(daemon) as connection:
        assert run(connection, "print fine")[0] == "fine\n"


def test_shutdown_from_a_client_stops_the_daemon(daemon):
    with connect(daemon) as connection:
        printed, result = run(connection, "shutdown")
    assert printed == "Goodbye!\n" and result["shutdown"] is True
    assert daemon.stopping.wait(WAIT)


def test_remote_session_prints_output_and_reports_errors(daemon, capsys):
    session = RemoteSession(daemon.socket_path)
    try:
        result = session.run("print hello\nfail nope", mode="script")
        assert result.error == "nope" and not result.shutdown
        assert session.complete("Brick.") == ["Brick.new"]
    finally:
        session.close()
    assert capsys.readouterr().out == "hello\n"


def test_missing_daemon_is_one_clear_line(tmp_path):
    with pytest.raises(ClientError, match=r"^no daemon listening on .*nothing\.sock$"):
        RemoteSession(str(tmp_path / "nothing.sock"))


def test_socket_is_private_to_its_owner(daemon):
    assert os.stat(daemon.socket_path).st_mode & 0o777 == 0o600


def test_a_second_daemon_on_a_live_socket_is_refused(daemon):
    other = server.Daemon(daemon.service, daemon.socket_path)
    with pytest.raises(server.DaemonError, match="another daemon is listening"):
        other.bind()


def test_peer_refusal_rules():
    me = os.geteuid()
    assert server.refusal((1, 0, 0), None) is None
    assert server.refusal((1, me, me), None) is None
    stranger = 4242 if me != 4242 else 4243
    assert "only root" in server.refusal((1, stranger, stranger), None)
    assert server.refusal((1, stranger, 777), 777) is None
    assert "members of group" in server.refusal((1, stranger, stranger), 777)


# ---------------------------------------------------------------- pid file

def _hold_pid_file(path):
    """A child process holding the pid file's lock until its stdin closes."""
    code = ("import sys; from bricks.server import PidFile; lock = PidFile(sys.argv[1]); lock.acquire(); "
            "print('held', flush=True); sys.stdin.read(); lock.release()")
    holder = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_pid_file_lock_refuses_a_second_daemon_naming_the_first(tmp_path):
    path = str(tmp_path / "sub" / "bricks.pid")
    holder = _hold_pid_file(path)
    try:
        assert server.running_pid(path) == holder.pid
        assert open(path).read() == f"{holder.pid}\n"
        with pytest.raises(server.DaemonError, match=rf"already running \(pid {holder.pid}, pid file "):
            server.PidFile(path).acquire()
    finally:
        holder.stdin.close()
        holder.wait(WAIT)
    assert not os.path.exists(path) and server.running_pid(path) is None


def test_stale_pid_file_without_lock_is_taken_over(tmp_path):
    path = tmp_path / "bricks.pid"
    path.write_text("999999\n")
    assert server.running_pid(str(path)) is None
    lock = server.PidFile(str(path))
    lock.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    lock.release()


def test_stop_daemon_sends_sigterm_and_waits(tmp_path):
    path = str(tmp_path / "bricks.pid")
    holder = _hold_pid_file(path)
    try:
        assert server.stop_daemon(path, timeout=WAIT) == holder.pid
        assert holder.wait(WAIT) == -15
    finally:
        holder.kill()
    with pytest.raises(server.DaemonError, match="no daemon is running"):
        server.stop_daemon(path, timeout=1)


# ---------------------------------------------------------------- command line

def test_daemon_and_remote_shell_together_are_refused_in_one_line():
    result = CliRunner().invoke(cli.main, ["-d", "-s"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["bricks: -d (daemon) and -s (remote shell) cannot be used together"]


@pytest.mark.parametrize("command", list(cli.COMMANDS.values()))
def test_every_command_has_help(command):
    for flag in ("-h", "--help"):
        result = CliRunner().invoke(command, [flag])
        assert result.exit_code == 0 and "Usage:" in result.output


def test_bricks_help_lists_the_original_options():
    output = CliRunner().invoke(cli.main, ["-h"]).output
    for option in ("-f, --script", "-d, --daemon", "-s, --shell", "-a, --socket", "-b, --batch", "--backend",
                   "--group", "--pid-file", "--log-file"):
        assert option in output


def test_kill_server_without_daemon_fails(tmp_path):
    result = CliRunner().invoke(cli.kill_server_main, ["--pid-file", str(tmp_path / "none.pid")])
    assert result.exit_code == 1 and "no daemon is running" in result.output


def test_fan_out_counts_are_bounded():
    assert CliRunner().invoke(cli.load_balance_main, ["eth0", "0"]).exit_code == 2
    assert CliRunner().invoke(cli.duplicate_main, ["eth0", str(cli.MAX_PIPES + 1)]).exit_code == 2


def test_fan_out_chunk_compiles_and_names_every_step():
    chunk = cli.fan_out_chunk("LoadBalancer", 'we"ird\\if', 3)
    lua = lupa.LuaRuntime()
    compiled, message = lua.execute("local f, e = (loadstring or load)(...) return f ~= nil, e", chunk)
    assert compiled, message
    assert not lua.execute("return (loadstring or load)(...) ~= nil", chunk + "end")
    assert 'Brick.new("LoadBalancer")' in chunk and "connect_outputs(" in chunk and ", 3)" in chunk
    assert chunk.rstrip().endswith("engine:start()")


@pytest.mark.parametrize("text", ["eth0", 'a"b\\c', "new\nline", "é\x00\x7f"])
def test_lua_string_literal_round_trips(text):
    assert lupa.LuaRuntime(encoding=None).execute("return " + server.lua_string(text)) == text.encode()


def test_batch_option_sets_the_default_batch_of_link(tmp_path, monkeypatch):
    from bricks import engine
    from bricks.lua import LuaRuntime
    monkeypatch.setattr(engine, "DEFAULT_BATCH", engine.DEFAULT_BATCH)
    capture = tmp_path / "in.pcap"
    capture.write_bytes(pcap_bytes([(0, 0, 60, bytes(60))], snaplen=65535))
    runtime = LuaRuntime(output=lambda text: None)
    server.configure_runtime(runtime, batch=64)
    try:
        runtime.execute(f'pe = PktEngine.new("batch-test"); reader = Brick.new("PcapReader"); '
                        f'reader:connect_input("{capture}"); reader:connect_output("{tmp_path}/out.pcap"); '
                        f'pe:link(reader); other = Brick.new("PcapReader"); other:connect_input("{capture}"); '
                        f'other:connect_output("{tmp_path}/other.pcap"); pe:link(other, 8)')
        assert [linked.batch for linked in engine.PktEngine.retrieve("batch-test").linked] == [64, 8]
    finally:
        engine.shutdown_all()


@pytest.mark.parametrize("given, exported", [("7", "7"), ("0", "0"), ("off", "0"), ("OFF", "0")])
def test_realtime_option_reaches_the_engines(given, exported):
    """--realtime exports BRICKS_REALTIME, which engine.realtime_setting() reads when engines start; 0 and off
    both mean normal scheduling."""
    environment = {key: value for key, value in os.environ.items() if key != "BRICKS_REALTIME"}
    result = subprocess.run([sys.executable, "-m", "bricks", "bricks", "--realtime", given],
                            input='print(os.getenv("BRICKS_REALTIME"))\n', capture_output=True, text=True,
                            env=environment, timeout=60)
    assert (result.returncode, result.stdout) == (0, exported + "\n"), result.stderr


def test_realtime_help_states_the_engines_default():
    """cli.py does not import the engine (start-up time): its help text must still say the engine's default."""
    from bricks import engine
    result = CliRunner().invoke(cli.main, ["--help"], terminal_width=200)
    assert f"[default: {engine.DEFAULT_REALTIME_PRIORITY} where the process may" in " ".join(result.output.split())


@pytest.mark.parametrize("given", ["100", "-1", "high", "1.5"])
def test_a_bad_realtime_option_is_a_usage_error(given):
    environment = {key: value for key, value in os.environ.items() if key != "BRICKS_REALTIME"}
    refused = subprocess.run([sys.executable, "-m", "bricks", "bricks", "--realtime", given], input="",
                             capture_output=True, text=True, env=environment, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (f"Error: Invalid value for '--realtime': {given!r} is not a "
                                               "priority from 1 to 99, nor 0 or off")


def test_daemon_and_client_errors_are_bricks_errors():
    """One exception family: whoever catches BricksError also catches the daemon's and the remote shell's."""
    assert issubclass(server.DaemonError, BricksError) and issubclass(ClientError, BricksError)
    assert str(server.DaemonError("no daemon\n  is running")) == "no daemon is running"
