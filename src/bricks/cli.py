"""Command-line glue for bricks, bricks-server, bricks-shell, bricks-load-balance, bricks-duplicate, bricks-kill-server."""
import os
import sys

import click

CONTEXT = {"help_option_names": ["-h", "--help"]}
VERSION_MESSAGE = "BRICKS Version %(version)s"   # the original's banner line


def _version_option(function):
    from . import __version__
    return click.version_option(__version__, "--version", message=VERSION_MESSAGE,
                                help="Print the version and exit.")(function)
BACKENDS = ("auto", "netmap", "xdp", "packet")   # backends.CHOICES, without importing the engine
MAX_PIPES = 64


def _fail(message, status=1):
    click.echo(f"bricks: {message}", err=True)
    sys.exit(status)


def _socket_option(function):
    return click.option("-a", "--socket", "socket_path", metavar="PATH", envvar="BRICKS_SOCKET",
                        help="The daemon's Unix socket [default: $BRICKS_RUN_DIR/bricks.sock, "
                             "else /run/bricks/bricks.sock].")(function)


class _RealtimePriority(click.ParamType):
    """--realtime: a SCHED_FIFO priority 1..99, or 0 / off for normal scheduling (engine.py checks it again)."""

    name = "priority"

    def convert(self, value, parameter, context):
        text = str(value).strip().lower()
        if text == "off" or text.isdigit() and 0 <= int(text) <= 99:
            return "0" if text == "off" else str(int(text))
        self.fail(f"{value!r} is not a priority from 1 to 99, nor 0 or off", parameter, context)


def _export_realtime(context, parameter, priority):
    # The engines read it when they start, in this process or the daemon it becomes.
    if priority is not None:
        os.environ["BRICKS_REALTIME"] = priority


def _runtime_options(function):
    function = click.option("--realtime", type=_RealtimePriority(), metavar="PRIORITY|off", envvar="BRICKS_REALTIME",
                            expose_value=False, callback=_export_realtime,
                            help="SCHED_FIFO priority of the engine threads (1..99), 0 or off: normal scheduling "
                                 "[default: 10 where the process may (root, CAP_SYS_NICE), else normal with one "
                                 "warning; engines reading pcap files: normal].")(function)
    function = click.option("-b", "--batch", type=click.IntRange(1, 65536), metavar="BATCH",
                            help="Default packets per read for pe:link() [default: 1024].")(function)
    return click.option("--backend", type=click.Choice(BACKENDS), default="auto", envvar="BRICKS_BACKEND",
                        show_default=True, help="Packet I/O back-end.")(function)


def _daemon_options(function):
    for option in reversed([
        click.option("--pid-file", "pid_path", metavar="PATH", envvar="BRICKS_PID_FILE",
                     help="Locked pid file [default: $BRICKS_RUN_DIR/bricks.pid, else /run/bricks/bricks.pid]."),
        click.option("--log-file", "log_path", metavar="PATH", envvar="BRICKS_LOG_FILE",
                     help="Log file (also logged to syslog) [default: /var/log/bricks.log]."),
        click.option("--group", metavar="GROUP", envvar="BRICKS_GROUP",
                     help="Let this group use the socket too (mode 0660) [default: root only, 0600]. "
                          "Socket access is root-equivalent: members run Lua as root (os.execute, "
                          "io.open); --restricted takes those away, but the broker API still writes "
                          "pcap and rule files as root where it is told."),
        click.option("--restricted", is_flag=True, envvar="BRICKS_RESTRICTED",
                     help="Clients other than root (the --group members) get the broker API without "
                          "os, io, debug, load*, dofile, require and package; root keeps full Lua."),
        click.option("--chunk-timeout", type=click.FloatRange(min=0.1), metavar="SECONDS",
                     envvar="BRICKS_CHUNK_TIMEOUT",
                     help="Stop a client's chunk that runs longer than this (error 'chunk exceeded "
                          "SECONDS s') [default: no limit; Ctrl+C in its shell always stops it]."),
        click.option("--foreground", is_flag=True, help="Do not detach; log to stderr as well."),
        click.option("--metrics", metavar="[HOST:]PORT", envvar="BRICKS_METRICS",
                     help="Serve Prometheus metrics on http://HOST:PORT/metrics [default: not served; "
                          "HOST: 127.0.0.1]."),
    ]):
        function = option(function)
    return _runtime_options(_socket_option(function))


def _rules_option(function):
    return click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
                        help="Filter rules (JSON lines, as f:save writes with a `filter` key per line, the name "
                             "of the Filter's first output) to load once SCRIPT has built the filters; a bad "
                             "line and the daemon does not start.")(function)


def _start_daemon(daemon_settings, backend, batch, script=None, script_args=(), script_text=None, rules_path=None):
    """daemon_settings: the values of _daemon_options (socket_path, pid_path, ..., chunk_timeout) by name."""
    from .server import DaemonError, DaemonOptions, run_daemon
    options = DaemonOptions(script=script, script_text=script_text, script_args=script_args, backend=backend,
                            batch=batch, rules_path=rules_path, **daemon_settings)
    try:
        sys.exit(run_daemon(options))
    except DaemonError as error:
        _fail(str(error))


@click.command(context_settings=CONTEXT)
@_version_option
@click.option("-f", "--script", type=click.Path(exists=True, dir_okay=False), metavar="SCRIPT",
              help="Lua script to run first (extra arguments become its arg table).")
@click.option("-d", "--daemon", is_flag=True, help="Run as a daemon serving remote shells.")
@click.option("-s", "--shell", "remote", is_flag=True, help="Remote shell to a running daemon.")
@click.option("-c", "--command", metavar="CHUNK", help="With -s: run one chunk and exit.")
@_rules_option
@_daemon_options
@click.argument("script_args", nargs=-1)
def main(script, daemon, remote, command, rules_path, backend, batch, script_args, **daemon_settings):
    """The bricks packet broker: without -d or -s, run SCRIPT then an interactive Lua shell."""
    if daemon and remote:
        _fail("-d (daemon) and -s (remote shell) cannot be used together", status=2)
    if script_args and script is None:
        _fail("arguments given without -f SCRIPT", status=2)
    if command is not None and not remote:
        _fail("-c CHUNK needs -s (for the local shell, pipe the chunk into bricks)", status=2)
    if rules_path is not None and not daemon:
        _fail("--rules FILE needs -d (a local shell loads rules with f:load(path))", status=2)
    if daemon:
        _start_daemon(daemon_settings, backend, batch, script=script, script_args=script_args,
                      rules_path=rules_path)
    if remote:
        _remote(daemon_settings["socket_path"], command)
    from .shell import run_local
    sys.exit(run_local(script=script, script_args=script_args, backend=backend, batch=batch))


def _remote(socket_path, command):
    from .client import run_remote
    from .server import default_socket_path
    sys.exit(run_remote(socket_path or default_socket_path(), command))


@click.command(context_settings=CONTEXT)
@_version_option
@click.option("-f", "--script", type=click.Path(exists=True, dir_okay=False), metavar="SCRIPT",
              help="Lua script to run at start-up (extra arguments become its arg table).")
@_rules_option
@_daemon_options
@click.argument("script_args", nargs=-1)
def server_main(script, rules_path, backend, batch, script_args, **daemon_settings):
    """Start the bricks daemon (= bricks -d): one Lua state served over a Unix socket."""
    if script_args and script is None:
        _fail("arguments given without -f SCRIPT", status=2)
    _start_daemon(daemon_settings, backend, batch, script=script, script_args=script_args, rules_path=rules_path)


@click.command(context_settings=CONTEXT)
@_version_option
@_socket_option
@click.option("-c", "--command", metavar="CHUNK", help="Run one chunk, print its output and exit "
                                                       "(status 1 and the error on stderr if it fails).")
def shell_main(socket_path, command):
    """Remote Lua shell to a running bricks daemon (= bricks -s). Ctrl+D leaves; the daemon keeps running."""
    _remote(socket_path, command)


def fan_out_chunk(brick_kind, interface, count, tunnels=None):
    """The Lua chunk of bricks-load-balance / bricks-duplicate: IFACE to pipes IFACE{0..count-1, started
    (tunnels: the LoadBalancer's tunnels option, "inner" to hash the innermost flow)."""
    from .lua_service import lua_string
    name = lua_string(interface)
    engine = lua_string(f"{brick_kind.lower()}-{interface}")
    options = f", nil, {{tunnels = {lua_string(tunnels)}}}" if tunnels else ""
    return (f"local engine = PktEngine.new({engine})\n"
            f"local brick = Brick.new({lua_string(brick_kind)}{options})\n"
            f"brick:connect_input({name})\n"
            f"brick:connect_outputs({name}, {count})\n"
            f"engine:link(brick)\n"
            f"engine:start()\n")


def _tunnels_option(function):
    return click.option("--tunnels", type=click.Choice(["outer", "inner"]), default=None,
                        help="Which flow of tunnelled traffic (VXLAN, GENEVE, GRE, ERSPAN, GTP-U, MPLS) decides "
                             "the pipe: inner keeps every inner connection on one pipe [default: outer, "
                             "the original's hash].")(function)


def _fan_out_command(brick_kind, summary, balances=False):
    @click.command(context_settings=CONTEXT, help=summary + " IFACE N may also be given as IFACE:N "
                   "(a systemd instance: bricks-load-balance@eth3:4).")
    @_version_option
    @click.argument("interface", metavar="IFACE")
    @click.argument("count", metavar="N", type=click.IntRange(1, MAX_PIPES), required=False)
    @_daemon_options
    def command(interface, count, backend, batch, tunnels=None, **daemon_settings):
        if count is None:
            from .errors import BricksError
            from .systemd import parse_fan_out_instance
            try:
                interface, count = parse_fan_out_instance(interface)
            except BricksError as error:
                _fail(str(error), status=2)
        _start_daemon(daemon_settings, backend, batch,
                      script_text=fan_out_chunk(brick_kind, interface, count, tunnels))
    return _tunnels_option(command) if balances else command


load_balance_main = _fan_out_command(
    "LoadBalancer", "Start a daemon that balances IFACE's traffic, flow by flow, to pipes IFACE}0 .. IFACE}N-1.",
    balances=True)
duplicate_main = _fan_out_command(
    "Duplicator", "Start a daemon that copies all of IFACE's traffic to each of the pipes IFACE}0 .. IFACE}N-1.")


@click.command(context_settings=CONTEXT)
@_version_option
@click.option("--pid-file", "pid_path", metavar="PATH", envvar="BRICKS_PID_FILE",
              help="The daemon's pid file [default: $BRICKS_RUN_DIR/bricks.pid, else /run/bricks/bricks.pid].")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=10.0, show_default=True,
              help="Seconds to wait for the daemon to be gone.")
def kill_server_main(pid_path, timeout):
    """Stop the bricks daemon (SIGTERM through its pid file) and wait until it is gone."""
    from .server import DaemonError, default_pid_path, stop_daemon
    try:
        stop_daemon(pid_path or default_pid_path(), timeout)
    except DaemonError as error:
        _fail(str(error))


@click.command(context_settings=CONTEXT)
@_version_option
@click.argument("input_path", metavar="IN.pcap", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "template", required=True, metavar="TEMPLATE",
              help="Output file; {n} becomes the output's number 0..N-1 (e.g. 'out-{n}.pcap').")
@click.option("--balance", type=click.IntRange(1, MAX_PIPES), metavar="N",
              help="Split by flow into N files, with the live LoadBalancer's hash.")
@click.option("--duplicate", type=click.IntRange(1, MAX_PIPES), metavar="N", help="Copy every packet to N files.")
@click.option("--filter", "expression", metavar="EXPR",
              help="Keep only the packets matching this tcpdump expression (before --balance/--duplicate).")
@click.option("--split", type=click.Choice(["2", "4"]), default="4", show_default=True,
              help="What --balance hashes: 2 = the IP pair, 4 = the IP pair and the ports.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
def split_main(input_path, template, balance, duplicate, expression, split, progress):
    """Split a pcap file by flow (--balance), copy it (--duplicate) or filter it (--filter), offline.

    Output files are classic microsecond pcap; a run that does not finish removes them."""
    from . import split as splitting
    from .errors import BricksError
    try:
        plan = splitting.SplitPlan(input_path, template, balance=balance, duplicate=duplicate,
                                   expression=expression, split=int(split))
        if progress is None:
            stream = splitting.progress_stream_for()      # stderr when it is a terminal
        else:
            stream = sys.stderr if progress else None
        result = splitting.run(plan, progress_stream=stream)
    except BricksError as error:
        _fail(str(error))
    except KeyboardInterrupt:
        _fail("interrupted: the output files were removed", status=130)
    click.echo(result.summary(input_path))
    if result.drops:
        sys.exit(1)


COMMANDS = {"bricks": main, "bricks-server": server_main, "bricks-shell": shell_main,
            "bricks-load-balance": load_balance_main, "bricks-duplicate": duplicate_main,
            "bricks-kill-server": kill_server_main}


@click.command(context_settings=CONTEXT)
@_version_option
@click.option("--dir", "unit_directory", default="/etc/systemd/system", show_default=True, metavar="DIR",
              help="Where to write the unit files.")
@click.option("--bin", "bin_directory", metavar="DIR",
              help="Directory of the bricks commands the units run [default: this bricks' own, e.g. .venv/bin].")
@click.option("--no-reload", is_flag=True, help="Do not run systemctl daemon-reload.")
def install_units_main(unit_directory, bin_directory, no_reload):
    """Install the systemd units bricks.service and bricks-load-balance@.service, running this bricks."""
    from .errors import BricksError
    from .systemd import install_units
    try:
        written, reloaded = install_units(unit_directory, bin_directory, reload=not no_reload)
    except BricksError as error:
        _fail(str(error))
    for path in written:
        click.echo(f"installed {path}")
    if isinstance(reloaded, str):
        click.echo(f"bricks: systemctl daemon-reload failed: {reloaded}", err=True)
    click.echo("next: write /etc/bricks/bricks.lua, then: systemctl enable --now bricks "
               "(or: systemctl enable --now bricks-load-balance@IFACE:N)")


def _with_session(socket_path, work):
    """Runs work(session, socket_path) on a connection to the daemon; its exit status, or one line on failure."""
    from .client import ClientError, RemoteSession
    from .server import default_socket_path
    socket_path = socket_path or default_socket_path()
    try:
        session = RemoteSession(socket_path)
        try:
            return work(session, socket_path)
        finally:
            session.close()
    except ClientError as error:
        _fail(str(error))


@click.command(context_settings=CONTEXT)
@_version_option
@_socket_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the counters as one JSON document (engines, bricks, outputs, drops by cause, "
                   "Filter rules) instead of text.")
def stats_main(socket_path, as_json):
    """Print a running daemon's counters (read through its socket, beside any chunk that runs)."""
    import json

    from . import stats

    def show(session, _):
        snapshot = session.stats()
        if as_json:
            click.echo(json.dumps(snapshot, indent=2, sort_keys=True))
        else:
            click.echo(stats.engines_table(snapshot["engines"]))
            for known in snapshot["engines"]:
                click.echo(stats.engine_text(known))
        return 0
    sys.exit(_with_session(socket_path, show))


@click.command(context_settings=CONTEXT)
@_version_option
@_socket_option
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between two redraws.")
@click.option("--rounds", type=click.IntRange(1), metavar="N", help="Quit after N redraws [default: until q].")
def top_main(socket_path, interval, rounds):
    """A live view of a running daemon: per output Mpps, Gbit/s and drops per second. q or Ctrl+C quits."""
    from .top import run_top
    sys.exit(_with_session(socket_path, lambda session, path: run_top(session, path, interval, rounds)))


# `bricks SUBCOMMAND ...`: tools beside the broker itself (a first argument never taken for a script: those need -f).
SUBCOMMANDS = {"split": split_main, "install-units": install_units_main, "stats": stats_main, "top": top_main}


def bricks_main():
    """The `bricks` command: `bricks SUBCOMMAND ...` for one of SUBCOMMANDS, else the broker (main)."""
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        name = sys.argv.pop(1)
        SUBCOMMANDS[name](prog_name=f"bricks {name}")
    else:
        main(prog_name="bricks")


def module_main():
    """`python -m bricks [COMMAND] ...`: COMMAND one of COMMANDS' names (bin/ launchers), else `bricks`."""
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        name = sys.argv.pop(1)
        if name == "bricks":
            bricks_main()
        else:
            COMMANDS[name](prog_name=name)
    else:
        bricks_main()
