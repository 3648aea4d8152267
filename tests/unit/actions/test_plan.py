"""The pure action plan: targets, guards, circuit breaker, deterministic ids, TWAP sizing."""

from __future__ import annotations

import json

from riskwatch.actions import confirm, plan
from riskwatch.actions.model import Plan
from riskwatch.model import OrderUpdate, PositionUpdate
from riskwatch.rules.engine import ActionIntent
from riskwatch.rules.model import Action
from riskwatch.state.account import AccountSnapshot
from tests.support.factories import position_update, snapshot_of

T = 1_700_000_000.0


def _pos(symbol: str, size: float, avg: float, upnl: float, t: float = T) -> PositionUpdate:
    return position_update(
        symbol, size, avg, upnl, t, leverage=10.0, initial_margin_rate=0.1,
        maintenance_margin_rate=0.0667,
    )  # fmt: skip


def _snapshot(*events: PositionUpdate | OrderUpdate) -> AccountSnapshot:
    return snapshot_of(*events)


BOOK = _snapshot(
    _pos("AAPL-USD", 250.0, 200.0, -2500.0),
    _pos("MSFT-USD", -10.0, 400.0, 300.0),
    _pos("BTC-USD", 1.0, 50_000.0, -100.0),
    _pos("ETH-USD", 0.0, 0.0, 0.0),
)


def _intent(*actions: Action, symbol: str | None = None, confirmed: bool = True) -> ActionIntent:
    return ActionIntent(
        rule="R", account="desk-a", symbol=symbol, actions=actions, trip_id=3, confirm="pulse",
        exchange_confirmed=confirmed, severity="critical", at=T, trigger="pulse",
    )  # fmt: skip


def _plan(intent: ActionIntent, **kw: object) -> Plan:
    args: dict[str, object] = {"stale": False, "kill_switch": False, "used": 0, "max_per_hour": 6}
    args.update(kw)
    return plan.plan(intent, BOOK, **args)  # type: ignore[arg-type]


def test_close_targets_pick_the_documented_symbols() -> None:
    """all, largest_loss and largest_notional designate the right non-flat symbols."""
    assert plan.targets("all", None, BOOK) == (["AAPL-USD", "BTC-USD", "MSFT-USD"], "")
    assert plan.targets("largest_loss", None, BOOK) == (["AAPL-USD"], "")
    assert plan.targets("largest_notional", None, BOOK) == (["BTC-USD"], "")  # 49 900 USD
    assert plan.targets(None, "BTC-USD", BOOK) == (["BTC-USD"], "")
    assert plan.targets(None, None, BOOK)[0] == []


def test_close_all_is_one_command_per_symbol_with_deterministic_ids() -> None:
    """close_position all yields one close per open symbol, ids stable across plans."""
    p1 = _plan(_intent(Action("cancel_all_orders"), Action("close_position", target="all")))
    p2 = _plan(_intent(Action("cancel_all_orders"), Action("close_position", target="all")))
    assert [(c.action, c.symbol) for c in p1.commands] == [
        ("cancel_all_orders", None),
        ("close_position", "AAPL-USD"),
        ("close_position", "BTC-USD"),
        ("close_position", "MSFT-USD"),
    ]
    assert [c.frame for c in p1.commands] == [c.frame for c in p2.commands]
    close = p1.commands[1]
    frame = json.loads(close.frame)
    assert frame == {
        "type": "close_position",
        "params": {"symbol": "AAPL-USD", "client_order_id": close.client_order_id},
    }
    assert close.client_order_id is not None
    assert close.client_order_id.startswith("rw-")
    assert json.loads(p1.commands[0].frame) == {"type": "cancel_all_orders", "params": {}}
    assert p1.commands[0].client_order_id is None


def test_retry_has_a_new_id_and_the_same_action() -> None:
    """A retry is the next attempt: new client order id and action id, same symbol."""
    (close,) = _plan(_intent(Action("close_position", target="largest_loss"))).commands
    again = plan.retry_of(close)
    assert again.attempt == 2
    assert again.symbol == close.symbol
    assert again.client_order_id != close.client_order_id
    assert again.action_id != close.action_id
    assert again.trip_key == close.trip_key


def test_guards_refuse_with_stable_codes() -> None:
    """Kill switch, stale data and unconfirmed figures each refuse every action."""
    intent = _intent(Action("close_position", target="all"))
    assert {r.code for r in _plan(intent, kill_switch=True).refusals} == {"KILL_SWITCH"}
    assert {r.code for r in _plan(intent, stale=True).refusals} == {"DATA_STALE"}
    unconfirmed = _intent(Action("close_position", target="all"), confirmed=False)
    refused = _plan(unconfirmed).refusals
    assert {r.code for r in refused} == {"NOT_EXCHANGE_CONFIRMED"}
    assert len(refused) == 3
    assert not _plan(intent, stale=True).commands


def test_circuit_breaker_refuses_beyond_the_limit() -> None:
    """With 5 of 6 slots used, one command goes and the rest are refused with the count."""
    p = _plan(_intent(Action("close_position", target="all")), used=5)
    assert [c.symbol for c in p.commands] == ["AAPL-USD"]
    assert [r.reason for r in p.refusals] == ["CIRCUIT_BREAKER_OPEN: 6 actions in 1h"] * 2
    assert p.breaker_opened


def test_recorded_actions_of_the_trip_are_skipped() -> None:
    """An (action, symbol) already in the audit log for this trip is neither sent nor refused."""
    p = _plan(
        _intent(Action("close_position", target="all")),
        recorded={("close_position", "AAPL-USD")},
    )
    assert [c.symbol for c in p.commands] == ["BTC-USD", "MSFT-USD"]
    assert not p.refusals


def test_nothing_to_close_is_refused() -> None:
    """Closing a flat symbol, or the largest loss when nothing loses, is refused NO_POSITION."""
    flat = _plan(_intent(Action("close_position", target="ETH-USD")))
    assert [r.code for r in flat.refusals] == ["NO_POSITION"]
    winners = plan.plan(
        _intent(Action("close_position", target="largest_loss")),
        _snapshot(_pos("MSFT-USD", -10.0, 400.0, 300.0)),
        stale=False, kill_switch=False, used=0, max_per_hour=6,
    )  # fmt: skip
    assert [r.code for r in winners.refusals] == ["NO_POSITION"]


def test_set_leverage_is_refused_while_the_symbol_has_a_position() -> None:
    """QFEX rejects set_user_leverage with a position, so the plan refuses LEVERAGE_LOCKED."""
    p = _plan(_intent(Action("set_leverage", leverage=5.0), symbol="AAPL-USD"))
    assert [r.code for r in p.refusals] == ["LEVERAGE_LOCKED"]
    ok = _plan(_intent(Action("set_leverage", leverage=5.0), symbol="ETH-USD"))
    assert json.loads(ok.commands[0].frame) == {
        "type": "set_user_leverage",
        "params": {"symbol": "ETH-USD", "leverage": 5.0},
    }


def test_reduce_position_is_a_reduce_only_twap_within_qfex_limits() -> None:
    """Half of 250 over 5 minutes: 10 slices 30 s apart, selling, reduce-only."""
    p = _plan(_intent(Action("reduce_position", fraction=0.5, over=300.0), symbol="AAPL-USD"))
    params = json.loads(p.commands[0].frame)["params"]
    assert params["side"] == "SELL"
    assert params["reduce_only"] is True
    assert params["total_quantity"] == 125.0
    assert params["num_orders"] == 10
    assert params["order_interval_secs"] == 30
    assert params["client_twap_id"] == p.commands[0].client_order_id
    tiny = plan.plan(
        _intent(Action("reduce_position", fraction=0.5, over=300.0), symbol="X-USD"),
        _snapshot(_pos("X-USD", 0.003, 100.0, -0.01)),
        stale=False, kill_switch=False, used=0, max_per_hour=6,
    )  # fmt: skip
    assert [r.code for r in tiny.refusals] == ["BELOW_MIN_QUANTITY"]
    few = plan.plan(
        _intent(Action("reduce_position", fraction=1.0, over=300.0), symbol="X-USD"),
        _snapshot(_pos("X-USD", 0.004, 100.0, -0.01)),
        stale=False, kill_switch=False, used=0, max_per_hour=6,
    )  # fmt: skip
    assert json.loads(few.commands[0].frame)["params"]["num_orders"] == 4


def test_effect_reads_only_pulses_after_since() -> None:
    """A close is confirmed by a later flat pulse, not by an earlier one or an open one."""
    (close,) = _plan(_intent(Action("close_position", target="AAPL-USD"))).commands
    assert confirm.effect(close, BOOK, since=T) is None
    later_open = _snapshot(_pos("AAPL-USD", 125.0, 200.0, -100.0, t=T + 1))
    assert confirm.effect(close, later_open, since=T) is False
    later_flat = _snapshot(_pos("AAPL-USD", 0.0, 0.0, 0.0, t=T + 1))
    assert confirm.effect(close, later_flat, since=T) is True
    assert not confirm.is_terminal("FILLED", 10.0)
    assert confirm.is_terminal("CANCELLED", 10.0)
    assert not confirm.is_terminal("ACK", 0.0)


def test_set_leverage_snaps_to_an_available_level() -> None:
    """Leverage comes in levels (docs/protocol.md §7): 7x becomes the 5x level; under the
    lowest level the action is refused and the refusal lists the levels."""
    from riskwatch.refdata.model import LeverageLevel, Refdata

    levels = {"ETH-USD": tuple(LeverageLevel(x) for x in (1.0, 2.0, 5.0, 10.0))}
    refdata = Refdata(levels=levels)
    snapped = plan.plan(
        _intent(Action("set_leverage", leverage=7.0), symbol="ETH-USD"),
        _snapshot(_pos("ETH-USD", 0.0, 100.0, 0.0)),
        stale=False, kill_switch=False, used=0, max_per_hour=6, refdata=refdata,
    )  # fmt: skip
    assert json.loads(snapped.commands[0].frame)["params"]["leverage"] == 5.0
    low = plan.plan(
        _intent(Action("set_leverage", leverage=0.5), symbol="ETH-USD"),
        _snapshot(_pos("ETH-USD", 0.0, 100.0, 0.0)),
        stale=False, kill_switch=False, used=0, max_per_hour=6, refdata=refdata,
    )  # fmt: skip
    assert [r.code for r in low.refusals] == ["NO_LEVERAGE_LEVEL"]
    assert "available: 1, 2, 5, 10" in low.refusals[0].detail


def test_reduction_is_rounded_to_the_symbols_lots() -> None:
    """A reduction uses the symbol's lot size and minimum from reference data."""
    from riskwatch.refdata.model import Refdata, SymbolRef

    refdata = Refdata(symbols={"AAPL-USD": SymbolRef("AAPL-USD", lot_size=1.0, min_quantity=5.0)})
    p = plan.plan(
        _intent(Action("reduce_position", fraction=0.3333, over=300.0), symbol="AAPL-USD"),
        _snapshot(_pos("AAPL-USD", 250.0, 200.0, -100.0)),
        stale=False, kill_switch=False, used=0, max_per_hour=6, refdata=refdata,
    )  # fmt: skip
    params = json.loads(p.commands[0].frame)["params"]
    assert params["total_quantity"] == 83.0
    assert params["num_orders"] == 10
