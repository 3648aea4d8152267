"""``riskwatch test TESTS.yaml…``: rule unit tests, in the manner of ``promtool test rules``.

A test file names rule files (relative to itself, globs allowed), and holds test
cases. Each case feeds the rules either *figure series* or *raw exchange frames*, and
states which alerts must be pending or firing at given times and which actions the
rules must have asked for by then::

    rule_files: [../margin.yaml]
    evaluation_interval: 1s        # default 1s
    stale_after: 5s                # default 5s
    daily: {reset: "00:00", tz: UTC, baseline: equity}   # optional
    tests:
      - name: warning after 10s above 80 %
        interval: 1s               # spacing of series samples; default evaluation_interval
        start: 2026-01-05T00:00:00Z   # optional; Unix seconds or RFC 3339; default 0
        input_series:
          - series: margin_usage
            values: 0.5 0.85x15 0.6x5
          - series: effective_leverage{symbol="BTC-USD"}
            values: 4 12x10
        alert_rule_test:
          - eval_time: 11s
            alertname: MarginUsageHigh
            exp_alerts: [{state: firing}]
        action_test:
          - eval_time: 20s
            rule: MarginUsageCritical
            exp_actions: [{action: cancel_all_orders, at: 3s}]

Series values use promtool's expanding notation: ``a+bxn`` is ``a, a+b, …, a+n·b``
(n+1 values), ``a-bxn`` likewise downwards, ``axn`` is ``a`` n+1 times, ``_`` is a
missing value and ``_xn`` is n missing values. A series name is an account-scope name
(``margin_usage``) or a position-scope name with its symbol
(``notional{symbol="BTC-USD"}``). A symbol's position row exists while at least one of
its series still has samples; an account name without a series is missing.

Series drive the real engine (:func:`riskwatch.rules.engine.evaluate`) with
:class:`~riskwatch.state.derived.Figures` built from the samples; ``equity`` fed as a
series goes through the daily tracker, so ``pnl_today`` follows the ``daily`` config
(give ``pnl_today`` directly, without ``equity``, to set it by hand). With a
``data_age`` series, the account is stale while ``data_age > stale_after``.

Frames (``input_frames: [{at: 2s, source: trade|mds, frame: '<JSON text>'}]``) drive the
real :class:`~riskwatch.pipeline.AccountCore` through the real session and decoders,
with ticks at every evaluation interval, exactly as the daemon and ``replay`` do; the
rules' intents go through the daemon's action book (riskwatch/offline/actions.py) in
the file's ``actions:`` config (the config file's keys: ``mode``,
``max_per_account_per_hour``, ``kill_switch``, …; dry-run by default), and the test's
trade frames are the exchange's answers to its commands.

Checks: ``exp_alerts`` is the exact set of pending/firing alerts of ``alertname`` at
``eval_time`` (items ``{state: pending|firing, symbol: S}``; empty means none).
``exp_actions`` is the exact list of actions ``rule`` asked for from the start up to
``eval_time`` (items ``{action: KIND, target: T, symbol: S, at: DURATION}``; ``target``
and ``at`` are checked when given). An item with ``outcome: sent|dry_run|refused|
confirmed|failed`` (and optionally ``code: CIRCUIT_BREAKER_OPEN`` or another reason
code) instead checks that the action book did that with the action by then (frame
cases). A failing check prints what was expected, what
happened, and the rule's timeline. Exit status: 0 when every check passes, 1 when any
fails or a file has a problem (printed as ``FILE:LINE:COL: message``).
"""

from __future__ import annotations

import glob
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Final, TextIO

from riskwatch.config import ActionsConfig, read_actions, read_daily
from riskwatch.durations import Duration
from riskwatch.errors import Problem
from riskwatch.model import Event, MarkPrice
from riskwatch.offline.actions import SHOWN, OfflineActions
from riskwatch.offline.timeline import (
    Entry,
    entries_of,
    entry_of_event,
    format_lines,
    format_time,
)
from riskwatch.pipeline import AccountCore
from riskwatch.qfex.schemas import decode_mds
from riskwatch.rules import engine
from riskwatch.rules.load import check_rule_files
from riskwatch.rules.model import DATA_STALE_RULE, RuleSet
from riskwatch.state.catalogue import ACCOUNT_NAMES, POSITION_NAMES
from riskwatch.state.daily import DailyConfig
from riskwatch.state.derived import Figures, Row
from riskwatch.yamlsrc import (
    Node,
    Problems,
    Reader,
    Scalar,
    did_you_mean,
    parse,
)

__all__ = [
    "CaseResult",
    "TestCase",
    "TestFile",
    "load_test_file",
    "parse_values",
    "run_case",
    "run_tests",
]

_NUMBER: Final = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_TERM: Final = re.compile(
    rf"(?P<a>[+-]?(?:{_NUMBER}|inf))(?:(?P<op>[+-])(?P<b>{_NUMBER}))?(?:x(?P<n>\d+))?"
)
_MISSING: Final = re.compile(r"_(?:x(?P<n>\d+))?")
_SERIES: Final = re.compile(r'(?P<name>[a-z_]+)(?:\{symbol="(?P<symbol>[^"]*)"\})?')
_SYMBOL: Final = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}")
_MAX_SAMPLES: Final = 1_000_000
_EPS: Final = 1e-9
_DEFAULT_ACCOUNT: Final = "test"

SeriesValue = float | None


# --------------------------------------------------------------------------- notation


def parse_values(text: str) -> tuple[list[SeriesValue], list[tuple[int, str]]]:
    """Expand promtool's notation (module docstring) into samples (None = missing).

    Returns ``(samples, problems)``: ``problems`` are ``(offset in text, message)`` for
    bad terms; the samples are meaningful only when there is none.
    """
    out: list[SeriesValue] = []
    problems: list[tuple[int, str]] = []
    for m in re.finditer(r"\S+", text):
        term, offset = m.group(), m.start()
        miss = _MISSING.fullmatch(term)
        if miss is not None:
            out.extend([None] * (int(miss["n"]) if miss["n"] else 1))
            continue
        t = _TERM.fullmatch(term)
        if t is None:
            problems.append(
                (
                    offset,
                    f"invalid sample '{term}': use a number, a+bxn, a-bxn, axn, _ or _xn "
                    "(e.g. 0.5 0.9x10 1+0.1x5 _)",
                )
            )
            continue
        a = float(t["a"])
        n = int(t["n"]) if t["n"] else 0
        b = float(t["b"]) if t["b"] else 0.0
        if t["op"] == "-":
            b = -b
        if len(out) + n + 1 > _MAX_SAMPLES:
            problems.append((offset, f"too many samples: at most {_MAX_SAMPLES} per series"))
            break
        # a + k·b to 12 significant digits: 1+0.1x5 ends at 1.5, not 1.5000000000000002.
        out.extend(a if k == 0 else float(f"{a + k * b:.12g}") for k in range(n + 1))
    if not out and not problems:
        problems.append((0, "expected at least one sample"))
    return out, problems


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class SeriesInput:
    """One input series: an account name (``symbol`` None) or a symbol's position name."""

    name: str
    symbol: str | None
    values: tuple[SeriesValue, ...]


@dataclass(frozen=True, slots=True)
class FrameInput:
    """One raw exchange frame, received ``at`` seconds after the case's start."""

    at: float
    source: str
    frame: str


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    """An alert expected at a check: ``state`` is ``pending`` or ``firing``."""

    state: str
    symbol: str | None


@dataclass(frozen=True, slots=True)
class AlertCheck:
    """``exp_alerts`` of ``alertname`` at ``eval_time`` (seconds after start)."""

    eval_time: float
    alertname: str
    expected: tuple[ExpectedAlert, ...]
    where: Problem


@dataclass(frozen=True, slots=True)
class ExpectedAction:
    """An action expected by a check; ``target``/``at`` None mean "any".

    With ``outcome``, what the action book did with it instead (``sent``, ``dry_run``,
    ``refused``, ``confirmed``, ``failed``), and ``code`` the reason code it gave.
    """

    action: str
    symbol: str | None
    target: str | None
    at: float | None
    outcome: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class ActionCheck:
    """``exp_actions`` of ``rule`` from the start up to ``eval_time``."""

    eval_time: float
    rule: str
    expected: tuple[ExpectedAction, ...]
    where: Problem


@dataclass(frozen=True, slots=True)
class TestCase:
    """One test case of a file (see the module docstring)."""

    name: str
    interval: float
    start: float
    account: str
    series: tuple[SeriesInput, ...] = ()
    frames: tuple[FrameInput, ...] = ()
    alert_checks: tuple[AlertCheck, ...] = ()
    action_checks: tuple[ActionCheck, ...] = ()


@dataclass(frozen=True, slots=True)
class TestFile:
    """A loaded test file: its rules and cases."""

    path: str
    rules: RuleSet
    evaluation_interval: float
    stale_after: float
    daily: DailyConfig
    tests: tuple[TestCase, ...]
    actions: ActionsConfig = field(default_factory=ActionsConfig)


@dataclass(slots=True)
class CaseResult:
    """The outcome of one case: ``failures`` are printable blocks; empty means passed."""

    name: str
    failures: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.failures


# --------------------------------------------------------------------------- loading

_FILE_KEYS: Final = {"evaluation_interval", "stale_after", "daily", "actions", "tests"}
_CASE_KEYS: Final = {
    "name",
    "interval",
    "start",
    "account",
    "input_series",
    "input_frames",
    "alert_rule_test",
    "action_test",
}
_ACTION_KINDS: Final = ("cancel_all_orders", "close_position", "set_leverage", "reduce_position")
_OUTCOMES: Final = ("sent", "dry_run", "refused", "confirmed", "failed")


def load_test_file(path: str) -> tuple[TestFile | None, list[Problem]]:
    """Read and check one test file and the rule files it names.

    Returns ``(file, [])`` or ``(None, problems)`` (``FILE:LINE:COL`` problems of the
    test file, and of its rule files as :func:`~riskwatch.rules.load.check_rule_files`
    reports them).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return None, [Problem(path, 0, 0, f"cannot read test file: {str(reason).lower()}")]
    problems = Problems()
    root = parse(text, path, problems)
    if root is None:
        return None, problems.sorted() or [Problem(path, 0, 0, "empty test file")]
    r = Reader(problems)
    f = r.mapping(root, required={"rule_files", "tests"}, optional=_FILE_KEYS)
    rule_paths = _rule_paths(r, f.get("rule_files"), Path(path).parent)
    interval = r.as_duration(f.get("evaluation_interval"), Duration(1000)).seconds
    if interval <= 0:
        r.problem(f.get("evaluation_interval") or root, "evaluation_interval must be above 0s")
        interval = 1.0
    stale_after = r.as_duration(f.get("stale_after"), Duration(5000)).seconds
    daily = read_daily(r, f.get("daily"))
    actions = read_actions(r, f.get("actions"))
    rules: RuleSet | None = None
    if rule_paths:
        rules, rule_problems = check_rule_files(rule_paths)
        for p in rule_problems:
            problems.add_problem(p)
    names = set(rules.by_name) if rules is not None else set()
    tests = tuple(
        case
        for item in r.as_list(f.get("tests"))
        if (case := _case(r, item, interval, names, rules is not None)) is not None
    )
    if problems or rules is None:
        return None, problems.sorted()
    return TestFile(path, rules, interval, stale_after, daily, tests, actions), []


def _rule_paths(r: Reader, node: Node | None, base: Path) -> list[str]:
    out: list[str] = []
    for item in r.as_list(node):
        pattern = r.as_str(item)
        if pattern is None:
            continue
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        if glob.has_magic(full):
            matches = sorted(glob.glob(full))
            if not matches:
                r.problem(item, f"rule file glob '{pattern}' matches no file")
            out.extend(matches)
        elif not Path(full).is_file():
            r.problem(item, f"rule file '{pattern}' does not exist")
        else:
            out.append(full)
    if node is not None and not out and not r.problems:
        r.problem(node, "rule_files names no rule file")
    return out


def _start(r: Reader, node: Node | None) -> float:
    if node is None:
        return 0.0
    text = r.text(node)
    if text is None:
        return 0.0
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        r.problem(
            node, f"invalid start '{text}': use Unix seconds or RFC 3339 (2026-01-05T00:00:00Z)"
        )
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _case(
    r: Reader, node: Node, default_interval: float, rule_names: set[str], rules_ok: bool
) -> TestCase | None:
    f = r.mapping(node, optional=_CASE_KEYS)
    name = r.as_str(f.get("name"), f"{node.start.file}:{node.start.line}")
    interval = r.as_duration(f.get("interval"), Duration(round(default_interval * 1000))).seconds
    if interval <= 0:
        r.problem(f.get("interval") or node, "interval must be above 0s")
        interval = default_interval
    start = _start(r, f.get("start"))
    account = r.as_str(f.get("account"), _DEFAULT_ACCOUNT)
    if "input_series" in f and "input_frames" in f:
        r.problem(node, "give input_series or input_frames, not both")
    series = tuple(s for s in (_series(r, i) for i in r.as_list(f.get("input_series"))) if s)
    frames = tuple(x for x in (_frame(r, i) for i in r.as_list(f.get("input_frames"))) if x)
    known = rule_names | {DATA_STALE_RULE}
    alerts = tuple(
        c
        for c in (_alert_check(r, i, known, rules_ok) for i in r.as_list(f.get("alert_rule_test")))
        if c
    )
    actions = tuple(
        c
        for c in (_action_check(r, i, known, rules_ok) for i in r.as_list(f.get("action_test")))
        if c
    )
    return TestCase(
        name=name,
        interval=interval,
        start=start,
        account=account,
        series=series,
        frames=tuple(sorted(frames, key=lambda x: x.at)),
        alert_checks=alerts,
        action_checks=actions,
    )


def _series(r: Reader, node: Node) -> SeriesInput | None:
    f = r.mapping(node, required={"series", "values"})
    values = _samples(r, f.get("values"))
    named = _series_name(r, f.get("series"))
    if named is None or values is None:
        return None
    return SeriesInput(named[0], named[1], values)


def _samples(r: Reader, node: Node | None) -> tuple[SeriesValue, ...] | None:
    if not isinstance(node, Scalar):
        if node is not None:
            r.problem(node, f"expected samples as a string, found {node.kind}")
        return None
    parsed, bad = parse_values(node.value)
    for offset, message in bad:
        r.problem_in(node, offset, message)
    return None if bad else tuple(parsed)


def _series_name(r: Reader, node: Node | None) -> tuple[str, str | None] | None:
    text = r.as_str(node)
    if text is None or node is None:
        return None
    m = _SERIES.fullmatch(text.strip())
    if m is None:
        r.problem(node, f"invalid series '{text}': write a name or name{{symbol=\"BTC-USD\"}}")
        return None
    name, symbol = m["name"], m["symbol"]
    if symbol is None:
        if name not in ACCOUNT_NAMES:
            hint = ' (a position name: add {symbol="…"})' if name in POSITION_NAMES else ""
            r.problem(
                node, f"unknown account name '{name}'{hint or did_you_mean(name, ACCOUNT_NAMES)}"
            )
            return None
    elif name not in POSITION_NAMES:
        r.problem(node, f"unknown position name '{name}'{did_you_mean(name, POSITION_NAMES)}")
        return None
    elif not _SYMBOL.fullmatch(symbol):
        r.problem(node, f"invalid symbol '{symbol}' (e.g. BTC-USD)")
        return None
    return name, symbol


def _frame(r: Reader, node: Node) -> FrameInput | None:
    f = r.mapping(node, required={"at", "frame"}, optional={"source"})
    at = r.as_duration(f.get("at"))
    source = r.as_enum(f.get("source"), ("trade", "mds"), "trade")
    text = r.as_str(f.get("frame"))
    if at is None or text is None:
        return None
    return FrameInput(at.seconds, source, text)


def _where(node: Node) -> Problem:
    return Problem(node.start.file, node.start.line, node.start.col, "")


def _known_rule(r: Reader, node: Node | None, known: set[str], rules_ok: bool) -> str | None:
    name = r.as_str(node)
    if name is None or node is None:
        return None
    if rules_ok and name not in known:
        r.problem(node, f"unknown rule '{name}'{did_you_mean(name, known)}")
        return None
    return name


def _alert_check(r: Reader, node: Node, known: set[str], rules_ok: bool) -> AlertCheck | None:
    f = r.mapping(node, required={"eval_time", "alertname"}, optional={"exp_alerts"})
    at = r.as_duration(f.get("eval_time"))
    rule = _known_rule(r, f.get("alertname"), known, rules_ok)
    expected: list[ExpectedAlert] = []
    for item in r.as_list(f.get("exp_alerts")):
        g = r.mapping(item, required={"state"}, optional={"symbol"})
        state = r.as_enum(g.get("state"), ("pending", "firing"))
        symbol = r.as_str(g.get("symbol"))
        if state is not None:
            expected.append(ExpectedAlert(state, symbol))
    if at is None or rule is None:
        return None
    return AlertCheck(at.seconds, rule, tuple(expected), _where(node))


def _action_check(r: Reader, node: Node, known: set[str], rules_ok: bool) -> ActionCheck | None:
    f = r.mapping(node, required={"eval_time", "rule"}, optional={"exp_actions"})
    at = r.as_duration(f.get("eval_time"))
    rule = _known_rule(r, f.get("rule"), known, rules_ok)
    expected: list[ExpectedAction] = []
    for item in r.as_list(f.get("exp_actions")):
        g = r.mapping(
            item, required={"action"}, optional={"symbol", "target", "at", "outcome", "code"}
        )
        action = r.as_enum(g.get("action"), _ACTION_KINDS)
        symbol = r.as_str(g.get("symbol"))
        target = r.as_str(g.get("target"))
        when = r.as_duration(g.get("at"))
        outcome = r.as_enum(g.get("outcome"), _OUTCOMES) if g.get("outcome") else None
        code = r.as_str(g.get("code"))
        if action is not None:
            at_s = when.seconds if when is not None else None
            expected.append(ExpectedAction(action, symbol, target, at_s, outcome, code))
    if at is None or rule is None:
        return None
    return ActionCheck(at.seconds, rule, tuple(expected), _where(node))


# --------------------------------------------------------------------------- running


def _grid(case: TestCase, step: float, end: float, extra: Sequence[float]) -> list[float]:
    """Offsets after start to evaluate at: every ``step`` up to ``end``, plus ``extra``."""
    times = {round(k * step, 9) for k in range(math.floor(end / step + _EPS) + 1)}
    times.update(round(x, 9) for x in extra)
    return sorted(t for t in times if t >= 0)


class _SeriesDriver:
    """Builds Figures from the series at each time and runs the engine on them."""

    def __init__(self, tf: TestFile, case: TestCase) -> None:
        self.case = case
        self.stale_after = tf.stale_after
        self.rules = tf.rules
        self.state = engine.RulesState(case.account, tf.rules, tf.daily)
        self.account = [s for s in case.series if s.symbol is None]
        symbols: dict[str, list[SeriesInput]] = {}
        for s in case.series:
            if s.symbol is not None:
                symbols.setdefault(s.symbol, []).append(s)
        self.symbols = symbols
        self.last_index = -1

    @property
    def length(self) -> int:
        return max((len(s.values) for s in self.case.series), default=0)

    def evaluate(self, offset: float) -> engine.Decision:
        case = self.case
        now = case.start + offset
        i = math.floor(offset / case.interval + _EPS)
        account: dict[str, float | None] = dict.fromkeys(ACCOUNT_NAMES)
        for s in self.account:
            if i < len(s.values):
                account[s.name] = s.values[i]
        positions: dict[str, Row] = {}
        for sym, series in self.symbols.items():
            if not any(i < len(s.values) for s in series):
                continue
            row: Row = dict.fromkeys(POSITION_NAMES)
            for s in series:
                if i < len(s.values):
                    row[s.name] = s.values[i]
            positions[sym] = row
        age = account.get("data_age")
        stale = age is not None and age > self.stale_after
        trigger: engine.Trigger = "pulse" if i != self.last_index else "tick"
        self.last_index = i
        figures = Figures(account, MappingProxyType(positions), True, now)
        return engine.evaluate(self.rules, self.state, figures, now, stale=stale, trigger=trigger)

    def alerts(self) -> tuple[engine.Alert, ...]:
        return self.state.alerts_view()


class _FrameDriver:
    """Feeds raw frames through the real session and decoders into an
    :class:`AccountCore`, and the rules' intents through the action book, as the daemon
    does (riskwatch/offline/actions.py): the test's trade frames are the exchange's
    answers."""

    def __init__(self, tf: TestFile, case: TestCase) -> None:
        self.case = case
        self.core = AccountCore(
            case.account, stale_after=tf.stale_after, rules=tf.rules, daily=tf.daily
        )
        self.book = OfflineActions(tf.actions, {case.account: self.core})
        self.pending = list(case.frames)
        self._shown = 0

    def evaluate(self, offset: float) -> list[engine.Decision]:
        now = self.case.start + offset
        account = self.case.account
        decisions: list[engine.Decision] = []
        while self.pending and self.pending[0].at <= offset + _EPS:
            frame = self.pending.pop(0)
            events: list[Event]
            if frame.source == "mds":
                held = self.core.snapshot.positions
                # The daemon hands an account only the marks of symbols it holds.
                events = [
                    ev
                    for ev in decode_mds(frame.frame, now)
                    if isinstance(ev, MarkPrice) and ev.symbol in held
                ]
                result = self.core.handle(events, now)
                self.book.decided(result.decision, now)
            else:
                events = self.book.receive(account, frame.frame, now)
                result = self.core.handle(events, now)
                self.book.decided(result.decision, now)
                self.book.events(account, events, now)
            if result.decision is not None:
                decisions.append(result.decision)
        if not decisions:
            decision = self.core.tick(now)
            self.book.decided(decision, now)
            decisions.append(decision)
        self.book.tick(now)
        return decisions

    def outcomes(self) -> list[Entry]:
        """Timeline rows of what the action book did since the last call."""
        new = self.book.events_seen[self._shown :]
        self._shown = len(self.book.events_seen)
        return [entry_of_event(e) for e in new if e.kind in SHOWN]

    def alerts(self) -> tuple[engine.Alert, ...]:
        return self.core.alerts()


def run_case(tf: TestFile, case: TestCase) -> CaseResult:
    """Run one case and check its expectations; never raises for data in the case."""
    result = CaseResult(case.name)
    checks_at: dict[float, list[AlertCheck | ActionCheck]] = {}
    every: list[AlertCheck | ActionCheck] = [*case.alert_checks, *case.action_checks]
    for check in every:
        checks_at.setdefault(round(check.eval_time, 9), []).append(check)
    last_check = max(checks_at, default=0.0)
    if case.frames:
        frame_driver = _FrameDriver(tf, case)
        end = max(last_check, case.frames[-1].at)
        times = _grid(case, tf.evaluation_interval, end, [*checks_at, *(x.at for x in case.frames)])
    else:
        series_driver = _SeriesDriver(tf, case)
        end = max(last_check, (series_driver.length - 1) * case.interval)
        samples = [k * case.interval for k in range(series_driver.length)]
        times = _grid(case, tf.evaluation_interval, end, [*checks_at, *samples])
    for offset in times:
        if case.frames:
            decisions = frame_driver.evaluate(offset)
            alerts = frame_driver.alerts()
        else:
            decisions = [series_driver.evaluate(offset)]
            alerts = series_driver.alerts()
        for d in decisions:
            result.entries.extend(entries_of(d))
        if case.frames:
            result.entries.extend(frame_driver.outcomes())
        for check in checks_at.get(offset, ()):
            if isinstance(check, AlertCheck):
                failure = _check_alerts(check, alerts, result.entries, case)
            else:
                failure = _check_actions(check, result.entries, case)
            if failure is not None:
                result.failures.append(failure)
    return result


def _fmt_alert(state: str, symbol: str | None) -> str:
    return f"{state} symbol={symbol}" if symbol else state


def _fmt_action(action: str, target: str | None, symbol: str | None, at: float | None) -> str:
    text = action if target is None else f"{action} {target}"
    if symbol:
        text += f" symbol={symbol}"
    if at is not None:
        text += f" at {format_time(at)}"
    return text


def _timeline(rule: str, entries: list[Entry], case: TestCase, until: float) -> str:
    mine = [e for e in entries if e.rule == rule and e.at <= case.start + until + _EPS]
    lines = format_lines(mine, case.start, absolute=False) or ["(nothing happened)"]
    return "\n".join(f"        {line}" for line in lines)


def _header(check: AlertCheck | ActionCheck, case: TestCase, what: str) -> str:
    w = check.where
    return f'{w.file}:{w.line}:{w.col}: FAILED test "{case.name}": {what}'


def _check_alerts(
    check: AlertCheck, alerts: tuple[engine.Alert, ...], entries: list[Entry], case: TestCase
) -> str | None:
    got = sorted(
        (a.state.name.lower(), a.symbol or "") for a in alerts if a.rule == check.alertname
    )
    want = sorted((e.state, e.symbol or "") for e in check.expected)
    if got == want:
        return None
    return "\n".join(
        [
            _header(check, case, f"alert {check.alertname} at {format_time(check.eval_time)}"),
            f"    expected: [{', '.join(_fmt_alert(s, y) for s, y in want)}]",
            f"    got:      [{', '.join(_fmt_alert(s, y) for s, y in got)}]",
            "    timeline:",
            _timeline(check.alertname, entries, case, check.eval_time),
        ]
    )


def _outcome_matches(exp: ExpectedAction, e: Entry, case: TestCase) -> bool:
    return (
        e.command == exp.action
        and e.what == exp.outcome
        and (exp.symbol is None or e.symbol == exp.symbol)
        and (exp.code is None or e.summary.split(":", 1)[0] == exp.code)
        and (exp.at is None or abs(e.at - case.start - exp.at) <= 1e-6)
    )


def _check_actions(check: ActionCheck, entries: list[Entry], case: TestCase) -> str | None:
    limit = case.start + check.eval_time + _EPS
    got = [e for e in entries if e.kind == "action" and e.rule == check.rule and e.at <= limit]
    done = [e for e in entries if e.kind == "outcome" and e.rule == check.rule and e.at <= limit]
    asked = [x for x in check.expected if x.outcome is None]
    left = list(got)
    unmatched: list[ExpectedAction] = []
    for exp in asked:
        for e in left:
            if (
                e.what == exp.action
                and (e.symbol or None) == (exp.symbol or None)
                and (exp.target is None or e.target == exp.target)
                and (exp.at is None or abs(e.at - case.start - exp.at) <= 1e-6)
            ):
                left.remove(e)
                break
        else:
            unmatched.append(exp)
    # Outcomes are checked one by one: each listed outcome must have happened.
    missing = [
        x
        for x in check.expected
        if x.outcome is not None and not any(_outcome_matches(x, e, case) for e in done)
    ]
    if not unmatched and not left and not missing:
        return None
    lines = [
        _header(check, case, f"actions of {check.rule} up to {format_time(check.eval_time)}"),
        "    expected: ["
        + ", ".join(_fmt_action(x.action, x.target, x.symbol, x.at) for x in asked)
        + "]",
        "    got:      ["
        + ", ".join(_fmt_action(e.what, e.target, e.symbol, e.at - case.start) for e in got)
        + "]",
    ]
    if missing:
        lines.append(
            "    outcomes missing: ["
            + ", ".join(
                f"{x.action} {x.outcome}"
                + (f" {x.code}" if x.code else "")
                + (f" symbol={x.symbol}" if x.symbol else "")
                for x in missing
            )
            + "]"
        )
    lines += ["    timeline:", _timeline(check.rule, entries, case, check.eval_time)]
    return "\n".join(lines)


def run_tests(paths: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``riskwatch test``: run every file; return 0 when all pass, else 1.

    Prints ``Unit testing: FILE`` then ``SUCCESS`` or the failures on ``out``; problems
    in a file (or its rule files) go to ``err`` as ``FILE:LINE:COL: message``.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    status = 0
    for path in paths:
        print(f"Unit testing: {path}", file=out)
        tf, problems = load_test_file(path)
        if tf is None:
            for p in problems:
                print(p, file=err)
            print("  INVALID", file=out)
            status = 1
            continue
        failed = 0
        checks = 0
        for case in tf.tests:
            res = run_case(tf, case)
            checks += len(case.alert_checks) + len(case.action_checks)
            if not res.ok:
                failed += 1
                for block in res.failures:
                    print(block, file=out)
        if failed:
            print(f"  FAILED: {failed} of {len(tf.tests)} test(s)", file=out)
            status = 1
        else:
            print(f"  SUCCESS ({len(tf.tests)} test(s), {checks} check(s))", file=out)
    return status
