"""One action in flight: its phase and what the book knows of it (pure data)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from riskwatch.actions.model import PlannedCommand

__all__ = ["Flight", "Phase"]


class Phase(enum.Enum):
    """Where a flight (one action, all its attempts) is."""

    QUEUED = "queued"
    """Recorded; its frame waits for :meth:`ActionBook.release` (guards hold)."""
    REPLY = "reply"
    """Written; waiting for the exchange's reply."""
    PULSE = "pulse"
    """Replied (or no reply in time); waiting for a pulse that shows the effect."""
    BACKOFF = "backoff"
    """Waiting to send the next attempt."""
    RECONCILE = "reconcile"
    """Outcome unknown (disconnect, restart): ``get_user_orders`` and the next pulse decide."""


@dataclass(slots=True, eq=False)
class Flight:
    """One armed action between its first send and its final outcome."""

    cmd: PlannedCommand
    sent_frame: dict[str, Any] | None
    """The command's frame as a dict, decoded when a reply needs it (None until then)."""
    first_at: float
    decided_at: float
    trigger_at: float | None
    phase: Phase = Phase.QUEUED
    since: float = 0.0
    deadline: float = 0.0
    next_at: float = 0.0
    error: str = ""
    reject_code: str = ""
    retryable: bool = True
    replied: bool = False
    orders_known: bool = False
    audited: bool = True
    held: str = ""
    """Why a queued frame did not leave yet: ``""``, ``"stale"`` or ``"expired"``."""
