"""Daily figures of one account: ``pnl_today`` and the drawdown peaks (docs/rules.md).

A *trading day* starts at the configured reset time (``DailyConfig.reset``, local
wall time in ``DailyConfig.tz``) and lasts until the next one. Reset instants are
computed with :mod:`zoneinfo`, so a 17:00 America/New_York reset stays at 17:00 New
York time across a DST change (the day is then 23 or 25 hours long). A reset time that
does not exist on a spring-forward day is moved past the gap (02:30 → 03:30 local);
an ambiguous one on a fall-back day is its first occurrence.

Figures (money in USD, ratios as fractions):

``baseline``
    fixed at the first observation after each reset, from the ``baseline`` mode:
    ``equity``; ``balance``, meaning ``deposit + realised_pnl + net_funding`` — the
    equity without unrealised PnL (docs/protocol.md §6; the caller computes it from the
    balance pulse); or ``max``, the higher of the two, as prop-trading firms define
    their daily loss limit. An observation lacking the input the mode needs (both
    for ``max``) does not fix the baseline; a later one does.
``pnl_today``
    ``equity - baseline``.
``intraday_peak`` / ``drawdown_intraday``
    the highest equity seen since the last reset, and ``(peak - equity) / peak``.
``eod_peak`` / ``drawdown_eod``
    the high-water mark of end-of-day equity (the last equity seen before each
    reset) and the fall from it, ``max(0, (peak - equity) / peak)``. With no
    history yet, the first equity ever observed seeds it (treated as a prior close).

Ratios are None when their peak is missing or ``<= 0``. Everything is pure: the
time is passed in as ``now`` (Unix seconds, float).

Restarts: :meth:`DailyTracker.to_record` / :meth:`DailyTracker.from_record` carry
the state through the state database. A restored tracker keeps its baseline and
peaks for as long as no reset instant *later than the stored day start* has passed,
so a restart never re-fixes a baseline to an already lower equity and never lowers a
peak. When the restart crosses a reset, the day rolls over as usual, with the last
equity seen before the stop standing for the missed close.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Baseline = Literal["equity", "balance", "max"]

_RESET_RE: Final = re.compile(r"(\d{2}):(\d{2})")
_RECORD_VERSION: Final = 1
_BASELINES: Final = ("equity", "balance", "max")


@dataclass(frozen=True, slots=True)
class DailyConfig:
    """When the trading day resets and what the daily baseline is.

    ``reset`` is ``"HH:MM"`` (24-hour, local to ``tz``); ``tz`` an IANA zone name.
    Raises ``ValueError`` on a malformed reset time, an unknown zone or mode.
    """

    reset: str = "00:00"
    tz: str = "UTC"
    baseline: Baseline = "equity"

    def __post_init__(self) -> None:
        match = _RESET_RE.fullmatch(self.reset)
        if match is None or int(match[1]) > 23 or int(match[2]) > 59:
            msg = f"daily reset must be HH:MM, got {self.reset!r}"
            raise ValueError(msg)
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"unknown time zone {self.tz!r}"
            raise ValueError(msg) from exc
        if self.baseline not in _BASELINES:
            msg = f"daily baseline must be one of {', '.join(_BASELINES)}, got {self.baseline!r}"
            raise ValueError(msg)

    @property
    def reset_time(self) -> time:
        """The reset as a local wall-clock time."""
        hours, minutes = self.reset.split(":")
        return time(int(hours), int(minutes))

    def day_start(self, now: float) -> float:
        """The latest reset instant at or before ``now`` (Unix seconds)."""
        return self.day_bounds(now)[0]

    def day_bounds(self, now: float) -> tuple[float, float]:
        """The trading day holding ``now``: ``(start, end)``, start inclusive, Unix seconds."""
        zone = ZoneInfo(self.tz)
        local_day = datetime.fromtimestamp(now, zone).date()
        start = self._reset_at(local_day, zone)
        if start > now:
            local_day -= timedelta(days=1)
            start = self._reset_at(local_day, zone)
        return start, self._reset_at(local_day + timedelta(days=1), zone)

    def _reset_at(self, day: date, zone: ZoneInfo) -> float:
        # fold=0: first occurrence of an ambiguous time; a nonexistent time is read
        # with the pre-transition offset, i.e. lands just past the gap.
        local = datetime.combine(day, self.reset_time, tzinfo=zone)
        # Normalise through UTC so a time inside a spring-forward gap is resolved.
        return local.astimezone(UTC).timestamp()


@dataclass(frozen=True, slots=True)
class DailyFigures:
    """The account's daily figures after one observation (see the module docstring)."""

    day_start: float
    baseline: float | None
    pnl_today: float | None
    intraday_peak: float | None
    eod_peak: float | None
    drawdown_intraday: float | None
    drawdown_eod: float | None


class DailyTracker:
    """Pure state for one account's daily figures; feed it every balance pulse.

    Not thread-safe; one instance per account, driven by the account's evaluation.
    """

    __slots__ = (
        "_baseline",
        "_config",
        "_day_end",
        "_day_start",
        "_eod_peak",
        "_intraday_peak",
        "_last_equity",
    )

    def __init__(self, config: DailyConfig) -> None:
        self._config = config
        self._day_start: float | None = None
        self._day_end = -math.inf  # cached end of the current day: skips zone arithmetic
        self._baseline: float | None = None
        self._intraday_peak: float | None = None
        self._eod_peak: float | None = None
        self._last_equity: float | None = None

    @property
    def config(self) -> DailyConfig:
        """The day definition in use."""
        return self._config

    def observe(self, equity: float | None, balance: float | None, now: float) -> DailyFigures:
        """Take one observation at ``now`` and return the figures that follow.

        ``equity`` and ``balance`` (``deposit + realised_pnl + net_funding``) are USD;
        None (or a non-finite number) means the pulse did not carry it.
        """
        equity = _finite(equity)
        balance = _finite(balance)
        if not (self._day_start is not None and self._day_start <= now < self._day_end):
            day_start, self._day_end = self._config.day_bounds(now)
            if self._day_start is None:
                self._day_start = day_start
            elif day_start > self._day_start:
                self._roll(day_start)
            # else: still the stored day (or the clock stepped back): keep everything
        if self._baseline is None:
            self._baseline = self._pick_baseline(equity, balance)
        if equity is not None:
            self._last_equity = equity
            self._intraday_peak = _max(self._intraday_peak, equity)
            if self._eod_peak is None:
                self._eod_peak = equity
        return self.figures()

    @property
    def baseline(self) -> float | None:
        """The day's baseline (what :meth:`figures` reports), without building them."""
        return self._baseline

    def figures(self) -> DailyFigures:
        """The figures as of the last observation (no state change)."""
        equity = self._last_equity
        baseline = self._baseline
        pnl = equity - baseline if equity is not None and baseline is not None else None
        eod = _ratio(self._eod_peak, equity)
        return DailyFigures(
            day_start=self._day_start if self._day_start is not None else math.nan,
            baseline=baseline,
            pnl_today=pnl,
            intraday_peak=self._intraday_peak,
            eod_peak=self._eod_peak,
            drawdown_intraday=_ratio(self._intraday_peak, equity),
            drawdown_eod=max(0.0, eod) if eod is not None else None,
        )

    def _roll(self, day_start: float) -> None:
        # The last equity of the day that ended is its close.
        if self._last_equity is not None:
            self._eod_peak = _max(self._eod_peak, self._last_equity)
        self._day_start = day_start
        self._baseline = None
        self._intraday_peak = None

    def _pick_baseline(self, equity: float | None, balance: float | None) -> float | None:
        mode = self._config.baseline
        if mode == "equity":
            return equity
        if mode == "balance":
            return balance
        if equity is None or balance is None:
            return None
        return max(equity, balance)

    def significant(self) -> tuple[float | None, ...]:
        """The day, baseline and peaks: what :meth:`to_record` holds besides the last
        equity seen (which moves with every pulse)."""
        return (self._day_start, self._baseline, self._intraday_peak, self._eod_peak)

    def to_record(self) -> dict[str, Any]:
        """Plain-data (JSON-able) state for the state database."""
        return {
            "version": _RECORD_VERSION,
            "day_start": self._day_start,
            "baseline": self._baseline,
            "intraday_peak": self._intraday_peak,
            "eod_peak": self._eod_peak,
            "last_equity": self._last_equity,
        }

    @classmethod
    def from_record(cls, config: DailyConfig, record: dict[str, Any]) -> DailyTracker:
        """Rebuild a tracker from :meth:`to_record` output; ``ValueError`` if malformed.

        The next :meth:`observe` keeps the restored baseline and peaks while it falls
        in the same trading day, and rolls the day over otherwise.
        """
        if record.get("version") != _RECORD_VERSION:
            msg = f"unsupported daily record version {record.get('version')!r}"
            raise ValueError(msg)
        tracker = cls(config)
        tracker._day_start = _field(record, "day_start")
        tracker._baseline = _field(record, "baseline")
        tracker._intraday_peak = _field(record, "intraday_peak")
        tracker._eod_peak = _field(record, "eod_peak")
        tracker._last_equity = _field(record, "last_equity")
        return tracker


def _field(record: dict[str, Any], name: str) -> float | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"daily record field {name!r} must be a finite number or null, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _max(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)


def _ratio(peak: float | None, value: float | None) -> float | None:
    if peak is None or value is None or peak <= 0.0:
        return None
    return (peak - value) / peak
