"""Unit tests of the simulator's account arithmetic (docs/protocol.md §5–§6)."""

from __future__ import annotations

import json

import pytest

from riskwatch.sim.ledger import Ledger, Order
from tests.support.paths import QFEX_EXAMPLES

EXAMPLES = QFEX_EXAMPLES


def make() -> Ledger:
    ledger = Ledger(name="a", deposit=10_000.0, user_id="u", account_id="acc")
    ledger.add_symbol("AAPL-USD", 200.0, leverage=10.0)
    ledger.add_symbol("MSFT-USD", 400.0, leverage=20.0)
    return ledger


def test_payload_field_sets_match_the_examples() -> None:
    """position_payload and balance_payload carry exactly the example fields."""
    ledger = make()
    pos = json.loads((EXAMPLES / "server.position_response.json").read_text())
    bal = json.loads((EXAMPLES / "server.balance_response.json").read_text())
    assert set(ledger.position_payload("AAPL-USD")) == set(pos["position_response"])
    assert set(ledger.balance_payload()) == set(bal["balance_response"])


def test_flat_position_payload_rates_follow_leverage() -> None:
    """A flat 20x symbol reports IM 0.05 and MM 0.0333 as in the QFEX example."""
    payload = make().position_payload("MSFT-USD")
    assert payload["position"] == 0.0
    assert payload["initial_margin"] == pytest.approx(0.05)
    assert payload["maintenance_margin"] == pytest.approx(0.05 * 2 / 3)
    assert payload["leverage"] == 20.0


def test_moving_the_mark_moves_equity_and_margins() -> None:
    """A long 250 @200 at 10x: mark 180 gives the numbers of §6."""
    ledger = make()
    ledger.apply_fill("AAPL-USD", "BUY", 250.0, 200.0)
    f = ledger.figures()
    assert f.equity == pytest.approx(10_000.0)
    assert f.position_margin == pytest.approx(5_000.0)
    assert f.available_balance == pytest.approx(5_000.0)
    ledger.set_mark("AAPL-USD", 180.0)
    f = ledger.figures()
    assert f.unrealised["AAPL-USD"] == pytest.approx(-5_000.0)
    assert f.equity == pytest.approx(5_000.0)
    assert f.position_margin == pytest.approx(4_500.0)
    assert f.maintenance_requirement == pytest.approx(3_000.0)
    assert f.available_balance == pytest.approx(500.0)
    assert f.margin_usage == pytest.approx(0.9)
    assert f.maintenance_usage == pytest.approx(0.6)
    bal = ledger.balance_payload()
    assert bal["unrealised_pnl"] == pytest.approx(-5_000.0)
    assert bal["available_balance"] == pytest.approx(500.0)


def test_order_margin_counts_open_orders() -> None:
    """Open order margin is remaining qty × price × IM rate and cuts available balance."""
    ledger = make()
    order = Order(order_id="o1", symbol="MSFT-USD", side="BUY", quantity=5.0, price=380.0)
    ledger.orders["o1"] = order
    f = ledger.figures()
    assert f.order_margin == pytest.approx(5 * 380 * 0.05)
    assert f.available_balance == pytest.approx(10_000 - 95.0)
    assert ledger.position_payload("MSFT-USD")["open_orders"] == 1.0
    assert ledger.position_payload("MSFT-USD")["open_quantity"] == 5.0


def test_increase_reduce_and_flip() -> None:
    """Fills average in, realise on reduction and reopen at the fill price on a flip."""
    ledger = make()
    ledger.apply_fill("AAPL-USD", "BUY", 10.0, 100.0)
    ledger.apply_fill("AAPL-USD", "BUY", 10.0, 110.0)
    pos = ledger.position("AAPL-USD")
    assert pos.qty == 20.0
    assert pos.average_price == pytest.approx(105.0)
    result = ledger.apply_fill("AAPL-USD", "SELL", 5.0, 125.0)
    assert result.realised_pnl == pytest.approx(100.0)
    assert pos.qty == 15.0
    assert pos.average_price == pytest.approx(105.0)
    result = ledger.apply_fill("AAPL-USD", "SELL", 25.0, 95.0)
    assert result.realised_pnl == pytest.approx(-150.0)
    assert (pos.qty, pos.average_price) == (-10.0, 95.0)
    assert pos.realised_pnl == pytest.approx(-50.0)
    ledger.apply_fill("AAPL-USD", "BUY", 10.0, 90.0, fee=1.0)
    assert (pos.qty, pos.average_price) == (0.0, 0.0)
    assert pos.realised_pnl == pytest.approx(-50.0 + 50.0 - 1.0)
    assert ledger.figures().fees == 1.0


def test_short_unrealised_and_funding_enter_equity() -> None:
    """A short loses as the mark rises; funding adds to equity with its sign."""
    ledger = make()
    ledger.apply_fill("AAPL-USD", "SELL", 10.0, 200.0)
    ledger.set_mark("AAPL-USD", 210.0)
    ledger.apply_funding("AAPL-USD", 3.5)
    f = ledger.figures()
    assert f.unrealised_pnl == pytest.approx(-100.0)
    assert f.equity == pytest.approx(10_000 - 100 + 3.5)
    assert ledger.balance_payload()["net_funding"] == pytest.approx(3.5)


def test_bad_inputs_name_the_value() -> None:
    """Unknown symbols, non-positive marks and quantities are refused by name."""
    ledger = make()
    with pytest.raises(KeyError, match="XYZ"):
        ledger.set_mark("XYZ", 1.0)
    with pytest.raises(ValueError, match="-1"):
        ledger.set_mark("AAPL-USD", -1.0)
    with pytest.raises(ValueError, match="0"):
        ledger.apply_fill("AAPL-USD", "BUY", 0.0, 1.0)
