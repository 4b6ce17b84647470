"""The bricks daemon: one Lua state (lua_service.py) served to remote shells over a Unix socket (protocol.py),
with a locked pid file and a log.
"""
import errno
import fcntl
import grp
import logging
import logging.handlers
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time

from .errors import BricksError
# The framing and the Lua service live in their own modules; their names stay importable from here.
from .lua_service import (BUSY_WAIT, COMPLETION_WAIT, INTERRUPTED, RUN_MODES, STOPPING,  # noqa: F401
                          WAIT_STEP, ChunkTicket, LuaService, RestrictedEnvironment, _one_line,
                          configure_runtime, lua_string, run_chunk)
from .protocol import (MAX_MESSAGE, OUTPUT_PIECE, PROTOCOL_VERSION, ProtocolError, receive_message,  # noqa: F401
                       send_message, send_output)

DEFAULT_RUN_DIR = "/run/bricks"
DEFAULT_LOG_FILE = "/var/log/bricks.log"
SOCKET_NAME = "bricks.sock"
PID_FILE_NAME = "bricks.pid"
MAX_ERROR = 64 << 10            # characters of an error line sent back; a longer one is cut
CLIENT_SEND_TIMEOUT = 5.0       # a client that stops reading loses its output; the Lua state must not wait on it
SHUTDOWN_LOCK_TIMEOUT = 5.0     # how long SIGTERM waits for a running chunk before cleaning up anyway
READY_TIMEOUT = 60.0            # how long the launching command waits for the start-up script
REPLY_WAIT = 1.0                # how long a stopping daemon lets interrupted clients hear their answer

log = logging.getLogger("bricks")


class DaemonError(BricksError):
    """Why the daemon cannot start or be reached: one line, shown as `bricks: <message>`."""


# ---------------------------------------------------------------- paths

def run_dir():
    return os.environ.get("BRICKS_RUN_DIR") or DEFAULT_RUN_DIR


def default_socket_path():
    return os.environ.get("BRICKS_SOCKET") or os.path.join(run_dir(), SOCKET_NAME)


def default_pid_path():
    return os.environ.get("BRICKS_PID_FILE") or os.path.join(run_dir(), PID_FILE_NAME)


def default_log_path():
    return os.environ.get("BRICKS_LOG_FILE") or DEFAULT_LOG_FILE


def listen_backlog():
    """The kernel's cap on a listen backlog (net.core.somaxconn); asking for more is silently cut to it anyway."""
    try:
        with open("/proc/sys/net/core/somaxconn") as setting:
            return max(int(setting.read()), socket.SOMAXCONN)
    except (OSError, ValueError):
        return socket.SOMAXCONN


# ---------------------------------------------------------------- pid file

class PidFile:
    """A pid file held with an fcntl lock for the daemon's lifetime: the lock, not the file, says who runs."""

    def __init__(self, path):
        self.path = path
        self.descriptor = None

    def acquire(self):
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o755, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError as error:
            raise DaemonError(f"cannot create the pid file {self.path}: {error.strerror} on {error.filename}: "
                              f"run as root, or set BRICKS_RUN_DIR to a directory you can write") from None
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = running_pid(self.path)
            raise DaemonError(f"a daemon is already running (pid {holder if holder else 'unknown'}, "
                              f"pid file {self.path})") from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self.descriptor = descriptor

    def release(self):
        """Removes the file while still holding the lock, so no second daemon ever sees our stale pid."""
        if self.descriptor is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.descriptor)
        self.descriptor = None


def running_pid(pid_path):
    """The pid of the daemon holding `pid_path` locked, or None when no daemon holds it."""
    try:
        descriptor = os.open(pid_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        # F_GETLK names the lock holder itself, which beats trusting the file's text.
        request = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(descriptor, fcntl.F_GETLK, request)
        lock_type, _, _, _, holder = struct.unpack("hhqqi", answer)
        return holder if lock_type != fcntl.F_UNLCK else None
    finally:
        os.close(descriptor)


def stop_daemon(pid_path, timeout=10.0):
    """SIGTERM to the daemon of `pid_path`, then wait until it is gone; returns its pid."""
    pid = running_pid(pid_path)
    if pid is None:
        raise DaemonError(f"no daemon is running (pid file {pid_path})")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid
    except PermissionError:
        raise DaemonError(f"not allowed to stop the daemon (pid {pid}): run this as root, "
                          f"or as the user the daemon runs as") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(pid_path) != pid and not process_exists(pid):
            return pid
        time.sleep(0.05)
    raise DaemonError(f"the daemon (pid {pid}) is still running {timeout:g} s after SIGTERM")


def process_exists(pid):
    """Whether pid names a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


# ---------------------------------------------------------------- who may connect

def peer_credentials(connection):
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    data = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", data)


def _process_groups(pid):
    """Every group id of process `pid` (its primary group is checked separately)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return {int(group) for group in line.split()[1:]}
    except (FileNotFoundError, ProcessLookupError):
        pass
    return set()


def refusal(credentials, group_id):
    """Why a peer may not use the daemon, or None when it may: root, the daemon's own user, or a group member."""
    pid, uid, gid = credentials
    if uid == 0 or uid == os.geteuid():
        return None
    if group_id is not None and (gid == group_id or group_id in _process_groups(pid)):
        return None
    allowed = "root" if group_id is None else f"root or members of group {_group_name(group_id)}"
    return f"permission denied: only {allowed} may use this daemon (you are uid {uid})"


def _group_name(group_id):
    try:
        return grp.getgrgid(group_id).gr_name
    except KeyError:
        return str(group_id)


def group_id_of(group):
    """The gid of a group given by name or number."""
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise DaemonError(f"no group named {group!r}") from None


class Daemon:
    """The socket server: accepts clients (a thread each) until stopped or a client runs BRICKS.shutdown()."""

    def __init__(self, service, socket_path, group=None, restricted=False, chunk_timeout=None):
        self.service = service
        self.socket_path = socket_path
        self.group_id = group_id_of(group)
        self.restricted = restricted          # peers other than root and our own user get restricted Lua
        self.chunk_timeout = chunk_timeout    # seconds a client's chunk may run, None: unlimited
        self._runs = threading.Condition()    # counts chunks whose "done" is not sent yet
        self._runs_in_flight = 0
        self.listener = None
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_write, False)
        self.stopping = threading.Event()

    def bind(self):
        """Creates the socket with its final mode from the start: never a moment when others could connect."""
        os.makedirs(os.path.dirname(os.path.abspath(self.socket_path)), mode=0o755, exist_ok=True)
        self._remove_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mode = 0o600 if self.group_id is None else 0o660
        previous_umask = os.umask(0o777 & ~mode)
        try:
            listener.bind(self.socket_path)
        except OSError as error:
            listener.close()
            raise DaemonError(f"cannot listen on {self.socket_path}: {error.strerror}") from None
        finally:
            os.umask(previous_umask)
        if self.group_id is not None:
            os.chown(self.socket_path, -1, self.group_id)
        os.chmod(self.socket_path, mode)
        # A burst of clients (a script starting 200 shells) must queue, not meet EAGAIN: the system's maximum.
        listener.listen(listen_backlog())
        self.listener = listener

    def _remove_stale_socket(self):
        if not os.path.exists(self.socket_path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket_path)
        except OSError:
            os.unlink(self.socket_path)    # nobody answers: a crashed daemon's leftover
            return
        finally:
            probe.close()
        raise DaemonError(f"another daemon is listening on {self.socket_path}")

    def stop(self):
        """Asks the accept loop to end; safe from a signal handler or any thread."""
        self.stopping.set()
        try:
            os.write(self.wake_write, b"x")
        except BlockingIOError:
            pass

    def serve(self):
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            selector.register(self.wake_read, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.listener and not self.stopping.is_set():
                        self._accept()

    def _accept(self):
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        threading.Thread(target=self._serve_client, args=(connection,), name="bricks-client", daemon=True).start()

    def _serve_client(self, connection):
        with connection:
            try:
                credentials = peer_credentials(connection)
                reason = refusal(credentials, self.group_id)
                connection.settimeout(CLIENT_SEND_TIMEOUT)
                if reason:
                    log.warning("refused pid %d uid %d: %s", credentials[0], credentials[1], reason)
                    send_message(connection, {"refused": reason})
                    return
                environment = None
                if self.restricted and credentials[1] not in (0, os.geteuid()):
                    environment = RestrictedEnvironment()
                log.info("client connected: pid %d uid %d%s", credentials[0], credentials[1],
                         " (restricted)" if environment is not None else "")
                greeting = {"hello": "bricks", "version": PROTOCOL_VERSION}
                if environment is not None:
                    greeting["restricted"] = True
                send_message(connection, greeting)
                connection.settimeout(None)
                self._answer_requests(connection, environment)
            except (OSError, ValueError) as error:
                log.info("client dropped: %s", _one_line(error))

    def _answer_requests(self, connection, environment):
        while not self.stopping.is_set():
            try:
                request = receive_message(connection)
            except ProtocolError as error:
                # One line in the log and to the peer; after an oversized header the stream cannot be followed.
                log.warning("bad message from a client: %s", error)
                send_message(connection, {"done": True, "error": f"bad request: {error}",
                                          "incomplete": False, "shutdown": False})
                if error.fatal:
                    return
                continue
            if request is None:
                return
            operation = request.get("op")
            if operation == "run" and isinstance(request.get("chunk"), str) and request.get("mode") in RUN_MODES:
                self._run_for(connection, request["chunk"], request["mode"], environment)
            elif operation == "stats":
                # Read beside the Lua state, not through it: a long chunk never delays a dashboard.
                from .metrics import daemon_snapshot
                try:
                    answer = {"stats": daemon_snapshot()}
                except Exception as error:     # a bug must reach the client as one line, not hang it
                    log.error("stats: %s", _one_line(error), exc_info=True)
                    answer = {"error": f"stats: {_one_line(error)}"}
                send_message(connection, answer)
            elif operation == "complete" and isinstance(request.get("prefix"), str):
                send_message(connection, {"completions": self.service.completions(request["prefix"])})
            elif operation == "interrupt":
                pass     # a Ctrl+C that came just after its chunk ended: nothing left to stop
            else:
                send_message(connection, {"done": True, "error": f"bad request {operation!r}",
                                          "incomplete": False, "shutdown": False})

    def _run_for(self, connection, chunk, mode, environment):
        with self._runs:
            self._runs_in_flight += 1
        try:
            self._run_and_reply(connection, chunk, mode, environment)
        finally:
            with self._runs:
                self._runs_in_flight -= 1
                self._runs.notify_all()

    def wait_for_replies(self, timeout):
        """Lets the clients of chunks just stopped hear their "done" before the process goes away."""
        with self._runs:
            return self._runs.wait_for(lambda: self._runs_in_flight == 0, timeout)

    def _run_and_reply(self, connection, chunk, mode, environment):
        reachable = [True]

        def output(text):
            # A client that left (or stopped reading) loses its output; the chunk runs to its end regardless.
            if reachable[0]:
                try:
                    connection.settimeout(CLIENT_SEND_TIMEOUT)
                    send_output(connection, text)
                except OSError:
                    reachable[0] = False

        ticket = ChunkTicket()
        listener = threading.Thread(target=self._listen_while_running, args=(connection, ticket),
                                    name="bricks-client-interrupt", daemon=True)
        listener.start()
        try:
            result = self.service.run(chunk, output, mode, ticket=ticket, time_limit=self.chunk_timeout,
                                      environment=environment)
        finally:
            ticket.finish()
            listener.join()
            ticket.close()
        if result["error"]:
            result["error"] = _cut(result["error"])
            log.info("chunk error: %s", result["error"])
        try:
            if reachable[0]:
                connection.settimeout(CLIENT_SEND_TIMEOUT)
                send_message(connection, dict(result, done=True))
                connection.settimeout(None)
        finally:
            # Only after the reply: the client must hear "done" before the process goes away.
            if result["shutdown"]:
                log.info("BRICKS.shutdown() from a remote shell")
                self.stop()

    def _listen_while_running(self, connection, ticket):
        """While a chunk waits or runs: the client's interrupt stops it; a client that left never gets it run.

        A client that leaves while its chunk runs does not stop it: the chunk
        finishes what it started (half a configuration helps nobody)."""
        with selectors.DefaultSelector() as selector:
            selector.register(connection, selectors.EVENT_READ)
            selector.register(ticket.wake_read, selectors.EVENT_READ)
            while True:
                selector.select()
                if ticket.finished.is_set():
                    return
                try:
                    message = receive_message(connection)
                except (OSError, ValueError):
                    message = None
                if message is None:
                    ticket.called_off.set()
                    return
                if message.get("op") == "interrupt":
                    ticket.called_off.set()
                    self.service.interrupt(ticket)
                else:
                    log.warning("ignored a %r request sent while a chunk of the same client runs", message.get("op"))

    def close(self):
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
        for descriptor in (self.wake_read, self.wake_write):
            try:
                os.close(descriptor)
            except OSError:
                pass


# ---------------------------------------------------------------- the daemon process

class DaemonOptions:
    """Everything `bricks -d` / `bricks-server` was told."""

    def __init__(self, script=None, script_text=None, script_args=(), socket_path=None, pid_path=None,
                 log_path=None, group=None, backend="auto", batch=None, foreground=False, rules_path=None,
                 restricted=False, chunk_timeout=None, metrics=None):
        self.script = script
        self.metrics = metrics                  # [HOST:]PORT to serve Prometheus /metrics on (None: not served)
        self.rules_path = rules_path        # Filter rules (JSON lines) loaded once the script built the filters
        self.script_text = script_text      # a generated chunk (bricks-load-balance) instead of a file
        self.script_args = tuple(script_args)
        self.socket_path = socket_path or default_socket_path()
        self.pid_path = pid_path or default_pid_path()
        self.log_path = log_path or default_log_path()
        self.group = group
        self.backend = backend
        self.batch = batch
        self.foreground = foreground
        self.restricted = restricted            # clients other than root get Lua without os/io/debug/loaders
        self.chunk_timeout = chunk_timeout      # seconds a client's chunk may run (None: no limit)


def _set_up_logging(log_path, foreground):
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        log_file = logging.FileHandler(log_path)
    except OSError as error:
        raise DaemonError(f"cannot open log file {log_path}: {error.strerror}: run as root, "
                          f"or give --log-file (BRICKS_LOG_FILE) a path you can write") from None
    log_file.setFormatter(logging.Formatter("%(asctime)s bricks[%(process)d] %(levelname)s %(message)s"))
    log.addHandler(log_file)
    # Under systemd (JOURNAL_STREAM) the journal takes stderr: syslog would put every line there twice.
    if os.path.exists("/dev/log") and not (foreground and os.environ.get("JOURNAL_STREAM")):
        try:
            syslog = logging.handlers.SysLogHandler(address="/dev/log")
        except OSError:
            syslog = None    # syslog is a convenience; the log file is the record
        if syslog is not None:
            syslog.setFormatter(logging.Formatter("bricks[%(process)d]: %(message)s"))
            log.addHandler(syslog)
    if foreground:
        log.addHandler(logging.StreamHandler(sys.stderr))
    threading.excepthook = lambda hook: log.error("thread %s died: %s", hook.thread.name if hook.thread else "?",
                                                  hook.exc_value, exc_info=(hook.exc_type, hook.exc_value,
                                                                            hook.exc_traceback))


class _Launch:
    """The channel from the detached daemon back to the command that launched it: 'ready' or why not."""

    def __init__(self):
        self.read_end, self.write_end = os.pipe()

    def wait_in_launcher(self, first_child):
        """In the launching command: wait for the daemon's verdict; returns the exit status."""
        os.close(self.write_end)
        os.waitpid(first_child, 0)
        data, deadline = b"", time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            with selectors.DefaultSelector() as selector:
                selector.register(self.read_end, selectors.EVENT_READ)
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    break
            piece = os.read(self.read_end, 4096)
            if not piece:
                break
            data += piece
        os.close(self.read_end)
        verdict = data.decode(errors="replace").strip()
        if verdict.startswith("ready"):
            return 0
        if not verdict:
            verdict = f"the daemon did not report ready within {READY_TIMEOUT:g} s (it may still be starting); see its log"
        sys.stderr.write(f"bricks: {verdict.removeprefix('error ')}\n")
        return 1

    def report(self, verdict):
        if self.write_end is None:
            return
        try:
            os.write(self.write_end, verdict.encode() + b"\n")
        except OSError:
            pass
        os.close(self.write_end)
        self.write_end = None


def _detach(launch):
    """Double fork and setsid; returns only in the daemon, whose stdio then goes to /dev/null."""
    first_child = os.fork()
    if first_child:
        sys.exit(launch.wait_in_launcher(first_child))
    os.close(launch.read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.umask(0o022)
    null = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(null, descriptor)
    os.close(null)


def _make_runtime(options):
    from .lua import LuaRuntime

    def factory(output):
        runtime = LuaRuntime(output=output)
        configure_runtime(runtime, backend=options.backend, batch=options.batch)
        return runtime
    return factory


def run_daemon(options, runtime_factory=None):
    """`bricks -d`: detach (unless foreground), serve until SIGTERM/SIGINT or BRICKS.shutdown(); the exit status."""
    from . import engine, links
    launch = None if options.foreground else _Launch()
    if launch is not None:
        _detach(launch)
    pid_file = PidFile(options.pid_path)
    daemon = None
    exporters = []        # the metrics server and the status file: stopped before the engines go
    try:
        pid_file.acquire()
        _set_up_logging(options.log_path, options.foreground)
        service = LuaService(runtime_factory or _make_runtime(options))
        daemon = Daemon(service, options.socket_path, options.group, restricted=options.restricted,
                        chunk_timeout=options.chunk_timeout)
        daemon.bind()
        if options.metrics is not None:     # before the script: a taken port must not leave engines half started
            from .metrics import MetricsServer
            exporters.append(MetricsServer(options.metrics))
            log.info("metrics: http://%s:%d/metrics", exporters[-1].host, exporters[-1].port)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda number, frame: (service.stop(), daemon.stop()))
        links.reclaim_stale_pipes()
        log.info("started: pid %d, socket %s", os.getpid(), options.socket_path)
        _run_start_up_script(service, options)
        _load_rule_file(service, options)
        log.info("back-end: %s (%s)", engine.backend_name(), engine.backend_detail())
        from .metrics import StatusFile, status_path
        exporters.append(StatusFile(status_path(options.socket_path), log=log))
        exporters[-1].start()
    except Exception as error:
        message = str(error) if isinstance(error, DaemonError) else _one_line(error)
        if log.handlers:     # before logging is set up, the message below is the only line
            log.error("not started: %s", message)
        _stop_exporters(exporters)
        if daemon is not None:
            daemon.close()
        engine.shutdown_all()
        pid_file.release()
        if launch is not None:
            launch.report(f"error {message}")
            os._exit(1)
        raise DaemonError(message) from None
    if launch is not None:
        launch.report("ready")
    _tell_systemd(f"READY=1\nSTATUS=serving on {options.socket_path}\nMAINPID={os.getpid()}")
    try:
        daemon.serve()
    finally:
        _stop_exporters(exporters)
        _stop_cleanly(service, daemon, pid_file)
    return 0


def _stop_exporters(exporters):
    """The status file removed, the metrics port closed: a stopped daemon leaves neither behind."""
    for exporter in reversed(exporters):
        try:
            exporter.stop()
        except Exception as error:    # cleaning up the rest matters more than this one's failure
            log.warning("stopping %s: %s", type(exporter).__name__, _one_line(error))


def _cut(message):
    """An error line short enough for one message (a Lua error may carry a 20 MB string)."""
    if len(message) <= MAX_ERROR:
        return message
    return f"{message[:MAX_ERROR]}... ({len(message) - MAX_ERROR} more characters)"


def _run_start_up_script(service, options):
    if options.script_text is not None:
        result = service.run(options.script_text, chunk_name="=generated")
    elif options.script is not None:
        result = service.call(lambda runtime: runtime.execute_file(options.script, options.script_args))
    else:
        return
    if result["error"]:
        raise DaemonError(result["error"])
    if result["shutdown"]:
        raise DaemonError("the start-up script called BRICKS.shutdown()")


def _load_rule_file(service, options):
    """--rules FILE: every line's rule added to the Filter it names; any bad line and the daemon does not start."""
    if options.rules_path is None:
        return
    from .filter import load_rule_file
    added = []
    result = service.call(lambda runtime: added.append(load_rule_file(options.rules_path)))
    if result["error"]:
        message = result["error"]
        raise DaemonError(message if message.startswith(options.rules_path) else f"{options.rules_path}: {message}")
    log.info("rules: %d loaded from %s", added[0], options.rules_path)


def _tell_systemd(state):
    """Readiness and stopping for a Type=notify unit (nothing without $NOTIFY_SOCKET)."""
    from .systemd import notify
    if not notify(state) and notify.error:
        log.warning("%s", notify.error)


def _stop_cleanly(service, daemon, pid_file):
    """Engines stopped and deleted (pipes removed, pcap files flushed), then the socket and pid file removed."""
    from . import engine
    log.info("stopping")
    _tell_systemd("STOPPING=1")
    daemon.close()
    service.stop()
    # A chunk still running is interrupted; one stuck below Lua gets a moment, then we clean up under it regardless.
    holding = service.lock.acquire(timeout=SHUTDOWN_LOCK_TIMEOUT)
    daemon.wait_for_replies(REPLY_WAIT)
    try:
        engine.shutdown_all()
    finally:
        if holding:
            service.lock.release()
    pid_file.release()
    log.info("stopped")
    logging.shutdown()
