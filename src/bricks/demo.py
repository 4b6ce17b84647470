"""The README's demo: a LoadBalancer to 4 pipes on a throwaway namespace testbed.

It creates a namespace and a veth pair, sends a few thousand packets of many
TCP and UDP flows (both directions) into the input, balances them over the
pipes `IF{0..3` with a tcpdump reading each `IF}N`, prints what every reader
got and checks flow affinity, then removes everything it made.
"""
import sys
import time

import click

from . import frames as frame_builder
from .engine import Brick, PktEngine, install_signal_handlers, shutdown_all
from .errors import BricksError
from .links import consumer_name
from .testbed import Testbed, TestbedError, require_privileges, require_tools, wait_for_total

PIPES = 4
FLOWS = 400
PACKETS_PER_DIRECTION = 5
SEND_RATE = 20000          # packets per second: well inside what a tcpdump keeps up with
SETTLE_TIMEOUT = 10.0


def run_demo(echo=click.echo):
    frames = frame_builder.flow_frames(FLOWS, PACKETS_PER_DIRECTION, seed=7)
    with Testbed() as bed:
        host_if, ns_if = bed.add_input("demo")
        echo(f"demo: namespace {bed.namespace}; bricks reads {host_if}, the sender sits on {ns_if} in the namespace")
        engine = PktEngine.new("demo")
        try:
            balancer = Brick("LoadBalancer", 4).connect_input(host_if).connect_outputs(host_if, PIPES)
            engine.link(balancer)
            names = [consumer_name(host_if, index) for index in range(PIPES)]
            echo(f"demo: LoadBalancer(4) {host_if} -> {', '.join(port.name for port in balancer.outputs)}; "
                 f"tcpdump on {', '.join(names)}")
            readers = [bed.reader(name, in_namespace=False) for name in names]
            engine.start()
            started = time.monotonic()
            bed.send(ns_if, frames, pps=SEND_RATE)
            wait_for_total(readers, len(frames), SETTLE_TIMEOUT)
            elapsed = time.monotonic() - started
            engine.stop()
            received = [reader.stop() for reader in readers]
            echo(engine.stats_text())
            return report(frames, names, received, elapsed, echo)
        finally:
            engine.delete()


def report(frames, names, received, elapsed, echo):
    echo(f"demo: sent {len(frames)} packets of {FLOWS} flows (both directions) in {elapsed:.1f} s")
    owner, split_flows = {}, set()
    for name, captured in zip(names, received):
        flows = {frame_builder.flow_key(frame) for frame in captured}
        echo(f"pipe {name}: {len(captured)} packets, {len(flows)} flows")
        for flow in flows:
            if owner.setdefault(flow, name) != name:
                split_flows.add(flow)
    total = sum(len(captured) for captured in received)
    ok = not split_flows and total == len(frames)
    echo(f"delivered: {total} of {len(frames)} packets")
    echo(f"flow affinity: every flow (both directions) on exactly one pipe: "
         f"{'OK' if not split_flows else f'FAILED for {len(split_flows)} flows'}")
    return ok


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               help="Run a LoadBalancer demo on a throwaway veth testbed (needs root, ip, sysctl and tcpdump).")
def main():
    try:
        require_privileges()
        require_tools()         # all of them before anything is made: no half-built testbed to undo
    except TestbedError as error:
        _fail(str(error))
    install_signal_handlers()
    try:
        ok = run_demo()
    except (BricksError, RuntimeError, OSError) as error:
        # RuntimeError: a tcpdump or the sender failed; OSError: the kernel refused a namespace or a veth.
        _fail(" ".join(str(error).split()))
    finally:
        shutdown_all()
    sys.exit(0 if ok else 1)


def _fail(message):
    click.echo(f"bricks-demo: {message}", err=True)
    sys.exit(1)


if __name__ == "__main__":
    main(prog_name="bricks-demo")
