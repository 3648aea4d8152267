"""Tests of riskwatch.metrics: counters, histograms and the snapshot collector."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.validation import get_legacy_validation

from riskwatch.metrics import (
    AlertGauges,
    AlertStateCollector,
    Metrics,
    Registry,
    Scrape,
    ScrapedAccount,
    SnapshotCollector,
    exposition_chunks,
)
from riskwatch.model import MarkPrice
from riskwatch.state.derived import Figures, compute
from tests.support.factories import balance_update, position_update, snapshot_of


class Views:
    """A mutable provider standing in for the daemon's latest-views holder."""

    def __init__(self) -> None:
        self.now = 0.0
        self.views: list[ScrapedAccount] = []

    def __call__(self) -> Scrape:
        return Scrape(self.now, self.views)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def views(registry: CollectorRegistry) -> Views:
    v = Views()
    registry.register(SnapshotCollector(v))
    return v


def figures_long(at: float = 1.0) -> Figures:
    s = snapshot_of(
        position_update("AAPL-USD", 10.0, at=at),
        balance_update(at=at),
        MarkPrice("AAPL-USD", 190.0, None, at + 0.5),
    )
    return compute(s, now=at + 0.5, pnl_baseline=1000.0)


def test_counters_have_the_product_names(registry: CollectorRegistry) -> None:
    """Counters export under docs/metrics.md names with their labels."""
    m = Metrics(registry, version="1.2.3")
    m.messages.labels("desk-a", "position").inc()
    m.messages.labels("desk-a", "position").inc()
    m.reconnects.labels("desk-a").inc()
    m.impossible_frames.labels("desk-a", "mark_jump").inc()
    m.config_reload.labels("success").inc()
    m.alerts_fired.labels("MarginUsageHigh", "desk-a", "warning").inc()
    m.actions.labels("cancel_all_orders", "dry_run").inc()
    m.action_retries.labels("close_position").inc()
    m.notifications.labels("critical", "sent").inc()
    rows = [
        ("MarginUsageHigh", "", "warning", 2, None),
        ("DailyLoss", "", "critical", 2, True),
    ]
    registry.register(AlertStateCollector(lambda: [AlertGauges("desk-a", 1, lambda: iter(rows))]))
    get = registry.get_sample_value
    assert get("riskwatch_messages_total", {"account": "desk-a", "kind": "position"}) == 2.0
    assert get("riskwatch_reconnects_total", {"account": "desk-a"}) == 1.0
    assert (
        get("riskwatch_impossible_frames_total", {"account": "desk-a", "reason": "mark_jump"})
        == 1.0
    )
    assert get("riskwatch_config_reload_total", {"result": "success"}) == 1.0
    assert (
        get(
            "riskwatch_alerts_fired_total",
            {"rule": "MarginUsageHigh", "account": "desk-a", "severity": "warning"},
        )
        == 1.0
    )
    assert (
        get("riskwatch_actions_total", {"action": "cancel_all_orders", "result": "dry_run"}) == 1.0
    )
    assert get("riskwatch_action_retries_total", {"action": "close_position"}) == 1.0
    assert get("riskwatch_notifications_total", {"route": "critical", "result": "sent"}) == 1.0
    assert get("riskwatch_build_info", {"version": "1.2.3"}) == 1.0
    labels = {"rule": "MarginUsageHigh", "account": "desk-a", "symbol": "", "severity": "warning"}
    assert get("riskwatch_alert_state", labels) == 2.0
    assert get("riskwatch_latched", {"rule": "DailyLoss", "account": "desk-a", "symbol": ""}) == 1.0


def test_histograms_have_sub_millisecond_buckets(registry: CollectorRegistry) -> None:
    """Latency histograms resolve below a millisecond."""
    m = Metrics(registry)
    m.rule_evaluation_seconds.observe(0.00002)
    m.pulse_to_action_seconds.observe(0.0003)
    get = registry.get_sample_value
    assert get("riskwatch_rule_evaluation_seconds_bucket", {"le": "2.5e-05"}) == 1.0
    assert get("riskwatch_rule_evaluation_seconds_bucket", {"le": "1e-05"}) == 0.0
    assert get("riskwatch_pulse_to_action_seconds_bucket", {"le": "0.0005"}) == 1.0
    assert get("riskwatch_pulse_to_action_seconds_bucket", {"le": "0.00025"}) == 0.0
    assert get("riskwatch_pulse_to_action_seconds_count") == 1.0


def test_init_account_creates_zero_series(registry: CollectorRegistry) -> None:
    """init_account exports every kind and reason at 0 before any event."""
    Metrics(registry).init_account("desk-b")
    get = registry.get_sample_value
    assert get("riskwatch_messages_total", {"account": "desk-b", "kind": "unknown"}) == 0.0
    assert (
        get("riskwatch_impossible_frames_total", {"account": "desk-b", "reason": "non_finite"})
        == 0.0
    )
    assert get("riskwatch_reconnects_total", {"account": "desk-b"}) == 0.0


def test_legacy_name_validation_is_on(registry: CollectorRegistry) -> None:
    """Building Metrics turns on the library's legacy name validation."""
    Metrics(registry)
    assert get_legacy_validation()


def test_snapshot_gauges(registry: CollectorRegistry, views: Views) -> None:
    """The collector exports account and position gauges from the provider's figures."""
    views.now = 4.0
    views.views = [ScrapedAccount("desk-a", True, figures_long(at=1.0))]
    get = registry.get_sample_value
    acc = {"account": "desk-a"}
    assert get("riskwatch_equity_usd", acc) == pytest.approx(900.0)
    assert get("riskwatch_available_balance_usd", acc) == 900.0
    assert get("riskwatch_unrealised_pnl_usd", acc) == pytest.approx(-100.0)
    assert get("riskwatch_realised_pnl_usd", acc) == 0.0
    assert get("riskwatch_margin_usage_ratio", acc) == pytest.approx(95.0 / 900.0)
    assert get("riskwatch_maintenance_usage_ratio", acc) == pytest.approx(1900.0 / 30.0 / 900.0)
    assert get("riskwatch_gross_notional_usd", acc) == pytest.approx(1900.0)
    assert get("riskwatch_account_leverage_ratio", acc) == pytest.approx(1900.0 / 900.0)
    assert get("riskwatch_pnl_today_usd", acc) == pytest.approx(-100.0)
    assert get("riskwatch_connected", acc) == 1.0
    # Computed from the provider's now (4.0) and the last pulse (1.0), not the figure's.
    assert get("riskwatch_data_age_seconds", acc) == pytest.approx(3.0)
    pl = {"account": "desk-a", "symbol": "AAPL-USD"}
    assert get("riskwatch_position_size", pl) == 10.0
    assert get("riskwatch_position_notional_usd", pl) == pytest.approx(1900.0)
    assert get("riskwatch_position_unrealised_pnl_usd", pl) == pytest.approx(-100.0)
    assert get("riskwatch_position_effective_leverage_ratio", pl) == pytest.approx(1900.0 / 900.0)
    assert get("riskwatch_position_liquidation_distance_ratio", pl) == pytest.approx(
        (900.0 - 1900.0 / 30.0) / (1900.0 * 29.0 / 30.0)
    )


def test_none_is_not_exported(registry: CollectorRegistry, views: Views) -> None:
    """Figures that are None have no series; connected is still exported."""
    s = snapshot_of(position_update("AAPL-USD", 10.0))
    views.views = [ScrapedAccount("desk-a", False, compute(s, now=1.0))]
    get = registry.get_sample_value
    acc = {"account": "desk-a"}
    assert get("riskwatch_equity_usd", acc) is None
    assert get("riskwatch_margin_usage_ratio", acc) is None
    assert get("riskwatch_pnl_today_usd", acc) is None
    assert get("riskwatch_equity_drift_usd", acc) is None
    assert get("riskwatch_gross_notional_usd", acc) == pytest.approx(2000.0)
    assert get("riskwatch_connected", acc) == 0.0
    pl = {"account": "desk-a", "symbol": "AAPL-USD"}
    assert get("riskwatch_position_size", pl) == 10.0
    assert get("riskwatch_position_effective_leverage_ratio", pl) is None


def test_account_without_figures_exports_only_connected(
    registry: CollectorRegistry, views: Views
) -> None:
    """An account with no event yet exports connected and nothing else."""
    views.views = [ScrapedAccount("desk-c", False, None)]
    assert registry.get_sample_value("riskwatch_connected", {"account": "desk-c"}) == 0.0
    assert registry.get_sample_value("riskwatch_data_age_seconds", {"account": "desk-c"}) is None


def test_flat_position_disappears(registry: CollectorRegistry, views: Views) -> None:
    """A position that goes flat has no series in the next scrape."""
    s = snapshot_of(
        position_update("AAPL-USD", 10.0),
        position_update("TSLA-USD", -3.0, avg=300.0),
        balance_update(),
    )
    views.views = [ScrapedAccount("desk-a", True, compute(s, now=1.0))]
    get = registry.get_sample_value
    aapl = {"account": "desk-a", "symbol": "AAPL-USD"}
    tsla = {"account": "desk-a", "symbol": "TSLA-USD"}
    assert get("riskwatch_position_size", aapl) == 10.0
    assert get("riskwatch_position_size", tsla) == -3.0
    s = snapshot_of(position_update("AAPL-USD", 0.0, avg=0.0, at=2.0), start=s)
    views.views = [ScrapedAccount("desk-a", True, compute(s, now=2.0))]
    assert get("riskwatch_position_size", aapl) is None
    assert get("riskwatch_position_notional_usd", aapl) is None
    assert get("riskwatch_position_size", tsla) == -3.0


def test_infinite_usage_is_exported_as_inf(registry: CollectorRegistry, views: Views) -> None:
    """Margin usage with negative equity exports +Inf."""
    s = snapshot_of(
        position_update("AAPL-USD", 10.0),
        balance_update(deposit=100.0),
        MarkPrice("AAPL-USD", 185.0, None, 70.0),
    )
    views.views = [ScrapedAccount("desk-a", True, compute(s, now=70.0))]
    assert (
        registry.get_sample_value("riskwatch_margin_usage_ratio", {"account": "desk-a"}) == math.inf
    )


def test_equity_drift_exported(registry: CollectorRegistry, views: Views) -> None:
    """equity_drift_usd is exported once two balance pulses were seen."""
    s = snapshot_of(
        position_update("AAPL-USD", 10.0),
        balance_update(deposit=1000.0),
        balance_update(deposit=990.0, at=2.0),
    )
    views.views = [ScrapedAccount("desk-a", True, compute(s, now=2.0))]
    assert registry.get_sample_value(
        "riskwatch_equity_drift_usd", {"account": "desk-a"}
    ) == pytest.approx(10.0)


def test_exposition_parses_in_classic_text_format(
    registry: CollectorRegistry, views: Views
) -> None:
    """The whole registry renders to the classic text format and parses back."""
    m = Metrics(registry, version="0.1.0")
    m.init_account("desk-a")
    views.views = [ScrapedAccount("desk-a", True, figures_long())]
    text = generate_latest(registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "riskwatch_equity_usd" in names
    assert "riskwatch_position_size" in names
    assert "riskwatch_messages" in names  # a counter family is named without _total
    assert 'riskwatch_messages_total{account="desk-a",kind="position"} 0.0' in text
    assert "{" + '"riskwatch' not in text  # no UTF-8 quoted names


def test_collector_describes_without_calling_provider(registry: CollectorRegistry) -> None:
    """Registration asks describe(), which does not call the provider."""
    calls: list[int] = []

    def provider() -> Scrape:
        calls.append(1)
        return Scrape(0.0, [])

    registry.register(SnapshotCollector(provider))
    assert calls == []
    generate_latest(registry)
    assert calls == [1]


def test_hand_built_figures_with_plain_dicts(registry: CollectorRegistry, views: Views) -> None:
    """Figures built by hand with plain dicts export the same way."""
    figures = Figures(
        account={"equity": 500.0, "margin_usage": None},
        positions={"X-USD": {"position": -2.0, "notional": 40.0}, "Y-USD": {"position": 0.0}},
        exchange_confirmed=True,
        last_pulse_at=None,
    )
    views.views = [ScrapedAccount("desk-d", True, figures)]
    get = registry.get_sample_value
    assert get("riskwatch_equity_usd", {"account": "desk-d"}) == 500.0
    assert get("riskwatch_margin_usage_ratio", {"account": "desk-d"}) is None
    assert get("riskwatch_data_age_seconds", {"account": "desk-d"}) is None
    assert get("riskwatch_position_notional_usd", {"account": "desk-d", "symbol": "X-USD"}) == 40.0
    assert get("riskwatch_position_size", {"account": "desk-d", "symbol": "Y-USD"}) is None


def test_alert_gauges_are_read_at_scrape_time() -> None:
    """The collector reads the rows at each scrape; an unchanged version reuses the
    previous scrape's lines; a row no longer listed stays exported at 0."""
    registry = Registry()
    Metrics(registry)
    rows = [("Cap", "S1", "critical", 1, False), ("Loss", "", "warning", 2, None)]
    version = [1]
    reads = []

    def read() -> list[tuple[str, str, str, int, bool | None]]:
        reads.append(1)
        return list(rows)

    registry.register(AlertStateCollector(lambda: [AlertGauges("a", version[0], read)]))
    get = registry.get_sample_value
    cap = {"rule": "Cap", "account": "a", "symbol": "S1", "severity": "critical"}
    loss = {"rule": "Loss", "account": "a", "symbol": "", "severity": "warning"}
    assert get("riskwatch_alert_state", cap) == 1.0
    assert get("riskwatch_alert_state", loss) == 2.0
    assert get("riskwatch_latched", {"rule": "Cap", "account": "a", "symbol": "S1"}) == 0.0
    assert get("riskwatch_latched", {"rule": "Loss", "account": "a", "symbol": ""}) is None
    n = len(reads)
    rows[0] = ("Cap", "S1", "critical", 2, True)
    assert get("riskwatch_alert_state", cap) == 1.0  # same version: the cached lines
    assert len(reads) == n
    version[0] = 2
    assert get("riskwatch_alert_state", cap) == 2.0
    assert get("riskwatch_latched", {"rule": "Cap", "account": "a", "symbol": "S1"}) == 1.0
    del rows[1]  # e.g. the rule was removed by a reload
    version[0] = 3
    assert get("riskwatch_alert_state", loss) == 0.0
    body = b"".join(exposition_chunks(registry)).decode()
    assert 'riskwatch_alert_state{rule="Loss",account="a",symbol="",severity="warning"} 0.0' in body
    assert 'riskwatch_latched{rule="Cap",account="a",symbol="S1"} 1.0' in body
