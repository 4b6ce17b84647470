"""Shared pytest set-up: the back-end every test runs on, the `root` marker's skip-or-fail rule and the end-to-end
`testbed` fixture."""
import os

import pytest

# On a machine with /dev/netmap, auto would pick netmap for tests written for the packet back-end, in this process
# and in the bricks commands tests start: pin packet for both; netmap tests pin netmap themselves.
os.environ["BRICKS_BACKEND"] = "packet"
# Engines run SCHED_FIFO by default where allowed (engine.DEFAULT_REALTIME_PRIORITY). The suite runs its engines,
# its generators and its Python readers side by side on small CI machines: an engine at real-time priority would
# take a shared CPU from the test's own readers during a burst, and a test that catches an engine bug spinning
# would take a whole CPU from the runner. Tests run normally scheduled; the tests of the default unset this.
os.environ["BRICKS_REALTIME"] = "0"

from bricks import engine  # noqa: E402 - reads BRICKS_BACKEND when imported
from bricks.testbed import Testbed, remove_stale_testbeds  # noqa: E402


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def pytest_runtest_setup(item):
    """Skip root tests without root, except under CI=true, where real I/O must be exercised: fail."""
    if item.get_closest_marker("root") is None or os.geteuid() == 0:
        return
    reason = "needs root (network namespaces, veth pairs, AF_PACKET)"
    if _running_in_ci():
        pytest.fail(f"{reason}, and CI=true forbids skipping it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def _stale_testbeds_removed():
    remove_stale_testbeds()


@pytest.fixture
def testbed(_stale_testbeds_removed):
    """A fresh namespace with nothing in it yet; removed with everything added, even on failure."""
    with Testbed() as bed:
        yield bed


@pytest.fixture(autouse=True)
def _packet_backend():
    """Each test starts on the packet back-end, whatever the previous one chose (a test may choose again)."""
    if not engine.engines():
        engine.set_backend("packet")
