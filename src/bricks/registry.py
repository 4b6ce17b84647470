"""Every kernel object bricks owns, in one reference-counted registry per process.

Engines share kernel objects: two engines may read one interface (its offloads
turned off once, turned back on by the last), write into one veth pipe
(created by the first, removed with the last), use one tunnel device
(tunnels.py: an input or output `vxlan:`, `gretap:`, `erspan:` port), and
later XDP programs. Each such object is an entry here, found by a key such as
("pipe", "eth3{0") or ("offloads", "eth3"), made by the first `acquire` and
undone by the `release` that drops its last user.

The owner's pid is part of what each object carries in the kernel (a pipe's
alias, an offload record in the run directory: see links.py), so another
bricks never reclaims the objects of a living owner, and the next start
reclaims those of a killed one (`links.reclaim_stale_pipes`). A forked child
owns nothing: the registry forgets every entry in it.
"""
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, Optional, Tuple

from . import links, tunnels


@dataclass
class _Entry:
    value: Any
    undo: Callable[[Any], None]
    users: int = 0
    owner: int = field(default_factory=os.getpid)


class Registry:
    """Kernel objects by key, each with its count of users."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: Dict[Hashable, _Entry] = {}

    def acquire(self, key: Hashable, make: Callable[[], Any], undo: Callable[[Any], None]) -> Any:
        """The object under key, made by make() for its first user; undo(object) runs after its last release."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(make(), undo)   # make() raising leaves nothing behind
            entry.users += 1
            return entry.value

    def release(self, key: Hashable) -> None:
        """Drops one user of key; the last one undoes the object. An unknown key is fine (never acquired)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.users -= 1
            if entry.users > 0:
                return
            del self._entries[key]
        entry.undo(entry.value)

    def users(self, key: Hashable) -> int:
        with self._lock:
            entry = self._entries.get(key)
            return entry.users if entry else 0

    def held(self) -> Dict[Hashable, Tuple[int, int]]:
        """key -> (users, owner pid), for status and tests."""
        with self._lock:
            return {key: (entry.users, entry.owner) for key, entry in self._entries.items()}

    def forget(self) -> None:
        """In a forked child: none of the parent's objects is this process's to undo."""
        self._entries.clear()
        self._lock = threading.Lock()


OWNED = Registry()
os.register_at_fork(after_in_child=OWNED.forget)


def quiet_input(interface: str) -> None:
    """An input reads interface: its capture-hostile offloads off while any input does."""
    OWNED.acquire(("offloads", interface), lambda: links.disable_offloads(interface), links.restore_offloads)


def release_input(interface: str) -> None:
    OWNED.release(("offloads", interface))


def pipe_key(name: str) -> Tuple[str, str]:
    return ("pipe", name)


def use_pipe(interface: str, index: int, mtu: int, steer_cpu: Optional[int] = None) -> links.PipePair:
    """Veth pipe `interface{index`, created for its first user (receive work steered off steer_cpu)."""
    def make():
        pipe = links.create_pipe(interface, index, mtu)
        if steer_cpu is not None:
            try:
                links.steer_receive(pipe.consumer, steer_cpu)
            except BaseException:
                pipe.delete()
                raise
        return pipe
    return OWNED.acquire(pipe_key(links.broker_name(interface, index)), make, links.delete_pipe)


def release_pipe(name: str) -> None:
    OWNED.release(pipe_key(name))


def use_tunnel(port) -> str:
    """The kernel device of tunnel port (ports.PortName of kind TUNNEL), created for its first user."""
    return OWNED.acquire(("tunnel", port.device), lambda: tunnels.create_tunnel(port), tunnels.delete_tunnel)


def release_tunnel(port) -> None:
    OWNED.release(("tunnel", port.device))
