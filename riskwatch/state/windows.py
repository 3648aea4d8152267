"""Bounded, time-indexed history for the rule window functions.

A rule such as ``drawdown(equity, 24h) > 0.10`` needs the recent history of one
metric. :class:`Windows` keeps that history only for the ``(name, duration)`` pairs
the loaded rules use, per *series key* (``""`` for the account, the symbol for a
position), and answers the window functions of the rule language with the contract
of :mod:`riskwatch.rules.expr.windows` (whose ``ReferenceWindows`` is the executable
specification): the window holds the samples with ``now - seconds <= t <= now``;
None when it holds none; otherwise

``max_over`` / ``min_over``
    the largest / smallest sample.
``avg_over``
    the arithmetic mean of the samples (a sample average, not time-weighted: pulses
    arrive at a fixed cadence, and it is what the reference computes).
``change``
    latest sample minus the earliest sample in the window (the one ``seconds`` ago
    when it exists); 0.0 with one sample.
``rate``
    ``change`` divided by the seconds between those two samples; None when they are
    the same sample.
``drawdown``
    ``(peak - latest) / peak`` with peak the ``max_over``: 0.0 at the peak; None when
    the peak is ``<= 0``.

None and non-finite values are not samples (nothing is recorded). Queries never raise:
an unknown function or an untracked name gives None (the rule checker rules both out).

Resolution and memory bound: every distinct duration declared for a name gets a
*tier* whose bucket width is ``max(MIN_RESOLUTION, duration / BUCKETS)`` seconds
(0.1 s for windows up to 100 s, 86.4 s for 24 h). Samples falling in the same bucket
are coalesced into one record that keeps the bucket's first and last sample, its
maximum, minimum, count and sum. Extrema, and so the peak used by ``drawdown``, are
exact; the latest sample is exact; only the window's *start* edge is blurred: a
bucket straddling it counts whole for max/min/avg (at most one bucket width of older
samples), and ``change``/``rate`` then take that bucket's last sample as the earliest
one (at most one bucket width later than the true one). A tier holds at most
``BUCKETS + 2`` live records in ``array('d')`` columns, and only the columns the
functions read on that name need (:data:`COLUMNS_OF`; ``t_last`` always): 24 bytes a
record for ``drawdown`` alone, 64 with every function, i.e. 24 to 64 KiB per (series
key, name, duration) however fast the updates arrive, plus at most
:data:`_COMPACT_AFTER` evicted records not yet compacted away. (A 24 h ``drawdown``
of equity kept all eight columns before, twice over between compactions: up to
128 KiB per account, 128 MB at a thousand accounts; docs/performance.md.)
A query for ``seconds`` uses the finest tier whose duration covers it; a query longer
than every declared duration is answered over the longest one.

Everything here is pure: time is passed in as ``now`` (Unix seconds, float).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Container, Iterable, Mapping
from typing import Any, Final, Protocol

BUCKETS: Final = 1000
"""Records per tier: the window's span divided by the bucket width."""

MIN_RESOLUTION: Final = 0.1
"""Finest bucket width, seconds: at most one record per 100 ms."""

WINDOW_FUNCTIONS: Final = frozenset(
    {"max_over", "min_over", "avg_over", "change", "rate", "drawdown"}
)
"""The window functions of the rule language; :meth:`Windows.window` answers each."""

_SNAPSHOT_VERSION: Final = 2
_COLUMNS: Final = ("t_first", "v_first", "t_last", "v_last", "v_max", "v_min", "count", "total")

COLUMNS_OF: Final[Mapping[str, frozenset[str]]] = {
    "max_over": frozenset({"v_max"}),
    "min_over": frozenset({"v_min"}),
    "avg_over": frozenset({"count", "total"}),
    "drawdown": frozenset({"v_max", "v_last"}),
    "change": frozenset({"t_first", "v_first", "v_last"}),
    "rate": frozenset({"t_first", "v_first", "v_last"}),
}
"""The record columns each window function reads, besides ``t_last`` (always kept: it
places records in time)."""

_COMPACT_AFTER: Final = 64
"""Evicted records at the head of a tier that trigger compacting them away."""


class WindowSource(Protocol):
    """What the rule evaluator reads window functions from (one series key)."""

    def window(self, func: str, name: str, seconds: float, now: float) -> float | None:
        """Return ``func`` of ``name`` over ``[now - seconds, now]``, or None."""
        ...


def _evict(
    times: array[float], head: int, start: float, columns: Iterable[array[float] | None]
) -> int:
    """Move ``head`` past the records whose last sample is before ``start``; once
    :data:`_COMPACT_AFTER` are behind it, delete them from every column (``times``
    among them) and return 0, else the new head."""
    end = len(times)
    while head < end and times[head] < start:
        head += 1
    if head < _COMPACT_AFTER:
        return head
    for column in columns:
        if column is not None:
            del column[:head]
    return 0


class _Tier:
    """The coalesced history of one series at one resolution.

    Records are stored column-wise; record ``i`` is the ``i``-th element of every
    column, and live records are ``[head, len)``.
    """

    __slots__ = (
        "count",
        "head",
        "res",
        "span",
        "t_first",
        "t_last",
        "total",
        "v_first",
        "v_last",
        "v_max",
        "v_min",
    )

    def __init__(self, span: float, kept: frozenset[str] = frozenset(_COLUMNS)) -> None:
        self.span = span
        self.res = max(MIN_RESOLUTION, span / BUCKETS)
        self.head = 0
        # A column no function reads is None: never allocated, never written.
        self.t_first = array("d") if "t_first" in kept else None
        self.v_first = array("d") if "v_first" in kept else None
        self.t_last = array("d")
        self.v_last = array("d") if "v_last" in kept else None
        self.v_max = array("d") if "v_max" in kept else None
        self.v_min = array("d") if "v_min" in kept else None
        self.count = array("d") if "count" in kept else None
        self.total = array("d") if "total" in kept else None

    def __len__(self) -> int:
        return len(self.t_last) - self.head

    def push(self, t: float, v: float) -> None:
        """Record value ``v`` at time ``t`` (not earlier than the last sample)."""
        self.absorb((t, v, t, v, v, v, 1.0, v))

    def absorb(self, rec: tuple[float, ...]) -> None:
        """Append an aggregated record (a sample, or one from a snapshot), in time order."""
        t_first, _, t_last, v_last, v_max, v_min, count, total = rec
        if t_first != t_first:  # NaN: a restored record of a tier without the column
            t_first = t_last
        if len(self) and math.floor(t_first / self.res) == math.floor(self.t_last[-1] / self.res):
            self.t_last[-1] = t_last
            if self.v_last is not None:
                self.v_last[-1] = v_last
            if self.v_max is not None:
                self.v_max[-1] = max(self.v_max[-1], v_max)
            if self.v_min is not None:
                self.v_min[-1] = min(self.v_min[-1], v_min)
            if self.count is not None and self.total is not None:
                self.count[-1] += count
                self.total[-1] += total
            return
        for column, value in zip(self._columns(), rec, strict=True):
            if column is not None:
                column.append(value)
        self.head = _evict(self.t_last, self.head, t_last - self.span, self._columns())

    def _columns(self) -> tuple[array[float] | None, ...]:
        return (
            self.t_first,
            self.v_first,
            self.t_last,
            self.v_last,
            self.v_max,
            self.v_min,
            self.count,
            self.total,
        )

    def records(self) -> list[tuple[float, ...]]:
        """The live records, oldest first, as 8-tuples in ``_COLUMNS`` order (NaN in
        the columns this tier does not keep)."""
        nan = math.nan
        columns = self._columns()
        return [
            tuple(nan if c is None else c[i] for c in columns)
            for i in range(self.head, len(self.t_last))
        ]

    def query(self, func: str, seconds: float, now: float) -> float | None:
        """Answer ``func`` over ``[now - seconds, now]`` (see the module docstring)."""
        seconds = min(max(seconds, 0.0), self.span)
        # Records whose last sample is after `now` (a query dated before the latest
        # push) are outside the window.
        end = bisect_right(self.t_last, now, self.head)
        # i: first record whose last sample is inside the window.
        i = bisect_left(self.t_last, now - seconds, self.head, end)
        if i >= end:
            return None
        v_max, v_last = self.v_max, self.v_last
        if func == "max_over":
            return None if v_max is None else max(v_max[i:end])
        if func == "min_over":
            return None if self.v_min is None else min(self.v_min[i:end])
        if func == "avg_over":
            if self.total is None or self.count is None:
                return None
            return sum(self.total[i:end]) / sum(self.count[i:end])
        if v_last is None:
            return None
        latest = v_last[end - 1]
        if func == "drawdown":
            if v_max is None:
                return None
            peak = max(v_max[i:end])
            return None if peak <= 0.0 else (peak - latest) / peak
        if self.t_first is None or self.v_first is None:
            return None
        if self.t_first[i] >= now - seconds:
            t_ref, v_ref = self.t_first[i], self.v_first[i]
        else:  # the bucket straddles the window start: its last sample is inside
            t_ref, v_ref = self.t_last[i], v_last[i]
        if func == "change":
            return latest - v_ref
        if func == "rate":
            elapsed = self.t_last[end - 1] - t_ref
            return None if elapsed <= 0.0 else (latest - v_ref) / elapsed
        return None


class _PeakTier:
    """A tier for a name read only by ``max_over`` and ``drawdown``: the bucket records
    that can still be the peak of a window ending now, and the latest sample.

    A record older than a record at least as high is never the maximum of a window
    that ends at or after both (a window holding the older one holds the newer one),
    so it is dropped when the newer one arrives: what is left falls strictly in value,
    oldest (the window's maximum) first. Same answers as :class:`_Tier` for every
    window ending at or after the latest sample (what the contract of
    :mod:`riskwatch.rules.expr.windows` queries), from far fewer records: a rising
    equity keeps one, a random walk over a 24 h window a few dozen, and a fall all
    day long at most what :class:`_Tier` keeps. A query dated before the latest sample
    is answered as of the latest sample.
    """

    __slots__ = ("head", "latest", "res", "span", "t_last", "v_max")

    RESTORED_COLUMNS: Final = frozenset({"t_last", "v_max"})
    """What a restored record must have: the latest value is needed once, not per
    record (:meth:`add` keeps the previous one for a record without it)."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.res = max(MIN_RESOLUTION, span / BUCKETS)
        self.head = 0
        self.t_last = array("d")
        self.v_max = array("d")
        self.latest = math.nan  # the latest sample's value (NaN before the first)

    def __len__(self) -> int:
        return len(self.t_last) - self.head

    def push(self, t: float, v: float) -> None:
        """Record value ``v`` at time ``t`` (not earlier than the last sample)."""
        self.add(t, t, v, v)

    def absorb(self, rec: tuple[float, ...]) -> None:
        """Take an aggregated record in ``_COLUMNS`` order, in time order."""
        t_first, _, t_last, v_last, v_max = rec[:5]
        self.add(t_first if t_first == t_first else t_last, t_last, v_max, v_last)

    def add(self, t_first: float, t_last: float, v_max: float, v_last: float) -> None:
        """A record's bucket start, last sample time, maximum and last value."""
        times, peaks = self.t_last, self.v_max
        if v_last == v_last:  # not NaN: a restored record without it keeps the old one
            self.latest = v_last
        same = len(times) > self.head and math.floor(t_first / self.res) == math.floor(
            times[-1] / self.res
        )
        if same:
            v_max = max(v_max, peaks[-1])
            del times[-1], peaks[-1]
        # Records no higher than this one can never be a window's maximum again.
        while len(times) > self.head and peaks[-1] <= v_max:
            del times[-1], peaks[-1]
        times.append(t_last)
        peaks.append(v_max)
        self.head = _evict(times, self.head, t_last - self.span, (times, peaks))

    def records(self) -> list[tuple[float, ...]]:
        """The kept records, oldest first, as 8-tuples in ``_COLUMNS`` order (NaN in
        the columns not kept; the last one carries the latest sample as ``v_last``)."""
        nan = math.nan
        end = len(self.t_last)
        out: list[tuple[float, ...]] = []
        for i in range(self.head, end):
            v_last = self.latest if i == end - 1 else nan
            out.append((nan, nan, self.t_last[i], v_last, self.v_max[i], nan, nan, nan))
        return out

    def query(self, func: str, seconds: float, now: float) -> float | None:
        """Answer ``max_over`` or ``drawdown`` over ``[now - seconds, now]``."""
        seconds = min(max(seconds, 0.0), self.span)
        i = bisect_left(self.t_last, now - seconds, self.head)
        if i >= len(self.t_last):
            return None
        peak = self.v_max[i]  # the oldest kept record in the window is the highest
        if func == "max_over":
            return peak
        if func == "drawdown":
            latest = self.latest
            if latest != latest:
                return None
            return None if peak <= 0.0 else (peak - latest) / peak
        return None


_PEAK_COLUMNS: Final = frozenset({"t_last", "v_max", "v_last"})


class _Series:
    """All tiers of one (series key, name)."""

    __slots__ = ("last_t", "tiers")

    def __init__(self, spans: tuple[float, ...], kept: frozenset[str]) -> None:
        # finest (shortest) first
        self.tiers: tuple[_Tier | _PeakTier, ...] = (
            tuple(_PeakTier(span) for span in spans)
            if kept <= _PEAK_COLUMNS
            else tuple(_Tier(span, kept) for span in spans)
        )
        self.last_t = -math.inf

    @staticmethod
    def restored_columns(kept: frozenset[str]) -> frozenset[str]:
        """The columns a restored record must have, for a series that keeps ``kept``:
        all of them, but for the peak tier's (:attr:`_PeakTier.RESTORED_COLUMNS`)."""
        return _PeakTier.RESTORED_COLUMNS if kept <= _PEAK_COLUMNS else kept

    def push(self, t: float, v: float) -> None:
        # A clock step backwards (replay glitch, NTP) must not unsort the history.
        t = max(t, self.last_t)
        self.last_t = t
        for tier in self.tiers:
            tier.push(t, v)

    def tier_for(self, seconds: float) -> _Tier | _PeakTier:
        for tier in self.tiers:
            if tier.span >= seconds:
                return tier
        return self.tiers[-1]


class Windows:
    """Window history for every series key, for the tracked names only.

    ``specs`` lists the ``(name, duration_seconds)`` pairs the loaded rules use. A
    name may appear several times: its longest duration sets how long history is
    kept, and each distinct duration gets a tier of its own resolution (see the
    module docstring). Passing only the longest duration per name is valid too.
    Raises ``ValueError`` on a duration that is not a positive finite number.

    ``functions`` maps a name to the window functions read on it; only the record
    columns those need are kept (:data:`COLUMNS_OF`), and a function not listed for a
    name answers None on it. A name missing from ``functions``, or ``functions``
    None, keeps every column.

    Build a new instance when the rule set changes; :meth:`snapshot` and
    :meth:`restore` carry the history over a restart or a reload.
    """

    def __init__(
        self,
        specs: Iterable[tuple[str, float]],
        functions: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        spans: dict[str, set[float]] = {}
        for name, duration in specs:
            if not math.isfinite(duration) or duration <= 0.0:
                msg = f"window duration for {name!r} must be positive seconds, got {duration!r}"
                raise ValueError(msg)
            spans.setdefault(name, set()).add(float(duration))
        self._spans: dict[str, tuple[float, ...]] = {
            name: tuple(sorted(durations)) for name, durations in spans.items()
        }
        every = frozenset(_COLUMNS)
        self._kept: dict[str, frozenset[str]] = {}
        for name in self._spans:
            funcs = None if functions is None else functions.get(name)
            if funcs is None:
                self._kept[name] = every
                continue
            kept = {"t_last"}
            for func in funcs:
                kept |= COLUMNS_OF.get(func, every)
            self._kept[name] = frozenset(kept)
        self._series: dict[str, dict[str, _Series]] = {}

    @property
    def tracked(self) -> Mapping[str, tuple[float, ...]]:
        """Tracked names and their durations in seconds, shortest first."""
        return self._spans

    def push(self, key: str, values: Mapping[str, float | None], now: float) -> None:
        """Record the current value of every tracked name found in ``values``.

        ``key`` is ``""`` for the account series, the symbol for a position. Names not
        tracked are ignored; None and non-finite values are not recorded. O(1) per
        tracked name and tier; nothing at all when no name is tracked.
        """
        if not self._spans:
            return
        series = self._series.get(key)
        for name, spans in self._spans.items():
            value = values.get(name)
            if value is None or not math.isfinite(value):
                continue
            if series is None:
                series = self._series.setdefault(key, {})
            one = series.get(name)
            if one is None:
                one = series[name] = _Series(spans, self._kept[name])
            one.push(now, float(value))

    def query(self, key: str, func: str, name: str, seconds: float, now: float) -> float | None:
        """Return ``func`` of ``name`` for series ``key`` over ``[now - seconds, now]``.

        None when the window holds no sample (or ``drawdown``/``rate`` are undefined,
        see the module docstring), and for an unknown function or a name no rule
        declared: the contract says never raise, and the rule checker rules both out.
        """
        series = self._series.get(key)
        one = series.get(name) if series is not None else None
        if one is None or func not in WINDOW_FUNCTIONS:
            return None
        return one.tier_for(seconds).query(func, seconds, now)

    def window(self, func: str, name: str, seconds: float, now: float) -> float | None:
        """The account series (key ``""``) as a :class:`WindowSource`."""
        return self.query("", func, name, seconds, now)

    def bind(self, key: str, account_names: Container[str] = frozenset()) -> WindowSource:
        """A :class:`WindowSource` for a position rule: names read series ``key`` (the symbol).

        Names in ``account_names`` read the account series (``""``) instead: at position
        scope an account-level name such as ``equity`` means the account's history,
        while a position name (``notional``, the position's own ``unrealised_pnl``)
        means the symbol's. Push each scope's values under its own key.
        """
        return _Bound(self, key, account_names)

    def drop(self, key: str) -> None:
        """Forget every series of ``key`` (e.g. a symbol no longer traded)."""
        self._series.pop(key, None)

    def keys(self) -> list[str]:
        """Series keys that hold history."""
        return list(self._series)

    def memory_records(self) -> int:
        """Total live records held, across keys, names and tiers (for tests and stats)."""
        return sum(
            len(tier) for s in self._series.values() for one in s.values() for tier in one.tiers
        )

    def snapshot(self, max_records: int = 256) -> dict[str, Any]:
        """Plain-data (JSON-able) copy of the history, downsampled for the state database.

        For every (key, name) the longest tier is saved, merged down to at most
        ``max_records`` records; merging keeps each group's extrema, count
        and sum, so peaks (and therefore ``drawdown``) survive exactly, at a coarser
        edge resolution. A column the tier does not keep is saved as None.
        """
        if max_records < 1:
            msg = f"max_records must be at least 1, got {max_records}"
            raise ValueError(msg)
        out: list[dict[str, Any]] = []
        for key, series in self._series.items():
            for name, one in series.items():
                records = _downsample(one.tiers[-1].records(), max_records)
                out.append(
                    {
                        "key": key,
                        "name": name,
                        "records": [[None if math.isnan(x) else x for x in r] for r in records],
                    }
                )
        return {"version": _SNAPSHOT_VERSION, "series": out}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot`, for the names this instance tracks (others are skipped).

        Call it on a fresh instance, before the first :meth:`push`. Records that lack
        a column this instance keeps for the name (saved by rules that read other
        functions on it) are skipped: that history starts again. Raises
        ``ValueError`` on a malformed snapshot.
        """
        if data.get("version") != _SNAPSHOT_VERSION:
            msg = f"unsupported window snapshot version {data.get('version')!r}"
            raise ValueError(msg)
        for item in data.get("series", []):
            try:
                key, name = str(item["key"]), str(item["name"])
                records = [
                    tuple(math.nan if x is None else float(x) for x in rec)
                    for rec in item["records"]
                ]
            except (KeyError, TypeError, ValueError) as exc:
                msg = f"malformed window snapshot entry: {exc}"
                raise ValueError(msg) from exc
            if any(len(rec) != len(_COLUMNS) for rec in records):
                msg = f"window snapshot record for {name!r} must have {len(_COLUMNS)} fields"
                raise ValueError(msg)
            spans = self._spans.get(name)
            if spans is None:
                continue
            kept = self._kept[name]
            need = _Series.restored_columns(kept)
            needed = [i for i, column in enumerate(_COLUMNS) if column in need]
            records = [rec for rec in records if not any(math.isnan(rec[i]) for i in needed)]
            if not records:
                continue
            one = self._series.setdefault(key, {}).setdefault(name, _Series(spans, kept))
            for tier in one.tiers:
                for rec in records:
                    tier.absorb(rec)
            one.last_t = max(one.last_t, records[-1][2])


class _Bound:
    """One series key of a :class:`Windows`, seen as a :class:`WindowSource`."""

    __slots__ = ("_account_names", "_key", "_windows")

    def __init__(self, windows: Windows, key: str, account_names: Container[str]) -> None:
        self._windows = windows
        self._key = key
        self._account_names = account_names

    def window(self, func: str, name: str, seconds: float, now: float) -> float | None:
        """Return ``func`` of ``name`` for the bound key; see :meth:`Windows.query`."""
        key = "" if name in self._account_names else self._key
        return self._windows.query(key, func, name, seconds, now)


def _downsample(records: list[tuple[float, ...]], limit: int) -> list[tuple[float, ...]]:
    """Merge consecutive records so that at most ``limit`` remain (extrema, sums kept)."""
    if len(records) <= limit:
        return records
    group = math.ceil(len(records) / limit)
    merged: list[tuple[float, ...]] = []
    for start in range(0, len(records), group):
        chunk = records[start : start + group]
        first, last = chunk[0], chunk[-1]
        merged.append(
            (
                first[0],
                first[1],
                last[2],
                last[3],
                max(r[4] for r in chunk),
                min(r[5] for r in chunk),
                sum(r[6] for r in chunk),
                sum(r[7] for r in chunk),
            )
        )
    return merged
