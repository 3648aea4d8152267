"""Fuzzing the exchange-frame path: decoder, session, and the account core behind them."""

from __future__ import annotations

import glob
import json

from hypothesis import given
from hypothesis import strategies as st

from riskwatch.errors import ConfigError
from riskwatch.model import BadMessage, Event, UnknownMessage
from riskwatch.pipeline import AccountCore
from riskwatch.qfex.schemas import MAX_FRAME_CHARS, decode_mds, decode_trade
from riskwatch.qfex.session import SessionState, TradeSession
from riskwatch.rules.load import load_rule_files, load_rules_text
from riskwatch.rules.model import RuleSet
from riskwatch.web.jsondoc import json_response
from tests.support.paths import REPO
from tests.support.strategies import dumps, examples, json_values, mangle, shaped_frames

EXAMPLES = examples(120)
NOW = 1_750_000_000.0

FALLBACK_RULES = """
rules:
  - name: MarginHigh
    scope: account
    when: margin_usage > 0.8
    for: 1s
    severity: warning
    summary: "margin {{ margin_usage | pct }}"
  - name: Flatten
    scope: account
    when: maintenance_usage >= 0.9
    severity: critical
    actions: [cancel_all_orders, {close_position: all}]
    latch: true
    summary: "flatten {{ account }}"
  - name: PosLoss
    scope: position
    when: unrealised_pnl < -1000 and liquidation_distance < 0.1
    severity: critical
    summary: "{{ symbol }} losing"
"""


def _rules() -> RuleSet:
    """The shipped rule pack when it loads, else a small pack using every rule feature."""
    files = sorted(glob.glob(str(REPO / "rules" / "*.yaml")))
    try:
        return load_rule_files(files) if files else load_rules_text(FALLBACK_RULES)
    except ConfigError:
        return load_rules_text(FALLBACK_RULES)


RULES = _rules()


def _assert_events(events: list[Event]) -> None:
    assert isinstance(events, list)  # empty only for an envelope with no items
    for ev in events:
        assert ev.received_at == NOW
        if isinstance(ev, BadMessage | UnknownMessage):
            assert len(ev.sample) <= 200


@EXAMPLES
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_trade_decoder_is_total_on_arbitrary_input(data: str | bytes) -> None:
    """Any text or bytes decodes to events without raising."""
    _assert_events(decode_trade(data, NOW))


@EXAMPLES
@given(shaped_frames)
def test_trade_decoder_is_total_on_shaped_frames(frame: dict[str, object]) -> None:
    """Frames shaped like the exchange's, with wrong or extreme values, decode without raising."""
    _assert_events(decode_trade(dumps(frame), NOW))


@EXAMPLES
@given(shaped_frames, st.integers(min_value=0), st.binary(max_size=8))
def test_truncated_and_non_utf8_frames_are_bad_not_fatal(
    frame: dict[str, object], cut: int, junk: bytes
) -> None:
    """A truncated frame or one with non-UTF-8 bytes is one BadMessage or a valid decode."""
    data = mangle(dumps(frame), cut, junk)
    events = decode_trade(data, NOW)
    _assert_events(events)
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        assert any(isinstance(e, BadMessage) for e in events)


def test_oversized_frame_is_refused_unread() -> None:
    """A frame over the size limit is one BadMessage naming its size."""
    big = '{"position_response": {"symbol": "' + "A" * MAX_FRAME_CHARS + '"}}'
    (event,) = decode_trade(big, NOW)
    assert isinstance(event, BadMessage)
    assert "exceeds" in event.reason
    (event,) = decode_mds(big, NOW)
    assert isinstance(event, BadMessage)


def test_deeply_nested_frame_is_bad() -> None:
    """A frame nested thousands of levels deep is one BadMessage (no RecursionError)."""
    deep = '{"position_response": ' + "[" * 5000 + "]" * 5000 + "}"
    events = decode_trade(deep, NOW)
    assert len(events) == 1
    assert isinstance(events[0], BadMessage)
    assert all(isinstance(e, BadMessage) for e in decode_mds("[" * 5000 + "]" * 5000, NOW))


@EXAMPLES
@given(st.one_of(json_values.map(dumps), st.text(max_size=200), st.binary(max_size=200)))
def test_mds_decoder_is_total(data: str | bytes) -> None:
    """Any market-data frame decodes to a list of events without raising."""
    events = decode_mds(data, NOW)
    assert isinstance(events, list)
    assert all(e.received_at == NOW for e in events)


def _live_session() -> TradeSession:
    session = TradeSession(public_key="pk", secret_key="sk-fuzz-secret", nonce_factory=lambda: "n")
    session.connection_made(NOW)
    session.receive_text('{"authenticated": true}', NOW)
    for channel in session.channels:
        session.receive_text(json.dumps({"subscribed": channel}), NOW)
    assert session.state is SessionState.LIVE
    session.events_received()
    return session


@examples(60)
@given(st.lists(st.one_of(shaped_frames.map(dumps), st.text(max_size=80)), max_size=8))
def test_session_and_core_survive_any_frame_sequence(frames: list[str]) -> None:
    """A live session and the account core (with rules) take any frames without raising."""
    session = _live_session()
    core = AccountCore("fuzz", stale_after=5.0, rules=RULES)
    t = NOW
    for text in frames:
        t += 0.5
        session.receive_text(text, t)
        events = session.events_received()
        core.handle(events, t)
        assert "sk-fuzz-secret" not in repr(session)
    core.tick(t + 1.0)
    json.loads(json_response(core.describe(t + 1.0)).text or "")
    core.figures_at(t + 1.0)
