"""The interactive Lua shell (`bricks`), shared by the local shell and the remote one (`bricks-shell`).

A session runs chunks and completes names; the local session owns a Lua
runtime in this process, the remote one (bricks.client) forwards to the
daemon. The loop here is the same for both: a version banner, prompt
`bricks> `, `bricks?>> ` while a chunk is unfinished (the original's prompts),
GNU readline editing, history and Tab completion, one-line errors after which
the shell carries on. A non-tty stdin is run as one script.
"""
import contextlib
import os
import signal
import sys
import threading

from . import __version__

PROMPT = "bricks> "
CONTINUATION_PROMPT = "bricks?>> "     # the original's (its LUA_PROMPT2, without the colour)
HISTORY_FILE = "~/.bricks_history"
HISTORY_LENGTH = 1000
# Not word breaks for completion: `BRICKS.sh` and `pe:st` are completed whole.
COMPLETER_DELIMITERS = " \t\n\"'`~!@#$%^&*()-=+[{]}\\|;,<>/?"


class Result:
    """What running one chunk gave: an error line, whether it was unfinished, whether BRICKS.shutdown() ran."""

    def __init__(self, error=None, incomplete=False, shutdown=False):
        self.error = error
        self.incomplete = incomplete
        self.shutdown = shutdown


# Signals that end the shell (after cleanup); while a chunk runs they first interrupt it.
QUIT_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP)


class LocalSession:
    """Chunks run in this process's own Lua runtime; printed text goes straight to stdout.

    While a chunk runs, Ctrl+C interrupts it (the error "interrupted", the
    shell goes on) and SIGTERM, Ctrl+\\ or SIGHUP interrupt it and then end the
    shell through its normal cleanup: Python cannot act on a signal inside Lua,
    so the handlers only ask the runtime to stop the chunk."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.quit_signal = None

    def run(self, chunk, mode="interactive"):
        """Runs a chunk in a mode of bricks.lua_service.run_chunk."""
        from .lua_service import run_chunk
        return self._interruptible(lambda: run_chunk(self.runtime, chunk, mode))

    def run_file(self, path, arguments=()):
        def run_script():
            self.runtime.execute_file(path, tuple(arguments))
            return False      # a file is never unfinished
        return self._interruptible(run_script)

    def _interruptible(self, action):
        from .errors import BricksError
        with self._signals_interrupt(), self.runtime.guarded():
            try:
                result = Result(incomplete=bool(action()), shutdown=self.runtime.shutdown_requested)
            except BricksError as error:
                result = Result(error=str(error), shutdown=self.runtime.shutdown_requested)
        if self.quit_signal is not None:
            raise SystemExit(128 + self.quit_signal)
        return result

    @contextlib.contextmanager
    def _signals_interrupt(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def interrupt(signum, frame):
            if signum != signal.SIGINT:
                self.quit_signal = signum
            self.runtime.interrupt("interrupted" if signum == signal.SIGINT else f"terminated by signal {signum}")

        previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT,) + QUIT_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def complete(self, line):
        return self.runtime.completions(line)

    def banner(self):
        return banner_line(__version__, self.runtime.lua_implementation)


def banner_line(release, where):
    """The greeting of an interactive shell, as the original's `BRICKS Version ...` line."""
    return f"BRICKS Version {release} ({where}); BRICKS.help() lists the commands, Ctrl+D leaves"


def write_output(text):
    sys.stdout.write(text)
    sys.stdout.flush()


def report_error(message):
    sys.stdout.flush()
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def run_script_from_stdin(session):
    """stdin is not a terminal: run all of it as one chunk; the exit status."""
    result = session.run(sys.stdin.read(), mode="script")
    if result.error:
        report_error(result.error)
        return 1
    return 0


def interactive_loop(session, history_path=HISTORY_FILE):
    """Reads, runs and reports chunks until end of input or BRICKS.shutdown(); the exit status."""
    readline = _set_up_readline(session, history_path)
    write_output(session.banner() + "\n")
    pending = []
    try:
        while True:
            try:
                line = input(CONTINUATION_PROMPT if pending else PROMPT)
            except EOFError:
                write_output("\n")
                return 0
            except KeyboardInterrupt:
                # As in the lua REPL: Ctrl+C abandons the line (and any unfinished chunk), not the shell.
                write_output("\n")
                pending = []
                continue
            pending.append(line)
            chunk = "\n".join(pending)
            if not chunk.strip():
                pending = []
                continue
            try:
                result = session.run(chunk, mode="interactive")
            except KeyboardInterrupt:
                result = Result(error="interrupted")
            if result.incomplete:
                continue
            pending = []
            if result.error:
                report_error(result.error)
            if result.shutdown:
                return 0
    finally:
        if readline is not None:
            _save_history(readline, history_path)


def _set_up_readline(session, history_path):
    try:
        import readline
    except ImportError:
        return None
    readline.set_completer_delims(COMPLETER_DELIMITERS)
    readline.parse_and_bind("tab: complete")
    readline.set_history_length(HISTORY_LENGTH)
    try:
        readline.read_history_file(os.path.expanduser(history_path))
    except OSError:
        pass
    matches = []

    def complete(text, state):
        # The session completes the line up to the cursor and answers whole lines; readline wants the word.
        nonlocal matches
        if state == 0:
            line = readline.get_line_buffer()[:readline.get_endidx()]
            start = readline.get_begidx()
            try:
                matches = [candidate[start:] for candidate in session.complete(line)
                           if candidate.startswith(line[:start])]
            except Exception:     # a completion failure must never break the line being edited
                matches = []
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    return readline


def _save_history(readline, history_path):
    try:
        readline.write_history_file(os.path.expanduser(history_path))
    except OSError:
        pass


def run_local(script=None, script_args=(), backend="auto", batch=None):
    """`bricks` without -d/-s: run SCRIPT, then the shell (or stdin as a script); clean up; the exit status."""
    from . import engine, links
    from .lua import LuaRuntime
    from .lua_service import configure_runtime
    from .errors import BricksError
    # SIGTERM, Ctrl+\ and SIGHUP clean up like Ctrl+D (engines stopped, pipes removed); Ctrl+C stays a
    # KeyboardInterrupt. While a chunk runs, LocalSession stops it first.
    for signum in QUIT_SIGNALS:
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))
    try:
        runtime = LuaRuntime(output=write_output)
        try:
            configure_runtime(runtime, backend=backend, batch=batch)
        except BricksError as error:
            report_error(f"bricks: {error}")
            return 1
        try:
            links.reclaim_stale_pipes()
        except OSError:
            pass    # without the rights to list links there are no pipes of ours to reclaim either
        session = LocalSession(runtime)
        if script is not None:
            result = session.run_file(script, script_args)
            if result.error:
                report_error(result.error)
                return 1
            if result.shutdown:
                return 0
        if sys.stdin.isatty():
            status = interactive_loop(session)
        else:
            status = run_script_from_stdin(session)
        # End of input is not Ctrl-C: engines reading pcap files finish first (their writers complete).
        engine.wait_for_finite_engines(announce=report_error)
        return status
    except KeyboardInterrupt:
        report_error("bricks: interrupted")
        return 128 + signal.SIGINT
    finally:
        engine.shutdown_all()
