"""Unit tests of ``riskwatch replay``'s driver over hand-made recordings: recorded ticks,
flushes and action ticks replayed as recorded, replay's own schedule without them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from riskwatch.config import ActionsConfig
from riskwatch.offline.replay import replay, run_replay
from riskwatch.pipeline import AccountCore
from riskwatch.qfex.recorder import (
    ACTION_TICK,
    BURST_FLUSH,
    RecordedDisconnect,
    RecordedFrame,
    RecordedTick,
    Recorder,
)
from riskwatch.rules.load import load_rules_text

RULES = """\
rules:
  - name: High
    when: margin_usage > 0.8
    for: 2s
    actions: [cancel_all_orders]
"""
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _balance(position_margin: float) -> str:
    return json.dumps(
        {
            "balance_response": {
                "id": "b",
                "user_id": "u",
                "deposit": 1000.0,
                "realised_pnl": 0.0,
                "order_margin": 0.0,
                "position_margin": position_margin,
                "unrealised_pnl": 0.0,
                "net_funding": 0.0,
                "available_balance": 100.0,
            }
        }
    )


def _frames() -> list[RecordedFrame]:
    out = [RecordedFrame(T0, "desk-a", "trade", _balance(100.0))]
    out += [RecordedFrame(T0 + 1.0, "desk-a", "trade", _balance(900.0))]
    out += [RecordedFrame(T0 + 1.5, "desk-z", "trade", _balance(900.0))]
    return out


def test_ticks_fire_for_between_frames() -> None:
    """With no frame after the breach, ticks fire the rule when ``for`` has elapsed."""
    core = AccountCore("desk-a", stale_after=5.0, rules=load_rules_text(RULES))
    frames = [*_frames(), RecordedFrame(T0 + 3.6, "desk-a", "trade", "not json")]
    result = replay(frames, {"desk-a": core}, tick=0.25)
    firing = [e for e in result.entries if e.kind == "alert" and e.what == "firing"]
    assert [e.at - T0 for e in firing] == [3.0]
    assert [(e.what, e.at - T0) for e in result.entries if e.kind == "action"] == [
        ("cancel_all_orders", 3.0)
    ]
    assert result.skipped == {"desk-z": 1}
    assert result.frames == 4


def test_tick_must_be_positive() -> None:
    """A non-positive tick is refused with the offending value."""
    with pytest.raises(ValueError, match="tick must be above 0 seconds, got 0"):
        replay([], {}, tick=0)


def _config(folder: Path) -> Path:
    """A config watching ``desk-a`` with the RULES file, written in ``folder``."""
    (folder / "r.yaml").write_text(RULES, encoding="utf-8")
    config = folder / "riskwatch.yaml"
    config.write_text(
        "exchange: {url: 'ws://127.0.0.1:9/', allow_insecure: true}\n"
        "accounts:\n  - {name: desk-a, public_key: k, secret_key: s}\n"
        "rules: [r.yaml]\n",
        encoding="utf-8",
    )
    return config


def test_run_replay_reports_unknown_accounts(tmp_path: Path) -> None:
    """The command prints the timeline, names skipped accounts on stderr, and exits 0."""
    config = _config(tmp_path)
    rec = tmp_path / "rec.jsonl"
    recorder = Recorder(rec)
    for f in [*_frames(), RecordedFrame(T0 + 3.5, "desk-a", "trade", _balance(900.0))]:
        recorder.write(f.account, f.source, f.frame, f.t)
    recorder.close()
    out, err = io.StringIO(), io.StringIO()
    assert run_replay(rec, config, out=out, err=err) == 0
    assert "+3.000s  2026-01-01T00:00:03.000Z  High FIRING" in out.getvalue()
    assert "High ACTION cancel_all_orders" in out.getvalue()
    assert "account 'desk-z' is not in" in err.getvalue()
    out = io.StringIO()
    assert run_replay(rec, config, as_json=True, out=out, err=io.StringIO()) == 0
    doc = json.loads(out.getvalue())
    assert doc["unknown_accounts"] == {"desk-z": 1}
    assert [(e["rule"], e.get("reason"), e["offset"]) for e in doc["timeline"]][:2] == [
        ("High", "pending", 1.0),
        ("High", "firing", 3.0),
    ]


def _ticks(start: float, stop: float, step: float) -> list[RecordedTick]:
    out, t = [], start
    while t < stop:
        out.append(RecordedTick(round(t, 6)))
        t += step
    return out


def test_recorded_ticks_time_the_for_rule() -> None:
    """With the daemon's ticks recorded, ``for`` ends at the first recorded tick after it
    elapsed (+3.4 s), not on replay's own 0.25 s schedule (+3.0 s); no tick is added, even
    after the last line, and tick lines are neither frames nor unknown accounts' frames."""
    core = AccountCore("desk-a", stale_after=5.0, rules=load_rules_text(RULES))
    ticks = _ticks(T0 - 0.1, T0 + 4.0, 0.7)  # -0.1, 0.6, 1.3, 2.0, 2.7, 3.4
    frames = [
        RecordedFrame(T0, "desk-a", "trade", _balance(100.0)),
        RecordedFrame(T0 + 1.0, "desk-a", "trade", _balance(900.0)),
    ]
    recording: list[RecordedFrame | RecordedTick] = sorted(
        [*ticks, *frames], key=lambda line: line.t
    )
    result = replay(recording, {"desk-a": core}, tick=0.25)
    assert [(e.kind, e.what, round(e.at - T0, 3)) for e in result.entries] == [
        ("alert", "pending", 1.0),
        ("alert", "firing", 3.4),
        ("action", "cancel_all_orders", 3.4),
        ("outcome", "dry_run", 3.4),
    ]
    recorded = {line.t for line in recording}
    assert {d.at for d in result.decisions} <= recorded
    assert (result.frames, result.ticks, result.skipped) == (2, len(ticks), {})
    assert (result.start, result.end) == (T0 - 0.1, ticks[-1].t)


def test_without_tick_lines_replay_ticks_on_its_own_schedule() -> None:
    """The same frames with no tick line: ``for`` ends on replay's 0.25 s schedule."""
    core = AccountCore("desk-a", stale_after=5.0, rules=load_rules_text(RULES))
    frames = [
        RecordedFrame(T0, "desk-a", "trade", _balance(100.0)),
        RecordedFrame(T0 + 1.0, "desk-a", "trade", _balance(900.0)),
    ]
    result = replay(frames, {"desk-a": core}, tick=0.25)
    firing = [e.at - T0 for e in result.entries if e.kind == "alert" and e.what == "firing"]
    # The last frame is at +1.0 s: the play-out ticks one interval past it, to +1.25 s.
    assert firing == []
    frames.append(RecordedFrame(T0 + 3.6, "desk-a", "trade", "not json"))
    core = AccountCore("desk-a", stale_after=5.0, rules=load_rules_text(RULES))
    result = replay(frames, {"desk-a": core}, tick=0.25)
    firing = [e.at - T0 for e in result.entries if e.kind == "alert" and e.what == "firing"]
    assert firing == [3.0]
    assert result.ticks == 0


REDUCE = """\
rules:
  - name: Losing
    scope: position
    when: unrealised_pnl < 0
    for: 1s
    actions: [{reduce_position: {fraction: 0.5, over: 5m}}]
"""


def _position(size: float) -> str:
    return json.dumps(
        {
            "position_response": {
                "id": "p", "symbol": "AAPL-USD", "position": size, "margin_alloc": 0.0,
                "realised_pnl": 0.0, "unrealised_pnl": -50.0, "net_funding": 0.0,
                "open_orders": 0.0, "open_quantity": 0, "leverage": 10.0,
                "initial_margin": 0.1, "maintenance_margin": 0.05, "average_price": 200.0,
            }
        }
    )  # fmt: skip


def _unanswered_twap(timers: list[RecordedTick]) -> list[tuple[str, float, str]]:
    """An armed TWAP the exchange never answers; the book's outcomes with their times."""
    core = AccountCore("desk-a", stale_after=30.0, rules=load_rules_text(REDUCE))
    frames = [
        RecordedFrame(T0, "desk-a", "trade", '{"authenticated": true}'),
        RecordedFrame(T0, "desk-a", "trade", _position(250.0)),
        RecordedFrame(T0, "desk-a", "trade", _balance(100.0)),
    ]
    recording: list[RecordedFrame | RecordedTick] = sorted(
        [*frames, *timers], key=lambda line: line.t
    )
    result = replay(recording, {"desk-a": core}, actions=ActionsConfig(mode="armed"))
    return [
        (e.what, round(e.at - T0, 3), e.summary or "")
        for e in result.entries
        if e.kind == "outcome"
    ]


def test_recorded_action_ticks_time_the_books_timeouts() -> None:
    """The book's reply and confirmation timeouts expire at the recorded action ticks: the
    TWAP sent at the +1.3 s rule tick gets no reply by +6.3 s (seen at the +6.45 s action
    tick), nor its effect 5 s after that (seen at +11.5 s), not at a rule tick."""
    rule_ticks = _ticks(T0 - 0.1, T0 + 14.0, 0.7)
    action_ticks = [RecordedTick(T0 + s, ACTION_TICK) for s in (1.35, 6.2, 6.45, 11.4, 11.5)]
    outcomes = _unanswered_twap([*rule_ticks, *action_ticks])
    assert outcomes == [
        ("sent", 1.3, ""),
        ("failed", 11.5, "OUTCOME_UNKNOWN: no reply within 5 s"),
    ]
    # Without action ticks the book ticks with the rule ticks: the reply timeout is seen
    # at +6.9 s, the failure at +12.5 s.
    outcomes = _unanswered_twap(rule_ticks)
    assert outcomes == [
        ("sent", 1.3, ""),
        ("failed", 12.5, "OUTCOME_UNKNOWN: no reply within 5 s"),
    ]


def test_a_recorded_flush_evaluates_an_unterminated_burst() -> None:
    """Position frames no balance closed are evaluated at the recorded flush: the rule's
    ``for`` starts there, not at the next tick."""
    core = AccountCore("desk-a", stale_after=30.0, rules=load_rules_text(REDUCE))
    recording: list[RecordedFrame | RecordedTick] = [
        RecordedTick(T0 - 0.1),
        RecordedFrame(T0, "desk-a", "trade", '{"authenticated": true}'),
        RecordedFrame(T0 + 0.1, "desk-a", "trade", _position(250.0)),
        RecordedTick(T0 + 0.102, BURST_FLUSH, "desk-a"),
        RecordedTick(T0 + 0.102, BURST_FLUSH, "desk-z"),  # not in the config: skipped
        RecordedTick(T0 + 0.6),
    ]
    result = replay(recording, {"desk-a": core})
    assert [(e.what, round(e.at - T0, 3)) for e in result.entries] == [("pending", 0.102)]
    assert (result.frames, result.ticks, result.skipped) == (2, 4, {})


def test_run_replay_counts_recorded_ticks_apart_from_frames(tmp_path: Path) -> None:
    """A recording made with tick lines: the header and the JSON document count them
    apart from the frames, and the span runs from the first line to the last."""
    config = _config(tmp_path)
    rec = tmp_path / "rec.jsonl"
    recorder = Recorder(rec)
    recorder.tick(T0 - 0.1)
    for f in _frames():
        recorder.write(f.account, f.source, f.frame, f.t)
    for line in _ticks(T0 + 1.2, T0 + 4.0, 0.5):  # 1.2 … 3.7
        recorder.tick(line.t)
    recorder.close()
    out = io.StringIO()
    assert run_replay(rec, config, out=out, err=io.StringIO()) == 0
    assert out.getvalue().startswith(
        f"replay of {rec}: 3 frame(s) and 7 recorded tick(s), 3.800 s from "
        "2025-12-31T23:59:59.900Z to 2026-01-01T00:00:03.700Z; accounts: desk-a\n"
    )
    assert "+3.300s  2026-01-01T00:00:03.200Z  High FIRING" in out.getvalue()
    out = io.StringIO()
    assert run_replay(rec, config, as_json=True, out=out, err=io.StringIO()) == 0
    doc = json.loads(out.getvalue())
    assert (doc["frames"], doc["ticks"], doc["unknown_accounts"]) == (3, 7, {"desk-z": 1})
    assert doc["start_time"] == "2025-12-31T23:59:59.900Z"


def test_staleness_follows_the_recorded_pulse_cadence(tmp_path: Path) -> None:
    """With no pinned ``stale_after``, replay measures each account's pulse cadence on the
    recorded balance frames, as the daemon does: 1 s pulses make the data stale 3 s after
    the last one (``stale_after_pulses`` 3), not after the initial 30 s."""
    config = _config(tmp_path)
    rec = tmp_path / "rec.jsonl"
    recorder = Recorder(rec)
    lines: list[RecordedFrame | RecordedTick] = [
        *(RecordedFrame(T0 + s, "desk-a", "trade", _balance(100.0)) for s in (0.0, 1.0, 2.0)),
        *_ticks(T0 - 0.2, T0 + 8.0, 0.5),  # -0.2, 0.3, … 5.3, 5.8, …
    ]
    for line in sorted(lines, key=lambda line: line.t):
        if isinstance(line, RecordedTick):
            recorder.tick(line.t)
        else:
            recorder.write(line.account, line.source, line.frame, line.t)
    recorder.close()
    out = io.StringIO()
    assert run_replay(rec, config, as_json=True, out=out, err=io.StringIO()) == 0
    doc = json.loads(out.getvalue())
    stale = [
        (e["reason"], round(e["t"] - T0, 3)) for e in doc["timeline"] if e["rule"] == "DataStale"
    ]
    assert stale == [("firing", 5.3)]


def test_a_recorded_disconnect_holds_the_action_until_the_reconnect() -> None:
    """The ``for`` rule fires at +3.4 s while the link is down (disconnect line at +2.5 s):
    its command leaves with the next connection's first frame (+4.2 s), as the daemon's
    did; without the disconnect line replay would send it at once."""

    def outcomes(disconnect: bool) -> list[tuple[str, float]]:
        core = AccountCore("desk-a", stale_after=5.0, rules=load_rules_text(RULES))
        lines: list[RecordedFrame | RecordedTick | RecordedDisconnect] = [
            RecordedFrame(T0, "desk-a", "trade", '{"authenticated": true}'),
            RecordedFrame(T0, "desk-a", "trade", _balance(100.0)),
            RecordedFrame(T0 + 1.0, "desk-a", "trade", _balance(900.0)),
            RecordedFrame(T0 + 4.2, "desk-a", "trade", '{"authenticated": true}'),
            *_ticks(T0 - 0.1, T0 + 5.0, 0.7),  # … 2.7, 3.4, 4.1, 4.8
        ]
        if disconnect:
            lines.append(RecordedDisconnect(T0 + 2.5, "desk-a"))
            lines.append(RecordedDisconnect(T0 + 2.5, "desk-z"))  # not in the config
        recording = sorted(lines, key=lambda line: line.t)
        result = replay(recording, {"desk-a": core}, actions=ActionsConfig(mode="armed"))
        assert (result.frames, result.skipped) == (4, {})
        return [(e.what, round(e.at - T0, 3)) for e in result.entries if e.kind == "outcome"]

    assert outcomes(disconnect=True) == [("sent", 4.2)]
    assert outcomes(disconnect=False)[0] == ("sent", 3.4)
