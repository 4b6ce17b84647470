"""End-to-end fixtures: a private daemon environment per test."""
import pytest

from tests.e2e.daemons import Paths


@pytest.fixture
def paths(tmp_path):
    made = Paths(str(tmp_path))
    yield made
    made.kill_leftover()
