"""``riskwatch replay RECORDING -c riskwatch.yaml``: the rules over a recorded stream.

A recording (``riskwatch run --record``, :mod:`riskwatch.qfex.recorder`) holds every
received frame with its receive time, every firing of the daemon's timers (rule ticks,
action ticks, burst flushes) and every trade link that went down, with its time. Replay
feeds them, in file order and at full speed, to the same
:class:`~riskwatch.pipeline.AccountCore` the daemon runs, one per configured account,
and to the same action book, with the recorded times as ``now`` (a
:class:`~riskwatch.clock.ManualClock` moved line by line): frames as the daemon received
them, the cores ticked and flushed, and the book ticked, exactly when the daemon did, so
that ``for`` and ``keep_firing_for`` expire, ``DataStale`` fires, timeouts and retries
happen, and the actions leave, at the times they did live — before or after the
exchange's recorded replies, as they were.

Each timer is replayed as recorded from its first line on. Before it (and throughout a
recording without tick lines: one made before they were recorded, or by hand) replay
ticks on its own schedule: the cores every ``tick`` seconds of recorded time from the
first frame, and for one ``tick`` after the last, while no rule tick is recorded; the
book with the cores' ticks while no action tick is recorded. A flush line (an
unterminated burst, evaluated) is replayed as it comes; without them, the next tick
or balance frame evaluates such a burst. A disconnect line ends the account's
connection for the action book (its commands in flight lose their replies, its frames
wait for the next connection); without them, a new ``authenticated`` frame ends the
previous connection.

The rules' actions go through the same action book as the daemon's
(:mod:`riskwatch.offline.actions`), in the config's mode (``actions:``), with the audit
log in memory and an exchange that answers with the recorded frames: the timeline shows
each action sent, refused (breaker, stale data, kill switch, …) or dry-run, and its
outcome (confirmed or failed, with the reason), as the daemon decided them for the same
frames. Replay sends nothing to any exchange. Market-data marks go to every account
holding the symbol, as in the daemon. Frames of an account the config does not name are
counted, reported once, and skipped. Given the config's ``exchange:`` section, each
account's staleness threshold follows its pulse cadence measured on the recorded
balance frames, as the daemon's does (riskwatch/qfex/cadence.py; a reconnect starts a
fresh interval).

Exit status: 0 after printing the timeline; 2 when the config or a rule file is
invalid (``FILE:LINE:COL: message`` on stderr); 1 when the recording cannot be read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from riskwatch.actions.memlog import AuditRow
from riskwatch.clock import ManualClock
from riskwatch.config import ActionsConfig, Config, ExchangeConfig, load_config
from riskwatch.errors import ConfigError
from riskwatch.model import Authenticated, BalanceUpdate, MarkPrice
from riskwatch.offline.actions import SHOWN, OfflineActions
from riskwatch.offline.timeline import (
    Entry,
    entries_of,
    entry_of_event,
    format_entry,
    iso,
    to_json,
)
from riskwatch.pipeline import AccountCore
from riskwatch.qfex.cadence import PulseCadence
from riskwatch.qfex.recorder import (
    ACTION_TICK,
    BURST_FLUSH,
    Recorded,
    RecordedDisconnect,
    RecordedTick,
    read_recording,
)
from riskwatch.qfex.schemas import decode_mds
from riskwatch.rules.engine import Decision
from riskwatch.rules.load import load_rule_files
from riskwatch.rules.model import RuleSet

__all__ = ["DEFAULT_TICK", "ReplayResult", "cores_for", "replay", "run_replay"]

DEFAULT_TICK = 0.25
"""Seconds of recorded time between replay's own rule ticks, for a recording without
tick lines (the daemon's ``TICK_INTERVAL``)."""


@dataclass(slots=True)
class ReplayResult:
    """What a replay saw and decided.

    ``start``/``end``: times of the recording's first and last line (Unix seconds; 0.0
    when the recording is empty); ``frames``: frames read; ``ticks``: tick lines read
    (rule ticks, action ticks, flushes; 0 for a recording ticked on replay's own
    schedule); ``skipped``: frames of unknown accounts, by account name; ``entries``:
    the timeline, in order; ``audit``: the action book's audit log (in memory), in the
    order recorded.
    """

    start: float = 0.0
    end: float = 0.0
    frames: int = 0
    ticks: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    audit: list[AuditRow] = field(default_factory=list)


def replay(
    recording: Iterable[Recorded],
    cores: dict[str, AccountCore],
    *,
    tick: float = DEFAULT_TICK,
    actions: ActionsConfig | None = None,
    exchange: ExchangeConfig | None = None,
) -> ReplayResult:
    """Drive ``cores`` (account name → core) with the lines of ``recording`` (frames,
    ticks, disconnects); see the module docstring.

    ``tick``: the period of replay's own rule ticks, used until the recording's first
    rule tick line (and throughout a recording without any). ``actions``: the config of
    the action book the intents go through (the default config, i.e. dry-run, when None).
    ``exchange``: the config's exchange section, for each account's measured pulse
    cadence (None: each core keeps its own ``stale_after``).
    Raises ``ValueError`` for ``tick <= 0`` (and whatever iterating ``recording`` raises).
    """
    if tick <= 0:
        msg = f"tick must be above 0 seconds, got {tick!r}"
        raise ValueError(msg)
    result = ReplayResult()
    clock: ManualClock | None = None
    next_tick = 0.0
    rule_ticks = False  # a rule tick line was read: tick the cores only when recorded
    action_ticks = False  # an action tick line was read: tick the book only when recorded
    book = OfflineActions(actions if actions is not None else ActionsConfig(), cores)
    cadences = {name: _cadence(exchange) for name in cores} if exchange is not None else {}
    shown = 0

    def keep(decision: Decision | None, now: float) -> None:
        if decision is not None and (decision.transitions or decision.intents):
            result.decisions.append(decision)
            result.entries.extend(entries_of(decision))
        book.decided(decision, now)
        flush()

    def flush() -> None:
        nonlocal shown
        new = book.events_seen[shown:]
        shown = len(book.events_seen)
        result.entries.extend(entry_of_event(e) for e in new if e.kind in SHOWN)

    def ticked(now: float) -> None:
        for core in cores.values():
            keep(core.tick(now), now)
        if not action_ticks:
            book.tick(now)
        flush()

    def timer(line: RecordedTick, now: float) -> None:
        nonlocal rule_ticks, action_ticks
        result.ticks += 1
        if line.source == ACTION_TICK:
            action_ticks = True
            book.tick(now)
            flush()
        elif line.source == BURST_FLUSH:
            core = cores.get(line.account)
            if core is not None:  # an account the config does not name: its frames are skipped
                keep(core.flush(now), now)
        else:
            rule_ticks = True
            ticked(now)

    for line in recording:
        if clock is None:
            clock = ManualClock(line.t)
            result.start = line.t
            next_tick = line.t + tick
        # A recording from a clock that stepped back keeps the latest time seen.
        t = max(line.t, clock.now())
        result.end = t
        if not rule_ticks:  # replay's own schedule, until the first rule tick line
            while next_tick < t:
                clock.set(next_tick)
                ticked(next_tick)
                next_tick += tick
        clock.set(t)
        if isinstance(line, RecordedTick):
            # A timer of the daemon: from here on, that timer fires only when it did live.
            timer(line, t)
            continue
        if isinstance(line, RecordedDisconnect):
            if line.account in cores:
                book.disconnected(line.account, t)
                flush()
                if line.account in cadences:  # the next pulse starts a fresh interval
                    cadences[line.account].connection_lost()
            continue
        result.frames += 1
        if line.source == "mds":
            marks = [ev for ev in decode_mds(line.frame, t) if isinstance(ev, MarkPrice)]
            for core in cores.values():
                held = core.snapshot.positions
                mine = [m for m in marks if m.symbol in held]
                if mine:
                    keep(core.handle(mine, t).decision, t)
            continue
        target = cores.get(line.account)
        if target is None:
            result.skipped[line.account] = result.skipped.get(line.account, 0) + 1
            continue
        events = book.receive(line.account, line.frame, t)
        cadence = cadences.get(line.account)
        if cadence is not None:  # as the daemon's frame handler does (daemon/frames.py)
            for ev in events:
                if isinstance(ev, Authenticated):
                    cadence.connection_lost()  # a new connection in the stream
                elif isinstance(ev, BalanceUpdate):
                    cadence.observe(t)
            target.stale_after = cadence.stale_after
        keep(target.handle(events, t).decision, t)
        book.events(line.account, events, t)
        flush()
    if clock is not None and not rule_ticks:
        # Let the last tick interval play out, as the daemon's timer would.
        end = clock.now() + tick
        while next_tick <= end:
            clock.set(next_tick)
            ticked(next_tick)
            next_tick += tick
    result.audit = list(book.log.rows)
    return result


def _cadence(exchange: ExchangeConfig) -> PulseCadence:
    """An account's pulse cadence, as the daemon's link measures it (qfex/link.py)."""
    pinned = exchange.stale_after.seconds if exchange.stale_after is not None else None
    return PulseCadence(
        pulses=exchange.stale_after_pulses,
        initial=exchange.initial_stale_after(),
        pinned=pinned,
    )


def cores_for(config: Config, rules: RuleSet) -> dict[str, AccountCore]:
    """One fresh core per configured account, as the daemon builds them."""
    stale_after = config.exchange.initial_stale_after()
    return {
        acc.name: AccountCore(acc.name, stale_after=stale_after, rules=rules, daily=config.daily)
        for acc in config.accounts
    }


def _document(path: Path, config: Config, result: ReplayResult) -> dict[str, Any]:
    return {
        "recording": str(path),
        "start": result.start,
        "start_time": iso(result.start) if result.frames or result.ticks else None,
        "end": result.end,
        "duration": round(result.end - result.start, 6),
        "frames": result.frames,
        "ticks": result.ticks,
        "accounts": [acc.name for acc in config.accounts],
        "unknown_accounts": result.skipped,
        "timeline": [to_json(e, result.start) for e in result.entries],
        "audit": [
            {
                "action_id": r.action_id,
                "rule": r.rule,
                "account": r.account,
                "symbol": r.symbol,
                "action": r.action,
                "attempt": r.attempt,
                "mode": r.mode,
                "status": r.status,
                "detail": r.detail,
                "intent_at": r.intent_at,
            }
            for r in result.audit
        ],
    }


def _print_text(path: Path, config: Config, result: ReplayResult, out: TextIO) -> None:
    names = ", ".join(acc.name for acc in config.accounts)
    if result.frames or result.ticks:
        span = f"{result.end - result.start:.3f} s from {iso(result.start)} to {iso(result.end)}"
    else:
        span = "empty"
    # A recording without tick lines was ticked on replay's own schedule (module docstring).
    ticks = f" and {result.ticks} recorded tick(s)" if result.ticks else ""
    print(
        f"replay of {path}: {result.frames} frame(s){ticks}, {span}; accounts: {names}",
        file=out,
    )
    for entry in result.entries:
        print(format_entry(entry, result.start), file=out)
    alerts = sum(1 for e in result.entries if e.kind == "alert")
    actions = sum(1 for e in result.entries if e.kind == "action")
    outcomes: dict[str, int] = {}
    for row in result.audit:
        outcomes[row.status] = outcomes.get(row.status, 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items())) or "none"
    print(
        f"{alerts} alert transition(s); {actions} action(s) the rules asked for; "
        f"audit log: {tally} (replay sends nothing: the recording answers)",
        file=out,
    )


def run_replay(
    recording: Path,
    config_path: Path,
    *,
    as_json: bool = False,
    tick: float = DEFAULT_TICK,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``riskwatch replay``: print the timeline of ``recording``; return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = load_config(config_path)
        rules = load_rule_files(list(config.rules.files))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return 2
    if tick <= 0:
        print(f"--tick must be above 0 seconds, got {tick:g}", file=err)
        return 2
    try:
        result = replay(
            read_recording(recording),
            cores_for(config, rules),
            tick=tick,
            actions=config.actions,
            exchange=config.exchange,
        )
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        print(f"{recording}: cannot replay: {exc}", file=err)
        return 1
    for account, count in sorted(result.skipped.items()):
        print(
            f"{recording}: account '{account}' is not in {config_path}: {count} frame(s) skipped",
            file=err,
        )
    if as_json:
        json.dump(_document(recording, config, result), out, indent=2)
        out.write("\n")
    else:
        _print_text(recording, config, result, out)
    return 0
