"""Live account state: a frozen snapshot and the pure reducer that folds events into it.

``reduce(snapshot, event) -> ReduceResult`` is the only way state changes. It never
mutates its input: every field of :class:`AccountSnapshot` is immutable or a mapping that
is copied on write and never touched again, so a reader (the metrics collector, the HTTP
API) may hold a snapshot without a lock while the reducer moves on.

What the reducer keeps, per account:

- ``balance``: the last accepted :class:`~riskwatch.model.BalanceUpdate` (None before one).
- ``positions``: symbol → :class:`PositionState`, the last accepted position pulse for the
  symbol plus its mark-dependent figures (flat symbols included: QFEX pulses them,
  docs/protocol.md §4.2).
- ``marks``: symbol → :class:`Mark` (price, source ``"pulse"`` or ``"mds"``, receive time).
  A position pulse sets the mark it implies (docs/protocol.md §6 fallback
  ``average_price + unrealised_pnl / position``); a market-data mark replaces it until the
  next pulse for that symbol, which makes the exchange's figures authoritative again.
- ``open_orders``: order_id → :class:`~riskwatch.model.OrderUpdate` for orders known open
  from order events; :class:`~riskwatch.model.OpenOrders` (a ``get_user_orders`` reply)
  replaces the whole set.
- ``order_delta``: symbol → net change in that symbol's open-order count seen in order
  events since its last position pulse (the pulse's ``open_orders`` is the exchange's count;
  ``state/derived.py`` adds the delta, floored at 0).
- ``unconfirmed``: symbol → a frame held back as a ``mark_jump`` (``state/plausibility.py``).
- ``totals``: Σ over positions of the mark-dependent figures, kept incrementally (O(1) per
  event) and recomputed from scratch at each balance pulse so float error cannot build up.
- ``anchor_unrealised_pnl`` / ``anchor_initial_margin``: ``totals`` at the last balance
  pulse. Between balance pulses, ``derived`` moves the balance's own ``unrealised_pnl`` and
  ``position_margin`` by how much ``totals`` moved since that pulse.
- ``equity_drift``: at the last balance pulse, the equity riskwatch had estimated just
  before it minus the equity the pulse reported (USD; None until two balance pulses).
- ``last_pulse_at`` (last accepted position or balance frame), ``last_balance_at``,
  ``last_mark_at`` (last accepted market-data mark): receive times, Unix seconds.
- ``flagged``: reason → count of frames flagged by the plausibility checks.

Mark jumps: a mark more than 50 % away from the previous one within a minute is held in
``unconfirmed`` and not applied. The next observation for the symbol (a market-data mark
or a non-flat position pulse) decides: if it is also a jump from the previous accepted
mark and within 50 % of the held one, it confirms the move: the held frame (if it was a
position pulse and the confirming one is a mark) and then the new one are applied. If not,
the held frame is dropped and the new observation is judged on its own. A held frame older
than :data:`~riskwatch.state.plausibility.MARK_JUMP_WINDOW` is dropped.

Order statuses (docs/protocol.md §9.2): ``ACK``, ``MODIFIED`` and a partial ``FILLED``
(``quantity_remaining > 0``) mean open; ``CANCELLED``, ``CANCELLED_STP``, a full ``FILLED``,
``NO_SUCH_ORDER`` and ``CANNOT_MODIFY_NO_SUCH_ORDER`` mean gone. Every other status is the
refusal of a command (a new order that never opened, or a modify or cancel that left the
order as it was, e.g. ``CANNOT_MODIFY_PARTIAL_FILL``), and changes nothing.

Fills and session replies (auth, acks, errors…) do not change the account state: the next
pulse carries their effect. ``reduce`` returns the very same snapshot object for them, so
a caller may skip re-evaluation when ``result.snapshot is snapshot``.

Cost: a position pulse or a mark is a handful of small tuple builds and two or three
copies of small dicts (a few µs for a 20-symbol account).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

from riskwatch.model import (
    BalanceUpdate,
    Event,
    MarkPrice,
    OpenOrders,
    OrderUpdate,
    PositionUpdate,
)
from riskwatch.state.plausibility import (
    MARK_JUMP_RATIO,
    MARK_JUMP_WINDOW,
    ImplausibleReason,
    check_balance,
    check_mark,
    check_order,
    check_position,
    is_mark_jump,
)

MarkSource = Literal["pulse", "mds"]

_SAME_PRICE: Final = 1e-9
"""Relative difference under which a market-data mark equals the current one."""

_OPEN_STATUSES: Final = frozenset({"ACK", "MODIFIED"})
_CLOSED_STATUSES: Final = frozenset(
    {"CANCELLED", "CANCELLED_STP", "FILLED", "NO_SUCH_ORDER", "CANNOT_MODIFY_NO_SUCH_ORDER"}
)

_new: Final = tuple.__new__
"""Builds a snapshot's named tuples from their fields in order, without the generated
``__new__`` (a Python function; this costs half as much, docs/performance.md): used
where every frame builds them."""


class Mark(NamedTuple):
    """The latest accepted mark of a symbol: USD per base unit, its source, receive time."""

    price: float
    source: MarkSource
    at: float


class PositionState(NamedTuple):
    """One symbol's last accepted position pulse and its figures at the current mark.

    ``mark`` is the mark the figures use (None only for a flat symbol never marked).
    ``marked_by_mds`` is True when that mark came from market data after the pulse.
    USD figures: ``unrealised_pnl`` (the pulse's own while the mark is the pulse's, else
    ``position × (mark − average_price)``), ``notional`` (``|position| × mark``),
    ``signed_notional`` (``position × mark``), ``initial_margin`` and
    ``maintenance_margin`` (``notional ×`` the pulse's rate). All 0 for a flat symbol.
    """

    pulse: PositionUpdate
    mark: float | None
    marked_by_mds: bool
    unrealised_pnl: float
    notional: float
    signed_notional: float
    initial_margin: float
    maintenance_margin: float


class Totals(NamedTuple):
    """Σ of :class:`PositionState` figures over an account (USD), and two counts.

    ``positions`` counts non-flat positions; ``mds_marked`` counts non-flat positions whose
    mark came from market data after their last pulse; ``open_orders`` is Σ of the pulses'
    ``open_orders`` (before order-event deltas).
    """

    unrealised_pnl: float
    gross_notional: float
    net_notional: float
    initial_margin: float
    maintenance_margin: float
    positions: int
    mds_marked: int
    open_orders: int


ZERO_TOTALS: Final = Totals(0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0)


class AccountSnapshot(NamedTuple):
    """The state of one account after some events (see the module docstring).

    Build the first one with :func:`initial`; get the next ones from :func:`reduce`.
    Mappings are read-only by contract: never mutate them.
    """

    account: str
    balance: BalanceUpdate | None
    positions: Mapping[str, PositionState]
    marks: Mapping[str, Mark]
    open_orders: Mapping[str, OrderUpdate]
    order_delta: Mapping[str, int]
    unconfirmed: Mapping[str, PositionUpdate | MarkPrice]
    totals: Totals
    anchor_unrealised_pnl: float
    anchor_initial_margin: float
    equity_drift: float | None
    last_pulse_at: float | None
    last_balance_at: float | None
    last_mark_at: float | None
    flagged: Mapping[str, int]


class ReduceResult(NamedTuple):
    """What :func:`reduce` returns.

    ``flag`` is None when the event was applied (or did not concern the state), else the
    plausibility reason code: the frame was not applied (``mark_jump``: held, see the
    module docstring). The caller counts flags in ``riskwatch_impossible_frames_total``.
    """

    snapshot: AccountSnapshot
    flag: ImplausibleReason | None


def initial(account: str) -> AccountSnapshot:
    """Return the empty snapshot of ``account`` (no balance, no positions, no marks)."""
    return AccountSnapshot(
        account=account,
        balance=None,
        positions=MappingProxyType({}),
        marks=MappingProxyType({}),
        open_orders=MappingProxyType({}),
        order_delta=MappingProxyType({}),
        unconfirmed=MappingProxyType({}),
        totals=ZERO_TOTALS,
        anchor_unrealised_pnl=0.0,
        anchor_initial_margin=0.0,
        equity_drift=None,
        last_pulse_at=None,
        last_balance_at=None,
        last_mark_at=None,
        flagged=MappingProxyType({}),
    )


def estimated_equity(snapshot: AccountSnapshot) -> float | None:
    """Equity now, USD: the balance pulse's equity moved by the unrealised PnL since it.

    ``deposit + realised_pnl + net_funding − fees + referral_rewards + unrealised_pnl``
    (docs/design.md#precise-points, docs/protocol.md §6) where
    ``unrealised_pnl`` is the balance's plus ``totals.unrealised_pnl −
    anchor_unrealised_pnl``. None before the first balance pulse.
    """
    bal = snapshot.balance
    if bal is None:
        return None
    return (
        bal.cash_and_realised
        + bal.unrealised_pnl
        + snapshot.totals.unrealised_pnl
        - snapshot.anchor_unrealised_pnl
    )


def open_order_count(snapshot: AccountSnapshot, symbol: str) -> int:
    """The symbol's open-order count: its last pulse's plus the order-event delta, ≥ 0."""
    state = snapshot.positions.get(symbol)
    base = int(state.pulse.open_orders) if state is not None else 0
    return max(0, base + snapshot.order_delta.get(symbol, 0))


def position_state(pulse: PositionUpdate, mark: float | None, marked_by_mds: bool) -> PositionState:
    """Build a :class:`PositionState` for ``pulse`` at ``mark`` (see that class)."""
    qty = pulse.position
    if qty == 0 or mark is None:
        return _new(PositionState, (pulse, mark, False, 0.0, 0.0, 0.0, 0.0, 0.0))
    notional = abs(qty) * mark
    # While the mark is the pulse's own, its unrealised PnL is the exchange's figure,
    # not our re-derivation of it (which would differ in the last bits).
    upnl = qty * (mark - pulse.average_price) if marked_by_mds else pulse.unrealised_pnl
    return _new(
        PositionState,
        (
            pulse,
            mark,
            marked_by_mds,
            upnl,
            notional,
            qty * mark,
            notional * pulse.initial_margin_rate,
            notional * pulse.maintenance_margin_rate,
        ),
    )


def sum_totals(positions: Mapping[str, PositionState]) -> Totals:
    """Recompute :class:`Totals` from scratch."""
    u = g = n = im = mm = 0.0
    count = mds = orders = 0
    for st in positions.values():
        orders += int(st.pulse.open_orders)
        u += st.unrealised_pnl
        g += st.notional
        n += st.signed_notional
        im += st.initial_margin
        mm += st.maintenance_margin
        if st.pulse.position != 0:
            count += 1
            if st.marked_by_mds:
                mds += 1
    return Totals(u, g, n, im, mm, count, mds, orders)


def _shift(t: Totals, old: PositionState | None, new: PositionState) -> Totals:
    """``t`` with ``old``'s contribution replaced by ``new``'s."""
    count = t.positions + (new.pulse.position != 0)
    mds = t.mds_marked + new.marked_by_mds
    orders = t.open_orders + int(new.pulse.open_orders)
    if old is None:
        return _new(
            Totals,
            (
                t.unrealised_pnl + new.unrealised_pnl,
                t.gross_notional + new.notional,
                t.net_notional + new.signed_notional,
                t.initial_margin + new.initial_margin,
                t.maintenance_margin + new.maintenance_margin,
                count,
                mds,
                orders,
            ),
        )
    return _new(
        Totals,
        (
            t.unrealised_pnl - old.unrealised_pnl + new.unrealised_pnl,
            t.gross_notional - old.notional + new.notional,
            t.net_notional - old.signed_notional + new.signed_notional,
            t.initial_margin - old.initial_margin + new.initial_margin,
            t.maintenance_margin - old.maintenance_margin + new.maintenance_margin,
            count - (old.pulse.position != 0),
            mds - old.marked_by_mds,
            orders - int(old.pulse.open_orders),
        ),
    )


def _flag(s: AccountSnapshot, reason: ImplausibleReason) -> ReduceResult:
    flagged = dict(s.flagged)
    flagged[reason] = flagged.get(reason, 0) + 1
    return ReduceResult(s._replace(flagged=flagged), reason)


def _apply_position(s: AccountSnapshot, ev: PositionUpdate, mark: float | None) -> AccountSnapshot:
    """Apply an accepted position pulse; ``mark`` is the mark it implies (None when flat)."""
    sym = ev.symbol
    marks = s.marks
    if mark is None:
        # A flat pulse implies no mark: keep the last one for the symbol, if any.
        known = marks.get(sym)
        state_mark = known.price if known is not None else None
    else:
        state_mark = mark
        marks = dict(marks)
        marks[sym] = _new(Mark, (mark, "pulse", ev.received_at))
    new = position_state(ev, state_mark, False)
    positions = dict(s.positions)
    old = positions.get(sym)
    positions[sym] = new
    order_delta = s.order_delta
    if sym in order_delta:
        # The pulse's open_orders is the exchange's count: earlier deltas are in it.
        order_delta = dict(order_delta)
        del order_delta[sym]
    # Positional construction: this runs on every pulse and costs a third of _replace.
    return _new(
        AccountSnapshot,
        (
            s.account,
            s.balance,
            positions,
            marks,
            s.open_orders,
            order_delta,
            s.unconfirmed,
            _shift(s.totals, old, new),
            # A symbol seen for the first time is not a change since the balance pulse: the
            # balance's own figures already hold it (after a reconnect the balance frame may
            # come first), so it joins the anchor instead of being counted twice.
            s.anchor_unrealised_pnl + (new.unrealised_pnl if old is None else 0.0),
            s.anchor_initial_margin + (new.initial_margin if old is None else 0.0),
            s.equity_drift,
            ev.received_at,
            s.last_balance_at,
            s.last_mark_at,
            s.flagged,
        ),
    )


def _apply_mark(s: AccountSnapshot, ev: MarkPrice) -> AccountSnapshot:
    """Apply an accepted market-data mark: the symbol's figures move to it."""
    sym = ev.symbol
    marks = dict(s.marks)
    marks[sym] = _new(Mark, (ev.price, "mds", ev.received_at))
    old = s.positions.get(sym)
    if old is None or old.pulse.position == 0:
        return s._replace(marks=marks, last_mark_at=ev.received_at)
    if old.mark is not None and abs(ev.price - old.mark) <= _SAME_PRICE * abs(old.mark):
        # The market confirms the mark the figures already rest on: nothing moves, and
        # figures that came from the exchange's pulse stay exchange-confirmed.
        return s._replace(marks=marks, last_mark_at=ev.received_at)
    new = position_state(old.pulse, ev.price, True)
    positions = dict(s.positions)
    positions[sym] = new
    return _new(
        AccountSnapshot,
        (
            s.account,
            s.balance,
            positions,
            marks,
            s.open_orders,
            s.order_delta,
            s.unconfirmed,
            _shift(s.totals, old, new),
            s.anchor_unrealised_pnl,
            s.anchor_initial_margin,
            s.equity_drift,
            s.last_pulse_at,
            s.last_balance_at,
            ev.received_at,
            s.flagged,
        ),
    )


def _apply(s: AccountSnapshot, ev: PositionUpdate | MarkPrice, price: float) -> AccountSnapshot:
    if isinstance(ev, PositionUpdate):
        return _apply_position(s, ev, price)
    return _apply_mark(s, ev)


def _observed_price(ev: PositionUpdate | MarkPrice) -> float:
    if isinstance(ev, MarkPrice):
        return ev.price
    # Only non-flat pulses are ever held, so the implied mark exists.
    return ev.average_price + ev.unrealised_pnl / ev.position


def _without(
    mapping: Mapping[str, PositionUpdate | MarkPrice], sym: str
) -> dict[str, PositionUpdate | MarkPrice]:
    out = dict(mapping)
    del out[sym]
    return out


def _observe(s: AccountSnapshot, ev: PositionUpdate | MarkPrice, price: float) -> ReduceResult:
    """Apply, hold or confirm a mark observation (see "Mark jumps" in the module docstring)."""
    sym = ev.symbol
    at = ev.received_at
    prev = s.marks.get(sym)
    held = s.unconfirmed.get(sym)
    if held is not None:
        s = s._replace(unconfirmed=_without(s.unconfirmed, sym))
        held_price = _observed_price(held)
        if (
            prev is not None
            and at - held.received_at <= MARK_JUMP_WINDOW
            and is_mark_jump(prev.price, prev.at, price, at)
            and abs(price / held_price - 1.0) <= MARK_JUMP_RATIO
        ):
            if isinstance(held, PositionUpdate) and isinstance(ev, MarkPrice):
                s = _apply_position(s, held, held_price)
            return ReduceResult(_apply(s, ev, price), None)
    if prev is not None and is_mark_jump(prev.price, prev.at, price, at):
        unconfirmed = dict(s.unconfirmed)
        unconfirmed[sym] = ev
        return _flag(s._replace(unconfirmed=unconfirmed), "mark_jump")
    return ReduceResult(_apply(s, ev, price), None)


def _same_pulse(a: PositionUpdate, b: PositionUpdate) -> bool:
    """True when ``b`` carries the figures of ``a`` (receive time aside)."""
    return (
        a.position == b.position
        and a.average_price == b.average_price
        and a.unrealised_pnl == b.unrealised_pnl
        and a.realised_pnl == b.realised_pnl
        and a.net_funding == b.net_funding
        and a.margin_alloc == b.margin_alloc
        and a.open_orders == b.open_orders
        and a.open_quantity == b.open_quantity
        and a.leverage == b.leverage
        and a.initial_margin_rate == b.initial_margin_rate
        and a.maintenance_margin_rate == b.maintenance_margin_rate
    )


def repeats(s: AccountSnapshot, ev: PositionUpdate) -> bool:
    """True when ``ev`` is a pulse with the figures of its symbol's last one, marked by
    that pulse (not by market data), with no order seen and no jump held since: the same
    checks pass, the same mark holds, the figures and totals stay. Folding it in moves
    only the pulse (its receive time) and the mark's time: :func:`repeat_positions`."""
    sym = ev.symbol
    old = s.positions.get(sym)
    if (
        old is None
        or old.marked_by_mds
        or old.mark is None
        or ev.position == 0
        or sym in s.unconfirmed
        or sym in s.order_delta
        or not _same_pulse(old.pulse, ev)
    ):
        return False
    mark = s.marks.get(sym)
    return mark is not None and mark.source == "pulse" and mark.price == old.mark


def repeat_positions(s: AccountSnapshot, events: Sequence[PositionUpdate]) -> AccountSnapshot:
    """Fold pulses that each :func:`repeats` (in order, at least one) with one copy of the
    snapshot's dicts: the same snapshot as reducing them one by one (a repeat leaves
    every condition of :func:`repeats` as it was, so each still repeats after the others)."""
    marks = dict(s.marks)
    positions = dict(s.positions)
    for ev in events:
        sym = ev.symbol
        old = positions[sym]
        marks[sym] = _new(Mark, (old.mark, "pulse", ev.received_at))
        positions[sym] = _new(PositionState, (ev, *old[1:]))
    return _new(
        AccountSnapshot,
        (
            s.account,
            s.balance,
            positions,
            marks,
            s.open_orders,
            s.order_delta,
            s.unconfirmed,
            s.totals,
            s.anchor_unrealised_pnl,
            s.anchor_initial_margin,
            s.equity_drift,
            events[-1].received_at,
            s.last_balance_at,
            s.last_mark_at,
            s.flagged,
        ),
    )


def _on_position(s: AccountSnapshot, ev: PositionUpdate) -> ReduceResult:
    if repeats(s, ev):
        return ReduceResult(repeat_positions(s, (ev,)), None)
    return reduce_new_position(s, ev)


def reduce_new_position(s: AccountSnapshot, ev: PositionUpdate) -> ReduceResult:
    """:func:`reduce` of a position pulse known not to repeat (``not repeats(s, ev)``)."""
    reason = check_position(ev)
    if reason is not None:
        return _flag(s, reason)
    if ev.position == 0:
        held = s.unconfirmed.get(ev.symbol)
        if isinstance(held, PositionUpdate):
            # A newer pulse supersedes a held one.
            s = s._replace(unconfirmed=_without(s.unconfirmed, ev.symbol))
        return ReduceResult(_apply_position(s, ev, None), None)
    return _observe(s, ev, ev.average_price + ev.unrealised_pnl / ev.position)


def _on_mark(s: AccountSnapshot, ev: MarkPrice) -> ReduceResult:
    reason = check_mark(ev.price)
    if reason is not None:
        return _flag(s, reason)
    return _observe(s, ev, ev.price)


def _on_balance(s: AccountSnapshot, ev: BalanceUpdate) -> ReduceResult:
    reason = check_balance(ev)
    if reason is not None:
        return _flag(s, reason)
    before = estimated_equity(s)
    drift = None if before is None else before - ev.reported_equity
    totals = sum_totals(s.positions)
    at = ev.received_at
    return ReduceResult(
        AccountSnapshot(
            s.account,
            ev,
            s.positions,
            s.marks,
            s.open_orders,
            s.order_delta,
            s.unconfirmed,
            totals,
            totals.unrealised_pnl,
            totals.initial_margin,
            drift,
            at,
            at,
            s.last_mark_at,
            s.flagged,
        ),
        None,
    )


def _is_open(order: OrderUpdate) -> bool | None:
    """True open, False gone, None a refused command (changes nothing)."""
    status = order.status
    if status in _OPEN_STATUSES or (status == "FILLED" and order.quantity_remaining > 0):
        return True
    if status in _CLOSED_STATUSES:
        return False
    return None


def _on_order(s: AccountSnapshot, ev: OrderUpdate) -> ReduceResult:
    reason = check_order(ev)
    if reason is not None:
        return _flag(s, reason)
    now_open = _is_open(ev)
    if now_open is None:
        return ReduceResult(s, None)
    was_open = ev.order_id in s.open_orders
    if not was_open and not now_open:
        return ReduceResult(s, None)
    orders = dict(s.open_orders)
    if now_open:
        orders[ev.order_id] = ev
    else:
        del orders[ev.order_id]
    order_delta = s.order_delta
    if was_open != now_open:
        order_delta = dict(order_delta)
        order_delta[ev.symbol] = order_delta.get(ev.symbol, 0) + (1 if now_open else -1)
    return ReduceResult(s._replace(open_orders=orders, order_delta=order_delta), None)


def _on_open_orders(s: AccountSnapshot, ev: OpenOrders) -> ReduceResult:
    for order in ev.orders:
        reason = check_order(order)
        if reason is not None:
            return _flag(s, reason)
    # A listing holds open orders only; a status we would call closed is dropped anyway.
    orders = {o.order_id: o for o in ev.orders if _is_open(o) is not False}
    counts: dict[str, int] = {}
    for o in orders.values():
        counts[o.symbol] = counts.get(o.symbol, 0) + 1
    # The listing is newer than any pulse: make pulse count + delta equal the listing's.
    order_delta: dict[str, int] = {}
    for sym, st in s.positions.items():
        d = counts.pop(sym, 0) - int(st.pulse.open_orders)
        if d:
            order_delta[sym] = d
    order_delta.update(counts)
    return ReduceResult(s._replace(open_orders=orders, order_delta=order_delta), None)


def reduce(snapshot: AccountSnapshot, event: Event) -> ReduceResult:
    """Fold one event into ``snapshot``; return the next snapshot and a flag, if any.

    Pure: ``snapshot`` is not modified, and times come from ``event.received_at``.
    Events that do not concern the account state return ``snapshot`` itself.
    """
    if isinstance(event, PositionUpdate):
        return _on_position(snapshot, event)
    if isinstance(event, MarkPrice):
        return _on_mark(snapshot, event)
    if isinstance(event, BalanceUpdate):
        return _on_balance(snapshot, event)
    if isinstance(event, OrderUpdate):
        return _on_order(snapshot, event)
    if isinstance(event, OpenOrders):
        return _on_open_orders(snapshot, event)
    return ReduceResult(snapshot, None)
