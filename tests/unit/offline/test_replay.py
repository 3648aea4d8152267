"""Unit tests of ``riskwatch replay``'s driver over hand-made recordings."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from riskwatch.offline.replay import replay, run_replay
from riskwatch.pipeline import AccountCore
from riskwatch.qfex.recorder import RecordedFrame, Recorder
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


def test_run_replay_reports_unknown_accounts(tmp_path: Path) -> None:
    """The command prints the timeline, names skipped accounts on stderr, and exits 0."""
    (tmp_path / "r.yaml").write_text(RULES, encoding="utf-8")
    config = tmp_path / "riskwatch.yaml"
    config.write_text(
        "exchange: {url: 'ws://127.0.0.1:9/', allow_insecure: true}\n"
        "accounts:\n  - {name: desk-a, public_key: k, secret_key: s}\n"
        "rules: [r.yaml]\n",
        encoding="utf-8",
    )
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
