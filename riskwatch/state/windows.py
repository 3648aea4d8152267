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
``BUCKETS + 2`` live records of 8 floats (64 bytes each, in ``array('d')`` columns),
i.e. about 64 KiB per (series key, name, duration) however fast the updates arrive
(up to twice that transiently: evicted records are compacted away in batches).
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


class WindowSource(Protocol):
    """What the rule evaluator reads window functions from (one series key)."""

    def window(self, func: str, name: str, seconds: float, now: float) -> float | None:
        """Return ``func`` of ``name`` over ``[now - seconds, now]``, or None."""
        ...


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

    def __init__(self, span: float) -> None:
        self.span = span
        self.res = max(MIN_RESOLUTION, span / BUCKETS)
        self.head = 0
        self.t_first = array("d")
        self.v_first = array("d")
        self.t_last = array("d")
        self.v_last = array("d")
        self.v_max = array("d")
        self.v_min = array("d")
        self.count = array("d")
        self.total = array("d")

    def __len__(self) -> int:
        return len(self.t_last) - self.head

    def push(self, t: float, v: float) -> None:
        """Record value ``v`` at time ``t`` (not earlier than the last sample)."""
        self.absorb((t, v, t, v, v, v, 1.0, v))

    def absorb(self, rec: tuple[float, ...]) -> None:
        """Append an aggregated record (a sample, or one from a snapshot), in time order."""
        t_first, _, t_last, v_last, v_max, v_min, count, total = rec
        if len(self) and math.floor(t_first / self.res) == math.floor(self.t_last[-1] / self.res):
            self.t_last[-1] = t_last
            self.v_last[-1] = v_last
            self.v_max[-1] = max(self.v_max[-1], v_max)
            self.v_min[-1] = min(self.v_min[-1], v_min)
            self.count[-1] += count
            self.total[-1] += total
            return
        for column, value in zip(self._columns(), rec, strict=True):
            column.append(value)
        self._evict(t_last)

    def _columns(self) -> tuple[array[float], ...]:
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

    def _evict(self, now: float) -> None:
        start = now - self.span
        end = len(self.t_last)
        while self.head < end and self.t_last[self.head] < start:
            self.head += 1
        if self.head > 64 and 2 * self.head > end:
            for column in self._columns():
                del column[: self.head]
            self.head = 0

    def records(self) -> list[tuple[float, ...]]:
        """The live records, oldest first, as 8-tuples in ``_COLUMNS`` order."""
        columns = self._columns()
        return [tuple(c[i] for c in columns) for i in range(self.head, len(self.t_last))]

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
        if func == "max_over":
            return max(self.v_max[i:end])
        if func == "min_over":
            return min(self.v_min[i:end])
        if func == "avg_over":
            return sum(self.total[i:end]) / sum(self.count[i:end])
        latest = self.v_last[end - 1]
        if func == "drawdown":
            peak = max(self.v_max[i:end])
            return None if peak <= 0.0 else (peak - latest) / peak
        if self.t_first[i] >= now - seconds:
            t_ref, v_ref = self.t_first[i], self.v_first[i]
        else:  # the bucket straddles the window start: its last sample is inside
            t_ref, v_ref = self.t_last[i], self.v_last[i]
        if func == "change":
            return latest - v_ref
        if func == "rate":
            elapsed = self.t_last[end - 1] - t_ref
            return None if elapsed <= 0.0 else (latest - v_ref) / elapsed
        return None


class _Series:
    """All tiers of one (series key, name)."""

    __slots__ = ("last_t", "tiers")

    def __init__(self, spans: tuple[float, ...]) -> None:
        self.tiers = tuple(_Tier(span) for span in spans)  # finest (shortest) first
        self.last_t = -math.inf

    def push(self, t: float, v: float) -> None:
        # A clock step backwards (replay glitch, NTP) must not unsort the history.
        t = max(t, self.last_t)
        self.last_t = t
        for tier in self.tiers:
            tier.push(t, v)

    def tier_for(self, seconds: float) -> _Tier:
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

    Build a new instance when the rule set changes; :meth:`snapshot` and
    :meth:`restore` carry the history over a restart or a reload.
    """

    def __init__(self, specs: Iterable[tuple[str, float]]) -> None:
        spans: dict[str, set[float]] = {}
        for name, duration in specs:
            if not math.isfinite(duration) or duration <= 0.0:
                msg = f"window duration for {name!r} must be positive seconds, got {duration!r}"
                raise ValueError(msg)
            spans.setdefault(name, set()).add(float(duration))
        self._spans: dict[str, tuple[float, ...]] = {
            name: tuple(sorted(durations)) for name, durations in spans.items()
        }
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
                one = series[name] = _Series(spans)
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
        edge resolution.
        """
        if max_records < 1:
            msg = f"max_records must be at least 1, got {max_records}"
            raise ValueError(msg)
        out: list[dict[str, Any]] = []
        for key, series in self._series.items():
            for name, one in series.items():
                records = _downsample(one.tiers[-1].records(), max_records)
                out.append({"key": key, "name": name, "records": [list(r) for r in records]})
        return {"version": _SNAPSHOT_VERSION, "series": out}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot`, for the names this instance tracks (others are skipped).

        Call it on a fresh instance, before the first :meth:`push`. Raises
        ``ValueError`` on a malformed snapshot.
        """
        if data.get("version") != _SNAPSHOT_VERSION:
            msg = f"unsupported window snapshot version {data.get('version')!r}"
            raise ValueError(msg)
        for item in data.get("series", []):
            try:
                key, name = str(item["key"]), str(item["name"])
                records = [tuple(float(x) for x in rec) for rec in item["records"]]
            except (KeyError, TypeError, ValueError) as exc:
                msg = f"malformed window snapshot entry: {exc}"
                raise ValueError(msg) from exc
            if any(len(rec) != len(_COLUMNS) for rec in records):
                msg = f"window snapshot record for {name!r} must have {len(_COLUMNS)} fields"
                raise ValueError(msg)
            spans = self._spans.get(name)
            if spans is None or not records:
                continue
            one = self._series.setdefault(key, {}).setdefault(name, _Series(spans))
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
