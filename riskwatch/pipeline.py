"""The per-account core: events in, state, figures and rule decisions out.

:class:`AccountCore` is the part of the pipeline that every driver shares (``run``,
``demo``, ``replay``, ``test``). It is free of I/O and never reads a clock: every
call takes ``now``. It folds events into the frozen
:class:`~riskwatch.state.account.AccountSnapshot` (``state/account.py``), computes the
:class:`~riskwatch.state.derived.Figures`, and runs the rule engine
(``rules/engine.py``) once per burst of frames that changed the state, returning
the engine's :class:`~riskwatch.rules.engine.Decision` with the frame's result.

When the rules run (docs/performance.md argues the choice): QFEX pulses an account as
one ``position_response`` frame per symbol followed by one ``balance_response``
(docs/protocol.md §4.2: no end-of-pulse marker). Evaluating after each of those 21 frames
cost 21 evaluations per pulse, 20 of them on a half-updated account (new position
figures against the previous balance). So:

- a frame carrying a balance, a mark price or an order event is evaluated at once,
  together with any position frames deferred before it (the balance closes the pulse);
- a frame carrying only position updates marks the account *dirty* and is not
  evaluated (``HandleResult.decision`` is None, ``deferred`` True); the balance frame
  that follows within the same burst (microseconds later) evaluates the whole pulse;
- if no balance follows, :meth:`AccountCore.tick` (or :meth:`AccountCore.flush`, for a
  driver that knows the burst ended) evaluates the deferred frames with their own
  trigger; after ``EAGER_AFTER`` such unterminated bursts in a row (an exchange that
  sends the balance first, or no balance at all) the core stops deferring and
  evaluates every position frame, until a balance again closes a burst (arrives within
  ``BURST_GAP`` of a position frame).

The driver must also call :meth:`AccountCore.tick` on a timer (every 0.25-1 s):
``for`` and ``keep_firing_for`` expire, ``data_age`` grows, windows slide and
``DataStale`` fires without any frame arriving. A tick on a quiet account (nothing
deferred, no pending or firing alert, staleness unchanged, last evaluation less than
``QUIET_TICK_INTERVAL`` ago) skips the evaluation and returns an empty decision: with
1 s pulses the pulses themselves move time forward, and a quiet account's
time-dependent conditions (``data_age``, windows, the daily reset) are seen at most
``QUIET_TICK_INTERVAL`` late, while ``for`` timers and staleness stay exact.

Stale data (docs/design.md#precise-points): the account is stale when its last pulse is older than
``stale_after`` seconds, or, before any pulse, when ``stale_after`` has passed since
the core first saw time (its first ``handle``/``tick``): a daemon that never gets data
says so instead of staying silent.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final

from riskwatch.model import BalanceUpdate, Event, MarkPrice, OpenOrders, OrderUpdate, PositionUpdate
from riskwatch.rules import engine
from riskwatch.rules.engine import Decision, IntentSink, RulesState, StateRecords, Trigger
from riskwatch.rules.model import EMPTY_RULES, RuleSet
from riskwatch.state import account as account_state
from riskwatch.state import derived
from riskwatch.state.account import AccountSnapshot
from riskwatch.state.daily import DailyConfig
from riskwatch.state.derived import Figures

QUIET_TICK_INTERVAL: Final = 1.0
"""Seconds: a tick re-evaluates a quiet account at most this long after its last evaluation."""

EAGER_AFTER: Final = 2
"""Unterminated position bursts in a row after which position frames are evaluated at once."""

BURST_GAP: Final = 0.1
"""Seconds: in eager mode, a balance this soon after a position frame closes its burst
(the exchange sends balances after positions again: deferral resumes)."""


@dataclass(frozen=True, slots=True)
class HandleResult:
    """What one frame's events produced.

    ``flags``: plausibility reason codes of frames not applied (one per flagged
    frame); ``frames``: command frames to send now; ``changed``: whether the account
    state moved; ``decision``: the rule engine's decision after the frame (None when
    nothing was evaluated: the state did not move, or the frame was deferred);
    ``deferred``: the account holds changes not yet evaluated (see the module docstring).
    """

    flags: tuple[str, ...] = ()
    frames: tuple[str, ...] = ()
    changed: bool = False
    decision: Decision | None = None
    deferred: bool = False


_DEFERRED: Final = HandleResult(changed=True, deferred=True)
_DEFERRED_UNCHANGED: Final = HandleResult(deferred=True)
"""The results of a deferred position frame without flags (the common frame), built once."""


def trigger_of(events: Sequence[Event]) -> Trigger:
    """The evaluation trigger for a frame's events: a pulse wins over orders over marks."""
    kinds = 0
    for ev in events:
        if isinstance(ev, PositionUpdate | BalanceUpdate):
            return "pulse"
        if isinstance(ev, OrderUpdate | OpenOrders):
            kinds |= 2
        elif isinstance(ev, MarkPrice):
            kinds |= 1
    if kinds & 2:
        return "order"
    return "mark" if kinds & 1 else "tick"


_TRIGGER_RANK: Final[dict[Trigger, int]] = {"pulse": 3, "order": 2, "mark": 1}


def _stronger(a: Trigger, b: Trigger) -> Trigger:
    """The trigger that wins when deferred frames are evaluated with a later one."""
    return a if _TRIGGER_RANK.get(a, 0) >= _TRIGGER_RANK.get(b, 0) else b


class AccountCore:
    """One account's state, derived figures and rule state (pure; see the module docstring).

    ``rules`` defaults to no rule (only the built-in ``DataStale``); ``daily`` is the
    config's ``daily`` section (or the engine's own type).
    """

    def __init__(
        self,
        account: str,
        *,
        stale_after: float,
        rules: RuleSet | None = None,
        daily: DailyConfig | None = None,
    ) -> None:
        self.account = account
        self.stale_after = stale_after
        self.market: derived.MarketFigures | None = None
        """Market figures of position rows from reference data (set by the daemon)."""
        self._snapshot: AccountSnapshot = account_state.initial(account)
        self._held: list[PositionUpdate] = []  # repeat pulses not folded in yet (snapshot)
        self.rules: RuleSet = rules if rules is not None else EMPTY_RULES
        self.daily = daily if daily is not None else DailyConfig()
        self.rules_state = RulesState(account, self.rules, self.daily)
        self.first_seen: float | None = None
        self.last_decision: Decision | None = None
        self._dirty: Trigger | None = None  # trigger of deferred frames, None when clean
        self._unterminated = 0
        self._eager = False
        self._last_position_at = -math.inf  # last eager position frame (BURST_GAP)
        self._last_eval_at = 0.0
        self._last_stale = False
        self._figures: Figures | None = None  # cache of figures_at, see there
        self._figures_of: AccountSnapshot | None = None
        self._figures_baseline: float | None = None
        self.on_intent: IntentSink | None = None
        """Called with each action intent as the engine makes it, mid-evaluation (the
        action executor, so that a protective command does not wait for the rest of the
        rules); the decision still lists the intent."""

    @property
    def snapshot(self) -> AccountSnapshot:
        """The account state with every frame handled so far folded in.

        A position frame that repeats its symbol's last pulse
        (:func:`~riskwatch.state.account.repeats`, most frames of a quiet market) is
        held by :meth:`handle` and folded in here, at the first read after it, with the
        other repeats of its burst: one copy of the snapshot's dicts per burst instead
        of one per frame (docs/performance.md). Every reader sees the same state as if
        each frame had been reduced on arrival."""
        if self._held:
            self._snapshot = account_state.repeat_positions(self._snapshot, self._held)
            self._held = []
        return self._snapshot

    @property
    def position_symbols(self) -> Collection[str]:
        """The symbols of the account's positions, without folding held frames in (a
        held repeat is of a symbol already there)."""
        return self._snapshot.positions.keys()

    @property
    def pnl_baseline(self) -> float | None:
        """The daily baseline (equity at the last reset, USD) or None before one."""
        return self.rules_state.daily.baseline

    def handle(self, events: Sequence[Event], now: float) -> HandleResult:
        """Fold the events of one frame (all received at ``now``) into the state, then
        evaluate the rules if the state moved, or defer a position-only frame until the
        balance that closes its pulse (module docstring). Frames flagged as impossible
        are not applied, so they never reach the rules (docs/rules.md)."""
        if self.first_seen is None:
            self.first_seen = now
        fresh: PositionUpdate | None = None  # a position frame known not to repeat
        if len(events) == 1 and not self._eager and type(events[0]) is PositionUpdate:
            fresh = events[0]
            if account_state.repeats(self._snapshot, fresh):
                # Deferred like any position-only frame (below); its reduce waits for
                # the next read of the snapshot, with the rest of the burst.
                self._held.append(fresh)
                if self._dirty is None:
                    self._dirty = trigger_of(events)
                return _DEFERRED
        flags: list[str] = []
        snapshot = start = self.snapshot
        closes = False
        reduce = account_state.reduce
        for ev in events:
            if fresh is not None and ev is fresh:
                result = account_state.reduce_new_position(snapshot, fresh)
            else:
                result = reduce(snapshot, ev)
            snapshot = result.snapshot
            if result.flag is not None:
                flags.append(result.flag)
            if not isinstance(ev, PositionUpdate):
                closes = True
        self._snapshot = snapshot
        changed = snapshot is not start
        if not changed and not (closes and self._dirty is not None):
            return HandleResult(flags=tuple(flags), deferred=self._dirty is not None)
        if not closes:
            if not self._eager:
                # Position-only frame: the pulse's balance frame follows in the same burst.
                if self._dirty is None:
                    self._dirty = trigger_of(events)
                if not flags:
                    return _DEFERRED if changed else _DEFERRED_UNCHANGED
                return HandleResult(flags=tuple(flags), changed=changed, deferred=True)
            self._last_position_at = now
        elif (
            self._eager
            and now - self._last_position_at <= BURST_GAP
            and any(isinstance(ev, BalanceUpdate) for ev in events)
        ):
            # A balance closed a burst of (eagerly evaluated) positions: defer again.
            self._unterminated = 0
            self._eager = False
        trigger = trigger_of(events)
        if self._dirty is not None:
            if any(isinstance(ev, BalanceUpdate) for ev in events):
                self._unterminated = 0
                self._eager = False
            trigger = _stronger(self._dirty, trigger)
            self._dirty = None
        decision = self._evaluate(now, trigger)
        return HandleResult(flags=tuple(flags), changed=changed, decision=decision)

    @property
    def deferred(self) -> bool:
        """True while position frames wait for the balance that closes their pulse."""
        return self._dirty is not None

    def flush(self, now: float) -> Decision | None:
        """Evaluate deferred frames now (the driver saw the burst end); None if none."""
        if self._dirty is None:
            return None
        trigger = self._dirty
        self._dirty = None
        self._unterminated += 1
        if self._unterminated >= EAGER_AFTER:
            self._eager = True
        return self._evaluate(now, trigger)

    def tick(self, now: float) -> Decision:
        """Let time pass with no frame: evaluate deferred frames, or re-evaluate at
        ``now`` (``trigger="tick"``) unless the account is quiet (module docstring)."""
        if self.first_seen is None:
            self.first_seen = now
        flushed = self.flush(now)
        if flushed is not None:
            return flushed
        if not self.tick_due(now):
            return Decision(self.account, now, "tick", self._last_stale)
        return self._evaluate(now, "tick")

    def tick_due(self, now: float) -> bool:
        """False when :meth:`tick` at ``now`` would evaluate nothing and return an empty
        decision: no deferred frames, a quiet account evaluated less than
        ``QUIET_TICK_INTERVAL`` ago, its staleness unchanged (module docstring). A
        driver that ticks many accounts skips those (daemon/ticks.py)."""
        return (
            self.first_seen is None
            or self._dirty is not None
            or self.last_decision is None
            or now - self._last_eval_at >= QUIET_TICK_INTERVAL
            or self.is_data_stale(now) != self._last_stale
            or not self.rules_state.quiet
        )

    def _evaluate(self, now: float, trigger: Trigger) -> Decision:
        figures = self.figures_at(now)
        stale = self.is_data_stale(now)
        decision = engine.evaluate(
            self.rules,
            self.rules_state,
            figures,
            now,
            stale=stale,
            trigger=trigger,
            on_intent=self.on_intent,
        )
        self.last_decision = decision
        self._last_eval_at = now
        self._last_stale = stale
        return decision

    def set_rules(self, rules: RuleSet) -> None:
        """Switch to a reloaded rule set; alert states of rules kept, history kept."""
        self.rules = rules
        self.rules_state.rebind(rules)

    def reset_latch(
        self, *, now: float, rule: str | None = None, symbol: str | None = None
    ) -> Decision:
        """Operator latch reset (see :func:`riskwatch.rules.engine.reset_latch`)."""
        decision = engine.reset_latch(
            self.rules, self.rules_state, now=now, rule=rule, symbol=symbol
        )
        self.last_decision = decision
        return decision

    def alerts(self) -> tuple[engine.Alert, ...]:
        """Pending and firing alerts of the account (for ``/api/alerts``)."""
        return self.rules_state.alerts_view()

    def records(self) -> StateRecords:
        """The rule state to persist (alert states, daily tracker, window history)."""
        return self.rules_state.to_records()

    def daily_key(self) -> tuple[float | None, ...]:
        """The daily tracker's day, baseline and peaks (its record minus the last equity)."""
        return self.rules_state.daily.significant()

    def daily_record(self) -> dict[str, Any]:
        """The daily tracker's record alone (baseline, peaks), saved as it changes."""
        return self.rules_state.daily.to_record()

    def restore(self, records: StateRecords) -> None:
        """Load persisted rule state (at start, before the first frame).

        Raises ``ValueError`` on a malformed record.
        """
        self.rules_state = RulesState.from_records(self.account, self.rules, records, self.daily)

    def figures_at(self, now: float) -> Figures | None:
        """The derived figures at ``now``; None before the account's first pulse.

        Cached per (snapshot, baseline): only ``data_age`` depends on ``now``, so a
        second call on an unchanged account (a scrape, ``/api/state``, a tick) reuses
        the figures and their already-built position rows with ``data_age`` updated.
        """
        snap = self.snapshot
        if snap.last_pulse_at is None and snap.balance is None and not snap.positions:
            return None
        baseline = self.pnl_baseline
        cached = self._figures
        if cached is not None and self._figures_of is snap and self._figures_baseline == baseline:
            last = cached.last_pulse_at
            age = None if last is None else max(0.0, now - last)
            if cached.account.get("data_age") == age:
                return cached
            return cached._replace(account={**cached.account, "data_age": age})
        figures = derived.compute(snap, now, baseline, self.market)
        self._figures = figures
        self._figures_of = snap
        self._figures_baseline = baseline
        return figures

    def current_figures(self) -> Figures | None:
        """The derived figures of the current snapshot without bringing ``data_age`` to a
        new ``now`` (a reader that shows the age computes it from ``last_pulse_at``):
        the figures of the last :meth:`figures_at` while the snapshot and the baseline
        are unchanged, so a scrape copies nothing. None before the first pulse."""
        cached = self._figures
        if (
            cached is not None
            and self._figures_of is self.snapshot
            and self._figures_baseline == self.pnl_baseline
        ):
            return cached
        last = self.snapshot.last_pulse_at
        return self.figures_at(last if last is not None else 0.0)

    def is_stale(self, now: float) -> bool:
        """True when no pulse arrived within ``stale_after`` seconds (or none ever)."""
        last = self.snapshot.last_pulse_at
        return last is None or now - last > self.stale_after

    def is_data_stale(self, now: float) -> bool:
        """Staleness as the rules see it: like :meth:`is_stale`, but before any pulse
        only once ``stale_after`` has passed since the core first saw time."""
        last = self.snapshot.last_pulse_at
        if last is None:
            first = self.first_seen if self.first_seen is not None else now
            return now - first > self.stale_after
        return now - last > self.stale_after

    def describe(self, now: float) -> dict[str, Any]:
        """A JSON-able description for ``/api/state`` (figures, positions, orders, alerts)."""
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
            "alerts": [a.to_dict() for a in self.alerts()],
        }
