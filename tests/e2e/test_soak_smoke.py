"""The soak of bench/soak.py, short: 20 s of LoadBalancer(4) on a testbed veth at 2,000 frames/s, every packet
accounted for from trafgen to the pipes' consumer ends, stats asked every second, RSS flat (the full 10-minute run
is recorded in bench/RESULTS.md)."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_short_soak_accounts_for_every_packet():
    result = subprocess.run([sys.executable, str(SOAK), "--seconds", "20", "--rate", "2000"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sent       40000 (asked 40000" in result.stdout
    assert "PASS: every packet accounted for, RSS flat" in result.stdout
