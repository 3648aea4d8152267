"""Tests for riskwatch.state.daily."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from riskwatch.state.daily import DailyConfig, DailyTracker

UTC_ZONE = ZoneInfo("UTC")
NY = ZoneInfo("America/New_York")


def _ts(zone: ZoneInfo, year: int, month: int, day: int, *hms: int) -> float:
    hour, minute, second = (*hms, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=zone).timestamp()


def test_pnl_today_from_first_observation_after_reset() -> None:
    """The baseline is the first equity of the day and resets at 00:00 UTC."""
    tr = DailyTracker(DailyConfig())
    f = tr.observe(10_000.0, 9_000.0, _ts(UTC_ZONE, 2026, 3, 2, 9, 0))
    assert f.baseline == 10_000.0
    assert f.pnl_today == 0.0
    f = tr.observe(9_400.0, 9_000.0, _ts(UTC_ZONE, 2026, 3, 2, 23, 59, 59))
    assert f.pnl_today == -600.0
    f = tr.observe(9_500.0, 9_000.0, _ts(UTC_ZONE, 2026, 3, 3, 0, 0, 0))
    assert f.baseline == 9_500.0
    assert f.pnl_today == 0.0
    assert f.day_start == _ts(UTC_ZONE, 2026, 3, 3)


@pytest.mark.parametrize(
    ("mode", "baseline"), [("equity", 10_000.0), ("balance", 10_300.0), ("max", 10_300.0)]
)
def test_baseline_modes(mode: str, baseline: float) -> None:
    """equity, balance and max pick their baseline from the first observation."""
    tr = DailyTracker(DailyConfig(baseline=mode))  # type: ignore[arg-type]
    tr.observe(10_000.0, 10_300.0, _ts(UTC_ZONE, 2026, 3, 2, 1))
    f = tr.observe(9_000.0, 10_300.0, _ts(UTC_ZONE, 2026, 3, 2, 2))
    assert f.baseline == baseline
    assert f.pnl_today == 9_000.0 - baseline


def test_max_mode_takes_equity_when_higher() -> None:
    """max takes equity when it exceeds balance (unrealised gains)."""
    tr = DailyTracker(DailyConfig(baseline="max"))
    f = tr.observe(11_000.0, 10_000.0, _ts(UTC_ZONE, 2026, 3, 2, 1))
    assert f.baseline == 11_000.0


def test_baseline_waits_for_needed_input() -> None:
    """An observation lacking the mode's input does not fix the baseline."""
    tr = DailyTracker(DailyConfig(baseline="max"))
    f = tr.observe(10_000.0, None, _ts(UTC_ZONE, 2026, 3, 2, 1))
    assert f.baseline is None
    assert f.pnl_today is None
    f = tr.observe(9_900.0, 10_100.0, _ts(UTC_ZONE, 2026, 3, 2, 2))
    assert f.baseline == 10_100.0
    assert f.pnl_today == pytest.approx(-200.0)


def test_reset_at_17_new_york_across_dst() -> None:
    """A 17:00 America/New_York reset stays at 17:00 local across the March DST change."""
    cfg = DailyConfig(reset="17:00", tz="America/New_York")
    # 2026-03-08 is the spring-forward Sunday in New York.
    assert cfg.day_start(_ts(NY, 2026, 3, 6, 18)) == _ts(NY, 2026, 3, 6, 17)
    assert cfg.day_start(_ts(NY, 2026, 3, 9, 16, 59)) == _ts(NY, 2026, 3, 8, 17)
    assert cfg.day_start(_ts(NY, 2026, 3, 9, 17)) == _ts(NY, 2026, 3, 9, 17)
    # 17:00 EST is 22:00 UTC; 17:00 EDT is 21:00 UTC.
    assert cfg.day_start(_ts(NY, 2026, 3, 6, 18)) == _ts(UTC_ZONE, 2026, 3, 6, 22)
    assert cfg.day_start(_ts(NY, 2026, 3, 9, 18)) == _ts(UTC_ZONE, 2026, 3, 9, 21)
    start, end = cfg.day_bounds(_ts(NY, 2026, 3, 7, 18))
    assert end - start == 23 * 3600

    tr = DailyTracker(cfg)
    tr.observe(1000.0, 1000.0, _ts(NY, 2026, 3, 9, 16, 30))
    f = tr.observe(900.0, 1000.0, _ts(UTC_ZONE, 2026, 3, 9, 20, 59))
    assert f.baseline == 1000.0
    f = tr.observe(900.0, 1000.0, _ts(UTC_ZONE, 2026, 3, 9, 21, 0))
    assert f.baseline == 900.0


def test_reset_in_dst_gap_and_fold() -> None:
    """A reset inside the spring-forward gap moves past it; the fall-back one is the first."""
    cfg = DailyConfig(reset="02:30", tz="America/New_York")
    assert cfg.day_start(_ts(UTC_ZONE, 2026, 3, 8, 12)) == _ts(UTC_ZONE, 2026, 3, 8, 7, 30)
    # 2026-11-01 01:30 occurs twice; with reset 01:30 the day starts at the first (EDT).
    cfg = DailyConfig(reset="01:30", tz="America/New_York")
    assert cfg.day_start(_ts(UTC_ZONE, 2026, 11, 1, 12)) == _ts(UTC_ZONE, 2026, 11, 1, 5, 30)


def test_peaks_and_drawdowns() -> None:
    """The intraday peak resets daily; the end-of-day peak is the best close."""
    tr = DailyTracker(DailyConfig())
    day1 = _ts(UTC_ZONE, 2026, 3, 2, 10)
    f = tr.observe(1000.0, 1000.0, day1)
    assert f.eod_peak == 1000.0  # seeded by the first equity
    f = tr.observe(1200.0, 1000.0, day1 + 60)
    assert f.intraday_peak == 1200.0
    assert f.drawdown_eod == 0.0  # above the high-water mark: no drawdown
    f = tr.observe(1100.0, 1000.0, day1 + 120)
    assert f.drawdown_intraday == pytest.approx(100 / 1200)
    # Day 2: close of day 1 was 1100.
    f = tr.observe(1050.0, 1000.0, _ts(UTC_ZONE, 2026, 3, 3, 10))
    assert f.eod_peak == 1100.0
    assert f.intraday_peak == 1050.0
    assert f.drawdown_intraday == 0.0
    assert f.drawdown_eod == pytest.approx(50 / 1100)
    # Day 3: close of day 2 (1050) does not lower the mark.
    f = tr.observe(990.0, 1000.0, _ts(UTC_ZONE, 2026, 3, 4, 10))
    assert f.eod_peak == 1100.0
    assert f.drawdown_eod == pytest.approx(110 / 1100)


def test_non_positive_peak_gives_no_ratio() -> None:
    """Drawdown ratios are None when the peak is not positive."""
    tr = DailyTracker(DailyConfig())
    f = tr.observe(-5.0, 0.0, _ts(UTC_ZONE, 2026, 3, 2, 10))
    assert f.drawdown_intraday is None
    assert f.drawdown_eod is None


def test_restart_same_day_keeps_baseline_and_peaks() -> None:
    """A restart within the day keeps the baseline and never lowers a peak."""
    cfg = DailyConfig(reset="17:00", tz="America/New_York")
    tr = DailyTracker(cfg)
    tr.observe(10_000.0, 10_000.0, _ts(NY, 2026, 3, 10, 18))
    tr.observe(10_500.0, 10_000.0, _ts(NY, 2026, 3, 10, 20))
    tr.observe(9_000.0, 10_000.0, _ts(NY, 2026, 3, 10, 22))
    record = json.loads(json.dumps(tr.to_record()))

    back = DailyTracker.from_record(cfg, record)
    f = back.observe(8_900.0, 10_000.0, _ts(NY, 2026, 3, 11, 9))
    assert f.baseline == 10_000.0
    assert f.pnl_today == -1_100.0
    assert f.intraday_peak == 10_500.0
    assert f.drawdown_intraday == pytest.approx(1_600 / 10_500)


def test_restart_across_reset_starts_new_day() -> None:
    """A restart after the reset takes a new baseline and closes the old day."""
    cfg = DailyConfig()
    tr = DailyTracker(cfg)
    tr.observe(10_000.0, 10_000.0, _ts(UTC_ZONE, 2026, 3, 2, 10))
    tr.observe(12_000.0, 10_000.0, _ts(UTC_ZONE, 2026, 3, 2, 23))
    back = DailyTracker.from_record(cfg, tr.to_record())
    f = back.observe(11_000.0, 10_000.0, _ts(UTC_ZONE, 2026, 3, 4, 1))
    assert f.baseline == 11_000.0
    assert f.pnl_today == 0.0
    assert f.intraday_peak == 11_000.0
    assert f.eod_peak == 12_000.0
    assert f.day_start == _ts(UTC_ZONE, 2026, 3, 4)


def test_restart_with_changed_reset_never_lowers_baseline() -> None:
    """A reset time moved earlier does not re-fix today's baseline after a restart."""
    tr = DailyTracker(DailyConfig(reset="00:00"))
    tr.observe(10_000.0, 10_000.0, _ts(UTC_ZONE, 2026, 3, 2, 1))
    back = DailyTracker.from_record(DailyConfig(reset="17:00"), tr.to_record())
    f = back.observe(9_000.0, 10_000.0, _ts(UTC_ZONE, 2026, 3, 2, 10))
    assert f.baseline == 10_000.0


def test_clock_step_back_keeps_day() -> None:
    """An observation dated in the previous day does not roll or reset anything."""
    tr = DailyTracker(DailyConfig())
    tr.observe(10_000.0, 10_000.0, _ts(UTC_ZONE, 2026, 3, 3, 0, 0, 5))
    f = tr.observe(9_000.0, 10_000.0, _ts(UTC_ZONE, 2026, 3, 2, 23, 59, 59))
    assert f.baseline == 10_000.0
    assert f.day_start == _ts(UTC_ZONE, 2026, 3, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reset": "24:00"}, "'24:00'"),
        ({"reset": "9:00"}, "'9:00'"),
        ({"tz": "Mars/Olympus"}, "'Mars/Olympus'"),
        ({"baseline": "peak"}, "'peak'"),
    ],
)
def test_bad_config(kwargs: dict[str, str], match: str) -> None:
    """A malformed reset, zone or mode is rejected naming the value."""
    with pytest.raises(ValueError, match=match):
        DailyConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_record() -> None:
    """A malformed record is rejected."""
    cfg = DailyConfig()
    with pytest.raises(ValueError, match="version"):
        DailyTracker.from_record(cfg, {"version": 2})
    with pytest.raises(ValueError, match="baseline"):
        DailyTracker.from_record(cfg, {"version": 1, "baseline": "x"})
