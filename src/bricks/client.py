"""The remote shell (`bricks-shell`, `bricks -s`): the bricks shell, with every chunk run by the daemon."""
import socket
import sys

from . import __version__
from .server import receive_message, send_message
from .shell import Result, banner_line, interactive_loop, report_error, run_script_from_stdin, write_output


class ClientError(Exception):
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
        """Runs a chunk in the daemon in a mode of bricks.server.run_chunk, printing its output as it comes."""
        self._send({"op": "run", "chunk": chunk, "mode": mode})
        try:
            while True:
                message = self._receive()
                if "output" in message:
                    write_output(message["output"])
                elif message.get("done"):
                    return Result(message.get("error"), bool(message.get("incomplete")),
                                  bool(message.get("shutdown")))
        except KeyboardInterrupt:
            # The daemon cannot abandon a chunk halfway; what it still sends belongs to this chunk, so drop
            # the connection (the daemon ignores a client that left) and start afresh.
            self.close()
            self._connect()
            return Result(error="interrupted: the chunk runs on in the daemon, its output is dropped")

    def complete(self, line):
        self._send({"op": "complete", "prefix": line})
        return self._receive().get("completions", [])

    def close(self):
        self.connection.close()


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
