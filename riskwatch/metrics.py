"""Prometheus metrics (docs/metrics.md): event counters, latency histograms, snapshot gauges.

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
``action``/``result``/``route`` (fixed lists in docs/metrics.md and the config).

Names follow the classic (legacy) validation scheme: :class:`Metrics` switches the
library's legacy name validation on, so a name Prometheus 2.42 could not parse is refused
at start-up (docs/design.md#libraries).

Exposition (docs/performance.md): the body is the classic text format
0.0.4 (:data:`CONTENT_TYPE`), which Prometheus 2.42 reads. Rendering it through
``prometheus_client.generate_latest`` cost ~7 µs per line (1.8 s for 1000 accounts ×
20 positions, all on the event loop). So the series that grow with the number of
accounts are rendered straight to text:

- the per-account counters of :class:`Metrics` (``messages_total``,
  ``reconnects_total``, ``impossible_frames_total``, ``alerts_fired_total``) are
  :class:`LabelledCounter` families, a dict of label values → float, which also keeps
  the per-frame ``labels(...).inc()`` cheap;
- :class:`AlertStateCollector` reads ``alert_state`` and ``latched`` from the rule
  states at scrape time and keeps each account's rendered lines until its rule state
  changes;
- :class:`SnapshotCollector` renders each account's gauges from one view of it;
- :func:`exposition_chunks` yields the body in pieces of bounded work, so the HTTP
  handler can give the event loop back between pieces: a render loop over accounts
  ends its piece once it has worked :data:`PIECE_SECONDS`, whatever each account cost
  (an account whose lines are kept costs a few µs, one rendered again ten times more).

The few fixed-size metrics (histograms, ``actions_total``…) stay ``prometheus_client``
objects rendered by the library. Every collector also answers ``collect()``, so
``registry.get_sample_value`` and ``generate_latest`` see the same series.
``_created`` series are disabled (:func:`prometheus_client.disable_created_metrics`:
they doubled every counter and Prometheus 2.42 ignores them in this format).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, Generic, Literal, NamedTuple, TypeVar, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.validation import enable_legacy_validation

from riskwatch.model import EventKind
from riskwatch.state.derived import Figures
from riskwatch.state.plausibility import REASONS

PREFIX: Final = "riskwatch_"

STATE_OPS: Final = (
    "intent",
    "outcome",
    "alert_state",
    "daily",
    "windows",
    "notification",
    "latch_reset",
    "silence",
    "queue",
    "batch",
    "sync",
)
"""Kinds of state-database writes counted by ``riskwatch_state_errors_total{op}``."""

TASKS: Final = (
    "ticks",
    "actions",
    "trade",
    "market_data",
    "loop_lag",
    "notifications",
    "jwt_watch",
    "refdata",
    "config_watch",
    "ha_lease",
    "retention",
)
"""The daemon's long-running tasks by kind: the ``task`` label of
``riskwatch_task_errors_total`` and ``riskwatch_task_running`` (the trade connections,
one per account, share ``trade``)."""

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

LATENCY_BUCKETS: Final[tuple[float, ...]] = (
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
"""Seconds, 1-2.5-5 per decade from 0.1 ms to 10 s: the bounds of the latency histograms
(one ladder, so that their buckets line up on a dashboard)."""

PULSE_TO_ACTION_BUCKETS: Final = LATENCY_BUCKETS
"""Seconds from the receive time of the deciding frame to the action leaving riskwatch."""

EVENT_LOOP_LAG_BUCKETS: Final = tuple(b for b in LATENCY_BUCKETS if b >= 0.001)
"""Seconds: a loop on time wakes well within a ms; a starved one tens of ms to seconds late."""

EVENT_KINDS: Final[tuple[str, ...]] = get_args(EventKind)
RETENTION_KINDS: Final = ("notification_log", "silences")
"""The ``kind`` label values of ``riskwatch_retention_purged_total``."""

HTTP_REFUSALS: Final = (
    "connection_cap",
    "client_connection_cap",
    "header_timeout",
    "body_timeout",
    "request_timeout",
    "admin_rate",
    "login_throttled",
    "host",
)
"""The ``reason`` label values of ``riskwatch_http_refused_total`` (docs/http.md)."""

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text exposition format's content type (what Prometheus 2.42 parses)."""

CHUNK_LINES: Final = 500
"""Sample lines per piece of :func:`exposition_chunks` that joins kept lines."""

PIECE_SECONDS: Final = 0.0005
"""Seconds a render loop over accounts works before it ends its piece of
:func:`exposition_chunks` (an empty piece: the caller gives its loop back). Pieces are
bounded by time, not by a count of accounts: what an account costs depends on how much
of it moved since the last scrape, and on the machine (docs/performance.md)."""


class _Pace:
    """Says when a render loop has worked :data:`PIECE_SECONDS` since its last piece."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until = time.perf_counter() + PIECE_SECONDS

    def due(self) -> bool:
        """True (and the next piece starts) once this piece has taken its time."""
        now = time.perf_counter()
        if now < self._until:
            return False
        self._until = now + PIECE_SECONDS
        return True


_NAME_RE: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def format_value(value: float) -> str:
    """A sample value as the text format writes it: ``+Inf``, ``-Inf``, ``NaN`` or repr."""
    if value - value == 0.0:  # finite (the common case, one test): inf - inf is NaN
        return repr(float(value))
    if value != value:  # NaN is the only value unequal to itself
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format: backslash, double quote, newline."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _header(name: str, help_text: str, kind: str) -> str:
    return f"# HELP {name} {_escape_help(help_text)}\n# TYPE {name} {kind}\n"


def _labels_text(names: Sequence[str], values: Sequence[str]) -> str:
    inner = ",".join(f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}" if inner else ""


class Registry(CollectorRegistry):
    """A :class:`~prometheus_client.CollectorRegistry` that remembers its collectors in
    registration order, for :func:`exposition_chunks` (the library keeps no public list)."""

    def __init__(self, auto_describe: bool = True) -> None:
        super().__init__(auto_describe=auto_describe)
        self.collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        """Add a collector (refused on a duplicate name, as by the library)."""
        super().register(collector)
        self.collectors.append(collector)

    def unregister(self, collector: Collector) -> None:
        """Remove a collector."""
        super().unregister(collector)
        self.collectors = [c for c in self.collectors if c is not collector]


class _Single:
    """One collector seen as a registry, for ``generate_latest``."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def collect(self) -> Iterable[Metric]:
        return self._collector.collect()


def exposition_chunks(registry: CollectorRegistry) -> Iterator[bytes]:
    """The ``/metrics`` body (text format 0.0.4) in pieces of bounded work.

    Collectors with a ``render_chunks()`` method (the labelled families and
    :class:`SnapshotCollector`) render themselves; any other collector is rendered by
    ``generate_latest``. A registry that is not a :class:`Registry` is rendered in one
    piece by ``generate_latest``. The caller may yield to its event loop between pieces.
    """
    if not isinstance(registry, Registry):
        yield generate_latest(registry)
        return
    for collector in list(registry.collectors):
        render = getattr(collector, "render_chunks", None)
        if render is None:
            yield generate_latest(_Single(collector))
            continue
        for piece in render():
            yield piece.encode()


def _family_pieces(
    header: str, i: int, texts: Sequence[tuple[str, ...]], counts: Sequence[int]
) -> Iterator[str]:
    """Family ``i`` of per-owner kept texts (``texts[k][i]`` holds ``counts[k]`` lines at
    most): its header, then every owner's lines, in pieces of about CHUNK_LINES lines."""
    piece = [header]
    count = 0
    for owner_texts, lines in zip(texts, counts, strict=True):
        piece.append(owner_texts[i])
        count += lines
        if count >= CHUNK_LINES:
            yield "".join(piece)
            piece, count = [], 0
    if piece:
        yield "".join(piece)


OwnedSeries = tuple[int, tuple[str, ...], float]
"""One gauge series of :class:`OwnedGauges`: (family index, label values, value)."""


class OwnedGauges:
    """Gauge families whose series are grouped by owner (an account, or ``""`` for the
    daemon's own), rendered straight to text and kept between scrapes.

    A collector calls :meth:`put` once per owner per scrape with a hashable ``key`` of
    everything the owner's series show and a ``series`` function listing them; the
    function runs only when the key differs from the owner's previous one. Then
    :meth:`chunks` yields each family (its header, then every owner's lines, in the
    order put) in pieces of about :data:`CHUNK_LINES` lines, and forgets the owners not
    put since the last call. :meth:`families` builds the same series as library
    families, for ``collect()``: both paths read one ``series`` function.
    """

    __slots__ = ("_cache", "_counts", "_headers", "_put", "_texts", "families")

    def __init__(self, families: Sequence[tuple[str, str, Sequence[str]]]) -> None:
        self.families = tuple((name, text, tuple(labels)) for name, text, labels in families)
        self._headers = tuple(_header(name, text, "gauge") for name, text, _ in self.families)
        self._cache: dict[str, tuple[object, tuple[str, ...], int]] = {}
        self._texts: list[tuple[str, ...]] = []
        self._counts: list[int] = []
        self._put: set[str] = set()

    def put(self, owner: str, key: object, series: Callable[[], Iterable[OwnedSeries]]) -> bool:
        """Add ``owner``'s lines to the next :meth:`chunks`; True when rendered now."""
        self._put.add(owner)
        cached = self._cache.get(owner)
        if cached is not None and cached[0] == key:
            self._texts.append(cached[1])
            self._counts.append(cached[2])
            return False
        families = self.families
        parts: list[list[str]] = [[] for _ in families]
        for index, values, value in series():
            name, _, labels = families[index]
            parts[index].append(
                name + _labels_text(labels, values) + " " + format_value(value) + "\n"
            )
        texts = tuple("".join(lines) for lines in parts)
        count = max((len(lines) for lines in parts), default=0)
        self._cache[owner] = (key, texts, count)
        self._texts.append(texts)
        self._counts.append(count)
        return True

    def render(
        self, owners: Iterable[tuple[str, object, Callable[[], Iterable[OwnedSeries]]]]
    ) -> Iterator[str]:
        """:meth:`put` every ``(owner, key, series)``, then :meth:`chunks`; an empty piece
        whenever :data:`PIECE_SECONDS` have passed (the caller may give its loop back)."""
        pace = _Pace()
        for owner, key, series in owners:
            self.put(owner, key, series)
            if pace.due():
                yield ""
        yield from self.chunks()

    def chunks(self) -> Iterator[str]:
        """Every family with the lines put since the last call (class docstring)."""
        texts, counts, put = self._texts, self._counts, self._put
        self._texts, self._counts, self._put = [], [], set()
        if len(self._cache) > len(put):  # owners gone (an account removed by a reload)
            self._cache = {o: c for o, c in self._cache.items() if o in put}
        for i, header in enumerate(self._headers):
            yield from _family_pieces(header, i, texts, counts)

    def build(self, every: Iterable[Iterable[OwnedSeries]]) -> list[GaugeMetricFamily]:
        """The families holding every series of ``every`` (for ``collect()``)."""
        out = [GaugeMetricFamily(name, text, labels=labels) for name, text, labels in self.families]
        for series in every:
            for index, values, value in series:
                out[index].add_metric(list(values), value)
        return out


class _Series:
    """One series of a labelled family: its value and its sample line as last rendered
    (kept while the value stands: most series do not move between two scrapes; the
    line's part before the value is its label text, kept only there)."""

    __slots__ = ("line", "line_value", "value")

    def __init__(self, prefix: str) -> None:
        self.value = 0.0
        self.line = prefix  # "name{labels} ": rendered at the first scrape
        self.line_value: float | None = None

    def render(self) -> str:
        """The series' sample line."""
        value = self.value
        if value != self.line_value or self.line_value is None:
            line = self.line
            if self.line_value is not None:
                line = line[: line.rindex(" ") + 1]
            self.line = line + format_value(value) + "\n"
            self.line_value = value
        return self.line


class CounterSeries(_Series):
    """A counter series: only goes up."""

    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0)."""
        if amount < 0:
            msg = f"counters only go up: inc({amount!r})"
            raise ValueError(msg)
        self.value += amount


class GaugeSeries(_Series):
    """A gauge series: set to any value."""

    __slots__ = ()

    def set(self, value: float) -> None:
        """Set the value."""
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (may be negative)."""
        self.value += amount


S = TypeVar("S", bound=_Series)


class _LabelledFamily(Generic[S]):
    """A counter or gauge family keyed by label values, rendered straight to text.

    Written from the event loop only (``labels(...)`` creates a series, ``inc``/``set``
    change it); read by the scrape from the same loop. The API mirrors the library's
    (``family.labels(*values).inc()``), with positional label values only.
    """

    _kind: Literal["counter", "gauge"]
    _series_type: type[S]

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        if not _NAME_RE.match(name):
            msg = f"invalid metric name {name!r}"
            raise ValueError(msg)
        for label in labelnames:
            if not _LABEL_RE.match(label) or label.startswith("__"):
                msg = f"invalid label name {label!r} of metric {name}"
                raise ValueError(msg)
        if self._kind == "counter" and not name.endswith("_total"):
            msg = f"counter name {name!r} must end in _total"
            raise ValueError(msg)
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], S] = {}
        self._header = _header(name, documentation, self._kind)
        registry.register(self)

    def labels(self, *values: str) -> S:
        """The series of these label values (created at 0 on first use)."""
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                msg = f"{self.name} takes {len(self.labelnames)} label values, got {values!r}"
                raise ValueError(msg)
            values = tuple(str(v) for v in values)
            series = self._series_type(self.name + _labels_text(self.labelnames, values) + " ")
            self._series[values] = series
        return series

    def values(self) -> dict[tuple[str, ...], float]:
        """Every series' value by its label values (a copy)."""
        return {labels: series.value for labels, series in self._series.items()}

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        if self._kind == "counter":
            return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def describe(self) -> Iterable[Metric]:
        """The family without samples (lets the registry check names)."""
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        """The family with every series (for ``get_sample_value``, ``generate_latest``)."""
        family = self._family()
        for values, series in list(self._series.items()):
            family.add_metric(list(values), series.value)
        return [family]

    def render_chunks(self) -> Iterator[str]:
        """The family as text-format lines, :data:`CHUNK_LINES` series per piece."""
        lines = [self._header]
        for series in list(self._series.values()):
            lines.append(series.render())
            if len(lines) >= CHUNK_LINES:
                yield "".join(lines)
                lines = []
        if lines:
            yield "".join(lines)


class LabelledCounter(_LabelledFamily[CounterSeries]):
    """A labelled counter (name ends in ``_total``); see :class:`_LabelledFamily`."""

    _kind = "counter"
    _series_type = CounterSeries


class LabelledGauge(_LabelledFamily[GaugeSeries]):
    """A labelled gauge; see :class:`_LabelledFamily`."""

    _kind = "gauge"
    _series_type = GaugeSeries


class Metrics:
    """The counters, histograms and rule gauges of docs/metrics.md, on ``registry``.

    Attributes (label names in braces):

    - ``messages``: ``riskwatch_messages_total{account,kind}``, one per decoded frame.
    - ``reconnects``: ``riskwatch_reconnects_total{account}``.
    - ``impossible_frames``: ``riskwatch_impossible_frames_total{account,reason}``,
      one per frame flagged by ``state/plausibility.py``.
    - ``rule_evaluation_seconds``: histogram of one account's rule evaluation.
    - ``pulse_to_action_seconds``: histogram, deciding frame's receive time → action sent.
    - ``config_reload``: ``riskwatch_config_reload_total{result}`` (``success``/``failure``).
    - ``build_info``: ``riskwatch_build_info{version} 1``.
    - ``alerts_fired``: ``riskwatch_alerts_fired_total{rule,account,severity}``.
    - ``actions``: ``riskwatch_actions_total{action,result}`` (result: sent, dry_run,
      refused, confirmed, failed; with a failure, ``rejected_<code>`` for the exchange's
      documented rejection code or ``rejected_other``; ``audit_failed`` when the intent
      could not be written, ``unaudited`` when sent all the same: docs/actions.md).
    - ``action_retries``: ``riskwatch_action_retries_total{action}``.
    - ``notifications``: ``riskwatch_notifications_total{route,result}`` (result: sent,
      failed, silenced, inhibited; ``retried`` for each retry of a failed attempt).
    - ``unauthorized``: ``riskwatch_http_unauthorized_total{reason}`` (missing, wrong).
    - ``state_errors``: ``riskwatch_state_errors_total{op}``, failed writes of the state
      database by kind of record (:data:`STATE_OPS`).
    - ``state_failing``: ``riskwatch_state_failing`` 1 while its writes fail, else 0.
    - ``state_disk_free``: ``riskwatch_state_disk_free_bytes`` of the state directory.
    - ``state_write_queue``: ``riskwatch_state_write_queue``, records queued for the
      state database's writer thread.
    - ``task_errors``: ``riskwatch_task_errors_total{task}``, errors a long-running task
      (ticks, market data, trade frames, action timers, the notification worker)
      caught and survived; ``task_running``: ``riskwatch_task_running{task}``, 0 once a
      task of that kind ended before the daemon stopped (daemon/taskwatch.py).
    - ``recording``: ``riskwatch_recording`` 1 while ``run --record`` writes, 0 once a
      write error stopped it; ``recording_errors``: ``riskwatch_recording_errors_total``.
    - ``http_refused``: ``riskwatch_http_refused_total{reason}`` (:data:`HTTP_REFUSALS`).
    - ``http_connections``: ``riskwatch_http_connections``, open HTTP connections (read
      from the connection guard at scrape time).

    The alert-state gauges (``riskwatch_alert_state``, ``riskwatch_latched``) are read
    from the rule states at scrape time by :class:`AlertStateCollector`.

    Constructing it turns on the library's legacy name validation and turns its
    ``_created`` series off (process-wide settings; see the module docstring). The
    per-account families are :class:`LabelledCounter`/:class:`LabelledGauge`; use a
    :class:`Registry` so that :func:`exposition_chunks` renders them fast.
    """

    def __init__(self, registry: CollectorRegistry, version: str = "unknown") -> None:
        enable_legacy_validation()  # type: ignore[no-untyped-call]  # untyped in 0.26
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no _created series
        self.registry = registry
        self.messages = LabelledCounter(
            PREFIX + "messages_total",
            "Frames received from the exchange, by decoded kind.",
            ["account", "kind"],
            registry,
        )
        self.reconnects = LabelledCounter(
            PREFIX + "reconnects_total",
            "Reconnections to the exchange.",
            ["account"],
            registry,
        )
        self.impossible_frames = LabelledCounter(
            PREFIX + "impossible_frames_total",
            "Frames with impossible figures, flagged and not applied, by reason.",
            ["account", "reason"],
            registry,
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
        self.alerts_fired = LabelledCounter(
            PREFIX + "alerts_fired_total",
            "Alerts that went firing.",
            ["rule", "account", "severity"],
            registry,
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
            "HTTP requests refused for a missing or wrong admin or read token.",
            ["reason"],
            registry=registry,
        )
        self.http_refused = Counter(
            PREFIX + "http_refused_total",
            "HTTP connections and requests refused by a limit of the HTTP surface (docs/http.md).",
            ["reason"],
            registry=registry,
        )
        for reason in HTTP_REFUSALS:
            self.http_refused.labels(reason)
        self.http_connections = Gauge(
            PREFIX + "http_connections",
            "Open HTTP connections (docs/http.md: at most http.max_connections).",
            registry=registry,
        )
        self.retention_purged = Counter(
            PREFIX + "retention_purged_total",
            "Rows deleted from the state database by the retention purge, by kind.",
            ["kind"],
            registry=registry,
        )
        for kind in RETENTION_KINDS:
            self.retention_purged.labels(kind)
        self.retention_purge_failures = Counter(
            PREFIX + "retention_purge_failures_total",
            "Retention purges the state database refused (retried at the next pass).",
            registry=registry,
        )

        self.state_errors = Counter(
            PREFIX + "state_errors_total",
            "Failed writes of the state database, by kind of record.",
            ["op"],
            registry=registry,
        )
        for op in STATE_OPS:
            self.state_errors.labels(op)
        self.event_loop_lag_seconds = Histogram(
            PREFIX + "event_loop_lag_seconds",
            "How late the event loop woke from a 0.1 s sleep (riskwatch/daemon/looplag.py).",
            registry=registry,
            buckets=EVENT_LOOP_LAG_BUCKETS,
        )
        self.event_loop_lagging = Gauge(
            PREFIX + "event_loop_lagging",
            "1 while the event loop has run late for a whole window (alert EventLoopLagging).",
            registry=registry,
        )
        self.state_failing = Gauge(
            PREFIX + "state_failing",
            "1 while writes of the state database fail, else 0.",
            registry=registry,
        )
        self.state_disk_free = Gauge(
            PREFIX + "state_disk_free_bytes",
            "Free space of the filesystem holding the state database, bytes.",
            registry=registry,
        )
        self.state_write_queue = Gauge(
            PREFIX + "state_write_queue",
            "Records queued for the state database's writer thread.",
            registry=registry,
        )
        self.task_errors = Counter(
            PREFIX + "task_errors_total",
            "Errors caught by a long-running task, which carried on.",
            ["task"],
            registry=registry,
        )
        self.task_running = Gauge(
            PREFIX + "task_running",
            "1 while every daemon task of this kind runs, 0 once one ended before the"
            " daemon stopped (a restart is needed).",
            ["task"],
            registry=registry,
        )
        for task in TASKS:
            self.task_errors.labels(task)
            self.task_running.labels(task).set(1)
        self.recording = Gauge(
            PREFIX + "recording",
            "1 while run --record writes frames, 0 once a write error stopped it.",
            registry=registry,
        )
        self.recording_errors = Counter(
            PREFIX + "recording_errors_total",
            "Write errors of run --record (the first one stops the recording).",
            registry=registry,
        )

    def init_account(self, account: str) -> None:
        """Create the account's counter series at 0, so ``rate()`` sees their first rise."""
        for kind in EVENT_KINDS:
            self.messages.labels(account, kind)
        self.reconnects.labels(account)
        for reason in REASONS:
            self.impossible_frames.labels(account, reason)


class ScrapedAccount(NamedTuple):
    """What the collector reads about one account: its name, link state and figures.

    ``figures`` is None before the account's first event.
    """

    account: str
    connected: bool
    figures: Figures | None


class Scrape(NamedTuple):
    """A provider's answer: the time of the scrape (Unix seconds) and every account."""

    now: float
    accounts: Iterable[ScrapedAccount]
    """Read once, in order, between pieces of a scrape: a provider may build each
    account's view as it is read (daemon/views.py)."""


ViewProvider = Callable[[], Scrape]
"""Returns the latest views; called once per scrape, by the task that reads them (the
views may be built as they are read: :attr:`Scrape.accounts`)."""

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


_ACCOUNT_METRICS: Final = tuple(PREFIX + name for name, _, _ in _ACCOUNT_GAUGES)
_POSITION_METRICS: Final = tuple(PREFIX + name for name, _, _ in _POSITION_GAUGES)
_POSITION_COLUMNS: Final = tuple(column for _, _, column in _POSITION_GAUGES)

_AGE_HELP: Final = "Seconds since the last position or balance pulse."
_CONNECTED_HELP: Final = "1 when connected and authenticated, else 0."


class SnapshotCollector:
    """Yields the per-account and per-position gauges from ``provider`` at scrape time.

    Register it on the same registry as :class:`Metrics`:
    ``registry.register(SnapshotCollector(provider))``. See the module docstring for
    what is and is not exported.
    """

    def __init__(self, provider: ViewProvider) -> None:
        self._provider = provider
        self._account_labels: dict[str, str] = {}
        # account → (its gauge values, their lines); (its rows' inputs, their lines)
        self._account_cache: dict[str, tuple[tuple[float | None, ...], tuple[str, ...]]] = {}
        self._position_cache: dict[str, tuple[object, tuple[str, ...], int]] = {}

    def _account_label(self, account: str) -> str:
        """``{account="…"}`` of ``account``, escaped once and kept (accounts are few)."""
        text = self._account_labels.get(account)
        if text is None:
            if len(self._account_labels) > 100_000:  # accounts removed by reloads
                self._account_labels.clear()
            text = '{account="' + escape_label_value(account) + '"} '
            self._account_labels[account] = text
        return text

    def _account_texts(self, account: str, labels: str, figures: Figures) -> tuple[str, ...]:
        """The account's line of each account gauge ("" where the figure is unknown),
        rendered again only when one of the values moved since the last scrape."""
        values = tuple(figures.account.get(key) for _, _, key in _ACCOUNT_GAUGES)
        cached = self._account_cache.get(account)
        if cached is not None and cached[0] == values:
            # Keep the newer values: the older equal ones are objects of an earlier
            # evaluation, which would otherwise stay alive beside the current.
            self._account_cache[account] = (values, cached[1])
            return cached[1]
        fmt = format_value
        texts = tuple(
            "" if value is None else metric + labels + fmt(value) + "\n"
            for metric, value in zip(_ACCOUNT_METRICS, values, strict=True)
        )
        self._account_cache[account] = (values, texts)
        return texts

    def _position_texts(self, account: str, figures: Figures) -> tuple[tuple[str, ...], int]:
        """The account's lines of each position gauge (non-flat positions only) and how
        many per family (at most): they are kept while every row's inputs
        (``derived.PositionRows.state_inputs``) are unchanged, so rows are not even built."""
        rows = figures.positions
        # The exported columns do not read the market figures: their inputs are left out.
        inputs = getattr(rows, "state_inputs", None)
        key: object = None
        if inputs is not None:
            key = (getattr(rows, "shared_inputs", None), tuple(inputs(sym) for sym in rows))
            cached = self._position_cache.get(account)
            if cached is not None and cached[0] == key:
                # The newer key, as in _account_texts: it holds the current pulse's numbers.
                self._position_cache[account] = (key, cached[1], cached[2])
                return cached[1], cached[2]
        fmt = format_value
        prefix = '{account="' + escape_label_value(account) + '",symbol="'
        parts: list[list[str]] = [[] for _ in _POSITION_GAUGES]
        columns = tuple(zip(parts, _POSITION_METRICS, _POSITION_COLUMNS, strict=True))
        for symbol, row in rows.items():
            if not row.get("position"):
                continue  # flat (or unknown size): its series vanish
            # f-strings: one string built per line, not one per concatenation (every
            # line of a moving market is rendered again at every scrape).
            tail = f'{prefix}{escape_label_value(symbol)}"}} '
            for lines, metric, name in columns:
                value = row.get(name)
                if value is not None:
                    lines.append(f"{metric}{tail}{fmt(value)}\n")
        texts = tuple("".join(lines) for lines in parts)
        count = max((len(lines) for lines in parts), default=0)
        if key is not None:
            self._position_cache[account] = (key, texts, count)
        return texts, count

    def render_chunks(self) -> Iterator[str]:
        """The gauges as text-format lines, from one call of the provider, in pieces
        of bounded work (a piece may be empty: work was done, the caller may yield to
        its loop). Each account's lines come from one view (its figures at one moment);
        the views are read one after the other, between pieces.

        Each account's lines are kept between scrapes and rendered again only when its
        figures moved (:meth:`_account_texts`, :meth:`_position_texts`): a scrape of
        accounts whose positions did not move costs a few µs per account.
        Same families, order, names, HELP and export rules as :meth:`collect`.
        """
        now, views = self._provider()
        fmt = format_value
        label_of = self._account_label
        accounts: list[tuple[str, ...]] = []
        positions: list[tuple[str, ...]] = []
        position_lines: list[int] = []  # lines per position family, per account
        ages: list[str] = []
        links: list[str] = []
        seen: list[str] = []
        age_metric = PREFIX + "data_age_seconds"
        connected_metric = PREFIX + "connected"
        pace = _Pace()
        for view in views:
            seen.append(view.account)
            labels = label_of(view.account)
            links.append(connected_metric + labels + ("1.0\n" if view.connected else "0.0\n"))
            figures = view.figures
            if figures is None:
                continue
            if figures.last_pulse_at is not None:
                ages.append(age_metric + labels + fmt(max(0.0, now - figures.last_pulse_at)) + "\n")
            accounts.append(self._account_texts(view.account, labels, figures))
            texts, lines = self._position_texts(view.account, figures)
            positions.append(texts)
            position_lines.append(lines)
            if pace.due():
                yield ""
        if len(self._account_cache) > len(seen):  # accounts removed by a reload
            keep = set(seen)
            self._account_cache = {a: c for a, c in self._account_cache.items() if a in keep}
            self._position_cache = {a: c for a, c in self._position_cache.items() if a in keep}
        step = CHUNK_LINES
        for i, (name, help_text, _) in enumerate(_ACCOUNT_GAUGES):
            yield _header(PREFIX + name, help_text, "gauge")
            for k in range(0, len(accounts), step):
                yield "".join(t[i] for t in accounts[k : k + step])
        yield _header(age_metric, _AGE_HELP, "gauge")
        for k in range(0, len(ages), step):
            yield "".join(ages[k : k + step])
        yield _header(connected_metric, _CONNECTED_HELP, "gauge")
        for k in range(0, len(links), step):
            yield "".join(links[k : k + step])
        for i, (name, help_text, _) in enumerate(_POSITION_GAUGES):
            header = _header(PREFIX + name, help_text, "gauge")
            yield from _family_pieces(header, i, positions, position_lines)

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
        age = GaugeMetricFamily(PREFIX + "data_age_seconds", _AGE_HELP, labels=["account"])
        connected = GaugeMetricFamily(PREFIX + "connected", _CONNECTED_HELP, labels=["account"])
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


class AlertGauges(NamedTuple):
    """What :class:`AlertStateCollector` reads about one account's alerts.

    ``version`` changes whenever a row may have changed (equal versions: the account's
    lines of the previous scrape are reused); ``rows`` yields ``(rule, symbol,
    severity, state value, latched)`` (symbol empty at account scope; latched None for
    a rule that cannot latch: no ``riskwatch_latched`` series).
    """

    account: str
    version: object
    rows: Callable[[], Iterable[tuple[str, str, str, int, bool | None]]]


AlertProvider = Callable[[], Iterable[AlertGauges]]
"""Returns every account's alert gauges; called once per scrape."""

_ALERT_STATE: Final = PREFIX + "alert_state"
_ALERT_STATE_HELP: Final = "Alert state: 0 inactive, 1 pending, 2 firing."
_LATCHED: Final = PREFIX + "latched"
_LATCHED_HELP: Final = "Whether a latched rule is tripped (1) or not (0)."
_ACCOUNTS_PER_PIECE: Final = 50
"""Accounts per piece of the cached texts (a handful of lines each)."""


class _AlertLines:
    """One account's rendered alert gauges and the label sets they hold."""

    __slots__ = ("latched", "latched_text", "state", "state_text", "version")

    def __init__(self, version: object) -> None:
        self.version = version
        self.state: dict[tuple[str, str, str], float] = {}
        self.latched: dict[tuple[str, str], float] = {}
        self.state_text = ""
        self.latched_text = ""


class AlertStateCollector:
    """``riskwatch_alert_state{rule,account,symbol,severity}`` (0 inactive, 1 pending,
    2 firing) and ``riskwatch_latched{rule,account,symbol}`` (0/1), read from the rule
    states at scrape time.

    A series that existed once stays, at 0, when its alert is no longer listed (a rule
    removed or its severity changed by a reload): a dashboard never shows a firing
    alert frozen in its last value. An account's lines are rendered again only when
    its ``version`` changed since the previous scrape.
    """

    def __init__(self, provider: AlertProvider) -> None:
        self._provider = provider
        self._cache: dict[str, _AlertLines] = {}

    def _lines(self, view: AlertGauges) -> _AlertLines:
        cached = self._cache.get(view.account)
        if cached is not None and cached.version == view.version:
            return cached
        out = _AlertLines(view.version)
        account = view.account
        for rule, symbol, severity, state, latched in view.rows():
            out.state[(rule, symbol, severity)] = float(state)
            if latched is not None:
                out.latched[(rule, symbol)] = 1.0 if latched else 0.0
        if cached is not None:
            for key in cached.state.keys() - out.state.keys():
                out.state[key] = 0.0
            for lkey in cached.latched.keys() - out.latched.keys():
                out.latched[lkey] = 0.0
        esc = escape_label_value
        acc = esc(account)
        out.state_text = "".join(
            f'{_ALERT_STATE}{{rule="{esc(rule)}",account="{acc}",symbol="{esc(symbol)}",'
            f'severity="{esc(severity)}"}} {format_value(value)}\n'
            for (rule, symbol, severity), value in out.state.items()
        )
        out.latched_text = "".join(
            f'{_LATCHED}{{rule="{esc(rule)}",account="{acc}",symbol="{esc(symbol)}"}} '
            f"{format_value(value)}\n"
            for (rule, symbol), value in out.latched.items()
        )
        self._cache[account] = out
        return out

    def _all(self) -> list[tuple[str, _AlertLines]]:
        every: list[tuple[str, _AlertLines]] = []
        for _ in self._read(every):
            pass
        return every

    def _read(self, every: list[tuple[str, _AlertLines]]) -> Iterator[str]:
        """Append each account's lines to ``every``; an empty piece whenever
        :data:`PIECE_SECONDS` have passed."""
        pace = _Pace()
        for view in self._provider():
            every.append((view.account, self._lines(view)))
            if pace.due():
                yield ""
        if len(self._cache) > len(every):  # accounts removed by a reload
            keep = {account for account, _ in every}
            self._cache = {a: c for a, c in self._cache.items() if a in keep}

    def render_chunks(self) -> Iterator[str]:
        """Both families as text-format lines, in pieces of bounded work."""
        every: list[tuple[str, _AlertLines]] = []
        yield from self._read(every)
        for name, help_text, attr in (
            (_ALERT_STATE, _ALERT_STATE_HELP, "state_text"),
            (_LATCHED, _LATCHED_HELP, "latched_text"),
        ):
            parts = [_header(name, help_text, "gauge")]
            for _, lines in every:
                parts.append(getattr(lines, attr))
                if len(parts) >= _ACCOUNTS_PER_PIECE:
                    yield "".join(parts)
                    parts = []
            if parts:
                yield "".join(parts)

    def describe(self) -> Iterable[Metric]:
        """The two families without samples."""
        return self._families()

    def _families(self) -> list[Metric]:
        return [
            GaugeMetricFamily(
                _ALERT_STATE, _ALERT_STATE_HELP, labels=["rule", "account", "symbol", "severity"]
            ),
            GaugeMetricFamily(_LATCHED, _LATCHED_HELP, labels=["rule", "account", "symbol"]),
        ]

    def collect(self) -> Iterable[Metric]:
        """Both families with every series (for ``get_sample_value``, ``generate_latest``)."""
        state, latched = self._families()
        for account, lines in self._all():
            for (rule, symbol, severity), value in lines.state.items():
                state.samples.append(
                    Sample(
                        _ALERT_STATE,
                        {"rule": rule, "account": account, "symbol": symbol, "severity": severity},
                        value,
                        None,
                    )
                )
            for (rule, symbol), value in lines.latched.items():
                latched.samples.append(
                    Sample(
                        _LATCHED, {"rule": rule, "account": account, "symbol": symbol}, value, None
                    )
                )
        return [state, latched]
