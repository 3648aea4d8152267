"""Rule state across restarts: alert series at start, restore from and save to the store.

Alert states, pending timers, latches, daily baselines and window history live in
the state database (:class:`riskwatch.store.Store`); this module moves them between
the accounts' cores and the store. The alert gauges read the restored states at scrape
time (``metrics.AlertStateCollector``).
"""

from __future__ import annotations

import asyncio
import logging

from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.metrics import Metrics
from riskwatch.rules.engine import StateRecords
from riskwatch.rules.model import DATA_STALE_RULE, RuleSet
from riskwatch.store import Store
from riskwatch.store.writer import StateWriter

__all__ = [
    "DailySaver",
    "init_alert_series",
    "restore_rule_state",
    "save_account_rule_state",
    "save_rule_state",
]

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
    writer: StateWriter, accounts: dict[str, AccountRuntime], now: float, *, alerts: bool = False
) -> None:
    """Queue every account's daily baselines and window history (and with ``alerts``,
    alert states)."""
    for name, rt in accounts.items():
        save_account_rule_state(writer, name, rt, now, alerts=alerts)


def save_account_rule_state(
    writer: StateWriter, name: str, rt: AccountRuntime, now: float, *, alerts: bool = False
) -> None:
    """Queue account ``name``'s daily baselines and window history (and with ``alerts``,
    its alert states)."""
    records = rt.core.records()
    if records.daily is not None:
        writer.save_daily(name, records.daily)
    if records.windows is not None:
        writer.save_windows(name, records.windows)
    if alerts and records.alerts:
        writer.save_alerts([(rule, name, sym, rec) for rule, sym, rec in records.alerts], now)


class DailySaver:
    """Daily baselines and peaks are saved as they change, so a SIGKILL loses none.

    :meth:`changed` is called for every evaluated decision (O(1)); once per loop turn
    the daily records of those accounts are compared with what was last queued, and
    the ones whose day, baseline or peaks differ are queued on the writer thread (which
    batches them). The last equity seen, which moves with every pulse, rides along with
    those writes and the periodic save (ticks.py): saving it on every pulse would keep
    the writer thread, and the interpreter lock it takes, busy for nothing.
    """

    def __init__(self, accounts: dict[str, AccountRuntime], writer: StateWriter) -> None:
        self.accounts = accounts
        self.writer = writer
        self._queued: dict[str, tuple[float | None, ...]] = {}  # account → day, baseline, peaks
        self._dirty: set[str] = set()

    def changed(self, account: str) -> None:
        """``account`` was evaluated: its daily record may have changed."""
        if account in self._dirty:
            return
        if not self._dirty:
            try:
                asyncio.get_running_loop().call_soon(self.save_changes)
            except RuntimeError:  # no loop (a synchronous driver): save now
                self._dirty.add(account)
                self.save_changes()
                return
        self._dirty.add(account)

    def save_changes(self) -> None:
        """Queue the daily records that differ from the last ones queued."""
        dirty, self._dirty = self._dirty, set()
        for name in dirty:
            rt = self.accounts.get(name)
            if rt is None:
                continue
            key = rt.core.daily_key()
            if key != self._queued.get(name):
                self._queued[name] = key
                self.writer.save_daily(name, rt.core.daily_record())

    def save_all(self) -> None:
        """Queue every account's daily record (a probe after a failed write)."""
        for name, rt in self.accounts.items():
            self._queued[name] = rt.core.daily_key()
            self.writer.save_daily(name, rt.core.daily_record())
