"""What the action book asks its shell to do: records to write, frames to write, events
and counts to publish (pure data; riskwatch/actions/book.py says in which order)."""

from __future__ import annotations

from dataclasses import dataclass, field

from riskwatch.actions.model import ActionEvent, PlannedCommand, Refusal

__all__ = ["IntentRecord", "OutcomeRecord", "OutgoingFrame", "Output", "Record", "SentRecord"]


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """Commit the intent of one attempt (``Store.record_intent``) before its frame leaves."""

    cmd_or_refusal: PlannedCommand | Refusal
    action_id: str
    attempt: int
    reason: str
    mode: str
    at: float

    @property
    def action(self) -> str:
        """The action's name."""
        return self.cmd_or_refusal.action


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """Record an attempt's final outcome (``Store.record_outcome``); ``account`` and
    ``rule`` say whose it is, should the write fail."""

    action_id: str
    status: str
    detail: str
    at: float
    account: str = ""
    rule: str = ""


@dataclass(frozen=True, slots=True)
class SentRecord:
    """Record that an attempt's frame was written (``Store.mark_sent``); ``account`` and
    ``rule`` say whose it is, should the write fail."""

    action_id: str
    at: float
    account: str = ""
    rule: str = ""


Record = IntentRecord | OutcomeRecord | SentRecord


@dataclass(frozen=True, slots=True)
class OutgoingFrame:
    """A frame to write on ``account``'s trade connection (``action_id`` None for a query)."""

    account: str
    frame: str
    action_id: str | None = None


@dataclass(slots=True)
class Output:
    """What one call to the book asks the shell to do (see the module docstring)."""

    events: list[ActionEvent] = field(default_factory=list)
    counts: list[tuple[str, str]] = field(default_factory=list)
    """``(action, result)`` increments of ``riskwatch_actions_total``."""
    retries: list[str] = field(default_factory=list)
    """Actions whose retry was started (``riskwatch_action_retries_total``)."""
    latencies: list[float] = field(default_factory=list)
    """Seconds from a trigger frame to its first command's write."""
    records: list[Record] = field(default_factory=list)
    frames: list[OutgoingFrame] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.events
            or self.counts
            or self.retries
            or self.latencies
            or self.records
            or self.frames
        )
