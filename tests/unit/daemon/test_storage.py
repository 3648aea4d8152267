"""State-database health: counted, /readyz, one escalation per episode, free space."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from riskwatch.daemon.storage import (
    DISK_LOW,
    MB,
    STATE_FAILING,
    StateHealth,
    check_free_space,
    free_bytes,
)
from riskwatch.errors import StateStoreError
from riskwatch.metrics import Metrics
from riskwatch.notify.notice import AlertNotice

T0 = 1_700_000_000.0


def _health(tmp_path: Path, notices: list[AlertNotice], **over: int) -> tuple[StateHealth, Metrics]:
    metrics = Metrics(CollectorRegistry())
    probes: list[int] = []
    health = StateHealth(
        metrics,
        notify=notices.append,
        now=lambda: T0,
        state_path=tmp_path / "state.db",
        warn_free_mb=over.get("warn_free_mb", 0),
        probe=lambda: probes.append(1),
    )
    return health, metrics


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_errors_are_counted_unready_and_escalated_once_per_episode(tmp_path: Path) -> None:
    notices: list[AlertNotice] = []
    health, metrics = _health(tmp_path, notices)
    assert health.readiness_reasons() == []
    health.error("intent", "database or disk is full")
    health.error("alert_state", "database or disk is full")
    health.error("alert_state", "database or disk is full")
    assert _value(metrics, "riskwatch_state_errors_total", op="intent") == 1
    assert _value(metrics, "riskwatch_state_errors_total", op="alert_state") == 2
    assert _value(metrics, "riskwatch_state_failing") == 1
    assert health.failing
    [reason] = health.readiness_reasons()
    assert "state database cannot be written" in reason
    assert "disk is full" in reason
    assert [(n.rule, n.status, n.severity) for n in notices] == [
        (STATE_FAILING, "firing", "critical")
    ]
    assert "intent" in notices[0].summary
    health.recovered()
    assert health.readiness_reasons() == []
    assert _value(metrics, "riskwatch_state_failing") == 0
    assert [(n.rule, n.status) for n in notices][-1] == (STATE_FAILING, "resolved")
    health.error("daily", "disk I/O error")  # a new episode is news again
    assert [n.status for n in notices] == ["firing", "resolved", "firing"]
    assert notices[0].trip_id != notices[2].trip_id


def test_recovered_without_a_failure_says_nothing(tmp_path: Path) -> None:
    notices: list[AlertNotice] = []
    health, _ = _health(tmp_path, notices)
    health.recovered()
    assert notices == []


def test_free_space_gauge_and_low_disk_alert(tmp_path: Path) -> None:
    notices: list[AlertNotice] = []
    free = free_bytes(tmp_path)
    health, metrics = _health(tmp_path, notices, warn_free_mb=free // MB + 1024)
    assert health.check_disk() is not None
    assert _value(metrics, "riskwatch_state_disk_free_bytes") > 0
    assert [(n.rule, n.status) for n in notices] == [(DISK_LOW, "firing")]
    health.check_disk()
    assert len(notices) == 1  # still low: said once
    health.warn_free_bytes = 0
    health.check_disk()
    assert [(n.rule, n.status) for n in notices] == [(DISK_LOW, "firing"), (DISK_LOW, "resolved")]


def test_start_is_refused_below_the_floor(tmp_path: Path) -> None:
    assert check_free_space(tmp_path / "state.db", 0) > 0
    floor = free_bytes(tmp_path) // MB + 1024
    with pytest.raises(StateStoreError, match=r"MiB free in .*below state.min_free_mb"):
        check_free_space(tmp_path / "state.db", floor)
