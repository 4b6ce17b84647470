"""The Lua service: one Lua state served to every shell of a daemon, a chunk at a time (server.py serves it).

A client's chunk waits at most BUSY_WAIT for another's to end, then is answered
"busy"; it stops on its client's interrupt (or the daemon's stop); Tab
completion never waits behind a long chunk. `configure_runtime` applies the
command line's settings to a fresh runtime, `lua_string` quotes any text for Lua.
"""
import logging
import os
import threading
import time

from .errors import BricksError

BUSY_WAIT = 5.0                 # how long a client's chunk waits for another client's to end before "busy"
COMPLETION_WAIT = 1.0           # how long Tab completion waits for the Lua state before answering nothing
WAIT_STEP = 0.05                # how often a waiting chunk looks whether its client called it off
INTERRUPTED = "interrupted"
STOPPING = "interrupted: the daemon is stopping"

log = logging.getLogger("bricks")


RUN_MODES = ("interactive", "line", "script")


def run_chunk(runtime, chunk, mode, chunk_name="=stdin"):
    """Runs a chunk as a shell `mode` says (see the protocol above); True when it was left unfinished."""
    if mode == "interactive" and runtime.is_incomplete(chunk):
        return True
    if mode == "script":
        runtime.execute(chunk, chunk_name)
    else:
        runtime.evaluate_line(chunk)
    return False


class ChunkTicket:
    """One client's request to run a chunk, which the client may call off while it waits or runs."""

    def __init__(self):
        self.called_off = threading.Event()     # Ctrl+C, or the client left: a chunk still waiting never runs
        self.finished = threading.Event()
        # Wakes the thread listening for the client's interrupt at once when the chunk ends.
        self.wake_read, self.wake_write = os.pipe()

    def finish(self):
        self.finished.set()
        os.write(self.wake_write, b"x")

    def close(self):
        os.close(self.wake_read)
        os.close(self.wake_write)


class RestrictedEnvironment:
    """A restricted client's own Lua environment (--restricted), made at its first chunk: at connect time
    the Lua state may be busy with another client's, and a greeting must never wait for it."""

    def __init__(self):
        self._table = None

    def table(self, runtime):
        """The environment's Lua table; call with the Lua state held."""
        if self._table is None:
            self._table = runtime.restricted_environment()
        return self._table


class LuaService:
    """One Lua state shared by every client: chunks run one at a time, output goes to whoever sent the chunk.

    A client's chunk waits at most BUSY_WAIT for another's to end, then is
    answered "busy"; a running chunk stops on its client's interrupt or after
    the time limit (lua_guard.lua's hook), so no chunk holds the others forever.
    """

    def __init__(self, runtime_factory, error_type=BricksError):
        self.error_type = error_type     # what the runtime raises for a Lua error: reported, not logged
        self.lock = threading.Lock()
        self.output_sink = None      # set under `lock` for the chunk running now; None: to the log
        self.runtime = runtime_factory(self._output)
        self._running_guard = threading.Lock()      # keeps `running` and the runtime's interrupt in step
        self.running = None          # the ticket of the chunk running now
        self.running_since = None
        self.stopping = False        # the daemon is going away: no chunk starts any more

    def _output(self, text):
        sink = self.output_sink
        if sink is not None:
            sink(text)
        else:
            for line in text.rstrip("\n").splitlines():
                log.info("lua: %s", line)

    def run(self, chunk, output=None, mode="script", chunk_name="=remote", ticket=None, time_limit=None,
            environment=None):
        """Runs `chunk` in `mode` with its printed text passed to `output` (None: logged); the result fields.

        With a ticket (a client's chunk), it waits for the Lua state at most
        BUSY_WAIT and may be called off or interrupted; time_limit seconds
        stop it; `environment` is a restricted client's RestrictedEnvironment."""
        return self.call(lambda runtime: run_chunk(runtime, chunk, mode, chunk_name), output, ticket,
                         time_limit, environment)

    def call(self, action, output=None, ticket=None, time_limit=None, environment=None):
        """Runs `action(runtime)` under the lock; its truth says the chunk was incomplete; the result fields."""
        result = {"error": None, "incomplete": False, "shutdown": False}
        refused = self._acquire(ticket)
        if refused:
            result["error"] = refused
            return result
        try:
            self.output_sink = output
            if environment is not None:
                environment = environment.table(self.runtime)
            with self.runtime.guarded(time_limit, environment):
                with self._running_guard:
                    self.running, self.running_since = ticket, time.monotonic()
                try:
                    result["incomplete"] = bool(action(self.runtime))
                except self.error_type as error:
                    result["error"] = str(error)
                except Exception as error:  # a bug below Lua must not take the daemon down with it
                    log.exception("chunk failed unexpectedly")
                    result["error"] = f"internal error: {type(error).__name__}: {_one_line(error)}"
                finally:
                    with self._running_guard:
                        self.running = self.running_since = None
                    self.output_sink = None
            result["shutdown"] = bool(self.runtime.shutdown_requested)
        finally:
            self.lock.release()
        return result

    def _acquire(self, ticket):
        """Takes the Lua state; for a client's ticket, None or why not (called off, or busy for too long)."""
        if ticket is None:
            self.lock.acquire()
            return None
        deadline = time.monotonic() + BUSY_WAIT
        while not self.lock.acquire(timeout=WAIT_STEP):
            if self.stopping:
                return STOPPING
            if ticket.called_off.is_set():
                return INTERRUPTED
            if time.monotonic() >= deadline:
                return self._busy()
        if self.stopping or ticket.called_off.is_set():
            self.lock.release()
            return STOPPING if self.stopping else INTERRUPTED
        return None

    def _busy(self):
        since, ticket = self.running_since, self.running
        running_for = f" for {time.monotonic() - since:.0f} s" if since is not None else ""
        if since is not None and ticket is None:
            return f"busy: the daemon's start-up script has been running{running_for}; try again later"
        return (f"busy: another client's chunk has been running{running_for}; try again later "
                "(Ctrl+C in its shell stops it)")

    def interrupt(self, ticket, reason=INTERRUPTED):
        """Stops the chunk of `ticket` if it is the one running now (a client's Ctrl+C)."""
        with self._running_guard:
            if self.running is ticket and ticket is not None:
                self.runtime.interrupt(reason)

    def stop(self):
        """The daemon is going away: no chunk starts any more and the one running stops (the start-up script
        too). Takes no lock, so that a signal handler may call it whatever the code it interrupted holds."""
        self.stopping = True
        if self.running_since is not None:
            self.runtime.interrupt(STOPPING)

    def completions(self, prefix):
        # Tab must never hang behind a long chunk: no completions rather than a wait.
        if not self.lock.acquire(timeout=COMPLETION_WAIT):
            return []
        try:
            return list(self.runtime.completions(prefix))
        finally:
            self.lock.release()


def configure_runtime(runtime, backend="auto", batch=None):
    """Applies the command-line settings to a fresh runtime: its back-end and the default packet batch."""
    from . import engine
    if backend and backend != "auto":
        runtime.set_backend(backend)
    if batch is not None:
        engine.set_default_batch(batch)


def lua_string(text):
    """`text` as a Lua string literal (decimal escapes for anything unusual, so any bytes survive)."""
    pieces = []
    for byte in text.encode():
        character = chr(byte)
        if character in '"\\' or not (32 <= byte < 127):
            pieces.append(f"\\{byte:03d}")
        else:
            pieces.append(character)
    return '"' + "".join(pieces) + '"'


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__
