"""The leader check at the action shell: follower defers, leader takes over, frames held."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riskwatch.config import load_config
from riskwatch.errors import ConfigError
from riskwatch.ha.gate import DEFERRED_MAX_AGE, LeaderGate
from riskwatch.model import OrderUpdate, PositionUpdate
from riskwatch.rules.engine import ActionIntent
from riskwatch.rules.model import Action

T0 = 1_700_000_000.0


def intent(*kinds: str, at: float = T0, symbol: str | None = "AAPL-USD") -> ActionIntent:
    actions = tuple(
        Action(
            kind=k,  # type: ignore[arg-type]
            fraction=0.5 if k == "reduce_position" else None,
            leverage=5.0 if k == "set_leverage" else None,
        )
        for k in kinds
    )
    return ActionIntent(
        rule="Derisk",
        account="desk-a",
        symbol=symbol,
        actions=actions,
        trip_id=4,
        confirm="pulse",
        exchange_confirmed=True,
        severity="critical",
        at=at,
        trigger=None,  # type: ignore[arg-type]
    )


class Role:
    def __init__(self, leader: bool) -> None:
        self.leader = leader

    def __call__(self) -> bool:
        return self.leader


def slice_order(symbol: str, cid: str = "rw-0123456789abcdef0123") -> OrderUpdate:
    return OrderUpdate(
        order_id="o1", client_order_id=cid, symbol=symbol, status="FILLED", side="SELL",
        order_type="MARKET", time_in_force="IOC", quantity=1.0, quantity_remaining=0.0,
        price=100.0, update_time=T0, received_at=T0,
    )  # fmt: skip


def test_leader_plans_everything() -> None:
    gate = LeaderGate(Role(True))
    i = intent("close_position", "reduce_position")
    assert gate.admit(i) is i
    assert gate.deferred() == 0


def test_follower_plans_safe_actions_and_defers_the_rest() -> None:
    gate = LeaderGate(Role(False))
    admitted = gate.admit(intent("cancel_all_orders", "reduce_position", "set_leverage"))
    assert admitted is not None
    assert [a.kind for a in admitted.actions] == ["cancel_all_orders"]
    assert gate.deferred() == 1
    assert gate.admit(intent("reduce_position")) is None


def test_take_over_plans_deferred_unless_the_exchange_shows_the_twap() -> None:
    role = Role(False)
    gate = LeaderGate(role)
    gate.admit(intent("reduce_position", "set_leverage"))
    role.leader = True
    taken = gate.take_over(T0 + 5)
    assert len(taken) == 1
    assert [a.kind for a in taken[0].actions] == ["reduce_position", "set_leverage"]
    assert taken[0].at == T0 + 5
    assert gate.deferred() == 0
    assert gate.take_over(T0 + 6) == []

    role.leader = False
    gate.admit(intent("reduce_position", at=T0 + 10))
    gate.observe("desk-a", [slice_order("AAPL-USD")], T0 + 11)  # the old leader's TWAP
    role.leader = True
    assert gate.take_over(T0 + 12) == []


def test_slices_before_the_trip_or_of_other_orders_do_not_count() -> None:
    role = Role(False)
    gate = LeaderGate(role)
    gate.observe("desk-a", [slice_order("AAPL-USD")], T0 - 1)  # an earlier trip's TWAP
    gate.observe("desk-a", [slice_order("AAPL-USD", cid="manual-1")], T0 + 1)
    gate.observe("desk-a", [slice_order("BTC-USD")], T0 + 1)
    gate.admit(intent("reduce_position"))
    role.leader = True
    assert len(gate.take_over(T0 + 2)) == 1


def pulse(symbol: str, leverage: float) -> PositionUpdate:
    return PositionUpdate(
        symbol=symbol, position=10.0, average_price=100.0, unrealised_pnl=0.0,
        realised_pnl=0.0, net_funding=0.0, margin_alloc=0.0, open_orders=0,
        open_quantity=0.0, leverage=leverage, initial_margin_rate=0.2,
        maintenance_margin_rate=0.13, received_at=T0,
    )  # fmt: skip


def test_set_leverage_is_not_repeated_when_the_pulses_show_it_done() -> None:
    role = Role(False)
    gate = LeaderGate(role)
    gate.admit(intent("set_leverage"))
    gate.observe("desk-a", [pulse("AAPL-USD", 5.0)], T0 + 1)  # the old leader's change
    role.leader = True
    assert gate.take_over(T0 + 2) == []
    role.leader = False
    gate.admit(intent("set_leverage", at=T0 + 3))
    gate.observe("desk-a", [pulse("AAPL-USD", 10.0)], T0 + 4)  # not changed yet
    role.leader = True
    (taken,) = gate.take_over(T0 + 5)
    assert [a.kind for a in taken.actions] == ["set_leverage"]


def test_resolved_and_old_deferrals_are_dropped() -> None:
    role = Role(False)
    gate = LeaderGate(role)
    gate.admit(intent("reduce_position"))
    gate.resolved("Derisk", "desk-a", "AAPL-USD")
    assert gate.deferred() == 0
    gate.admit(intent("reduce_position"))
    role.leader = True
    assert gate.take_over(T0 + DEFERRED_MAX_AGE + 1) == []


def test_sender_holds_leader_only_frames_on_a_follower() -> None:
    role = Role(True)
    gate = LeaderGate(role)
    sent: list[str] = []

    def send(account: str, frame: str) -> float:
        sent.append(frame)
        return T0

    guarded = gate.sender(send)
    twap = json.dumps({"type": "add_twap", "params": {}})
    close = json.dumps({"type": "close_position", "params": {}})
    guarded("desk-a", twap)
    role.leader = False
    guarded("desk-a", close)
    with pytest.raises(ConnectionError):
        guarded("desk-a", twap)
    with pytest.raises(ConnectionError):
        guarded("desk-a", json.dumps({"type": "set_user_leverage", "params": {}}))
    assert sent == [twap, close]
    assert gate.held_frames == 2


ACCOUNT = "accounts:\n  - {name: desk-a, public_key: pk, secret_key: sk-0123456789}\n"


def test_ha_config(tmp_path: Path) -> None:
    cfg = tmp_path / "riskwatch.yaml"
    cfg.write_text(
        ACCOUNT + "ha:\n"
        "  backend: etcd\n"
        "  lease: 4s\n"
        "  etcd_endpoints: [http://10.0.0.1:2379, http://10.0.0.2:2379]\n",
        encoding="utf-8",
    )
    ha = load_config(cfg).ha
    assert (ha.backend, ha.lease.seconds) == ("etcd", 4.0)
    assert ha.etcd_endpoints == ("http://10.0.0.1:2379", "http://10.0.0.2:2379")
    assert load_config(cfg).ha.etcd_key == "/riskwatch/leader"
    cfg.write_text(ACCOUNT + "ha:\n  backend: file\n  lease: 0.5s\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    text = "\n".join(str(p) for p in err.value.problems)
    assert f"{cfg}:4:12: ha backend file needs lock_file" in text
    assert "below the minimum" in text
    cfg.write_text(ACCOUNT + "ha:\n  backend: zookeeper\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config(cfg)
