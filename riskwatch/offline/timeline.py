"""A timeline of what the rules decided: alert transitions, action intents, and what
the action book did with them (sent, refused, dry run, confirmed, failed).

``riskwatch replay`` prints one, and ``riskwatch test`` prints one under a failing
case so that the reader sees what happened, not only what was expected. Pure: the
functions turn :class:`~riskwatch.rules.engine.Decision` s into :class:`Entry` rows
and rows into text or JSON-able dicts; nothing here reads a clock or does I/O.

Times are Unix seconds; a row prints its time relative to a ``start`` (``+12.500s``)
and as absolute ISO 8601 UTC with milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from riskwatch.actions.model import ActionEvent
from riskwatch.rules.engine import Decision

__all__ = [
    "Entry",
    "entries_of",
    "entry_of_event",
    "format_entry",
    "format_lines",
    "format_time",
    "iso",
    "to_json",
]

EntryKind = Literal["alert", "action", "outcome"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of a timeline.

    ``kind="alert"``: ``what`` is the transition reason (``pending``, ``firing``,
    ``resolved``, ``latched``, ``pending_cancelled``, ``latch_reset``).
    ``kind="action"``: ``what`` is the action kind (``cancel_all_orders``,
    ``close_position``, ``set_leverage``, ``reduce_position``) and ``action`` its full
    text (``close_position all``). ``symbol`` is None at account scope.
    ``kind="outcome"``: what the action book did: ``what`` is the event (``sent``,
    ``refused``, ``dry_run``, ``confirmed``, ``failed``, ``breaker_open``), ``command``
    the action kind, ``action`` the command as text (``close_position AAPL-USD``),
    ``summary`` its ``CODE: detail`` or detail and ``attempt`` its attempt.
    """

    at: float
    kind: EntryKind
    account: str
    rule: str
    symbol: str | None
    what: str
    severity: str
    trip_id: int
    action: str = ""
    target: str | None = None
    summary: str = ""
    shadow: bool = False
    attempt: int = 0
    command: str = ""


def entries_of(decision: Decision) -> list[Entry]:
    """The rows of one decision: its transitions, then one row per action of each intent."""
    out = [
        Entry(
            at=t.at,
            kind="alert",
            account=t.account,
            rule=t.rule,
            symbol=t.symbol,
            what=t.reason.value,
            severity=t.severity,
            trip_id=t.trip_id,
            summary=t.summary,
            shadow=t.shadow,
        )
        for t in decision.transitions
    ]
    for intent in decision.intents:
        for action in intent.actions:
            out.append(
                Entry(
                    at=intent.at,
                    kind="action",
                    account=intent.account,
                    rule=intent.rule,
                    symbol=intent.symbol,
                    what=action.kind,
                    severity=intent.severity,
                    trip_id=intent.trip_id,
                    action=str(action),
                    target=action.target,
                )
            )
    return out


def entry_of_event(event: ActionEvent) -> Entry:
    """The row of one action-book event."""
    return Entry(
        at=event.at,
        kind="outcome",
        account=event.account,
        rule=event.rule,
        symbol=event.symbol,
        what=event.kind,
        severity=event.severity,
        trip_id=event.trip_id,
        action=event.summary,
        summary=f"{event.code}: {event.detail}" if event.code else event.detail,
        attempt=event.attempt,
        command=event.action,
    )


def iso(t: float) -> str:
    """``t`` (Unix seconds) as ISO 8601 UTC with milliseconds, e.g. ``2026-01-05T00:00:12.500Z``."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_time(seconds: float) -> str:
    """A relative time as ``+12.500s``."""
    return f"{'+' if seconds >= 0 else '-'}{abs(seconds):.3f}s"


def format_entry(entry: Entry, start: float, *, absolute: bool = True) -> str:
    """One human-readable line; ``start`` is the time printed as ``+0.000s``."""
    parts = [format_time(entry.at - start)]
    if absolute:
        parts.append(iso(entry.at))
    where = f"account={entry.account}"
    if entry.symbol:
        where += f" symbol={entry.symbol}"
    if entry.kind == "alert":
        parts.append(f"{entry.rule} {entry.what.upper()}")
        parts.append(f"[{entry.severity}] {where} trip={entry.trip_id}")
        if entry.shadow:
            parts.append("(shadow)")
        if entry.summary:
            parts.append(f"- {entry.summary}")
    elif entry.kind == "action":
        parts.append(f"{entry.rule} ACTION {entry.action}")
        parts.append(f"{where} trip={entry.trip_id}")
    else:
        parts.append(f"{entry.rule} {entry.what.upper()} {entry.action}")
        parts.append(f"{where} trip={entry.trip_id} attempt={entry.attempt}")
        if entry.summary:
            parts.append(f"- {entry.summary}")
    return "  ".join(parts)


def to_json(entry: Entry, start: float) -> dict[str, Any]:
    """A JSON-able dict of one row (times as ``t`` Unix seconds, ``offset`` and ``time``)."""
    doc: dict[str, Any] = {
        "t": entry.at,
        "offset": round(entry.at - start, 6),
        "time": iso(entry.at),
        "kind": entry.kind,
        "account": entry.account,
        "rule": entry.rule,
        "symbol": entry.symbol,
        "severity": entry.severity,
        "trip_id": entry.trip_id,
    }
    if entry.kind == "alert":
        doc.update(reason=entry.what, summary=entry.summary, shadow=entry.shadow)
    elif entry.kind == "action":
        doc.update(action=entry.what, target=entry.target, text=entry.action)
    else:
        doc.update(event=entry.what, text=entry.action, attempt=entry.attempt, detail=entry.summary)
    return doc


def format_lines(entries: Iterable[Entry], start: float, *, absolute: bool = True) -> list[str]:
    """Every row as a line (see :func:`format_entry`)."""
    return [format_entry(e, start, absolute=absolute) for e in entries]
