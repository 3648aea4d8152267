"""`riskwatch demo` as a newcomer runs it: the crash unfolds, the rules trip, actions go out."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.timeout(60)
def test_demo_shows_the_crash_tripping_rules_and_actions() -> None:
    """The demo runs the crash, shows figures, alerts and confirmed actions, and exits 0."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "riskwatch",
            "demo",
            "--speed",
            "8",
            "--port",
            "0",
            "--live",
            "no",
        ],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "scenario crash" in out
    assert "mode ARMED" in out
    assert "desk-a  [connected]" in out
    assert "ALERT FIRING   critical MarginUsageCritical" in out
    assert "close_position AAPL-USD attempt 1 → CONFIRMED" in out
    assert "cancel_all_orders attempt 1 → CONFIRMED" in out
    # Every notification is printed to the terminal by the console:// route.
    assert "[CRITICAL] MarginUsageCritical on desk-a" in out
    assert out.rstrip().endswith("demo finished")
