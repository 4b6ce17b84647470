"""The remote shell (`bricks-shell`, `bricks -s`): the bricks shell, with every chunk run by the daemon.

Ctrl+C while a chunk runs asks the daemon to interrupt it (the chunk ends with
"interrupted" and the shell carries on); a second Ctrl+C gives up waiting: the
shell reconnects and the chunk's further output is dropped.
"""
import contextlib
import selectors
import signal
import socket
import sys
import threading

from . import __version__
from .errors import BricksError
from .lua_service import WAIT_STEP
from .protocol import MAX_MESSAGE, receive_message, send_message
from .shell import Result, banner_line, interactive_loop, report_error, run_script_from_stdin, write_output


class ClientError(BricksError):
    """Why the remote shell cannot go on: one line, shown as `bricks: <message>`."""


class RemoteSession:
    """A connection to the daemon: chunks and completions go over its socket, output streams back."""

    def __init__(self, socket_path):
        self.socket_path = socket_path
        self._connect()

    def _connect(self):
        socket_path = self.socket_path
        self.connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.connection.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError):
            self.connection.close()
            raise ClientError(f"no daemon listening on {socket_path}") from None
        except PermissionError:
            self.connection.close()
            raise ClientError(f"permission denied on {socket_path}: only root or the daemon's group "
                              "may use it") from None
        except OSError as error:
            self.connection.close()
            raise ClientError(f"cannot connect to {socket_path}: {error.strerror}") from None
        greeting = self._receive()
        if "refused" in greeting:
            self.close()
            raise ClientError(greeting["refused"])
        if greeting.get("hello") != "bricks":
            self.close()
            raise ClientError(f"{socket_path} is not a bricks daemon")

    def banner(self):
        return banner_line(__version__, f"remote shell to the daemon on {self.socket_path}")

    def _receive(self):
        try:
            message = receive_message(self.connection)
        except (OSError, ValueError) as error:
            raise ClientError(f"connection to the daemon broken: {error}") from None
        if message is None:
            raise ClientError("the daemon closed the connection")
        return message

    def _send(self, message):
        try:
            send_message(self.connection, message)
        except OSError as error:
            raise ClientError(f"connection to the daemon broken: {error.strerror or error}") from None

    def run(self, chunk, mode="interactive"):
        """Runs a chunk in the daemon in a mode of bricks.lua_service.run_chunk, printing its output as it comes."""
        size = len(chunk.encode())
        if size > MAX_MESSAGE - 1024:
            return Result(error=f"chunk of {size} bytes is over the daemon's {MAX_MESSAGE} byte limit")
        # Counting from before the request: a Ctrl+C must never leave a chunk's answers unread.
        with _counting_interrupts() as interrupts, selectors.DefaultSelector() as selector:
            self._send({"op": "run", "chunk": chunk, "mode": mode})
            selector.register(self.connection, selectors.EVENT_READ)
            asked = 0
            while True:
                if interrupts[0] > asked:
                    asked = interrupts[0]
                    if asked > 1:
                        # The daemon did not stop the chunk at the first Ctrl+C (stuck below Lua): stop waiting.
                        # What it still sends belongs to that chunk, so start afresh on a new connection.
                        self.close()
                        self._connect()
                        return Result(error="interrupted: the chunk runs on in the daemon, its output is dropped")
                    self._send({"op": "interrupt"})
                # A message is read whole once it starts; Ctrl+C only counts, so it never cuts one in half.
                if not selector.select(WAIT_STEP):
                    continue
                message = self._receive()
                if "output" in message:
                    write_output(message["output"])
                elif message.get("done"):
                    return Result(message.get("error"), bool(message.get("incomplete")),
                                  bool(message.get("shutdown")))

    def complete(self, line):
        self._send({"op": "complete", "prefix": line})
        return self._receive().get("completions", [])

    def stats(self):
        """The daemon snapshot (metrics.daemon_snapshot), read without going through the Lua state."""
        self._send({"op": "stats"})
        answer = self._receive()
        if "stats" not in answer:
            raise ClientError(f"the daemon did not answer with stats: {answer.get('error') or answer}")
        return answer["stats"]

    def close(self):
        self.connection.close()


@contextlib.contextmanager
def _counting_interrupts():
    """While a chunk runs, SIGINT (Ctrl+C) counts in the list yielded instead of raising KeyboardInterrupt."""
    count = [0]
    if threading.current_thread() is not threading.main_thread():
        yield count
        return

    def counted(signum, frame):
        count[0] += 1

    previous = signal.signal(signal.SIGINT, counted)
    try:
        yield count
    finally:
        signal.signal(signal.SIGINT, previous)


def run_remote(socket_path, command=None):
    """The remote shell: one chunk (`-c`), stdin as a script, or the interactive shell; the exit status."""
    try:
        session = RemoteSession(socket_path)
        try:
            if command is not None:
                result = session.run(command, mode="line")
                if result.error:
                    report_error(result.error)
                    return 1
                return 0
            if not sys.stdin.isatty():
                return run_script_from_stdin(session)
            return interactive_loop(session)
        finally:
            session.close()
    except ClientError as error:
        report_error(f"bricks: {error}")
        return 1
