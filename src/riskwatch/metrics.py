"""Prometheus metrics (PRODUCT.md §5): event counters, latency histograms, snapshot gauges.

Everything is built on an injected :class:`~prometheus_client.CollectorRegistry`, never
the global one, so tests and several daemons in one process do not collide.

- :class:`Metrics` holds the counters, histograms and rule gauges; callers increment them
  where the event happens (``metrics.messages.labels(account, kind).inc()``).
- :class:`SnapshotCollector` is a custom collector: at scrape time it asks a provider for
  the latest per-account views and yields the per-account and per-position gauges from
  them. Nothing is stored between scrapes, so a position that went flat (or an account
  that was removed) has no series in the next scrape, with no ``remove()`` bookkeeping.

Export rules of the snapshot gauges:

- a figure that is None (not known yet: no balance, no mark, no baseline…) is not
  exported: the series is absent rather than a made-up 0;
- ``+inf`` (e.g. margin usage with equity <= 0) is exported as ``+Inf``;
- per-position series exist only for non-flat positions (``position != 0``);
- ``connected`` is always exported (0/1); ``data_age_seconds`` is recomputed from the
  provider's ``now`` and the snapshot's last pulse time, so it keeps growing while no
  pulse arrives.

Labels are bounded: ``account`` (configured accounts), ``symbol`` (listed QFEX symbols),
``kind`` (:data:`~riskwatch.model.EventKind`), ``reason``
(:data:`~riskwatch.state.plausibility.REASONS`), ``rule`` and ``severity`` (loaded rules),
``action``/``result``/``route`` (fixed lists in PRODUCT.md §5 and the config).

Names follow the classic (legacy) validation scheme: :class:`Metrics` switches the
library's legacy name validation on, so a name Prometheus 2.42 could not parse is refused
at start-up (LIBRARIES.md); the exposition encoder is left to
``prometheus_client.exposition.choose_encoder``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, NamedTuple, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.validation import enable_legacy_validation

from riskwatch.model import EventKind
from riskwatch.state.derived import Figures
from riskwatch.state.plausibility import REASONS

PREFIX: Final = "riskwatch_"

RULE_EVALUATION_BUCKETS: Final[tuple[float, ...]] = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.1,
)
"""Seconds: rule evaluation of one account takes microseconds; the tail shows stalls."""

PULSE_TO_ACTION_BUCKETS: Final[tuple[float, ...]] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Seconds from the receive time of the deciding frame to the action leaving riskwatch."""

EVENT_KINDS: Final[tuple[str, ...]] = get_args(EventKind)


class Metrics:
    """The counters, histograms and rule gauges of PRODUCT.md §5, on ``registry``.

    Attributes (label names in braces):

    - ``messages``: ``riskwatch_messages_total{account,kind}``, one per decoded frame.
    - ``reconnects``: ``riskwatch_reconnects_total{account}``.
    - ``impossible_frames``: ``riskwatch_impossible_frames_total{account,reason}``,
      one per frame flagged by ``state/plausibility.py``.
    - ``rule_evaluation_seconds``: histogram of one account's rule evaluation.
    - ``pulse_to_action_seconds``: histogram, deciding frame's receive time → action sent.
    - ``config_reload``: ``riskwatch_config_reload_total{result}`` (``success``/``failure``).
    - ``build_info``: ``riskwatch_build_info{version} 1``.
    - ``alert_state``: ``riskwatch_alert_state{rule,account,symbol,severity}``
      (0 inactive, 1 pending, 2 firing; symbol empty at account scope).
    - ``alerts_fired``: ``riskwatch_alerts_fired_total{rule,account,severity}``.
    - ``latched``: ``riskwatch_latched{rule,account,symbol}`` (0/1).
    - ``actions``: ``riskwatch_actions_total{action,result}`` (result: sent, dry_run,
      refused, confirmed, failed).
    - ``action_retries``: ``riskwatch_action_retries_total{action}``.
    - ``notifications``: ``riskwatch_notifications_total{route,result}`` (result: sent,
      failed, silenced, inhibited).
    - ``unauthorized``: ``riskwatch_http_unauthorized_total{reason}`` (missing, wrong).

    Constructing it turns on the library's legacy name validation (a process-wide
    setting; see the module docstring).
    """

    def __init__(self, registry: CollectorRegistry, version: str = "unknown") -> None:
        enable_legacy_validation()  # type: ignore[no-untyped-call]  # untyped in 0.26
        self.registry = registry
        self.messages = Counter(
            PREFIX + "messages_total",
            "Frames received from the exchange, by decoded kind.",
            ["account", "kind"],
            registry=registry,
        )
        self.reconnects = Counter(
            PREFIX + "reconnects_total",
            "Reconnections to the exchange.",
            ["account"],
            registry=registry,
        )
        self.impossible_frames = Counter(
            PREFIX + "impossible_frames_total",
            "Frames with impossible figures, flagged and not applied, by reason.",
            ["account", "reason"],
            registry=registry,
        )
        self.rule_evaluation_seconds = Histogram(
            PREFIX + "rule_evaluation_seconds",
            "Time to evaluate the rules of one account after an event.",
            registry=registry,
            buckets=RULE_EVALUATION_BUCKETS,
        )
        self.pulse_to_action_seconds = Histogram(
            PREFIX + "pulse_to_action_seconds",
            "Time from receiving the frame that decided an action to sending it.",
            registry=registry,
            buckets=PULSE_TO_ACTION_BUCKETS,
        )
        self.config_reload = Counter(
            PREFIX + "config_reload_total",
            "Configuration reloads, by result.",
            ["result"],
            registry=registry,
        )
        self.build_info = Gauge(
            PREFIX + "build_info",
            "Build information; always 1.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(version).set(1)
        self.alert_state = Gauge(
            PREFIX + "alert_state",
            "Alert state: 0 inactive, 1 pending, 2 firing.",
            ["rule", "account", "symbol", "severity"],
            registry=registry,
        )
        self.alerts_fired = Counter(
            PREFIX + "alerts_fired_total",
            "Alerts that went firing.",
            ["rule", "account", "severity"],
            registry=registry,
        )
        self.latched = Gauge(
            PREFIX + "latched",
            "Whether a latched rule is tripped (1) or not (0).",
            ["rule", "account", "symbol"],
            registry=registry,
        )
        self.actions = Counter(
            PREFIX + "actions_total",
            "Protective actions, by action and result.",
            ["action", "result"],
            registry=registry,
        )
        self.action_retries = Counter(
            PREFIX + "action_retries_total",
            "Retried protective actions.",
            ["action"],
            registry=registry,
        )
        self.notifications = Counter(
            PREFIX + "notifications_total",
            "Notifications, by route and result.",
            ["route", "result"],
            registry=registry,
        )
        self.unauthorized = Counter(
            PREFIX + "http_unauthorized_total",
            "Mutating HTTP requests refused for a missing or wrong admin token.",
            ["reason"],
            registry=registry,
        )

    def init_account(self, account: str) -> None:
        """Create the account's counter series at 0, so ``rate()`` sees their first rise."""
        for kind in EVENT_KINDS:
            self.messages.labels(account, kind)
        self.reconnects.labels(account)
        for reason in REASONS:
            self.impossible_frames.labels(account, reason)


class AccountView(NamedTuple):
    """What the collector reads about one account: its name, link state and figures.

    ``figures`` is None before the account's first event.
    """

    account: str
    connected: bool
    figures: Figures | None


class Scrape(NamedTuple):
    """A provider's answer: the time of the scrape (Unix seconds) and every account."""

    now: float
    accounts: Sequence[AccountView]


ViewProvider = Callable[[], Scrape]
"""Returns the latest views; called once per scrape, from the scraping thread or task."""

# (metric name without prefix, help, Figures.account key)
_ACCOUNT_GAUGES: Final[tuple[tuple[str, str, str], ...]] = (
    ("equity_usd", "Account equity, USD.", "equity"),
    (
        "available_balance_usd",
        "Available balance as reported by the exchange, USD.",
        "available_balance",
    ),
    ("unrealised_pnl_usd", "Unrealised PnL at the latest marks, USD.", "unrealised_pnl"),
    ("realised_pnl_usd", "Realised PnL, USD.", "realised_pnl"),
    ("margin_usage_ratio", "(Position margin + order margin) / equity.", "margin_usage"),
    (
        "maintenance_usage_ratio",
        "Maintenance requirement / equity; 1 is liquidation.",
        "maintenance_usage",
    ),
    ("gross_notional_usd", "Sum of |position| x mark, USD.", "gross_notional"),
    ("account_leverage_ratio", "Gross notional / equity.", "account_leverage"),
    ("pnl_today_usd", "Equity change since the daily reset, USD.", "pnl_today"),
    (
        "equity_drift_usd",
        "Equity riskwatch computed before the last balance pulse minus the pulse's, USD.",
        "equity_drift",
    ),
)

# (metric name without prefix, help, Figures.positions row key)
_POSITION_GAUGES: Final[tuple[tuple[str, str, str], ...]] = (
    ("position_size", "Signed position size, base units.", "position"),
    ("position_notional_usd", "|position| x mark, USD.", "notional"),
    ("position_unrealised_pnl_usd", "Unrealised PnL of the position, USD.", "unrealised_pnl"),
    (
        "position_effective_leverage_ratio",
        "Position notional / account equity.",
        "effective_leverage",
    ),
    (
        "position_liquidation_distance_ratio",
        "Relative adverse mark move to liquidation.",
        "liquidation_distance",
    ),
)


class SnapshotCollector:
    """Yields the per-account and per-position gauges from ``provider`` at scrape time.

    Register it on the same registry as :class:`Metrics`:
    ``registry.register(SnapshotCollector(provider))``. See the module docstring for
    what is and is not exported.
    """

    def __init__(self, provider: ViewProvider) -> None:
        self._provider = provider

    def describe(self) -> Iterable[Metric]:
        """Return the families with no samples (lets the registry check names cheaply)."""
        return self._families()[0]

    def _families(
        self,
    ) -> tuple[
        list[Metric],
        list[GaugeMetricFamily],
        list[GaugeMetricFamily],
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        account = [
            GaugeMetricFamily(PREFIX + n, h, labels=["account"]) for n, h, _ in _ACCOUNT_GAUGES
        ]
        position = [
            GaugeMetricFamily(PREFIX + n, h, labels=["account", "symbol"])
            for n, h, _ in _POSITION_GAUGES
        ]
        age = GaugeMetricFamily(
            PREFIX + "data_age_seconds",
            "Seconds since the last position or balance pulse.",
            labels=["account"],
        )
        connected = GaugeMetricFamily(
            PREFIX + "connected", "1 when connected and authenticated, else 0.", labels=["account"]
        )
        every: list[Metric] = [*account, age, connected, *position]
        return every, account, position, age, connected

    def collect(self) -> Iterable[Metric]:
        """Build every gauge family from the provider's current views."""
        every, account_fams, position_fams, age, connected = self._families()
        now, views = self._provider()
        acc_keys = [
            (f.samples, f.name, key)
            for f, (_, _, key) in zip(account_fams, _ACCOUNT_GAUGES, strict=True)
        ]
        pos_keys = [
            (f.samples, f.name, key)
            for f, (_, _, key) in zip(position_fams, _POSITION_GAUGES, strict=True)
        ]
        for view in views:
            name = view.account
            labels = {"account": name}
            connected.samples.append(
                Sample(connected.name, labels, 1.0 if view.connected else 0.0, None)
            )
            figures = view.figures
            if figures is None:
                continue
            if figures.last_pulse_at is not None:
                age.samples.append(
                    Sample(age.name, labels, max(0.0, now - figures.last_pulse_at), None)
                )
            values = figures.account
            for samples, metric, key in acc_keys:
                value = values.get(key)
                if value is not None:
                    samples.append(Sample(metric, labels, value, None))
            for symbol, row in figures.positions.items():
                if not row.get("position"):
                    continue  # flat (or unknown size): its series vanish
                pos_labels = {"account": name, "symbol": symbol}
                for samples, metric, key in pos_keys:
                    value = row.get(key)
                    if value is not None:
                        samples.append(Sample(metric, pos_labels, value, None))
        return every
