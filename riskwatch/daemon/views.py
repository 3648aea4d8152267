"""The daemon's read-only views: the ``/api`` documents, readiness and the metrics scrape.

:class:`Views` implements :class:`riskwatch.web.view.DaemonView`; the web package reads
the daemon through it only. Each document is built on demand from the accounts' cores
and the executor's status (no lock, no await on the evaluation path) and holds figures,
names and reason codes only: never a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from riskwatch import __version__
from riskwatch.actions.executor import ActionExecutor
from riskwatch.clock import Clock
from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.daemon.live import LiveConfig
from riskwatch.daemon.looplag import LoopLagProbe
from riskwatch.daemon.storage import StateHealth
from riskwatch.ha.base import Leadership, Standalone
from riskwatch.metrics import AlertGauges, Scrape, ScrapedAccount
from riskwatch.notify.notice import alert_labels
from riskwatch.notify.service import NotifyService
from riskwatch.qfex.client import ConnectionStatus, MarketDataConnection
from riskwatch.qfex.link import LinkView
from riskwatch.rules.model import RuleSet
from riskwatch.store import Store

__all__ = ["ReadinessSource", "Views"]


class ReadinessSource(Protocol):
    """A part of the daemon that can make it unready (``/readyz`` 503)."""

    def readiness_reasons(self) -> list[str]:
        """Why the daemon is not ready because of this part; empty when it is fine."""
        ...


class Views:
    """Documents of the running daemon for ``/api``, the status page and ``/metrics``."""

    def __init__(
        self,
        live: LiveConfig,
        accounts: dict[str, AccountRuntime],
        executor: ActionExecutor,
        notifier: NotifyService,
        clock: Clock,
        store: Store | None,
        market_data: Callable[[], MarketDataConnection | None],
        last_reload: Callable[[], dict[str, Any] | None],
        *,
        leadership: Leadership | None = None,
        health: StateHealth | None = None,
        loop_lag: LoopLagProbe | None = None,
        tasks: ReadinessSource | None = None,
    ) -> None:
        """``health`` (daemon/storage.py: failing state writes), ``loop_lag``
        (daemon/looplag.py: a starved event loop), ``leadership`` (ha/: a failing
        lease service) and ``tasks`` (daemon/taskwatch.py: a task that ended) each add
        their reasons to :meth:`readiness`."""
        self._live = live
        self._accounts = accounts
        self._executor = executor
        self._notifier = notifier
        self._clock = clock
        self._store = store
        self._market_data = market_data
        self._last_reload = last_reload
        self._leadership = leadership or Standalone()
        self._loop_lag = loop_lag
        sources: list[ReadinessSource | None] = [health, loop_lag, self._leadership, tasks]
        self._readiness_sources = tuple(s for s in sources if s is not None)

    def now(self) -> float:
        """The daemon's clock."""
        return self._clock.now()

    def scrape(self) -> Scrape:
        """What ``/metrics`` reads at scrape time: each account's link and figures, the
        figures worked out as the scrape reaches the account (between two of its
        pieces: metrics.Scrape), of the accounts configured when it started."""
        now = self._clock.now()
        # data_age is exported from last_pulse_at and the scrape's now.
        return Scrape(
            now=now,
            accounts=(
                ScrapedAccount(name, rt.connected, rt.core.current_figures())
                for name, rt in list(self._accounts.items())
            ),
        )

    def link_views(self) -> Iterator[LinkView]:
        """What ``/metrics`` reads of each account's link at scrape time, account by
        account as the scrape reaches it (qfex.link.LinkCollector)."""
        for name, rt in list(self._accounts.items()):
            yield LinkView(name, rt.link, rt.status, rt.core.snapshot.balance)

    def alert_gauges(self) -> Iterator[AlertGauges]:
        """What ``/metrics`` reads of each account's alerts at scrape time (the rule
        state object and its change count are the version), account by account as the
        scrape reaches it."""
        for name, rt in list(self._accounts.items()):
            rules = rt.core.rules_state
            yield AlertGauges(name, (rules, rules.changes), rules.gauge_rows)

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when every account is connected, authenticated and its data fresh, and
        no readiness source (``__init__``) has a reason; the reasons otherwise."""
        now = self._clock.now()
        reasons: list[str] = []
        for name, rt in self._accounts.items():
            st = rt.status
            if st is not None and st.auth_rejected:
                reasons.append(f"account {name}: authentication rejected")
            elif st is None or not st.connected:
                reasons.append(f"account {name}: not connected")
            elif not st.authenticated:
                reasons.append(f"account {name}: not authenticated")
            elif rt.core.is_stale(now):
                reasons.append(f"account {name}: data stale")
            if st is not None and st.connected and st.unconfirmed_channels:
                channels = ", ".join(st.unconfirmed_channels)
                reasons.append(f"account {name}: subscription not confirmed: {channels}")
            if rt.link.expiry_state == "expired":
                reasons.append(f"account {name}: JWT expired")
        for source in self._readiness_sources:
            reasons += source.readiness_reasons()
        return (not reasons, reasons)

    def alerts_document(self) -> dict[str, Any]:
        """``/api/alerts``: pending, firing and latched alerts of every account."""
        now = self._clock.now()
        alerts = [
            # A silenced or inhibited alert stays listed, marked "muted" (not notified).
            a.to_dict()
            | self._notifier.mute_of(
                alert_labels(a.rule, a.account, a.symbol, a.severity, a.labels), now
            )
            for rt in self._accounts.values()
            for a in rt.core.alerts()
        ]
        return {"time": now, "alerts": alerts}

    def state_document(self) -> dict[str, Any]:
        """``/api/state``: accounts, positions, derived figures; never a secret."""
        now = self._clock.now()
        accounts = []
        for name, rt in self._accounts.items():
            st = rt.status or ConnectionStatus()
            doc = rt.core.describe(now)
            doc.update(
                name=name,
                connected=rt.connected,
                connection={
                    "socket_open": st.connected,
                    "authenticated": st.authenticated,
                    "auth_rejected": st.auth_rejected,
                    "last_error": st.last_error,
                    "reconnects": st.reconnects,
                },
            )
            accounts.append(doc)
        ex = self._executor
        exchange = self._live.config.exchange
        mds = self._market_data()
        return {
            "version": __version__,
            "time": now,
            "mode": ex.mode,
            "kill_switch": ex.kill_switch,
            "armed": ex.armed,
            "ha": self._leadership.status(),
            "actions": {**ex.status(), "recent": ex.recent(10)},
            "exchange": {
                "url": exchange.url,
                "market_data_url": exchange.market_data_url,
                "market_data_connected": bool(mds and mds.status.connected),
            },
            "event_loop": self._loop_lag.status() if self._loop_lag is not None else None,
            "accounts": accounts,
        }

    def actions_document(self, limit: int, account: str | None) -> dict[str, Any]:
        """``/api/actions``: the executor's status and ``limit`` audit rows, newest first."""
        rows = self._executor.store.actions(limit=limit, account=account)
        doc = self._executor.status()
        doc["actions"] = [
            {**r.to_dict(), "outcome": r.status if r.finished else "pending"} for r in rows
        ]
        return doc

    def recent_notifications(self, limit: int) -> list[dict[str, Any]]:
        """The notification log's latest rows (a read of a few rows: well under 1 ms)."""
        if self._store is None:
            return []
        return [r.to_dict() for r in self._store.notifications(limit)]

    def rules(self) -> RuleSet:
        """The rules in force."""
        return self._live.rules

    def last_reload(self) -> dict[str, Any] | None:
        """The latest reload's outcome (None before the first)."""
        return self._last_reload()

    async def silences(self, *, active_only: bool) -> list[dict[str, Any]]:
        """Every kept silence, or only those active now."""
        silences = await self._notifier.list_silences()
        if active_only:
            now = self._clock.now()
            silences = [s for s in silences if s.active_at(now)]
        return [s.to_dict() for s in silences]
