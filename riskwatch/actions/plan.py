"""Intents to commands (pure): targets, guards, circuit breaker, deterministic ids.

:func:`plan` turns one :class:`~riskwatch.rules.engine.ActionIntent` into commands and
refusals, given the account snapshot and what the audit log already holds; nothing
here does I/O or reads a clock (docs/design.md items 3, 11). :func:`command` builds one
attempt of one action, and :func:`retry_of` the next attempt of a command; the
executor uses both after a partial fill or a rejection.

Decisions taken here:

- Guards come first and refuse every action of the intent: the kill switch
  (``KILL_SWITCH``), stale data (``DATA_STALE``, docs/design.md#precise-points), a
  ``confirm: pulse``
  intent whose figures are not exchange-confirmed (``NOT_EXCHANGE_CONFIRMED``).
- ``close_position`` targets: a symbol; ``None`` = the intent's symbol (position scope);
  ``all`` = every non-flat symbol (one command each, docs/rules.md "Actions"); ``largest_loss`` =
  the non-flat symbol with the most negative unrealised PnL (a refusal ``NO_POSITION``
  when none is losing); ``largest_notional`` = the largest ``|position| × mark``. A
  flat target is refused ``NO_POSITION``: there is nothing to send.
- ``set_leverage``: QFEX rejects ``set_user_leverage`` while the symbol has a position
  or open orders (docs/protocol.md §7), so the plan refuses it then (``LEVERAGE_LOCKED``)
  instead of sending a command bound to fail.
- ``reduce_position``: a reduce-only ``add_twap`` of ``fraction × |position|`` on the
  opposite side, with ``order_interval_secs ≥ 30`` and ``num_orders ≥ 2`` (DOCS
  add_twap, docs/protocol.md §7): ``num_orders = max(2, over // 30)``, fewer when a slice
  would fall below ``min_quantity``; refused ``BELOW_MIN_QUANTITY`` if even two slices
  are too small.
- Per-trip dedup: an (action, symbol) already in the audit log for this trip is
  skipped (neither sent nor counted). The store's UNIQUE key enforces the same thing
  across restarts.
- Circuit breaker: ``used`` is how many actions the account took in the last hour;
  each new command takes one slot; beyond ``max_per_hour`` the command is refused
  ``CIRCUIT_BREAKER_OPEN: N actions in 1h``. Retries of an action take no new slot.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Container, Mapping
from dataclasses import replace
from typing import Any, Final

from riskwatch.actions import model
from riskwatch.actions.model import Plan, PlannedCommand, Refusal
from riskwatch.qfex import commands
from riskwatch.refdata.model import Refdata, SymbolRef
from riskwatch.refdata.sizing import DEFAULT_MIN_QUANTITY, size_reduction, snap_leverage
from riskwatch.rules.engine import ActionIntent
from riskwatch.rules.model import Action
from riskwatch.state.account import AccountSnapshot

__all__ = [
    "EPSILON",
    "action_id",
    "command",
    "plan",
    "retry_of",
    "targets",
    "trip_key",
]

EPSILON: Final = 1e-9
"""Sizes at or below this are flat (base units)."""


_ACTION_NAME: Final = {
    "cancel_all_orders": "cancel_all_orders",
    "close_position": "close_position",
    "set_leverage": "set_leverage",
    "reduce_position": "reduce_position",
}


def trip_key(rule: str, account: str, symbol: str | None, trip_id: int) -> str:
    """The audit log's trip key: ``rule|account|symbol|trip`` (symbol empty at account scope)."""
    return f"{rule}|{account}|{symbol or ''}|{trip_id}"


def action_id(key: str, action: str, symbol: str | None, attempt: int) -> str:
    """``"act-"`` + 20 hex digits of SHA-256 over (trip key, action, symbol, attempt)."""
    raw = "\x1f".join((key, action, symbol or "", str(attempt))).encode()
    return "act-" + hashlib.sha256(raw).hexdigest()[:20]


def _size(snapshot: AccountSnapshot, symbol: str) -> float:
    state = snapshot.positions.get(symbol)
    return state.pulse.position if state is not None else 0.0


def targets(
    target: str | None, intent_symbol: str | None, snapshot: AccountSnapshot
) -> tuple[list[str], str]:
    """Symbols a ``close_position`` target designates, and why there are none.

    Returns ``(symbols, "")`` or ``([], detail)`` with a detail for ``NO_POSITION`` /
    ``NO_SYMBOL``. Symbols come sorted for ``all``.
    """
    open_ = {sym: st for sym, st in snapshot.positions.items() if abs(st.pulse.position) > EPSILON}
    if target is None:
        if intent_symbol is None:
            return [], "close_position without a target needs a position-scope rule"
        return [intent_symbol], ""
    if target == "all":
        if not open_:
            return [], "no open position to close"
        return sorted(open_), ""
    if target == "largest_loss":
        losing = [(st.unrealised_pnl, sym) for sym, st in open_.items() if st.unrealised_pnl < 0]
        if not losing:
            return [], "no losing position to close"
        return [min(losing)[1]], ""
    if target == "largest_notional":
        if not open_:
            return [], "no open position to close"
        return [max((st.notional, sym) for sym, st in open_.items())[1]], ""
    return [target], ""


def command(
    *,
    rule: str,
    account: str,
    trip_id: int,
    scope_symbol: str | None,
    action: str,
    symbol: str | None,
    attempt: int,
    params: Mapping[str, Any],
    severity: str = "critical",
) -> PlannedCommand:
    """Build attempt ``attempt`` of one action (frame, ids) from its stored ``params``.

    ``scope_symbol`` is the intent's symbol (None at account scope): it is part of the
    trip key. ``params`` must hold what :func:`plan` put there (``leverage`` for
    ``set_leverage``; ``side``, ``total_quantity``, ``num_orders``,
    ``order_interval_secs`` for ``reduce_position``). Raises ValueError on an unknown
    action or params QFEX would reject.
    """
    key = trip_key(rule, account, scope_symbol, trip_id)
    cid: str | None = None
    if action == "cancel_all_orders":
        frame = commands.cancel_all_orders()
    elif action == "close_position" and symbol is not None:
        cid = commands.client_order_id(rule, account, symbol, trip_id, attempt)
        frame = commands.close_position(symbol, cid)
    elif action == "set_leverage" and symbol is not None:
        frame = commands.set_user_leverage(symbol, float(params["leverage"]))
    elif action == "reduce_position" and symbol is not None:
        cid = commands.client_order_id(rule, account, symbol, f"{trip_id}/twap", attempt)
        frame = commands.add_twap(
            symbol,
            "SELL" if params["side"] == "SELL" else "BUY",
            float(params["total_quantity"]),
            int(params["num_orders"]),
            int(params["order_interval_secs"]),
            reduce_only=True,
            client_twap_id=cid,
        )
    else:
        msg = f"cannot build action {action!r} for symbol {symbol!r}"
        raise ValueError(msg)
    stored = {
        **params,
        "trip_id": trip_id,
        "scope_symbol": scope_symbol,
        "severity": severity,
    }
    return PlannedCommand(
        action_id=action_id(key, action, symbol, attempt),
        trip_key=key,
        trip_id=trip_id,
        rule=rule,
        account=account,
        symbol=symbol,
        action=action,
        attempt=attempt,
        params=stored,
        client_order_id=cid,
        frame=frame,
        severity=severity,
    )


def retry_of(cmd: PlannedCommand) -> PlannedCommand:
    """The next attempt of ``cmd``: same action and params, new ids.

    See docs/design.md#precise-points.
    """
    return command(
        rule=cmd.rule,
        account=cmd.account,
        trip_id=cmd.trip_id,
        scope_symbol=cmd.params.get("scope_symbol"),
        action=cmd.action,
        symbol=cmd.symbol,
        attempt=cmd.attempt + 1,
        params=cmd.params,
        severity=cmd.severity,
    )


def _twap_params(
    fraction: float, over: float, size: float, ref: SymbolRef
) -> tuple[dict[str, Any] | None, str]:
    """The ``add_twap`` sizing of a reduction, or None and why not (module docstring;
    lots and minimum quantity from reference data, docs/protocol.md §7, §11)."""
    interval_floor = commands.MIN_TWAP_INTERVAL_SECS
    wanted = max(commands.MIN_TWAP_ORDERS, int(over // interval_floor))
    sized = size_reduction(abs(size) * fraction, size, wanted, ref)
    if sized.kind != "twap":
        return None, f"{fraction:g} of {abs(size):g}: {sized.reason}"
    total, num = sized.total_quantity, sized.num_orders
    interval = max(interval_floor, math.floor(over / num))
    return {
        "side": "SELL" if size > 0 else "BUY",
        "total_quantity": total,
        "num_orders": num,
        "order_interval_secs": interval,
        "fraction": fraction,
        "over": over,
        "position": size,
    }, ""


def plan(
    intent: ActionIntent,
    snapshot: AccountSnapshot,
    *,
    stale: bool,
    kill_switch: bool,
    used: int,
    max_per_hour: int,
    recorded: Container[tuple[str, str | None]] = (),
    min_quantity: float = DEFAULT_MIN_QUANTITY,
    refdata: Refdata | None = None,
) -> Plan:
    """Plan every action of ``intent`` (see the module docstring for each rule).

    ``refdata`` gives each symbol's lot size, minimum quantity and leverage levels
    (``min_quantity`` is the fallback minimum of a symbol it does not know).

    ``used``: actions the account took in the last hour (for the breaker);
    ``recorded``: ``(action, symbol)`` pairs already in the audit log for this trip.
    """
    key = trip_key(intent.rule, intent.account, intent.symbol, intent.trip_id)
    sev = intent.severity
    out: list[PlannedCommand] = []
    refused: list[Refusal] = []
    opened = False

    def refuse(
        action: str, symbol: str | None, code: str, detail: str, params: Mapping[str, Any]
    ) -> None:
        refused.append(
            Refusal(
                trip_key=key,
                trip_id=intent.trip_id,
                rule=intent.rule,
                account=intent.account,
                symbol=symbol,
                action=action,
                code=code,
                detail=detail,
                params=params,
                severity=sev,
            )
        )

    guard: tuple[str, str] | None = None
    if kill_switch:
        guard = (model.KILL_SWITCH, "actions are disarmed")
    elif stale:
        guard = (model.DATA_STALE, "no fresh pulse: no action on stale data")
    elif intent.confirm == "pulse" and not intent.exchange_confirmed:
        guard = (model.NOT_EXCHANGE_CONFIRMED, "figures not yet confirmed by a pulse")

    for act in intent.actions:
        for symbol, params, problem in _expand(act, intent, snapshot, min_quantity, refdata):
            name = _ACTION_NAME[act.kind]
            if (name, symbol) in recorded:
                continue
            if guard is not None:
                refuse(name, symbol, guard[0], guard[1], params)
                continue
            if problem is not None:
                refuse(name, symbol, problem[0], problem[1], params)
                continue
            if used >= max_per_hour:
                opened = True
                refuse(name, symbol, model.CIRCUIT_BREAKER_OPEN, f"{used} actions in 1h", params)
                continue
            used += 1
            out.append(
                command(
                    rule=intent.rule,
                    account=intent.account,
                    trip_id=intent.trip_id,
                    scope_symbol=intent.symbol,
                    action=name,
                    symbol=symbol,
                    attempt=1,
                    params=params,
                    severity=sev,
                )
            )
    return Plan(commands=tuple(out), refusals=tuple(refused), breaker_opened=opened)


_Expanded = tuple[str | None, dict[str, Any], tuple[str, str] | None]


def _expand(
    act: Action,
    intent: ActionIntent,
    snapshot: AccountSnapshot,
    min_quantity: float,
    refdata: Refdata | None = None,
) -> list[_Expanded]:
    """One action → ``(symbol, params, problem)`` per command it stands for."""
    if act.kind == "cancel_all_orders":
        return [(None, {}, None)]
    if act.kind == "close_position":
        symbols, why = targets(act.target, intent.symbol, snapshot)
        if not symbols:
            code = model.NO_SYMBOL if act.target is None else model.NO_POSITION
            return [(act.target, {"target": act.target}, (code, why))]
        rows: list[_Expanded] = []
        for sym in symbols:
            size = _size(snapshot, sym)
            params: dict[str, Any] = {"target": act.target, "position": size}
            problem = None
            if abs(size) <= EPSILON:
                problem = (model.NO_POSITION, f"{sym} is flat: nothing to close")
            rows.append((sym, params, problem))
        return rows
    symbol = intent.symbol
    if symbol is None:
        why = f"{act.kind} needs a position-scope rule"
        return [(None, {}, (model.NO_SYMBOL, why))]
    if act.kind == "set_leverage":
        leverage = float(act.leverage or 0.0)
        params = {"leverage": leverage}
        st = snapshot.positions.get(symbol)
        size = st.pulse.position if st is not None else 0.0
        orders = st.pulse.open_orders if st is not None else 0
        orders = max(orders, sum(1 for o in snapshot.open_orders.values() if o.symbol == symbol))
        if abs(size) > EPSILON or orders:
            why = (
                f"{symbol} has a position of {size:g} and {orders} open order(s); "
                "QFEX rejects set_user_leverage until both are zero"
            )
            return [(symbol, params, (model.LEVERAGE_LOCKED, why))]
        levels = refdata.levels.get(symbol, ()) if refdata is not None else ()
        snapped, why = snap_leverage(leverage, levels)
        if snapped is None:
            return [(symbol, params, (model.NO_LEVERAGE_LEVEL, f"{symbol}: {why}"))]
        return [(symbol, {"leverage": snapped}, None)]
    # reduce_position
    size = _size(snapshot, symbol)
    fraction = float(act.fraction or 0.0)
    over = float(act.over or 0.0)
    if abs(size) <= EPSILON:
        why = f"{symbol} is flat: nothing to reduce"
        return [(symbol, {"fraction": fraction, "over": over}, (model.NO_POSITION, why))]
    known = refdata.symbol(symbol) if refdata is not None else None
    ref = known or SymbolRef(symbol, min_quantity=min_quantity)
    if ref.min_quantity is None:
        ref = replace(ref, min_quantity=min_quantity)
    twap, why = _twap_params(fraction, over, size, ref)
    if twap is None:
        params = {"fraction": fraction, "over": over, "position": size}
        return [(symbol, params, (model.BELOW_MIN_QUANTITY, why))]
    return [(symbol, twap, None)]
