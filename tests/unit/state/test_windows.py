"""Tests for riskwatch.state.windows."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.rules.expr.windows import ReferenceWindows
from riskwatch.state.windows import BUCKETS, WINDOW_FUNCTIONS, Windows, _Tier

T0 = 1_700_000_000.0


def _samples(max_gap: int, max_size: int) -> st.SearchStrategy[list[tuple[int, float]]]:
    """Series as (gap before the sample, value) pairs, for the hypothesis tests."""
    return st.lists(
        st.tuples(st.integers(0, max_gap), st.floats(-1e6, 1e6, allow_nan=False)),
        max_size=max_size,
    )


def _feed(w: Windows, samples: list[tuple[float, float]], key: str = "", name: str = "x") -> None:
    for t, v in samples:
        w.push(key, {name: v}, T0 + t)


def test_max_min_over_window() -> None:
    """max_over and min_over see the samples inside the window, both ends included."""
    w = Windows([("x", 60.0)])
    _feed(w, [(0, 5.0), (10, 9.0), (20, 1.0), (30, 4.0)])
    now = T0 + 30
    assert w.window("max_over", "x", 60, now) == 9.0
    assert w.window("min_over", "x", 60, now) == 1.0
    assert w.window("max_over", "x", 5, now) == 4.0
    assert w.window("min_over", "x", 10, now) == 1.0
    assert w.window("max_over", "x", 5, now + 6) is None  # no sample in [31, 36]


def test_no_data_gives_none() -> None:
    """Every function returns None for a series with no sample."""
    w = Windows([("x", 60.0)])
    for func in ("max_over", "min_over", "avg_over", "change", "rate", "drawdown"):
        assert w.window(func, "x", 60, T0) is None


def test_missing_and_non_finite_values_are_not_recorded() -> None:
    """None, NaN and untracked names record nothing."""
    w = Windows([("x", 60.0)])
    w.push("", {"x": 3.0}, T0)
    w.push("", {"x": None}, T0 + 1)
    w.push("", {"x": math.nan}, T0 + 2)
    w.push("", {"y": 100.0}, T0 + 3)
    assert w.window("max_over", "x", 60, T0 + 3) == 3.0
    assert w.window("avg_over", "x", 60, T0 + 3) == 3.0
    assert w.window("change", "x", 60, T0 + 3) == 0.0
    assert w.window("max_over", "y", 60, T0 + 3) is None


def test_change_uses_sample_seconds_ago() -> None:
    """change is the latest sample minus the one `seconds` ago."""
    w = Windows([("x", 300.0)])
    _feed(w, [(0, 100.0), (60, 110.0), (120, 130.0)])
    now = T0 + 120
    assert w.window("change", "x", 60, now) == pytest.approx(20.0)
    assert w.window("change", "x", 120, now) == pytest.approx(30.0)
    assert w.window("rate", "x", 60, now) == pytest.approx(20.0 / 60)


def test_change_falls_back_to_earliest_sample() -> None:
    """With no sample that old, change and rate use the earliest one."""
    w = Windows([("x", 300.0)])
    _feed(w, [(100, 50.0), (130, 80.0)])
    now = T0 + 130
    assert w.window("change", "x", 300, now) == pytest.approx(30.0)
    assert w.window("rate", "x", 300, now) == pytest.approx(1.0)


def test_rate_of_single_sample_is_none() -> None:
    """rate over zero elapsed time is undefined."""
    w = Windows([("x", 60.0)])
    w.push("", {"x": 1.0}, T0)
    assert w.window("rate", "x", 60, T0) is None
    assert w.window("change", "x", 60, T0) == 0.0


def test_avg_over_is_sample_mean() -> None:
    """avg_over is the arithmetic mean of the samples in the window, across buckets."""
    w = Windows([("x", 100.0)])
    _feed(w, [(0, 0.0), (50, 10.0), (50.02, 20.0), (99, 30.0)])
    assert w.window("avg_over", "x", 100, T0 + 99) == pytest.approx(15.0)
    assert w.window("avg_over", "x", 49.5, T0 + 99) == pytest.approx(20.0)


def test_avg_over_constant() -> None:
    """The average of a constant series is that constant; an empty window has none."""
    w = Windows([("x", 60.0)])
    _feed(w, [(0, 7.0), (10, 7.0), (30, 7.0)])
    assert w.window("avg_over", "x", 60, T0 + 40) == pytest.approx(7.0)
    assert w.window("avg_over", "x", 5, T0 + 40) is None


def test_drawdown() -> None:
    """drawdown is the fall from the window peak as a ratio; 0 at the peak."""
    w = Windows([("equity", 3600.0)])
    _feed(w, [(0, 100.0), (10, 120.0), (20, 90.0)], name="equity")
    assert w.window("drawdown", "equity", 3600, T0 + 20) == pytest.approx(0.25)
    w.push("", {"equity": 130.0}, T0 + 30)
    assert w.window("drawdown", "equity", 3600, T0 + 30) == 0.0


def test_drawdown_none_when_peak_not_positive() -> None:
    """A non-positive peak makes drawdown undefined."""
    w = Windows([("equity", 60.0)])
    _feed(w, [(0, -5.0), (1, -10.0)], name="equity")
    assert w.window("drawdown", "equity", 60, T0 + 1) is None


def test_old_peak_leaves_the_window() -> None:
    """A peak older than the window no longer counts."""
    w = Windows([("x", 60.0)])
    _feed(w, [(0, 200.0), (1, 150.0), (100, 100.0)])
    assert w.window("drawdown", "x", 60, T0 + 100) == 0.0
    assert w.window("max_over", "x", 60, T0 + 100) == 100.0


def test_position_series_are_separate() -> None:
    """bind(key) reads that key's series, and the account's for account names."""
    w = Windows([("notional", 60.0), ("equity", 60.0), ("unrealised_pnl", 60.0)])
    w.push("", {"equity": 1000.0, "unrealised_pnl": -50.0}, T0)
    w.push("BTC-USD", {"notional": 10.0, "unrealised_pnl": -20.0}, T0)
    w.push("ETH-USD", {"notional": 99.0, "unrealised_pnl": -30.0}, T0)
    btc = w.bind("BTC-USD", account_names={"equity"})
    assert btc.window("max_over", "notional", 60, T0) == 10.0
    assert btc.window("max_over", "unrealised_pnl", 60, T0) == -20.0
    assert btc.window("max_over", "equity", 60, T0) == 1000.0
    assert w.bind("ETH-USD").window("max_over", "notional", 60, T0) == 99.0
    assert w.window("max_over", "notional", 60, T0) is None
    assert w.window("max_over", "unrealised_pnl", 60, T0) == -50.0
    w.drop("ETH-USD")
    assert sorted(w.keys()) == ["", "BTC-USD"]


def test_queries_never_raise() -> None:
    """An untracked name or an unknown function gives None; a bad duration is refused at build."""
    w = Windows([("x", 60.0)])
    w.push("", {"x": 1.0}, T0)
    assert w.window("max_over", "y", 60, T0) is None
    assert w.window("median", "x", 60, T0) is None
    with pytest.raises(ValueError, match="positive"):
        Windows([("x", 0.0)])


def test_push_with_nothing_tracked_keeps_nothing() -> None:
    """With no tracked names push stores nothing."""
    w = Windows([])
    w.push("", {"equity": 1.0}, T0)
    assert w.keys() == []
    assert w.memory_records() == 0


def test_memory_bounded_24h_at_20_per_second() -> None:
    """A 24 h window fed 20 updates/s for an hour holds one record per 86.4 s bucket."""
    w = Windows([("equity", 86_400.0)])
    rng = random.Random(7)
    value = 1000.0
    peak = -math.inf
    t = T0
    for _ in range(20 * 3600):
        t += 0.05
        value += rng.uniform(-1, 1)
        peak = max(peak, value)
        w.push("", {"equity": value}, t)
    assert w.memory_records() <= 3600 / 86.4 + 2
    assert w.window("max_over", "equity", 86_400, t) == peak
    assert w.window("drawdown", "equity", 86_400, t) == pytest.approx((peak - value) / peak)


def test_memory_bounded_after_eviction() -> None:
    """Two days of updates into a 24 h window keep at most BUCKETS + 2 records."""
    w = Windows([("equity", 86_400.0)])
    rng = random.Random(7)
    value = 1000.0
    peak = -math.inf
    t = T0
    while t < T0 + 2 * 86_400:
        t += 2.5
        value += rng.uniform(-1, 1)
        w.push("", {"equity": value}, t)
        if t >= T0 + 86_400 + 86.4:  # safely inside the last 24 h
            peak = max(peak, value)
    assert w.memory_records() <= BUCKETS + 2
    got = w.window("max_over", "equity", 86_400, t)
    assert got is not None
    assert got >= peak


def _bytes_held(w: Windows) -> int:
    """Bytes of every record column the windows hold (allocated, not just used)."""
    total = 0
    for series in w._series.values():
        for one in series.values():
            for tier in one.tiers:
                columns = (
                    tier._columns() if hasattr(tier, "_columns") else (tier.t_last, tier.v_max)
                )
                for column in columns:
                    if column is not None:
                        total += column.buffer_info()[1] * column.itemsize
    return total


def _walk(w: Windows, seconds: int, step: float, drift: float, seed: int) -> tuple[float, float]:
    """Feed ``w`` a random walk of equity every ``step`` s for ``seconds``; return the
    last time and value."""
    rng = random.Random(seed)
    value, t = 1000.0, T0
    while t < T0 + seconds:
        t += step
        value += rng.uniform(-1, 1) + drift
        w.push("", {"equity": value}, t)
    return t, value


def test_a_drawdown_keeps_only_the_records_that_can_still_be_the_peak() -> None:
    """A name read only by drawdown and max_over keeps the bucket records that can
    still be a window's peak (two columns) and answers as the eight-column history:
    a random walk keeps a few dozen of the 1000 buckets of 24 h, a fall all day long
    at most BUCKETS + 2 live records plus 64 evicted ones."""
    peak_only = {"equity": ["drawdown", "max_over"]}
    for drift, most in ((0.0, 200), (-0.5, BUCKETS + 2 + 64)):
        w = Windows([("equity", 86_400.0)], peak_only)
        full = Windows([("equity", 86_400.0)])
        t, _ = _walk(w, 2 * 86_400, 1.0, drift, seed=3)
        _walk(full, 2 * 86_400, 1.0, drift, seed=3)
        (tier,) = w._series[""]["equity"].tiers
        assert not hasattr(tier, "v_min")  # no column but the two
        assert len(tier.t_last) <= most
        assert _bytes_held(w) <= 2 * 8 * most * 1.2  # array over-allocation
        for seconds in (60, 3_600, 86_400):
            for func in ("drawdown", "max_over"):
                assert w.window(func, "equity", seconds, t) == full.window(
                    func, "equity", seconds, t
                ), (drift, seconds, func)
    walk = Windows([("equity", 86_400.0)], peak_only)
    _walk(walk, 86_400, 1.0, 0.0, seed=3)
    falling = Windows([("equity", 86_400.0)], peak_only)
    _walk(falling, 86_400, 1.0, -0.5, seed=3)
    assert _bytes_held(falling) > 10 * _bytes_held(walk)  # the random walk kept far fewer


def test_other_functions_keep_only_their_columns_and_compact_early() -> None:
    """avg_over alone keeps t_last, count and total; evicted records are compacted
    away 64 at a time."""
    w = Windows([("equity", 86_400.0)], {"equity": ["avg_over"]})
    full = Windows([("equity", 86_400.0)])
    t, _ = _walk(w, 2 * 86_400, 1.0, 0.0, seed=5)
    _walk(full, 2 * 86_400, 1.0, 0.0, seed=5)
    (tier,) = w._series[""]["equity"].tiers
    assert isinstance(tier, _Tier)
    kept = {
        name
        for name, column in zip(
            ("t_first", "v_first", "t_last", "v_last", "v_max", "v_min", "count", "total"),
            tier._columns(),
            strict=True,
        )
        if column is not None
    }
    assert kept == {"t_last", "count", "total"}
    assert len(tier.t_last) <= BUCKETS + 2 + 64
    assert w.window("avg_over", "equity", 86_400, t) == full.window("avg_over", "equity", 86_400, t)


def test_only_the_functions_declared_answer() -> None:
    """A function not declared for a name answers None; declared ones answer as usual."""
    w = Windows([("x", 60.0)], {"x": ["max_over", "avg_over"]})
    _feed(w, [(0, 5.0), (10, 9.0), (20, 1.0)])
    now = T0 + 20
    assert w.window("max_over", "x", 60, now) == 9.0
    assert w.window("avg_over", "x", 60, now) == 5.0
    for func in ("min_over", "drawdown", "change", "rate"):
        assert w.window(func, "x", 60, now) is None


def test_restore_keeps_what_the_new_rules_can_read_and_restarts_the_rest() -> None:
    """A reload that adds a function on a name: history that lacks its columns starts
    again; a reload that reads fewer columns keeps the history."""
    w = Windows([("x", 600.0)], {"x": ["drawdown"]})
    _feed(w, [(0, 100.0), (60, 150.0), (120, 120.0)])
    now = T0 + 120
    data = json.loads(json.dumps(w.snapshot()))
    assert all(None in rec for rec in data["series"][0]["records"])
    assert len(data["series"][0]["records"]) == 2  # 100 can never be the peak again
    wider = Windows([("x", 600.0)], {"x": ["drawdown", "avg_over"]})
    wider.restore(data)
    assert wider.window("drawdown", "x", 600, now) is None
    assert wider.window("avg_over", "x", 600, now) is None
    same = Windows([("x", 600.0)], {"x": ["drawdown"]})
    same.restore(data)
    assert same.window("drawdown", "x", 600, now) == pytest.approx(30.0 / 150.0)
    narrower = Windows([("x", 600.0)], {"x": ["max_over"]})
    narrower.restore(data)
    assert narrower.window("max_over", "x", 600, now) == 150.0


def test_dense_updates_coalesce_at_100ms() -> None:
    """Twenty updates per second in a short window coalesce to one record per 100 ms."""
    w = Windows([("x", 10.0)])
    for i in range(20 * 60):
        w.push("", {"x": float(i)}, T0 + i * 0.05)
    assert w.memory_records() <= 10.0 / 0.1 + 2
    now = T0 + (20 * 60 - 1) * 0.05
    assert w.window("max_over", "x", 10, now) == 20 * 60 - 1
    assert w.window("min_over", "x", 10, now) == pytest.approx(20 * 60 - 1 - 200, abs=3)


def test_tiers_give_fine_short_windows_next_to_long_ones() -> None:
    """A short window on a name that also has a 24 h window keeps its own resolution."""
    w = Windows([("x", 86_400.0), ("x", 10.0)])
    for i in range(200):
        w.push("", {"x": float(i)}, T0 + i * 0.5)
    now = T0 + 199 * 0.5
    assert w.window("change", "x", 10, now) == pytest.approx(20.0)
    assert w.window("change", "x", 86_400, now) == pytest.approx(199.0)


def test_clock_step_back_keeps_order() -> None:
    """A push dated before the previous one is recorded at the previous time."""
    w = Windows([("x", 60.0)])
    w.push("", {"x": 1.0}, T0 + 10)
    w.push("", {"x": 2.0}, T0 + 5)
    assert w.window("max_over", "x", 60, T0 + 10) == 2.0


def test_snapshot_restore_keeps_peak_and_history() -> None:
    """A restored history keeps the drawdown peak and the window's values through JSON."""
    w = Windows([("equity", 86_400.0)])
    for i in range(5000):
        w.push("", {"equity": 1000.0 + (500.0 if i == 1234 else 0.0) - i * 0.01}, T0 + i * 10)
    now = T0 + 4999 * 10
    before = w.window("drawdown", "equity", 86_400, now)
    data = json.loads(json.dumps(w.snapshot(max_records=64)))
    assert len(data["series"][0]["records"]) <= 64

    r = Windows([("equity", 86_400.0), ("equity", 600.0), ("other", 5.0)])
    r.restore(data)
    assert r.window("drawdown", "equity", 86_400, now) == pytest.approx(before)
    assert r.window("max_over", "equity", 86_400, now) == pytest.approx(1500.0 - 1234 * 0.01)
    r.push("", {"equity": 900.0}, now + 10)
    assert r.window("min_over", "equity", 600, now + 10) == 900.0
    assert r.window("max_over", "equity", 86_400, now + 10) == pytest.approx(1500.0 - 12.34)


def test_restore_skips_untracked_and_rejects_bad_data() -> None:
    """Names not tracked are skipped; malformed snapshots raise ValueError."""
    w = Windows([("x", 60.0)])
    w.push("", {"x": 1.0}, T0)
    r = Windows([("y", 60.0)])
    r.restore(w.snapshot())
    assert r.keys() == []
    with pytest.raises(ValueError, match="version"):
        r.restore({"version": 99})
    with pytest.raises(ValueError, match="malformed"):
        r.restore({"version": 2, "series": [{"key": ""}]})
    with pytest.raises(ValueError, match="8 fields"):
        r.restore({"version": 2, "series": [{"key": "", "name": "y", "records": [[1.0]]}]})


@settings(max_examples=150, deadline=None)
@given(
    samples=_samples(max_gap=3, max_size=60),
    seconds=st.integers(0, 100),
    lag=st.integers(0, 5),
)
def test_matches_reference_on_one_sample_per_bucket(
    samples: list[tuple[int, float]], seconds: int, lag: int
) -> None:
    """With one sample per bucket every function equals the reference implementation."""
    w = Windows([("x", 100.0)])
    ref = ReferenceWindows()
    t = T0
    for gap, value in samples:
        t += gap + 1  # whole seconds: each sample lands in its own 100 ms bucket
        w.push("", {"x": value}, t)
        ref.push("x", value, t)
    now = t + lag
    for func in sorted(WINDOW_FUNCTIONS):
        want = ref.window(func, "x", seconds, now)
        got = w.window(func, "x", seconds, now)
        if want is None:
            assert got is None, func
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-6), func


@settings(max_examples=150, deadline=None)
@given(
    samples=_samples(max_gap=40, max_size=80),
    seconds=st.integers(0, 12),
    lag=st.integers(0, 30),
)
def test_peak_history_answers_as_the_full_history(
    samples: list[tuple[int, float]], seconds: int, lag: int
) -> None:
    """max_over and drawdown from the peak-only history equal those of the eight-column
    history, with several samples per bucket, for every window ending at or after the
    latest sample (a 10 s window: 100 ms buckets; gaps of 0 to 400 ms)."""
    peak = Windows([("x", 10.0)], {"x": ["max_over", "drawdown"]})
    full = Windows([("x", 10.0)])
    t = T0
    for gap, value in samples:
        t += gap * 0.01
        peak.push("", {"x": value}, t)
        full.push("", {"x": value}, t)
    now = t + lag * 0.1
    for func in ("max_over", "drawdown"):
        assert peak.window(func, "x", seconds, now) == full.window(func, "x", seconds, now), func
