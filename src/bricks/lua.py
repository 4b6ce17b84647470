"""The embedded Lua control plane: one Lua state with BRICKS, PktEngine and Brick (SPEC §4), for shells and daemons.

The Lua side (lua_api.lua) builds the globals; every request ends up here, in
a "native" function that checks its Lua arguments, calls the engine API and
answers `true, results...` or `false, one-line message`, which the Lua side
raises as a Lua error at the caller's line. Chunks run one at a time (a lock),
so a daemon may share one runtime between clients; everything Lua prints goes
to `output`, which a daemon may swap per client. Every chunk runs under the
guard of lua_guard.lua: interrupt() (Ctrl+C, a client's interrupt, a time
limit) stops even a `while true do end`, and a restricted client's chunks see
only the environment made for it.
"""
import contextlib
import functools
import importlib.resources
import inspect
import re
import sys
import threading
import time

from . import __version__, engine, metrics, stats
from .catalog import KINDS
from .engine import Brick, PktEngine
from .errors import BricksError

try:
    import lupa.luajit21 as lupa_module       # Lua 5.1 semantics, like the original's LuaJIT
except ImportError:                           # a lupa wheel built without LuaJIT 2.1
    try:
        import lupa.lua51 as lupa_module
    except ImportError:
        import lupa as lupa_module

CHUNK_NAME = "=stdin"
INTERRUPTED = "interrupted"
PAUSE_STEP = 0.02       # how soon a sleeping chunk sees an interrupt
# The globals of the broker API a restricted client gets (lua_guard.lua adds plain Lua without os, io, ...).
API_GLOBALS = ("BRICKS", "PktEngine", "Brick", "bricks_sleep") + tuple(KINDS)
_TOKEN_AT_END = re.compile(r"[A-Za-z_][\w.:]*$")

BRICKS_HELP = """\
BRICKS commands:
  BRICKS.help()              this list
  BRICKS.print_status()      whether BRICKS is online (at least one engine running)
  BRICKS.show_stats()        packet, byte and drop counts of every engine, and their total
  BRICKS.stats()             the same as a table: engines (each as pe:stats()), backend,
                             filters (each Filter's rules and hits), time
  BRICKS.shutdown()          stop every engine, remove every pipe, flush writers and quit
  BRICKS.set_backend(name)   auto, packet or netmap; only before the first engine exists
  BRICKS.backend()           the back-end in use
  BRICKS._VERSION            this release (also _DESCRIPTION, _COPYRIGHT)
Subsystems, each with its own help():
  pkteng   PktEngine.help()  packet engines: create, link, start, stop
  brick    Brick.help()      bricks: LoadBalancer, Duplicator, Merge, PcapReader, ...
  filter   Filter.help()     a Filter's drop/allow rules, from any shell
"""

PKTENGINE_HELP = """\
PktEngine commands:
  pe = PktEngine.new(name [, buffer_sz [, cpu]])
                             a new engine; buffer_sz slots per queue (default 512),
                             cpu to pin its thread to (-1: not pinned)
  PktEngine.retrieve(name)   the engine of that name, or nil
  PktEngine.help()           this list
  pe:link(brick [, batch [, qid]])
                             bind a brick tree: open its inputs, create its pipes;
                             batch packets per read (default 1024, also -1), qid the
                             hardware queue to read (-1: all)
  pe:unlink()                undo link (not while running)
  pe:start()                 start the engine's thread
  pe:wait([seconds])         wait until its pcap input is read to the end (or it is
                             stopped): true, or false when the seconds passed first
  pe:stop()                  stop it
  pe:delete()                remove the engine and its pipes (not while running)
  pe:show_stats()            its packet, byte and drop counts (pe.show_stats() too)
  pe:stats()                 the same as a table: packets, bytes, drops by cause, and
                             bricks[i].outputs[j] with packets, bytes, drops, full, ...
Numbers may be given as strings ("4"), as Lua converts them; a cpu this host lacks
is a warning and the engine runs unpinned. Methods return the engine (pe:link(b):start()).
"""


def _brick_help():
    kinds = "\n".join(f"    {name:<14}{kind.summary}" for name, kind in KINDS.items())
    kinds += "".join(f"\n  {name} bricks also have: {', '.join(kind.methods)} (see {name}.help())"
                     for name, kind in KINDS.items() if kind.methods)
    return f"""\
Brick commands:
  b = Brick.new(kind [, arg])  a new brick; LoadBalancer's arg is its split:
                               2 (IP pair) or 4 (IP pair and ports, default)
  b:connect_input(name, ...)   its input (Merge: several; PcapReader: a file or
                               directory, then the interface it stands for)
  b:connect_output(name, ...)  its outputs: pipes IF{{N, interfaces, pcap paths
  b:connect_outputs(iface, n)  outputs iface{{0 .. iface{{n-1
  b:link(child, ...)           chain: the child reads the IF}}N end of an IF{{N output
  Brick.help()                 this list
  Kinds:
{kinds}
"""


class LuaError(BricksError):
    """A Lua chunk that did not compile or failed: Lua's own one-line message."""


def _lua_type(value):
    """The type Lua would name for value (table, number, ...), or the bricks class name."""
    kind = lupa_module.lua_type(value)
    if kind is not None:
        return kind
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (str, bytes)):
        return "string"
    return type(value).__name__


def _shown(value):
    """A value as an error message names it: 'text', 2, or its Lua type."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return _lua_type(value)


def _text(value, what):
    if not isinstance(value, str):
        raise BricksError(f"{what} must be a string, got {_shown(value)}")
    return value


_LUA_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_LUA_HEXADECIMAL = re.compile(r"[+-]?0[xX][0-9a-fA-F]+")
_LUA_SPACE = " \t\n\r\f\v"


def lua_tonumber(text):
    """The number Lua converts the string `text` to where a number is expected ("4", " 0x10 ", "1e3"), or None.

    The original's C API read numbers with luaL_checkint, which takes such
    strings: scripts pass counts read from files ("4") and must keep working.
    """
    stripped = text.strip(_LUA_SPACE)
    if _LUA_HEXADECIMAL.fullmatch(stripped):
        return int(stripped, 16)
    if _LUA_DECIMAL.fullmatch(stripped):
        value = float(stripped)
        return int(value) if value.is_integer() else value
    return None


def _number(value, what, default):
    """A Lua number (or a string Lua converts to one) as a Python int (when whole) or float; nil gives default."""
    if value is None:
        return default
    if isinstance(value, str):
        converted = lua_tonumber(value)
        if converted is None:
            raise BricksError(f"{what} must be a number, got {_shown(value)}")
        return converted
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BricksError(f"{what} must be a number, got {_shown(value)}")
    return int(value) if float(value).is_integer() else value


def _arguments_that_fit(where, function, args):
    """args as `function` takes them, the Lua way: missing ones are nil, trailing nils beyond its parameters dropped.

    More arguments than it has parameters is a one-line BricksError naming
    `where` and the parameters, never a Python TypeError. Every Lua entry
    point goes through here, so none can leak one.
    """
    parameters = list(inspect.signature(function).parameters.values())
    if any(parameter.kind is parameter.VAR_POSITIONAL for parameter in parameters):
        return list(args)
    args = list(args)
    while len(args) > len(parameters) and args[-1] is None:
        args.pop()
    if len(args) > len(parameters):
        names = ", ".join(parameter.name for parameter in parameters)
        takes = "takes no arguments" if not parameters else \
            f"takes at most {len(parameters)} argument{'s' if len(parameters) > 1 else ''} ({names})"
        raise BricksError(f"{where}: {takes}, got {len(args)}")
    return args + [None] * (len(parameters) - len(args))


def _from_lua(value):
    """A Lua argument as Python: a table becomes a dict (nested too), a whole number an int."""
    if lupa_module.lua_type(value) == "table":
        return {_from_lua(key): _from_lua(item) for key, item in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _prefixed(prefix, error):
    message = str(error)
    return message if message.startswith(prefix) else f"{prefix}: {message}"


def _answer(function, where=None):
    """Runs a native call: (True, results...) or (False, one-line message), never a Python exception.

    With `where` (the Lua name of the API function), the Lua arguments are
    first fitted to the function's parameters (_arguments_that_fit).
    """
    def call(*args):
        try:
            if where is not None:
                args = _arguments_that_fit(where, function, args)
            results = function(*args)
        except BricksError as error:
            return False, str(error)
        except KeyboardInterrupt:
            return False, "interrupted"
        except Exception as error:   # a bug must still reach the operator as one line, not kill the shell
            return False, " ".join(f"internal error: {type(error).__name__}: {error}".split())
        if results is None:
            return (True,)
        return (True,) + (results if isinstance(results, tuple) else (results,))
    call.__name__ = function.__name__
    return call


class LuaRuntime:
    """One Lua state with the bricks globals; `output(text)` receives everything it prints."""

    def __init__(self, output=None):
        self.output = output or _write_stdout
        self.shutdown_requested = False
        self._lock = threading.RLock()
        self._interrupt_reason = None         # why the running chunk must stop; read by the Lua hook
        self._deadline = None                 # monotonic time the running chunk must end by, if limited
        self._time_limit = None
        self._environment = None              # a restricted client's environment while its chunk runs
        self._lua = lupa_module.LuaRuntime(register_eval=False, register_builtins=False,
                                           unpack_returned_tuples=True)
        self.lua_implementation = self._lua.lua_implementation    # "LuaJIT 2.1..." normally
        self._lua.execute("python = nil")     # no door from Lua into arbitrary Python
        prelude = importlib.resources.files(__package__).joinpath("lua_api.lua").read_text()
        compiled, message = self._lua.eval("function(code) local f, e = (loadstring or load)(code, '=lua_api.lua') "
                                           "return f, e end")(prelude)
        if compiled is None:
            raise RuntimeError(f"lua_api.lua does not compile: {message}")
        self._internal = compiled(self._lua.table_from(self._natives()))
        guard = importlib.resources.files(__package__).joinpath("lua_guard.lua").read_text()
        compiled, message = self._internal.compile(guard, "=lua_guard.lua")
        if compiled is None:
            raise RuntimeError(f"lua_guard.lua does not compile: {message}")
        self._guard = compiled(self._pending_interrupt, self._lua.table_from(list(API_GLOBALS)))

    # ---------------------------------------------------------------- interrupts and environments

    @contextlib.contextmanager
    def guarded(self, time_limit=None, environment=None):
        """The scope of one request: interrupts from here on stop its chunks; after time_limit seconds too."""
        with self._lock:
            self._interrupt_reason = None
            self._time_limit = time_limit
            self._deadline = time.monotonic() + time_limit if time_limit else None
            self._environment = environment
            try:
                yield
            finally:
                self._deadline = self._time_limit = self._environment = None
                self._interrupt_reason = None

    def interrupt(self, reason=INTERRUPTED):
        """Stops the running chunk with the one-line error `reason`; safe from a signal handler or any thread
        (one assignment: no lock a handler could find already held by the code it interrupted)."""
        if self._interrupt_reason is None:
            self._interrupt_reason = reason

    def restricted_environment(self):
        """A new environment for a restricted client: plain Lua and the broker API, no os/io/debug/loaders."""
        with self._lock:
            return self._guard.restricted_environment()

    def _pending_interrupt(self):
        """Why the running chunk must stop, or None: asked by the Lua hook every ~100,000 instructions."""
        if self._interrupt_reason is None and self._deadline is not None and time.monotonic() >= self._deadline:
            self.interrupt(f"chunk exceeded {self._time_limit:g} s")
        return self._interrupt_reason

    def pause(self, seconds):
        """bricks_sleep: sleeps `seconds`, cut short (as an error) by an interrupt or the time limit."""
        end = time.monotonic() + seconds
        while True:
            reason = self._pending_interrupt()
            if reason is not None:
                raise BricksError(reason)
            now = time.monotonic()
            if now >= end:
                return
            wait = end - now if self._deadline is None else min(end, self._deadline) - now
            time.sleep(min(max(wait, 0.0), PAUSE_STEP))

    # ---------------------------------------------------------------- chunks

    def execute(self, chunk, chunk_name=CHUNK_NAME):
        """Runs a chunk; returns the values it returned; LuaError on a syntax or runtime error."""
        with self._lock:
            return self._run(self._compile(chunk, chunk_name))

    def execute_file(self, path, arguments=()):
        """Runs a script as `lua path args...` would: `arg[0]` = path, `arg[1..]` = arguments."""
        try:
            with open(path, encoding="utf-8") as script:
                code = script.read()
        except OSError as error:
            raise LuaError(f"cannot open {path}: {error.strerror}") from None
        if code.startswith("#!"):
            code = "--" + code                 # a shebang line, as the lua command allows
        with self._lock:
            self._internal.set_arguments(path, self._lua.table_from({"n": len(arguments)} | {
                index + 1: value for index, value in enumerate(arguments)}))
            return self._run(self._compile(code, "@" + path))

    def evaluate_line(self, line):
        """REPL semantics: `=expr` and a bare expression print their values, else run as a statement."""
        with self._lock:
            expression = line[1:] if line.startswith("=") else line
            function, message = self._bound(*self._internal.compile("return " + expression, CHUNK_NAME))
            if function is None:
                if line.startswith("="):
                    raise LuaError(_one_line(message))
                return self._run(self._compile(line, CHUNK_NAME))
            # The values pass through a call so that no API function is
            # tail-called: a tail call would lose the `stdin:1:` position.
            # (`f();` is an expression for `return` but not as arguments.)
            passed_through, _ = self._bound(*self._internal.compile(
                f"return (function(...) return ... end)({expression}\n)", CHUNK_NAME))
            function = passed_through or function
            values = self._run(function, keep_table=True)
            self._internal.print_values(values, line.startswith("="))
            return [values[index] for index in range(1, values["n"] + 1)]

    def is_incomplete(self, chunk):
        """Whether chunk fails to compile only because it is unfinished (more lines will follow)."""
        with self._lock:
            code = "return " + chunk[1:] if chunk.startswith("=") else chunk
            if not chunk.startswith("="):
                function, _ = self._internal.compile("return " + chunk, CHUNK_NAME)
                if function is not None:
                    return False
            function, message = self._internal.compile(code, CHUNK_NAME)
            return function is None and message.endswith("'<eof>'")

    def completions(self, prefix):
        """Every completion of the global, field or method name at the end of prefix, as the whole line."""
        match = _TOKEN_AT_END.search(prefix)
        if match is None:
            return []
        token, head = match.group(), prefix[:match.start()]
        separator = max(token.rfind("."), token.rfind(":"))    # -1: a global name
        path, partial = token[:max(separator, 0)], token[separator + 1:]
        names = [part for part in path.split(".") if part]
        if ":" in path or (separator >= 0 and len(names) != path.count(".") + 1):
            return []      # `a:b.c` or `a..b`: nothing to complete
        methods_only = separator >= 0 and token[separator] == ":"
        with self._lock:
            fields = self._internal.fields(self._lua.table_from(names), methods_only)
            found = [fields[index] for index in range(1, len(fields) + 1)]
        start = token[:separator + 1]
        return sorted(head + start + name for name in found if name.startswith(partial))

    def set_backend(self, name):
        """Chooses the back-end (auto, packet, netmap); only before the first engine is created."""
        if not isinstance(name, str):
            raise BricksError(f"unknown back-end {_shown(name)} (one of {', '.join(engine.BACKENDS)})")
        engine.set_backend(name)

    def active_backend(self):
        """The back-end engines use: netmap or packet."""
        return engine.backend_name()

    # ---------------------------------------------------------------- internals

    def _compile(self, code, chunk_name):
        function, message = self._bound(*self._internal.compile(code, chunk_name))
        if function is None:
            raise LuaError(_one_line(message))
        return function

    def _bound(self, function, message):
        """A compiled chunk in the restricted environment of the running request, if it has one."""
        if function is not None and self._environment is not None:
            function = self._guard.bind(function, self._environment)
        return function, message

    def _run(self, function, keep_table=False):
        ok, result = self._guard.run(self._internal.run, function)
        if self._interrupt_reason is not None:
            # However the chunk ended (a pcall may have caught the first error), it was stopped: say why, alone.
            raise LuaError(self._interrupt_reason)
        if not ok:
            raise LuaError(_one_line(result))
        if keep_table:
            return result
        return [result[index] for index in range(1, result["n"] + 1)]

    def _to_lua(self, value):
        """A method's Python result as Lua sees it: dicts and lists become tables, tuples stay several values."""
        if isinstance(value, tuple):
            return tuple(self._to_lua(item) for item in value)
        if isinstance(value, (dict, list)):
            return self._lua.table_from(value, recursive=True)
        return value

    def _print(self, text):
        self.output(text if text.endswith("\n") else text + "\n")

    def _natives(self):
        """The Python functions lua_api.lua builds the globals from, each under the Lua name it answers for."""
        runtime = self

        def engine_new(name=None, buffer_size=None, cpu=None):
            name = _text(name, "PktEngine.new: engine name")
            buffer_size = _number(buffer_size, "PktEngine.new: buffer size", engine.DEFAULT_BUFFER_SLOTS)
            cpu = _number(cpu, "PktEngine.new: cpu", -1)
            try:
                created = PktEngine.new(name, buffer_size, cpu)
            except BricksError as error:
                raise BricksError(_prefixed("PktEngine.new", error)) from None
            if created.pin_warning:
                runtime._print(f"PktEngine.new: warning: {created.pin_warning}")
            return created, created.name

        def engine_retrieve(name=None):
            found = PktEngine.retrieve(_text(name, "PktEngine.retrieve: engine name"))
            return (found, found.name) if found is not None else (None, None)

        # pe:<method>(...): the engine is the first parameter, the Lua arguments the others.
        def link(handle, brick=None, batch=None, qid=None):
            where = f"{handle.name}:link"
            if not isinstance(brick, Brick):
                raise BricksError(f"{where}: expected a Brick, got {_shown(brick)}")
            handle.link(brick, _number(batch, f"{where}: batch", None), _number(qid, f"{where}: qid", -1))

        def show_stats(handle):
            runtime._print(handle.stats_text())

        def wait(handle, seconds=None):
            seconds = _number(seconds, f"{handle.name}:wait: seconds", None)
            return handle.wait(seconds)

        def engine_stats(handle):
            return runtime._to_lua(handle.stats())

        engine_methods = {"link": link, "show_stats": show_stats, "wait": wait, "stats": engine_stats,
                          "unlink": PktEngine.unlink, "start": PktEngine.start, "stop": PktEngine.stop,
                          "delete": PktEngine.delete}

        def engine_call(handle, method, *args):
            function = functools.partial(engine_methods[method], handle)
            return function(*_arguments_that_fit(f"{handle.name}:{method}", function, args))

        def brick_new(kind=None, argument=None):
            kind = _text(kind, "Brick.new: brick kind")
            if argument is not None and not isinstance(argument, (str, int, float, bool)):
                raise BricksError(f"Brick.new: {kind} argument must be a number or a string, "
                                  f"got {_shown(argument)}")
            if kind in KINDS and KINDS[kind].balances and isinstance(argument, str):
                argument = lua_tonumber(argument) if lua_tonumber(argument) is not None else argument
            if isinstance(argument, float) and argument.is_integer():
                argument = int(argument)
            try:
                created = Brick(kind, argument)
            except BricksError as error:
                raise BricksError(_prefixed("Brick.new", error)) from None
            return created, runtime._lua.table_from(list(created.kind.methods))

        def connect_outputs(handle, interface=None, count=None):
            where = f"{handle.kind.name}:connect_outputs"
            interface = _text(interface, f"{where}: interface")
            count = _number(count, f"{where}: count", None)
            if count is None:
                raise BricksError(f"{where}: count must be a number, got nil")
            handle.connect_outputs(interface, count)

        def connect(method):
            def connect_ports(handle, *names):
                for position, value in enumerate(names, 1):
                    _text(value, f"{handle.kind.name}:{method}: argument {position} (a port name)")
                getattr(handle, method)(*names)
            return connect_ports

        def link_bricks(handle, *children):
            for position, value in enumerate(children, 1):
                if not isinstance(value, Brick):
                    raise BricksError(f"{handle.kind.name}:link: argument {position} must be a Brick, "
                                      f"got {_shown(value)}")
            handle.link(*children)

        brick_methods = {"connect_input": connect("connect_input"), "connect_output": connect("connect_output"),
                         "connect_outputs": connect_outputs, "link": link_bricks}

        def brick_call(handle, method, *args):
            where = f"{handle.kind.name}:{method}"
            if runtime._environment is not None:
                _refuse_files(where, method, args)
            if method in handle.kind.methods:
                function = getattr(handle, method)
                args = _arguments_that_fit(where, function, args)
                try:
                    results = function(*[_from_lua(value) for value in args])
                except BricksError as error:
                    message = str(error)
                    # The table's own messages start with the method ("drop: unknown field ...").
                    named = message.startswith((f"{method}:", f"{method} "))
                    raise BricksError(f"{handle.kind.name}:{message}" if named else f"{where}: {message}") from None
                return runtime._to_lua(results)
            function = functools.partial(brick_methods[method], handle)
            return function(*_arguments_that_fit(where, function, args))

        def kind_retrieve(kind_name, *args):
            def retrieve(name=None):
                found = KINDS[kind_name].retrieve(_text(name, f"{kind_name}.retrieve: name"))
                return (found, runtime._lua.table_from(list(found.kind.methods))) if found is not None \
                    else (None, None)
            return retrieve(*_arguments_that_fit(f"{kind_name}.retrieve", retrieve, args))

        def kinds_with_methods():
            return runtime._lua.table_from([name for name, kind in KINDS.items() if kind.retrieve])

        def describe(handle):
            if isinstance(handle, PktEngine):
                return _describe_engine(handle)
            if isinstance(handle, Brick):
                return _describe_brick(handle)
            return _lua_type(handle)

        def help_of(topic):
            def help_text():
                kind = KINDS.get(topic)
                if kind is not None and kind.help:
                    runtime._print(kind.help)
                    return
                runtime._print({"BRICKS": BRICKS_HELP, "PktEngine": PKTENGINE_HELP}.get(topic) or _brick_help())
            return help_text

        def print_status():
            online = any(known.running for known in engine.engines())
            runtime._print("BRICKS is online." if online else "BRICKS is offline.")
            runtime._print(f"Back-end: {engine.backend_name()} ({engine.backend_detail()})")
            for line in engine.backend_lines():   # trees a back-end refused, and why
                runtime._print(line)
            for line in engine.status_lines():   # inputs or outputs gone, down, failing
                runtime._print(line)

        def show_all_stats():
            runtime._print(stats_table(engine.engines()))
            for line in engine.status_lines():
                runtime._print(line)

        def all_stats():
            return runtime._to_lua(metrics.daemon_snapshot())

        def shutdown():
            engine.shutdown_all()
            runtime.shutdown_requested = True
            runtime._print("Goodbye!")

        def set_backend(name=None):
            runtime.set_backend(name)

        def backend():
            return runtime.active_backend()

        def sleep(seconds=None):
            seconds = _number(seconds, "sleep: seconds", None)
            if seconds is None or seconds < 0:
                raise BricksError(f"sleep: seconds must be a number of at least 0, got {_shown(seconds)}")
            runtime.pause(seconds)

        def output(text):
            runtime.output(text)

        # Lua name -> (native name, function): the name is what an arity error names.
        entry_points = {
            "PktEngine.new": ("engine_new", engine_new), "PktEngine.retrieve": ("engine_retrieve", engine_retrieve),
            "Brick.new": ("brick_new", brick_new), "BRICKS.print_status": ("print_status", print_status),
            "BRICKS.show_stats": ("show_stats", show_all_stats), "BRICKS.shutdown": ("shutdown", shutdown),
            "BRICKS.stats": ("stats", all_stats),
            "BRICKS.set_backend": ("set_backend", set_backend), "BRICKS.backend": ("backend", backend),
            "bricks_sleep": ("sleep", sleep),
        }
        for topic in ["BRICKS", "PktEngine", "Brick"] + [name for name, kind in KINDS.items() if kind.help]:
            entry_points[f"{topic}.help"] = (f"help_{topic}", help_of(topic))
        table = {native: _answer(function, where) for where, (native, function) in entry_points.items()}
        # Called by lua_api.lua itself with the object first: the dispatchers fit the Lua arguments.
        for function in (engine_call, brick_call, kind_retrieve, kinds_with_methods, describe):
            table[function.__name__] = _answer(function)
        table["same"] = lambda first, second: first is second
        table["version"] = __version__
        table["output"] = output
        return table


# Methods that read or write a file the caller names (Filter's rules files).
FILE_METHODS = ("save", "load")


def _refuse_files(where, method, args):
    """A restricted client (lua_guard.lua) must not make the root daemon read or write files: pcap ports,
    rules files. Everything else of the broker API is theirs."""
    from .ports import PortKind, PortNameError, parse_port_name
    if method in FILE_METHODS:
        raise BricksError(f"{where}: files are for root only (this client is restricted)")
    if method not in ("connect_input", "connect_output"):
        return
    for value in args:
        try:
            is_file = isinstance(value, str) and parse_port_name(value).kind == PortKind.PCAP
        except PortNameError:
            continue      # not a port name: connect_* itself says so
        if is_file:
            raise BricksError(f"{where}: {value!r} is a file, and files are for root only (this client is "
                              "restricted)")


def stats_table(engines):
    """One table of every engine: Engine, Packet Cnt, Byte Cnt, Packet Drop, then a Total row."""
    return stats.engines_table([known.stats() for known in engines])


def _describe_engine(handle):
    if handle.deleted:
        return f"PktEngine {handle.name} (deleted)"
    trees = len(handle.linked)
    state = "running" if handle.running else "stopped"
    return f"PktEngine {handle.name} ({state}, {trees} brick tree{'' if trees == 1 else 's'})"


def _describe_brick(handle):
    argument = f"({handle.argument})" if handle.argument is not None else ""
    inputs = ", ".join(port.name for port in handle.inputs) or "none"
    outputs = ", ".join(port.name for port in handle.outputs) or "none"
    where = f"linked to {handle.engine.name}" if handle.engine is not None else "not linked"
    return f"Brick {handle.kind.name}{argument} in: {inputs} out: {outputs} ({where})"


def _one_line(message):
    return " ".join(str(message).splitlines()).strip()


def _write_stdout(text):
    sys.stdout.write(text)
    sys.stdout.flush()
