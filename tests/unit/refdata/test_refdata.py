"""Reference data: parsing, sizing, leverage snapping, market hours (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import cast

import pytest

from riskwatch.refdata.hours import OVERNIGHT_FACTOR, WEEKEND_FACTOR, market_state
from riskwatch.refdata.model import LeverageLevel, SymbolRef, parse_leverage_levels, parse_refdata
from riskwatch.refdata.sizing import round_to_lot, size_reduction, snap_leverage, twap_working
from tests.support.paths import REPO

EXAMPLES = REPO / "tests" / "fixtures" / "qfex" / "examples"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_parse_the_documented_refdata_example() -> None:
    """The docs' refdata example parses: strings become numbers, hours per weekday."""
    doc = json.loads((EXAMPLES / "server.mds.refdata.legacy.json").read_text())
    (goog,) = parse_refdata(doc).values()
    assert goog.symbol == "GOOG-USD"
    assert goog.lot_size == 0.001
    assert goog.min_quantity == 0.001
    assert goog.tick_size == 0.05
    assert goog.market_hours is not None
    assert goog.market_hours.tz == "America/New_York"
    assert goog.market_hours.days[5] is None  # saturday absent: closed
    with pytest.raises(ValueError, match="no data list"):
        parse_refdata({"type": "refdata"})


def test_parse_leverage_levels_string_leverage_and_legacy_cap() -> None:
    """leverage arrives as a string; max_position is the legacy name of max_notional."""
    levels = parse_leverage_levels(
        [
            {"symbol": "META-USD", "leverage": "2", "max_position": 190000, "initial_margin": 0.5},
            {"symbol": "META-USD", "leverage": "1", "max_notional": 195000},
            {"symbol": "META-USD", "leverage": "x"},
        ]
    )
    assert [lv.leverage for lv in levels["META-USD"]] == [1.0, 2.0]
    assert levels["META-USD"][1].max_notional == 190000


REF = SymbolRef(symbol="AAPL-USD", lot_size=0.1, min_quantity=1.0)


def test_round_to_lot_toward_zero() -> None:
    """Quantities round toward zero to whole lots; unknown lot size leaves them alone."""
    assert round_to_lot(12.37, REF) == pytest.approx(12.3)
    assert round_to_lot(-12.37, REF) == pytest.approx(-12.3)
    assert round_to_lot(0.05, REF) == 0.0
    assert round_to_lot(1.234567, None) == 1.234567


def test_reduction_twap_close_or_refuse() -> None:
    """Fewer slices when small; close when the rest would be dust; else refuse with why."""
    r = size_reduction(10.04, 100.0, 8, REF)
    assert (r.kind, r.total_quantity, r.num_orders) == ("twap", cast(float, pytest.approx(10.0)), 8)
    r = size_reduction(3.0, 100.0, 8, REF)
    assert (r.kind, r.num_orders) == ("twap", 3)
    r = size_reduction(1.5, 100.0, 8, REF)
    assert r.kind == "refuse"
    assert "minimum quantity 1" in r.reason
    r = size_reduction(1.5, 2.0, 8, REF)  # would leave 0.5 < 1: close instead
    assert r.kind == "close_position"
    assert r.total_quantity == 2.0


def test_snap_leverage_never_above_the_wanted() -> None:
    """The highest level not above the wanted one; none: say which exist."""
    levels = [LeverageLevel(1.0), LeverageLevel(2.0), LeverageLevel(5.0), LeverageLevel(10.0)]
    assert snap_leverage(4.0, levels) == (2.0, "")
    assert snap_leverage(10.0, levels) == (10.0, "")
    value, why = snap_leverage(0.5, levels)
    assert value is None
    assert "available: 1, 2, 5, 10" in why
    assert snap_leverage(3.0, []) == (3.0, "")


def test_twap_status() -> None:
    """Only a status that says the TWAP works confirms it."""
    assert twap_working("ACTIVE")
    assert twap_working("completed")
    assert not twap_working("ENGINE_STATUS")
    assert not twap_working("REJECTED")


HOURS = parse_refdata(json.loads((EXAMPLES / "server.mds.refdata.legacy.json").read_text()))[
    "GOOG-USD"
].market_hours


def test_market_open_and_seconds_to_close() -> None:
    """Wednesday 2026-03-04 15:00 UTC = 10:00 New York: open, 10 h to the 20:00 close,
    and the next close is overnight (Thursday trades)."""
    state = market_state(HOURS, _ts("2026-03-04T15:00:00"))
    assert state is not None
    assert state.open
    assert state.seconds_to_close == pytest.approx(10 * 3600)
    assert state.close_factor == OVERNIGHT_FACTOR


def test_friday_close_is_a_weekend_and_closed_hours_are_closed() -> None:
    """Friday's session is followed by a weekend (10 %); Saturday is closed (0 s left)."""
    friday = market_state(HOURS, _ts("2026-03-06T15:00:00"))
    assert friday is not None
    assert friday.open
    assert friday.close_factor == WEEKEND_FACTOR
    saturday = market_state(HOURS, _ts("2026-03-07T15:00:00"))
    assert saturday is not None
    assert not saturday.open
    assert saturday.seconds_to_close == 0.0
    assert saturday.close_factor == WEEKEND_FACTOR
    night = market_state(HOURS, _ts("2026-03-05T03:00:00"))  # Wed 22:00 New York
    assert night is not None
    assert not night.open
    assert night.close_factor == OVERNIGHT_FACTOR
    assert market_state(None, 0.0) is None


def test_market_figures_of_a_position() -> None:
    """Open market, the 10x level's cap halved for the overnight close, minus the notional;
    without hours or levels the figures are missing."""
    from riskwatch.refdata.figures import MarketFiguresOf
    from riskwatch.refdata.model import Refdata

    data = Refdata(
        symbols={"GOOG-USD": SymbolRef("GOOG-USD", market_hours=HOURS)},
        levels={"GOOG-USD": (LeverageLevel(10.0, max_notional=1_000_000.0),)},
    )
    figures = MarketFiguresOf(lambda: data)
    row = figures("GOOG-USD", 10.0, 200_000.0, _ts("2026-03-04T15:00:00.5"))
    assert row == {
        "market_open": 1.0,
        "seconds_to_market_close": 36000,
        "position_limit_at_close": 500_000.0,
        "position_limit_headroom_at_close": 300_000.0,
    }
    other = figures("GOOG-USD", 5.0, 1.0, _ts("2026-03-04T15:00:00"))
    assert other["position_limit_at_close"] is None
    assert other["market_open"] == 1.0
    unknown = figures("XYZ-USD", 10.0, 1.0, _ts("2026-03-04T15:00:00"))
    assert set(unknown.values()) == {None}


def test_market_figures_key_moves_exactly_when_the_figures_can() -> None:
    """The key of a symbol is equal within a whole second of the same reference data,
    moves with the second for a symbol with market hours (seconds_to_market_close moves),
    stays for one without, and moves when new reference data arrives."""
    from riskwatch.refdata.figures import MarketFiguresOf
    from riskwatch.refdata.model import Refdata

    def data() -> Refdata:
        return Refdata(
            symbols={
                "GOOG-USD": SymbolRef("GOOG-USD", market_hours=HOURS),
                "BTC-USD": SymbolRef("BTC-USD"),
            },
            levels={"GOOG-USD": (LeverageLevel(10.0, max_notional=1_000_000.0),)},
        )

    current = [data()]
    figures = MarketFiguresOf(lambda: current[0])
    t = _ts("2026-03-04T15:00:00")
    assert figures.key("GOOG-USD", t + 0.1) == figures.key("GOOG-USD", t + 0.9)
    assert figures.key("GOOG-USD", t + 0.9) != figures.key("GOOG-USD", t + 1.1)
    assert figures("GOOG-USD", 10.0, 1.0, t + 0.9) != figures("GOOG-USD", 10.0, 1.0, t + 1.1)
    assert figures.key("BTC-USD", t) == figures.key("BTC-USD", t + 5.0)
    before = figures.key("BTC-USD", t + 5.0)
    current[0] = data()  # equal content, new fetch: compared by identity, never deeply
    assert figures.key("BTC-USD", t + 5.0) != before
