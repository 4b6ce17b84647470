"""`bricks top`: a live view of a running daemon, per output Mpps, Gbit/s and drops per second, redrawn each second.

The counters come through the daemon's socket (`{"op": "stats"}`, read beside
the Lua state); the rates are the growth between two snapshots over the time
between them (metrics.add_rates). q or Ctrl+C quits and gives the terminal
back as it was. Piped, it prints one table per round (`bricks top --rounds 5 | tee`).
"""
import contextlib
import os
import select
import sys
import termios
import time
import tty

from .metrics import add_rates, output_drops, output_rows

QUIT_KEYS = ("q", "Q")


def _rate_cells(rates):
    """Mpps, Gbit/s, drops/s: four significant digits, so a test's 2,000 packets/s still shows (0.002 Mpps)
    and a 14.88 Mpps link reads as such."""
    return (f"{rates['packets_per_second'] / 1e6:.4g}", f"{rates['bits_per_second'] / 1e9:.4g}",
            f"{rates['drops_per_second']:.0f}")


def render(snapshot, socket_path, hint="   (q quits)"):
    """The screen for one snapshot with rates: a title line, then one row per output and one per engine."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    title = Text(f"bricks top: daemon pid {snapshot['pid']} on {socket_path}, back-end {snapshot['backend']}, "
                 f"{time.strftime('%H:%M:%S', time.localtime(snapshot['time']))}{hint}")
    table = Table(expand=False, header_style="bold")
    for heading, justify in (("Engine", "left"), ("Brick", "left"), ("Output", "left"), ("Mpps", "right"),
                             ("Gbit/s", "right"), ("Drops/s", "right"), ("Packets", "right"),
                             ("Dropped", "right")):
        table.add_column(heading, justify=justify, no_wrap=True)
    for known in snapshot["engines"]:
        rates = known["rates"]
        table.add_row(known["name"], "", "(received)", *_rate_cells(rates), str(known["packets"]),
                      str(known["drops"]), style="bold")
        for (_, brick, name), output in output_rows({"engines": [known]}):
            table.add_row("", brick, name, *_rate_cells(output["rates"]), str(output["packets"]),
                          str(output_drops(output)))
    lines = [title, table]
    if not snapshot["engines"]:
        lines.append(Text("no engines"))
    lines += [Text(problem, style="red") for known in snapshot["engines"] for problem in known["problems"]]
    return Group(*lines)


@contextlib.contextmanager
def _keys_without_echo():
    """stdin unbuffered and silent for the view (a key is read as soon as it is pressed); restored on every exit."""
    if not sys.stdin.isatty():
        yield False
        return
    descriptor = sys.stdin.fileno()
    saved = termios.tcgetattr(descriptor)
    tty.setcbreak(descriptor)
    try:
        yield True
    finally:
        termios.tcsetattr(descriptor, termios.TCSADRAIN, saved)


def _quit_pressed(reading_keys, seconds):
    """Waits up to seconds for a key; True when it is q."""
    if not reading_keys:
        time.sleep(seconds)
        return False
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([sys.stdin], [], [], left)
        if ready and os.read(sys.stdin.fileno(), 32).decode(errors="replace").strip() in QUIT_KEYS:
            return True


def run_top(session, socket_path, interval=1.0, rounds=None):
    """The live view until q, Ctrl+C or `rounds` redraws; the exit status."""
    from rich.console import Console
    from rich.live import Live
    console = Console()
    previous = None
    drawn = 0
    # On a terminal one screen redrawn in place (the alternate screen, left on exit); piped, one table per round.
    live = Live(console=console, screen=True, auto_refresh=False) if console.is_terminal else None
    try:
        with _keys_without_echo() as reading_keys, live or contextlib.nullcontext():
            while rounds is None or drawn < rounds:
                snapshot = add_rates(session.stats(), previous)
                if live is not None:
                    live.update(render(snapshot, socket_path), refresh=True)
                else:
                    console.print(render(snapshot, socket_path, hint=""))
                previous, drawn = snapshot, drawn + 1
                if (rounds is None or drawn < rounds) and _quit_pressed(reading_keys, interval):
                    break
    except KeyboardInterrupt:
        pass
    return 0
