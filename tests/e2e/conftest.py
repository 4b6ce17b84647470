"""End-to-end fixtures: a private daemon environment per test, engines shut down after a test, and the back-ends
that run a Filter's runtime rules."""
import pytest

from bricks import engine
from tests.e2e.daemons import Paths


@pytest.fixture
def engines_removed():
    """Every engine the test made is shut down after it, and the back-end set back to packet (tests/conftest.py's
    pin); a module takes it with `pytest.mark.usefixtures("engines_removed")`."""
    yield
    engine.shutdown_all()
    engine.set_backend("packet")


@pytest.fixture(params=["packet", "xdp"])
def rules_backend(request, engines_removed):
    """Each back-end that runs a Filter's runtime rules: packet (the C brick) and xdp (the XDP program's maps)."""
    engine.shutdown_all()
    engine.set_backend(request.param)
    return request.param


@pytest.fixture
def paths(tmp_path):
    made = Paths(str(tmp_path))
    yield made
    made.kill_leftover()
