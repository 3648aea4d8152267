"""The rule engine: figures in, lifecycle transitions and action intents out (pure).

:func:`evaluate` runs a :class:`~riskwatch.rules.model.RuleSet` over one account's
:class:`~riskwatch.state.derived.Figures` at ``now`` and returns a :class:`Decision`;
all per-account memory lives in a :class:`RulesState` (alert states per
``(rule, symbol)``, window history, daily tracker). Nothing here does I/O, reads a
clock or touches a metric; the caller times the call, persists what changed and
counts (docs/design.md items 2, 3).

When to call it: after every handled frame that changed the account state
(``trigger`` = ``"pulse"`` for position/balance frames, ``"mark"`` for market-data
marks, ``"order"`` for order events), and on a timer (``"tick"``) so that ``for``,
``keep_firing_for`` and time-dependent figures (``data_age``, windows sliding) move
when no data arrives. A tick never records window samples.

Semantics, decided here:

- Account rules see ``figures.account``; position rules run once per row of
  ``figures.positions`` (every symbol the exchange pulses, flat ones included, and
  symbols known only from open orders) with the row's names over the account's.
- A flat symbol is evaluated like any other (``position == 0``, ``notional == 0``), so
  its alerts clear through their own ``when``/``clear_when`` and ``keep_firing_for``.
  A symbol whose row *disappears* (an order-only symbol whose orders are gone) is
  settled at once: pending alerts are cancelled, firing ones resolve without waiting
  for ``keep_firing_for``, latched ones stay latched; its window history is dropped.
  Alert states are kept (with their ``trip_id``) so a trip number is never reused.
- ``pnl_today`` is ``equity`` minus the :class:`~riskwatch.state.daily.DailyTracker`
  baseline, which this engine feeds from every fresh evaluation.
- Window history is recorded only for the ``(name, duration)`` pairs the rules use,
  at every non-tick evaluation, before the expressions run (windows include ``now``).
- Stale data (docs/design.md#precise-points): with ``stale=True`` every rule's state freezes (no
  step, no tick, no window sample, no intent) and the built-in ``DataStale`` alert
  (critical, account scope, no ``for``) fires; it resolves at the first evaluation
  with ``stale=False``.
- Intents: a rule with actions that goes ``FIRING`` yields one
  :class:`ActionIntent` for that trip, unless the rule is in shadow mode. With
  ``confirm: pulse`` (the default) it waits until the figures are exchange-confirmed
  (no mark newer than its pulse, ``Figures.exchange_confirmed``): a breach first seen
  in a mark recomputation is *owed* and emitted at the first later evaluation whose
  figures are confirmed and at which ``when`` still holds; it is forgotten if the
  alert leaves ``FIRING`` before. ``confirm: mark`` acts at once. A latched rule stays
  firing, so it yields no new trip and no new intent until :func:`reset_latch`.
- Shadow rules produce transitions (``shadow=True``) and alerts, never intents.

Cost: about one closure call per (rule, symbol), no allocation for an inactive alert
whose condition does not hold, one small dict per symbol when position rules read
account names. See ``bench/bench_rules.py``. A symbol is skipped altogether, its row
not even built, when the figures say what its row is computed from
(``PositionRows.inputs`` and ``shared_inputs``, plus the account names position rules
read) and all that equals its last evaluation, at which every position rule was
inactive and did not hold: the expressions are pure functions of those values, so
they would not hold again. The keys are built only on a pulse whose shared inputs
equal the last pulse's (a pulse that moves equity moves every row: it builds none,
which also keeps them off the path of the pulse that trips a rule). Position rules
with windows (whose values move with time) turn the skip off.
``tests/unit/rules/test_engine_skip.py`` checks that decisions are those of a full
evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final, Literal

from riskwatch.rules import lifecycle
from riskwatch.rules.expr import NO_WINDOWS, WindowSource
from riskwatch.rules.expr.compile import Evaluator
from riskwatch.rules.lifecycle import INACTIVE, AlertState, LifecycleParams, State, TransitionReason
from riskwatch.rules.model import DATA_STALE_RULE, Action, Confirm, Rule, RuleSet, Severity
from riskwatch.rules.templates import format_duration
from riskwatch.state.catalogue import POSITION_NAMES
from riskwatch.state.daily import DailyConfig, DailyTracker
from riskwatch.state.derived import Figures
from riskwatch.state.windows import Windows

__all__ = [
    "DATA_STALE_RULE",
    "ActionIntent",
    "Alert",
    "AlertTransition",
    "Decision",
    "RulesState",
    "StateRecords",
    "Trigger",
    "evaluate",
    "reset_latch",
]

Trigger = Literal["pulse", "mark", "order", "tick", "reset"]
"""What caused an evaluation; ``"reset"`` marks the decisions of :func:`reset_latch`."""

_FIRING: Final = State.FIRING
_INACTIVE: Final = State.INACTIVE
_PENDING: Final = State.PENDING
_STALE_PARAMS: Final = LifecycleParams()
_SEVERITY_RANK: Final = {"critical": 0, "warning": 1, "info": 2}
_POSITION_ONLY: Final = frozenset(POSITION_NAMES)
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_OWED_KEY: Final = "owed_trip"
_RECORDS_VERSION: Final = 1


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One lifecycle change of one alert, ready to persist, export and notify.

    ``symbol`` is None at account scope. ``summary``/``description`` are rendered
    with the figures of the evaluation that caused the change (``""`` when the rule
    has none). ``values``: the names the rule reads, its window values (keyed like
    ``drawdown(equity, 24h)``) and ``value``, at that evaluation. ``record``: the alert
    state to store (``Store.save_alert(rule, account, symbol, record, now)``).
    """

    rule: str
    account: str
    symbol: str | None
    reason: TransitionReason
    prev: State
    state: State
    at: float
    trip_id: int
    severity: Severity
    labels: Mapping[str, str]
    summary: str
    description: str
    values: Mapping[str, float | None]
    shadow: bool
    latched: bool
    record: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ActionIntent:
    """A rule went ``FIRING`` and its actions should run once for ``trip_id``.

    ``exchange_confirmed``: the figures behind it rest on the exchange's own pulse
    numbers (always True for ``confirm: pulse``; may be False for ``confirm: mark``).
    The planner derives client order ids from (rule, account, symbol, trip_id).
    """

    rule: str
    account: str
    symbol: str | None
    actions: tuple[Action, ...]
    trip_id: int
    confirm: Confirm
    exchange_confirmed: bool
    severity: Severity
    at: float
    trigger: Trigger


IntentSink = Callable[[ActionIntent], None]
"""Receives an action intent as soon as the engine makes it (``evaluate(on_intent=)``)."""


@dataclass(frozen=True, slots=True)
class Alert:
    """A pending or firing alert, for ``/api/alerts`` (times Unix seconds)."""

    rule: str
    account: str
    symbol: str | None
    state: State
    severity: Severity
    labels: Mapping[str, str]
    summary: str
    description: str
    active_since: float | None
    fired_at: float | None
    trip_id: int
    latched: bool
    shadow: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``state`` as ``"pending"``/``"firing"``."""
        return {
            "rule": self.rule,
            "account": self.account,
            "symbol": self.symbol,
            "state": self.state.name.lower(),
            "severity": self.severity,
            "labels": dict(self.labels),
            "summary": self.summary,
            "description": self.description,
            "active_since": self.active_since,
            "fired_at": self.fired_at if self.state is _FIRING else None,
            "trip_id": self.trip_id,
            "latched": self.latched,
            "shadow": self.shadow,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """What one evaluation decided for one account.

    ``alerts``: every pending or firing alert of the account after the evaluation,
    most severe first (the same tuple object while nothing changed).
    """

    account: str
    at: float
    trigger: Trigger
    stale: bool
    transitions: tuple[AlertTransition, ...] = ()
    intents: tuple[ActionIntent, ...] = ()
    alerts: tuple[Alert, ...] = ()


@dataclass(frozen=True, slots=True)
class StateRecords:
    """Plain-data copy of a :class:`RulesState` for the state database.

    ``alerts``: ``(rule, symbol or None, record)`` for ``Store.save_alerts``;
    ``daily`` for ``Store.save_daily``; ``windows`` for ``Store.save_windows``.
    """

    alerts: tuple[tuple[str, str | None, dict[str, Any]], ...] = ()
    daily: dict[str, Any] | None = None
    windows: dict[str, Any] | None = None


# --------------------------------------------------------------------------- state


class _Entry:
    """One rule as the evaluation loop needs it (precomputed once per rule set)."""

    __slots__ = ("actions", "clear", "name", "params", "rule", "states", "when")

    def __init__(self, rule: Rule, states: dict[str, AlertState]) -> None:
        self.rule = rule
        self.name = rule.name
        self.when: Evaluator = rule.when.evaluate
        self.clear: Evaluator | None = (
            rule.clear_when.evaluate if rule.clear_when is not None else None
        )
        self.params = rule.params
        self.actions = bool(rule.actions) and not rule.shadow
        self.states = states


class RulesState:
    """All rule memory of one account; see the module docstring. Not thread-safe.

    ``daily`` is the trading-day definition for ``pnl_today`` (default 00:00 UTC,
    baseline equity). Build with the rule set it will be evaluated against; a
    different rule set passed to :func:`evaluate` rebinds it (alert states of rules
    still present, daily figures and window history are kept).
    """

    def __init__(self, account: str, rules: RuleSet, daily: DailyConfig | None = None) -> None:
        self.account = account
        self.daily = DailyTracker(daily or DailyConfig())
        self.alerts: dict[str, dict[str, AlertState]] = {}
        self.owed: dict[tuple[str, str], int] = {}
        self.windows = Windows(rules.window_specs, rules.window_functions)
        self.last_figures: Figures | None = None
        self._active: dict[tuple[str, str], Alert] = {}
        self._view: tuple[Alert, ...] = ()
        self._view_dirty = False
        self._symbols: tuple[str, ...] = ()
        # symbol → inputs of its row when every position rule was inactive and not
        # holding there; valid while the shared inputs are equal (see _positions).
        self._settled: dict[str, object] = {}
        self._settled_shared: object = None
        self._bound: dict[str, WindowSource] = {}
        self.changes = 0
        """Counts the changes of what :meth:`gauge_rows` shows (transitions, rebinds):
        equal counts of the same object mean equal rows (the scrape's cache key)."""
        self.rules = rules
        self._bind(rules)

    # -- binding

    def _bind(self, rules: RuleSet) -> None:
        self.rules = rules
        for r in rules:
            # A reload may change a rule's scope: its old keys ("" vs symbols) are void.
            states = self.alerts.get(r.name)
            if states:
                for sym in [k for k in states if bool(k) != (r.scope == "position")]:
                    del states[sym]
                    self.owed.pop((r.name, sym), None)
                    self._active.pop((r.name, sym), None)
        self._account_entries = tuple(
            _Entry(r, self.alerts.setdefault(r.name, {})) for r in rules.account_rules
        )
        self._position_entries = tuple(
            _Entry(r, self.alerts.setdefault(r.name, {})) for r in rules.position_rules
        )
        self._entries = {e.name: e for e in (*self._account_entries, *self._position_entries)}
        self._account_loop = tuple((e.when, e.states, e) for e in self._account_entries)
        self._position_loop = tuple((e.when, e.states, e) for e in self._position_entries)
        self._position_reads_windows = any(r.windows for r in rules.position_rules)
        pos_window_names = {
            w.name for r in rules.position_rules for w in r.windows if w.name in _POSITION_ONLY
        }
        self._push_rows = bool(pos_window_names)
        self._window_account_names = (
            frozenset(w.name for r in rules.position_rules for w in r.windows) - _POSITION_ONLY
        )
        self._bound = {}
        self._settled.clear()  # the rules changed: every symbol is evaluated again
        self.alerts.setdefault(DATA_STALE_RULE, {})
        # The alert view holds only rules that exist now (and DataStale).
        self._active = {
            key: alert
            for key, alert in self._active.items()
            if key[0] in self._entries or key[0] == DATA_STALE_RULE
        }
        for name, states in self.alerts.items():
            if name not in self._entries and name != DATA_STALE_RULE:
                continue
            for sym, st in states.items():
                if st.state is not _INACTIVE and (name, sym) not in self._active:
                    self._active[(name, sym)] = self._alert_view(name, sym, st, "", "")
        self._view_dirty = True
        self.changes += 1

    def rebind(self, rules: RuleSet) -> None:
        """Switch to another rule set (a reload), keeping states, daily figures, history."""
        if rules is self.rules:
            return
        snapshot = self.windows.snapshot(max_records=1000)
        self.windows = Windows(rules.window_specs, rules.window_functions)
        self.windows.restore(snapshot)
        self._bind(rules)

    def _source(self, symbol: str) -> WindowSource:
        src = self._bound.get(symbol)
        if src is None:
            src = self._bound[symbol] = self.windows.bind(symbol, self._window_account_names)
        return src

    # -- views

    @property
    def quiet(self) -> bool:
        """True when no alert is pending or firing and no action is owed: only the
        passing of time through conditions can change anything at a tick."""
        return not self._active and not self.owed

    def alerts_view(self) -> tuple[Alert, ...]:
        """Pending and firing alerts, most severe first, then by rule and symbol."""
        if self._view_dirty:
            self._view = tuple(
                sorted(
                    self._active.values(),
                    key=lambda a: (_SEVERITY_RANK[a.severity], a.rule, a.symbol or ""),
                )
            )
            self._view_dirty = False
        return self._view

    def gauge_rows(self) -> Iterator[tuple[str, str, Severity, int, bool | None]]:
        """``(rule, symbol, severity, state value, latched)`` of every alert that the
        ``riskwatch_alert_state`` gauge shows: each account-scope rule of the current set
        (inactive until it first holds) and ``DataStale``, and every position alert
        evaluated as holding at least once (kept at 0 once inactive). ``latched`` is
        None for a rule that does not latch (it has no ``riskwatch_latched`` series)."""
        for entry in self._account_entries:
            st = entry.states.get("", INACTIVE)
            latched = st.latched if entry.params.latch else None
            yield entry.name, "", entry.rule.severity, st.state.value, latched
        st = self.alerts[DATA_STALE_RULE].get("", INACTIVE)
        yield DATA_STALE_RULE, "", "critical", st.state.value, None
        for entry in self._position_entries:
            severity = entry.rule.severity
            latches = entry.params.latch
            for sym, st in entry.states.items():
                yield entry.name, sym, severity, st.state.value, st.latched if latches else None

    def state_of(self, rule: str, symbol: str | None = None) -> AlertState:
        """The lifecycle state of ``(rule, symbol)`` (inactive if never evaluated)."""
        return self.alerts.get(rule, {}).get(symbol or "", INACTIVE)

    def _alert_view(
        self, name: str, sym: str, st: AlertState, summary: str, description: str
    ) -> Alert:
        rule = self.rules.by_name.get(name)
        return Alert(
            rule=name,
            account=self.account,
            symbol=sym or None,
            state=st.state,
            severity=rule.severity if rule is not None else "critical",
            labels=rule.labels if rule is not None else _EMPTY,
            summary=summary,
            description=description,
            active_since=st.active_since,
            fired_at=st.fired_at,
            trip_id=st.trip_id,
            latched=st.latched,
            shadow=rule.shadow if rule is not None else False,
        )

    # -- persistence

    def to_records(self) -> StateRecords:
        """Everything a restart needs: alert states (pending timers, trip ids, latches,
        owed actions), the daily tracker, and a downsampled window history."""
        alerts: list[tuple[str, str | None, dict[str, Any]]] = []
        for name, states in self.alerts.items():
            for sym, st in states.items():
                alerts.append((name, sym or None, self._record(name, sym, st)))
        return StateRecords(
            alerts=tuple(alerts),
            daily=self.daily.to_record(),
            windows=self.windows.snapshot(),
        )

    def _record(self, name: str, sym: str, st: AlertState) -> dict[str, Any]:
        record = st.to_record()
        owed = self.owed.get((name, sym))
        if owed is not None:
            record[_OWED_KEY] = owed
        return record

    @classmethod
    def from_records(
        cls,
        account: str,
        rules: RuleSet,
        records: StateRecords,
        daily: DailyConfig | None = None,
    ) -> RulesState:
        """Rebuild from :meth:`to_records` output (or rows loaded from the store).

        Raises ``ValueError`` on a malformed record. A restored pending alert keeps its
        ``for`` start time and fires only at a fresh evaluation at which its condition
        holds and ``for`` has elapsed since that start: never earlier.
        """
        state = cls(account, rules, daily)
        if records.daily is not None:
            state.daily = DailyTracker.from_record(daily or DailyConfig(), records.daily)
        if records.windows is not None:
            state.windows.restore(records.windows)
        for name, symbol, record in records.alerts:
            st = AlertState.from_record(record)
            sym = symbol or ""
            state.alerts.setdefault(name, {})[sym] = st
            owed = record.get(_OWED_KEY)
            if isinstance(owed, int) and not isinstance(owed, bool) and st.state is _FIRING:
                state.owed[(name, sym)] = owed
            elif st.state is _FIRING and not st.latch_reported and _acts(rules, name):
                # A kill may have cut this trip's actions short (after the FIRING save,
                # before or between the audit log's intents): offer the trip's intent
                # again at the first confirmed evaluation where `when` still holds. The
                # executor plans only the (action, symbol) pairs the audit log lacks.
                state.owed[(name, sym)] = st.trip_id
        state._bind(rules)
        return state


# --------------------------------------------------------------------------- evaluation


class _Run:
    """Per-evaluation context: accumulates transitions and intents (lazily)."""

    __slots__ = ("confirmed", "intents", "now", "on_intent", "state", "transitions", "trigger")

    def __init__(
        self,
        state: RulesState,
        now: float,
        trigger: Trigger,
        confirmed: bool,
        on_intent: IntentSink | None = None,
    ) -> None:
        self.state = state
        self.on_intent = on_intent
        self.now = now
        self.trigger: Trigger = trigger
        self.confirmed = confirmed
        self.transitions: list[AlertTransition] | None = None
        self.intents: list[ActionIntent] | None = None

    def decision(self, stale: bool) -> Decision:
        state = self.state
        return Decision(
            account=state.account,
            at=self.now,
            trigger=self.trigger,
            stale=stale,
            transitions=tuple(self.transitions) if self.transitions else (),
            intents=tuple(self.intents) if self.intents else (),
            alerts=state.alerts_view(),
        )

    def intent(self, entry: _Entry, sym: str, trip_id: int) -> None:
        rule = entry.rule
        if self.intents is None:
            self.intents = []
        self.intents.append(
            ActionIntent(
                rule=rule.name,
                account=self.state.account,
                symbol=sym or None,
                actions=rule.actions,
                trip_id=trip_id,
                confirm=rule.confirm,
                exchange_confirmed=self.confirmed,
                severity=rule.severity,
                at=self.now,
                trigger=self.trigger,
            )
        )
        if self.on_intent is not None:
            # Handed over at once, before the remaining rules are evaluated: the intent
            # is final (the lifecycle step that produced it is done) and a protective
            # command should not wait for the rest of the pack (docs/performance.md).
            self.on_intent(self.intents[-1])

    def transition(
        self,
        entry: _Entry,
        sym: str,
        new: AlertState,
        tr: lifecycle.Transition,
        env: Mapping[str, float | None] | None,
        src: WindowSource,
    ) -> None:
        state = self.state
        rule = entry.rule
        now = self.now
        values: dict[str, float | None] = {}
        if env is not None:
            for name in sorted(rule.names):
                values[name] = env.get(name)
            for w in sorted(rule.windows):
                label = f"{w.func}({w.name}, {format_duration(w.seconds)})"
                values[label] = src.window(w.func, w.name, w.seconds, now)
            if rule.value is not None:
                v = rule.value(env, src, now)
                values["value"] = None if v is None or v != v else float(v)
        context = {
            "account": state.account,
            "symbol": sym,
            "rule": rule.name,
            "severity": rule.severity,
        }
        render: Mapping[str, float | None] = values
        if env is not None and (rule.summary or rule.description):
            render = {**env, **values}
        summary = rule.summary.render(render, context) if rule.summary else ""
        description = rule.description.render(render, context) if rule.description else ""
        key = (rule.name, sym)
        pay = False
        if new.state is not _FIRING:
            state.owed.pop(key, None)
        elif tr.reason is TransitionReason.FIRING and entry.actions:
            if rule.confirm == "mark" or self.confirmed:
                pay = True
            else:
                state.owed[key] = tr.trip_id
        if self.transitions is None:
            self.transitions = []
        self.transitions.append(
            AlertTransition(
                rule=rule.name,
                account=state.account,
                symbol=sym or None,
                reason=tr.reason,
                prev=tr.prev,
                state=tr.state,
                at=tr.at,
                trip_id=tr.trip_id,
                severity=rule.severity,
                labels=rule.labels,
                summary=summary,
                description=description,
                values=MappingProxyType(values),
                shadow=rule.shadow,
                latched=new.latched,
                record=MappingProxyType(state._record(rule.name, sym, new)),
            )
        )
        if new.state is _INACTIVE:
            state._active.pop(key, None)
        else:
            state._active[key] = state._alert_view(rule.name, sym, new, summary, description)
        state._view_dirty = True
        state.changes += 1
        if pay:
            self.intent(entry, sym, tr.trip_id)


def evaluate(
    rules: RuleSet,
    state: RulesState,
    figures: Figures | None,
    now: float,
    *,
    stale: bool,
    trigger: Trigger,
    on_intent: IntentSink | None = None,
) -> Decision:
    """Evaluate every rule for ``state``'s account at ``now``; see the module docstring.

    ``figures`` are the account's figures at ``now`` (None before any data: only time
    passes, through :func:`riskwatch.rules.lifecycle.tick`). ``stale`` says whether
    the account's data is older than ``stale_after``. Mutates ``state``.

    ``on_intent``, if given, is called with each action intent as soon as it is made,
    during the evaluation; the decision lists it too.
    """
    if rules is not state.rules:
        state.rebind(rules)
    confirmed = figures.exchange_confirmed if figures is not None else False
    run = _Run(state, now, trigger, confirmed, on_intent)
    _data_stale(run, figures, stale)
    if stale:
        return run.decision(True)
    if figures is None:
        _tick_all(run)
        return run.decision(False)
    state.last_figures = figures
    account = figures.account
    windows = state.windows
    # Daily figures: pnl_today against the tracker's baseline.
    equity = account.get("equity")
    deposit = account.get("deposit")
    realised = account.get("realised_pnl")
    funding = account.get("net_funding")
    balance = (
        deposit + realised + funding
        if deposit is not None and realised is not None and funding is not None
        else None
    )
    if equity is not None or balance is not None:
        pnl = state.daily.observe(equity, balance, now).pnl_today
        if account.get("pnl_today") != pnl:
            account = dict(account)
            account["pnl_today"] = pnl
    record = trigger != "tick" and bool(rules.window_specs)
    if record:
        windows.push("", account, now)

    owed = state.owed
    step = lifecycle.step
    for when, states, entry in state._account_loop:
        holds = when(account, windows, now)
        if holds is not True:
            if not states:
                continue
            st = states.get("")
            if st is None or st.state is _INACTIVE:
                continue
        else:
            st = states.get("") or INACTIVE
        clear = entry.clear
        clears = clear(account, windows, now) if clear is not None and st.state is _FIRING else None
        new, tr = step(st, holds, clears, now, entry.params)
        states[""] = new
        if tr is not None:
            run.transition(entry, "", new, tr, account, windows)
        elif owed and holds is True:
            _pay_owed(run, entry, "", new)

    if state._position_entries:
        _positions(run, rules, figures, account, record)
    return run.decision(False)


def _positions(
    run: _Run,
    rules: RuleSet,
    figures: Figures,
    account: Mapping[str, float | None],
    record: bool,
) -> None:
    state = run.state
    now = run.now
    positions = figures.positions
    symbols = tuple(positions)
    if symbols != state._symbols:
        gone = set(state._symbols) - set(symbols)
        if gone:
            _settle_vanished(run, gone)
        state._symbols = symbols
    extra_names = rules.position_account_names
    extra = {name: account.get(name) for name in extra_names} if extra_names else None
    windows = state.windows
    push_rows = record and state._push_rows
    use_windows = state._position_reads_windows
    owed = state.owed
    step = lifecycle.step
    loop = state._position_loop
    # Symbols whose inputs did not move are skipped (module docstring, "Cost"): only
    # without windows (whose values move with time) and for rows whose rules were all
    # inactive and not holding at their last evaluation.
    inputs_of = getattr(positions, "inputs", None) if not (use_windows or push_rows) else None
    settled = state._settled
    if inputs_of is not None:
        shared = (
            getattr(positions, "shared_inputs", None),
            tuple(extra.values()) if extra is not None else (),
        )
        if shared != state._settled_shared:
            # Every row moved: no key to compare, and none is built for the next pulse
            # (module docstring, "Cost").
            settled.clear()
            state._settled_shared = shared
            inputs_of = None
    elif settled:
        settled.clear()
        state._settled_shared = None
    for sym in symbols:
        key = None
        if inputs_of is not None:
            key = inputs_of(sym)
            if settled.get(sym) == key:
                # Keep the newer of two equal keys: the older one holds the numbers of
                # an earlier pulse, which would otherwise stay alive beside the current.
                settled[sym] = key
                continue
        quiet = True
        row = positions[sym]
        env: Mapping[str, float | None] = {**row, **extra} if extra is not None else row
        if push_rows:
            windows.push(sym, row, now)
        src = state._source(sym) if use_windows else NO_WINDOWS
        for when, states, entry in loop:
            holds = when(env, src, now)
            if holds is not True:
                # Fast path: an inactive alert whose condition does not hold.
                if not states:
                    continue
                st = states.get(sym)
                if st is None or st.state is _INACTIVE:
                    continue
            else:
                st = states.get(sym) or INACTIVE
            quiet = False
            clear = entry.clear
            clears = clear(env, src, now) if clear is not None and st.state is _FIRING else None
            new, tr = step(st, holds, clears, now, entry.params)
            states[sym] = new
            if tr is not None:
                run.transition(entry, sym, new, tr, env, src)
            elif owed and holds is True:
                _pay_owed(run, entry, sym, new)
        if key is not None:
            if quiet:
                settled[sym] = key
            else:
                settled.pop(sym, None)


def _acts(rules: RuleSet, name: str) -> bool:
    """True when rule ``name`` exists, has actions and is not in shadow mode."""
    rule = rules.by_name.get(name)
    return rule is not None and bool(rule.actions) and not rule.shadow


def _pay_owed(run: _Run, entry: _Entry, sym: str, st: AlertState) -> None:
    """Emit an owed intent once the figures are exchange-confirmed (module docstring)."""
    key = (entry.name, sym)
    trip = run.state.owed.get(key)
    if trip is None or not run.confirmed:
        return
    del run.state.owed[key]
    if st.state is _FIRING and st.trip_id == trip:
        run.intent(entry, sym, trip)


def _settle_vanished(run: _Run, gone: set[str]) -> None:
    """Symbols whose row disappeared: cancel pending, resolve firing, keep latches."""
    state = run.state
    for entry in state._position_entries:
        quick = replace(entry.params, keep_firing_for=0.0, has_clear_when=False)
        for sym in gone:
            st = entry.states.get(sym)
            if st is None or st.state is _INACTIVE:
                continue
            new, tr = lifecycle.step(st, False, None, run.now, quick)
            entry.states[sym] = new
            state.owed.pop((entry.name, sym), None)
            if tr is not None:
                run.transition(entry, sym, new, tr, None, NO_WINDOWS)
    for sym in gone:
        state.windows.drop(sym)
        state._bound.pop(sym, None)
        state._settled.pop(sym, None)


def _tick_all(run: _Run) -> None:
    """No figures at all: let time pass for every pending or firing alert."""
    state = run.state
    for entry in (*state._account_entries, *state._position_entries):
        for sym, st in list(entry.states.items()):
            if st.state is _INACTIVE:
                continue
            new, tr = lifecycle.tick(st, run.now, entry.params)
            entry.states[sym] = new
            if tr is not None:
                run.transition(entry, sym, new, tr, None, NO_WINDOWS)


def _data_stale(run: _Run, figures: Figures | None, stale: bool) -> None:
    """The built-in ``DataStale`` alert: fires while stale, resolves when fresh."""
    state = run.state
    states = state.alerts[DATA_STALE_RULE]
    st = states.get("", INACTIVE)
    if not stale and st.state is _INACTIVE:
        return
    new, tr = lifecycle.step(st, stale, None, run.now, _STALE_PARAMS)
    states[""] = new
    if tr is None:
        return
    age = figures.account.get("data_age") if figures is not None else None
    if stale:
        if age is None or math.isinf(age):
            summary = f"no data from the exchange for account {state.account}"
        else:
            summary = (
                f"data from the exchange is stale on {state.account}: "
                f"last pulse {format_duration(age)} ago"
            )
    else:
        summary = f"fresh data from the exchange again on {state.account}"
    description = "rules are frozen while the data is stale: nothing fires, resolves or acts"
    if run.transitions is None:
        run.transitions = []
    run.transitions.append(
        AlertTransition(
            rule=DATA_STALE_RULE,
            account=state.account,
            symbol=None,
            reason=tr.reason,
            prev=tr.prev,
            state=tr.state,
            at=tr.at,
            trip_id=tr.trip_id,
            severity="critical",
            labels=_EMPTY,
            summary=summary,
            description=description,
            values=MappingProxyType({"data_age": age}),
            shadow=False,
            latched=False,
            record=MappingProxyType(new.to_record()),
        )
    )
    key = (DATA_STALE_RULE, "")
    if new.state is _INACTIVE:
        state._active.pop(key, None)
    else:
        state._active[key] = state._alert_view(DATA_STALE_RULE, "", new, summary, description)
    state._view_dirty = True
    state.changes += 1


def reset_latch(
    rules: RuleSet,
    state: RulesState,
    *,
    now: float,
    rule: str | None = None,
    symbol: str | None = None,
) -> Decision:
    """Operator reset (``POST /api/latches/reset``): resolve matching latched alerts.

    ``rule=None`` matches every rule of the account; ``symbol=None`` every symbol and
    the account scope. Each reset yields a ``LATCH_RESET`` transition; if the condition
    still holds, the next evaluation starts a new trip (and new intents).
    """
    if rules is not state.rules:
        state.rebind(rules)
    run = _Run(state, now, "reset", False)
    for entry in (*state._account_entries, *state._position_entries):
        if rule is not None and entry.name != rule:
            continue
        for sym, st in list(entry.states.items()):
            if symbol is not None and sym != symbol:
                continue
            new, tr = lifecycle.reset_latch(st, now)
            entry.states[sym] = new
            if tr is not None:
                state.owed.pop((entry.name, sym), None)
                run.transition(entry, sym, new, tr, _last_env(state, entry, sym), NO_WINDOWS)
    return run.decision(False)


def _last_env(state: RulesState, entry: _Entry, sym: str) -> Mapping[str, float | None] | None:
    """The figures of the last fresh evaluation for ``(rule, sym)``, for rendering."""
    figures = state.last_figures
    if figures is None:
        return None
    if not sym:
        return figures.account
    if sym not in figures.positions:
        return None
    return {**figures.account, **figures.positions[sym]}
