"""The status page's pure rendering: escaping, mode banner, bars, thresholds, logs."""

from __future__ import annotations

from typing import Any

from riskwatch.rules.load import load_rules_text
from riskwatch.web.statuspage import PageData, Threshold, render, thresholds_of

NOW = 1_700_000_000.0


def _state(**over: Any) -> dict[str, Any]:
    acc = {
        "name": "desk-<b>",
        "connected": False,
        "stale": True,
        "connection": {
            "socket_open": False,
            "authenticated": False,
            "auth_rejected": True,
            "last_error": "<script>alert(1)</script>",
            "reconnects": 3,
        },
        "figures": {"equity": 1234.5, "margin_usage": 0.9, "maintenance_usage": float("inf")},
        "positions": {"AAPL-USD": {"position": -2.0, "unrealised_pnl": -5.0}},
    }
    doc: dict[str, Any] = {"version": "9.9", "time": NOW, "mode": "dry-run", "accounts": [acc]}
    doc.update(over)
    return doc


def test_everything_printed_is_escaped_and_no_script_is_emitted() -> None:
    """Names, errors and summaries with markup come out as text, never as tags."""
    alerts = [
        {
            "rule": "R",
            "account": "desk-<b>",
            "symbol": None,
            "state": "firing",
            "severity": "critical",
            "summary": "<img src=x>",
            "fired_at": NOW - 5,
            "latched": True,
        }
    ]
    page = render(PageData(state=_state(), alerts=alerts))
    assert "<script" not in page
    assert "last error: &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "desk-&lt;b&gt;" in page
    assert "&lt;img src=x&gt;" in page
    assert "AUTH REJECTED" in page
    assert "STALE" in page
    assert "5&nbsp;s ago" in page
    assert "LATCHED" in page
    assert "∞" in page  # infinite maintenance usage


def test_mode_banner_says_dry_run_armed_or_disarmed() -> None:
    """The banner names the mode, and the kill switch wins over armed."""
    assert "mode: DRY-RUN" in render(PageData(state=_state()))
    assert "mode: ARMED" in render(PageData(state=_state(mode="armed")))
    disarmed = render(PageData(state=_state(mode="armed", kill_switch=True)))
    assert "mode: DISARMED" in disarmed
    assert "mode: ARMED" not in disarmed


def test_mode_banner_says_the_replica_role() -> None:
    """In a highly available deployment the banner says which replica leads."""
    ha = {"backend": "etcd", "identity": "riskwatch-a", "lease_seconds": 10.0}
    leader = render(PageData(state=_state(mode="armed", ha={**ha, "role": "leader"})))
    assert "replica LEADER (etcd lease)" in leader
    follower = render(PageData(state=_state(mode="armed", ha={**ha, "role": "follower"})))
    assert "replica FOLLOWER (etcd lease)" in follower
    assert "the leader sends the rest and notifies" in follower
    alone = render(PageData(state=_state(mode="armed", ha={**ha, "role": "standalone"})))
    assert "replica" not in alone


def test_bars_are_coloured_by_the_thresholds_crossed() -> None:
    """A usage past a critical threshold draws a critical bar with a tick per threshold."""
    levels = {
        "margin_usage": [Threshold(0.8, "warning", "Warn"), Threshold(0.95, "critical", "Crit")]
    }
    page = render(PageData(state=_state(), thresholds=levels))
    margin = page.split("data-name='margin_usage'", 1)[1].split("data-name=", 1)[0]
    assert "fill warning" in margin
    assert "left:80.0%" in margin
    assert "left:95.0%" in margin
    assert "90.0&nbsp;%" in margin


def test_thresholds_are_read_from_rule_comparisons() -> None:
    """``usage > X`` and ``X < usage`` inside ``and`` give thresholds; shadow rules do not."""
    rules = load_rules_text(
        "rules:\n"
        "  - name: A\n    when: margin_usage > 0.8\n    severity: warning\n"
        "  - name: B\n    when: 0.9 < maintenance_usage and equity > 0\n    severity: critical\n"
        "  - name: C\n    when: margin_usage > 0.5\n    mode: shadow\n",
        "inline.yaml",
    )
    found = thresholds_of(rules)
    assert found == {
        "margin_usage": [Threshold(0.8, "warning", "A")],
        "maintenance_usage": [Threshold(0.9, "critical", "B")],
    }


def test_recent_actions_and_notifications_are_listed() -> None:
    """The audit log and the notification log appear as tables, newest first."""
    actions = {
        "recent": [
            {
                "intent_at": NOW,
                "account": "a",
                "rule": "R",
                "summary": "close_position X",
                "mode": "armed",
                "outcome": "failed",
            }
        ]
    }
    notes = [
        {"at": NOW, "route": "ops", "alert_key": "rule=R", "status": "firing", "result": "sent"}
    ]
    page = render(PageData(state=_state(actions=actions), notifications=notes))
    assert "close_position X" in page
    assert "<tr class='failed'>" in page
    assert "rule=R" in page
    assert "no protective action yet" not in page
