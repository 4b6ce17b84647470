"""The daemon's wire protocol: messages framed on a Unix stream socket (used by server.py and client.py).

The bricks daemon: one Lua state served to remote shells over a Unix socket, with a locked pid file and a log.

Protocol (both directions): a 4-byte big-endian length, then that many bytes of
UTF-8 JSON. On connect the daemon sends a greeting, `{"hello": "bricks",
"version": 2}` (with `"restricted": true` for a restricted client) or
`{"refused": "<why>"}` (then closes). Requests:
  {"op": "run", "chunk": "...", "mode": "interactive" | "line" | "script"}
      -> zero or more {"output": "..."} while the chunk runs, then
         {"done": true, "error": null|"...", "incomplete": bool, "shutdown": bool}
      "line": REPL semantics (`=expr` and bare expressions print their values);
      "interactive": the same, but an unfinished chunk is answered `incomplete`
      instead of run, so the remote shell can prompt for more lines;
      "script": the chunk as a file would run.
  {"op": "interrupt"} while a chunk of this client waits or runs: it stops
      with the error "interrupted" (no answer of its own; the chunk's "done" follows).
  {"op": "complete", "prefix": "..."} -> {"completions": [...]}
  {"op": "stats"} -> {"stats": metrics.daemon_snapshot()}: every engine's counters,
      read beside the Lua state (a running chunk does not delay it); `bricks stats`, `bricks top`.
Output is streamed, in messages of at most OUTPUT_PIECE characters, because a
chunk may print for a long time (a stats loop) or a lot (a 20 MB string).
Chunks from all clients run one at a time in the daemon's single Lua state; a
chunk waits at most BUSY_WAIT for another client's, then is answered "busy".
A malformed message is answered {"done": true, "error": "bad request: ..."}.
"""
import json
import struct

PROTOCOL_VERSION = 2
MAX_MESSAGE = 16 << 20          # a chunk beyond this is a broken peer, not a request
OUTPUT_PIECE = 1 << 20          # characters of output per message: even all escaped (12 bytes each) under MAX_MESSAGE


class ProtocolError(ValueError):
    """A message that breaks the protocol (too big, not JSON, nested too deeply): the peer hears why in one line."""

    def __init__(self, message, fatal=False):
        super().__init__(message)
        self.fatal = fatal      # the rest of the stream cannot be read (the body of an oversized message)


def send_message(connection, message):
    data = json.dumps(message).encode()
    connection.sendall(struct.pack(">I", len(data)) + data)


def send_output(connection, text):
    """Printed text as {"output": ...} messages of at most OUTPUT_PIECE characters: any amount fits the framing."""
    for start in range(0, len(text), OUTPUT_PIECE):
        send_message(connection, {"output": text[start:start + OUTPUT_PIECE]})


def _receive_exactly(connection, size):
    data = bytearray()
    while len(data) < size:
        piece = connection.recv(size - len(data))
        if not piece:
            return None
        data += piece
    return bytes(data)


def receive_message(connection):
    """The next message, or None when the peer closed the connection."""
    header = _receive_exactly(connection, 4)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    if size > MAX_MESSAGE:
        raise ProtocolError(f"message of {size} bytes is over the {MAX_MESSAGE} byte limit", fatal=True)
    data = _receive_exactly(connection, size)
    if data is None:
        return None
    try:
        message = json.loads(data)
    except RecursionError:
        # json recurses once per nesting level: 100,000 '[' must cost the peer its message, not us a traceback.
        raise ProtocolError("message nested too deeply") from None
    except ValueError as error:
        raise ProtocolError(f"message is not JSON: {error}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return message
