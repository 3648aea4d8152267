"""Rule state across restarts: alert series at start, restore from and save to the store.

Alert states, pending timers, latches, daily baselines and window history live in
the state database (:class:`riskwatch.store.Store`); this module moves them between
the accounts' cores and the store. The alert gauges read the restored states at scrape
time (``metrics.AlertStateCollector``).
"""

from __future__ import annotations

import logging

from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.metrics import Metrics
from riskwatch.rules.engine import StateRecords
from riskwatch.rules.model import DATA_STALE_RULE, RuleSet
from riskwatch.store import Store

__all__ = ["init_alert_series", "restore_rule_state", "save_rule_state"]

log = logging.getLogger(__name__)


def init_alert_series(metrics: Metrics, rules: RuleSet, account: str) -> None:
    """Counters appear at 0 so that increase() sees their first rise."""
    for rule in rules.rules:
        metrics.alerts_fired.labels(rule.name, account, rule.severity)
    metrics.alerts_fired.labels(DATA_STALE_RULE, account, "critical")


def restore_rule_state(store: Store, accounts: dict[str, AccountRuntime], metrics: Metrics) -> None:
    """Resume alert states, pending timers, latches, baselines and peaks."""
    alerts = store.load_alerts()
    daily = store.load_daily()
    windows = store.load_windows()
    for name, rt in accounts.items():
        records = StateRecords(
            alerts=tuple((r, sym, rec) for r, a, sym, rec in alerts if a == name),
            daily=daily.get(name),
            windows=windows.get(name),
        )
        try:
            rt.core.restore(records)
        except ValueError as exc:
            log.error("account %s: stored rule state unreadable, starting fresh: %s", name, exc)


def save_rule_state(
    store: Store, accounts: dict[str, AccountRuntime], now: float, *, alerts: bool = False
) -> None:
    """Write daily baselines and window history (and with ``alerts``, alert states)."""
    for name, rt in accounts.items():
        records = rt.core.records()
        if records.daily is not None:
            store.save_daily(name, records.daily)
        if records.windows is not None:
            store.save_windows(name, records.windows)
        if alerts and records.alerts:
            store.save_alerts([(rule, name, sym, rec) for rule, sym, rec in records.alerts], now)
