"""The registry of kernel objects: made by the first user, undone after the last, nothing left by a failed make."""
import os

import pytest

from bricks.registry import Registry


def test_first_acquire_makes_last_release_undoes():
    registry, made, undone = Registry(), [], []
    make = lambda: made.append("pipe") or "pipe"   # noqa: E731
    assert registry.acquire(("pipe", "x{0"), make, undone.append) == "pipe"
    assert registry.acquire(("pipe", "x{0"), make, undone.append) == "pipe"
    assert made == ["pipe"] and registry.held() == {("pipe", "x{0"): (2, os.getpid())}
    registry.release(("pipe", "x{0"))
    assert undone == [] and registry.users(("pipe", "x{0")) == 1
    registry.release(("pipe", "x{0"))
    assert undone == ["pipe"] and registry.held() == {}
    registry.release(("pipe", "x{0"))   # never held any more: nothing happens
    assert undone == ["pipe"]


def test_a_failed_make_leaves_no_entry():
    registry = Registry()

    def refuse():
        raise OSError("no")
    with pytest.raises(OSError):
        registry.acquire(("offloads", "eth0"), refuse, lambda value: None)
    assert registry.held() == {}


def test_a_forked_child_owns_nothing():
    registry = Registry()
    registry.acquire("key", lambda: 1, lambda value: pytest.fail("undone in the child"))
    registry.forget()
    registry.release("key")
    assert registry.held() == {}
