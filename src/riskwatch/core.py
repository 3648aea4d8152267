"""The per-account core: events in, state and figures out, frames to send back.

:class:`AccountCore` is the part of the pipeline that every driver shares (``run``,
``demo``, ``replay``, ``test``). It is free of I/O and never reads a clock: every
call takes ``now``. It folds events into the frozen
:class:`~riskwatch.state.account.AccountSnapshot` (``state/account.py``) and keeps the
latest :class:`~riskwatch.state.derived.Figures` for readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from riskwatch.model import Event
from riskwatch.state import account as account_state
from riskwatch.state import derived
from riskwatch.state.account import AccountSnapshot
from riskwatch.state.derived import Figures


@dataclass(frozen=True, slots=True)
class HandleResult:
    """What one frame's events produced.

    ``flags``: plausibility reason codes of frames not applied (one per flagged
    frame); ``frames``: command frames to send now; ``changed``: whether the account
    state moved.
    """

    flags: tuple[str, ...] = ()
    frames: tuple[str, ...] = ()
    changed: bool = False


class AccountCore:
    """One account's state and derived figures (pure; see the module docstring)."""

    def __init__(self, account: str, *, stale_after: float) -> None:
        self.account = account
        self.stale_after = stale_after
        self.snapshot: AccountSnapshot = account_state.initial(account)
        self.pnl_baseline: float | None = None

    def handle(self, events: Sequence[Event], now: float) -> HandleResult:
        """Fold the events of one frame (all received at ``now``) into the state."""
        flags: list[str] = []
        snapshot = start = self.snapshot
        for ev in events:
            result = account_state.reduce(snapshot, ev)
            snapshot = result.snapshot
            if result.flag is not None:
                flags.append(result.flag)
        self.snapshot = snapshot
        return HandleResult(flags=tuple(flags), changed=snapshot is not start)

    def figures_at(self, now: float) -> Figures | None:
        """The derived figures at ``now``; None before the account's first pulse."""
        snap = self.snapshot
        if snap.last_pulse_at is None and snap.balance is None and not snap.positions:
            return None
        return derived.compute(snap, now, self.pnl_baseline)

    def is_stale(self, now: float) -> bool:
        """True when no pulse arrived within ``stale_after`` seconds (or none ever)."""
        last = self.snapshot.last_pulse_at
        return last is None or now - last > self.stale_after

    def describe(self, now: float) -> dict[str, Any]:
        """A JSON-able description for ``/api/state`` (figures, positions, orders)."""
        figures = self.figures_at(now)
        snap = self.snapshot
        return {
            "stale": self.is_stale(now),
            "last_pulse_at": snap.last_pulse_at,
            "figures": dict(figures.account) if figures else {},
            "exchange_confirmed": figures.exchange_confirmed if figures else False,
            "positions": {
                sym: row
                for sym, row in (figures.positions.items() if figures else ())
                if row.get("position") or row.get("open_orders")
            },
            "open_orders": [
                {
                    "order_id": o.order_id,
                    "client_order_id": o.client_order_id,
                    "symbol": o.symbol,
                    "status": o.status,
                    "side": o.side,
                    "quantity": o.quantity,
                    "quantity_remaining": o.quantity_remaining,
                    "price": o.price,
                }
                for o in snap.open_orders.values()
            ],
            "flagged_frames": dict(snap.flagged),
        }
