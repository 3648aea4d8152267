"""The alert lifecycle of one rule for one (account[, symbol]) (docs/rules.md).

States: ``INACTIVE`` → ``PENDING`` (the condition holds, ``for`` is running) →
``FIRING`` → back to ``INACTIVE`` through a ``RESOLVED`` transition. Each change is
reported as a :class:`Transition` whose :class:`TransitionReason` doubles as a metric label.

Rules of the machine (``holds`` is the rule's ``when``, ``clears`` its ``clear_when``):

- ``for``: pending becomes firing at the first evaluation at which the condition
  holds and ``now - active_since >= for``; ``for == 0`` fires on the first holding
  evaluation, with no pending step. A pending alert whose condition stops holding is
  cancelled (``PENDING_CANCELLED``): ``clear_when`` does not apply before firing.
- Hysteresis: once firing, the alert stays until ``clear_when`` holds. Without a
  ``clear_when`` the clear condition is ``not when``. When both ``when`` and
  ``clear_when`` hold (overlapping thresholds), ``when`` wins and it stays firing.
- ``keep_firing_for``: after the clear condition is first seen, the alert stays firing
  this long; the timer restarts from zero if ``when`` holds again or the value goes
  back into the hysteresis band (neither ``when`` nor ``clear_when``).
- Latch: a latching rule, once fired, stays firing whatever the data until
  :func:`reset_latch`. The first evaluation at which it would otherwise have resolved
  emits ``LATCHED`` (once per trip). Resetting it resolves it (``LATCH_RESET``); if
  the condition still holds, the next evaluation starts a new pending → a new trip.
- ``trip_id`` counts firings: +1 at each transition into ``FIRING``, never otherwise.
  It is persisted, so it keeps increasing across restarts and keys "once per trip"
  protective actions.
- Missing data: ``holds``/``clears`` of None mean the rule's inputs were missing. It
  never starts a pending, never starts or completes a clear, never resolves and never
  fires: the state is kept, timers keep their start times, and the evaluation is
  remembered as unknown so :func:`tick` does not act on it either.
- Stale data: while an account's data is stale (docs/design.md#precise-points) the engine calls
  neither :func:`step` nor :func:`tick` for it, so every state freezes as it is.
  Time spent frozen still counts toward ``for`` and ``keep_firing_for``; the first
  fresh evaluation decides.
- :func:`tick` moves time without new data: a pending alert whose last known
  evaluation held fires once ``for`` has elapsed, and a non-latched firing alert whose
  last known evaluation cleared resolves once ``keep_firing_for`` has elapsed.
- Restarts: :meth:`AlertState.to_record` / :meth:`AlertState.from_record` persist the
  state with absolute timestamps, so a restart in the middle of ``for`` resumes the
  same timer. The last evaluation is *not* restored (it is unknown after a restart),
  so a restored alert fires or resolves only on a fresh evaluation, never early on
  pre-restart evidence.

Everything is pure: ``now`` is passed in (Unix seconds, float).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from typing import Any, Final


class State(enum.IntEnum):
    """Alert state; the value is the ``riskwatch_alert_state`` gauge value."""

    INACTIVE = 0
    PENDING = 1
    FIRING = 2


class TransitionReason(enum.StrEnum):
    """Why a transition happened; the value is usable as a metric label."""

    PENDING = "pending"
    """The condition started holding; ``for`` runs."""
    PENDING_CANCELLED = "pending_cancelled"
    """The condition stopped holding before ``for`` elapsed."""
    FIRING = "firing"
    """A new trip: ``trip_id`` was incremented."""
    LATCHED = "latched"
    """A latched alert would have resolved; it stays firing until reset."""
    RESOLVED = "resolved"
    """The clear condition held (for ``keep_firing_for``); back to inactive."""
    LATCH_RESET = "latch_reset"
    """An operator reset the latch; back to inactive."""


_RECORD_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class LifecycleParams:
    """The lifecycle part of a rule; durations in seconds.

    ``has_clear_when`` tells :func:`step` whether ``clears`` comes from a separate
    ``clear_when`` (True) or is to be derived as ``not holds`` (False).
    Raises ``ValueError`` on a negative or non-finite duration.
    """

    for_seconds: float = 0.0
    keep_firing_for: float = 0.0
    latch: bool = False
    has_clear_when: bool = False

    def __post_init__(self) -> None:
        for name in ("for_seconds", "keep_firing_for"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                msg = f"{name} must be a non-negative number of seconds, got {value!r}"
                raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class AlertState:
    """The lifecycle state of one rule for one (account[, symbol]); times are Unix seconds.

    ``active_since``: when the condition first held in this episode (pending start);
    ``fired_at``: when the current (or last) trip fired; ``last_held_at``: the last
    evaluation at which the condition held; ``clear_since``: when the clear condition
    was first seen while firing (``keep_firing_for`` timer); ``resolved_at``: the last
    resolution; ``trip_id``: firings so far; ``holding``/``clearing``: the last
    evaluation's ``when`` and effective clear (None: unknown), read by :func:`tick`.
    """

    state: State = State.INACTIVE
    active_since: float | None = None
    fired_at: float | None = None
    last_held_at: float | None = None
    clear_since: float | None = None
    latched: bool = False
    latch_reported: bool = False
    trip_id: int = 0
    resolved_at: float | None = None
    holding: bool | None = None
    clearing: bool | None = None

    def to_record(self) -> dict[str, Any]:
        """Plain-data (JSON-able) copy for the state database."""
        return {
            "version": _RECORD_VERSION,
            "state": self.state.name.lower(),
            "active_since": self.active_since,
            "fired_at": self.fired_at,
            "last_held_at": self.last_held_at,
            "clear_since": self.clear_since,
            "latched": self.latched,
            "latch_reported": self.latch_reported,
            "trip_id": self.trip_id,
            "resolved_at": self.resolved_at,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AlertState:
        """Rebuild from :meth:`to_record` output; raises ``ValueError`` if malformed.

        The last evaluation (``holding``/``clearing``) comes back unknown.
        """
        if record.get("version") != _RECORD_VERSION:
            msg = f"unsupported alert record version {record.get('version')!r}"
            raise ValueError(msg)
        name = record.get("state")
        try:
            state = State[str(name).upper()]
        except KeyError:
            msg = f"unknown alert state {name!r}"
            raise ValueError(msg) from None
        trip_id = record.get("trip_id")
        if isinstance(trip_id, bool) or not isinstance(trip_id, int) or trip_id < 0:
            msg = f"alert trip_id must be a non-negative integer, got {trip_id!r}"
            raise ValueError(msg)
        flags = {}
        for key in ("latched", "latch_reported"):
            value = record.get(key, False)
            if not isinstance(value, bool):
                msg = f"alert record field {key!r} must be a boolean, got {value!r}"
                raise ValueError(msg)
            flags[key] = value
        restored = cls(
            state=state,
            active_since=_time(record, "active_since"),
            fired_at=_time(record, "fired_at"),
            last_held_at=_time(record, "last_held_at"),
            clear_since=_time(record, "clear_since"),
            latched=flags["latched"],
            latch_reported=flags["latch_reported"],
            trip_id=trip_id,
            resolved_at=_time(record, "resolved_at"),
        )
        if state is not State.INACTIVE and restored.active_since is None:
            msg = f"alert record in state {name!r} lacks active_since"
            raise ValueError(msg)
        return restored


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change: from ``prev`` to ``state`` at ``at``, because of ``reason``.

    ``trip_id`` is the trip the transition belongs to (the new one for ``FIRING``).
    """

    reason: TransitionReason
    prev: State
    state: State
    at: float
    trip_id: int


INACTIVE: Final = AlertState()
"""The state of an alert never evaluated."""


def step(
    prev: AlertState,
    holds: bool | None,
    clears: bool | None,
    now: float,
    rule: LifecycleParams,
) -> tuple[AlertState, Transition | None]:
    """Advance ``prev`` by one evaluation at ``now``; see the module docstring.

    ``holds`` is the rule's ``when``; ``clears`` its ``clear_when`` (ignored unless
    ``rule.has_clear_when``). None for either means its inputs were missing. Returns
    the new state and the transition, if any (at most one per call).
    """
    if not rule.has_clear_when:
        clears = None if holds is None else not holds
    # What tick() may act on later: the clear only counts while firing and when the
    # condition itself does not hold (``when`` wins over an overlapping clear_when).
    clearing = None if prev.state is not State.FIRING else (False if holds is True else clears)
    if holds is True:
        prev = replace(prev, last_held_at=now, holding=True, clearing=clearing)
    elif prev.holding is not holds or prev.clearing is not clearing:
        prev = replace(prev, holding=holds, clearing=clearing)

    if prev.state is State.INACTIVE:
        if holds is not True:
            return prev, None
        started = replace(prev, active_since=now, clear_since=None)
        if rule.for_seconds <= 0.0:
            return _fire(started, now, rule, State.INACTIVE)
        return _move(started, State.PENDING, TransitionReason.PENDING, now)

    if prev.state is State.PENDING:
        if holds is None:
            return prev, None
        if holds is False:
            cancelled = replace(prev, active_since=None)
            return _move(cancelled, State.INACTIVE, TransitionReason.PENDING_CANCELLED, now)
        return _maybe_fire(prev, now, rule)

    # FIRING
    if holds is True or clears is False:
        # Condition back, or inside the hysteresis band: any clear timer restarts.
        return replace(prev, clear_since=None), None
    if clears is None:
        return prev, None
    timed = prev if prev.clear_since is not None else replace(prev, clear_since=now)
    return _maybe_resolve(timed, now, rule)


def tick(
    prev: AlertState, now: float, rule: LifecycleParams
) -> tuple[AlertState, Transition | None]:
    """Let time pass with no new evaluation; acts only on the last *known* evaluation.

    Fires a pending alert whose last evaluation held once ``for`` has elapsed, and
    resolves a non-latched firing alert whose last evaluation cleared once
    ``keep_firing_for`` has elapsed. Otherwise returns ``prev`` unchanged.
    """
    if prev.state is State.PENDING and prev.holding is True:
        return _maybe_fire(prev, now, rule)
    if prev.state is State.FIRING and prev.clearing is True and prev.clear_since is not None:
        return _maybe_resolve(prev, now, rule)
    return prev, None


def reset_latch(prev: AlertState, now: float) -> tuple[AlertState, Transition | None]:
    """Operator reset: a latched alert resolves (``LATCH_RESET``); others are unchanged.

    If the condition still holds, the next :func:`step` starts a new pending episode,
    which leads to a new trip (and, for protective rules, a new action).
    """
    if prev.state is not State.FIRING or not prev.latched:
        return prev, None
    cleared = replace(
        prev,
        latched=False,
        latch_reported=False,
        active_since=None,
        clear_since=None,
        resolved_at=now,
        holding=None,
        clearing=None,
    )
    return _move(cleared, State.INACTIVE, TransitionReason.LATCH_RESET, now)


def _maybe_fire(
    prev: AlertState, now: float, rule: LifecycleParams
) -> tuple[AlertState, Transition | None]:
    # active_since is set in every non-inactive state (guarded by from_record too).
    since = prev.active_since if prev.active_since is not None else now
    if now - since >= rule.for_seconds:
        return _fire(prev, now, rule, State.PENDING)
    return prev, None


def _fire(
    prev: AlertState, now: float, rule: LifecycleParams, origin: State
) -> tuple[AlertState, Transition]:
    fired = replace(
        prev,
        state=State.FIRING,
        fired_at=now,
        clear_since=None,
        latched=rule.latch,
        latch_reported=False,
        trip_id=prev.trip_id + 1,
    )
    return fired, Transition(TransitionReason.FIRING, origin, State.FIRING, now, fired.trip_id)


def _maybe_resolve(
    prev: AlertState, now: float, rule: LifecycleParams
) -> tuple[AlertState, Transition | None]:
    since = prev.clear_since if prev.clear_since is not None else now
    if now - since < rule.keep_firing_for:
        return prev, None
    if prev.latched:
        if prev.latch_reported:
            return prev, None
        reported = replace(prev, latch_reported=True)
        return reported, Transition(
            TransitionReason.LATCHED, State.FIRING, State.FIRING, now, prev.trip_id
        )
    resolved = replace(prev, active_since=None, clear_since=None, resolved_at=now, clearing=None)
    return _move(resolved, State.INACTIVE, TransitionReason.RESOLVED, now)


def _move(
    prev: AlertState, state: State, reason: TransitionReason, now: float
) -> tuple[AlertState, Transition]:
    moved = replace(prev, state=state)
    return moved, Transition(reason, prev.state, state, now, moved.trip_id)


def _time(record: dict[str, Any], name: str) -> float | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"alert record field {name!r} must be a finite number or null, got {value!r}"
        raise ValueError(msg)
    return float(value)
