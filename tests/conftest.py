"""Shared pytest set-up: the `root` marker's skip-or-fail rule and the end-to-end `testbed` fixture."""
import os

import pytest

from bricks.testbed import Testbed, remove_stale_testbeds


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
