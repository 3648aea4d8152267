"""The records the state database keeps (riskwatch.records): pure values, no store needed."""

from __future__ import annotations

from riskwatch.records import ActionRecord, Silence, url_id

T0 = 1_700_000_000.0


def _action(status: str) -> ActionRecord:
    return ActionRecord(
        action_id="a1",
        trip_key="t1",
        rule="DailyLoss",
        account="desk-a",
        symbol=None,
        action="cancel_all_orders",
        attempt=1,
        params={},
        client_order_id=None,
        reason="daily loss 6 % > 5 %",
        mode="live",
        status=status,
        detail=None,
        intent_at=T0,
        sent_at=None,
        outcome_at=None,
    )


def test_an_action_is_finished_once_it_has_an_outcome() -> None:
    """Intent and sent are pending; any recorded outcome finishes the action."""
    assert [_action(s).finished for s in ("intent", "sent")] == [False, False]
    assert all(_action(s).finished for s in ("confirmed", "failed", "refused", "unknown"))
    assert _action("sent").to_dict()["symbol"] is None


def test_a_silence_applies_from_its_start_until_before_its_end() -> None:
    """Active on ``[starts_at, ends_at)``; matchers come back as a list of dicts."""
    silence = Silence(
        id="s1",
        matchers=({"name": "account", "value": "desk-a", "op": "="},),
        starts_at=T0,
        ends_at=T0 + 60,
        created_by="ops",
        comment="maintenance",
        created_at=T0,
        expired_at=None,
    )
    assert [silence.active_at(t) for t in (T0 - 1, T0, T0 + 59.9, T0 + 60)] == [
        False,
        True,
        True,
        False,
    ]
    assert silence.to_dict()["matchers"] == [{"name": "account", "value": "desk-a", "op": "="}]


def test_url_id_is_stable_and_hides_the_url() -> None:
    """url_id is deterministic, short, and does not contain the URL's secret."""
    url = "slack://T000/B000/s3cr3tTok3n"
    assert url_id(url) == url_id(url)
    assert url_id(url) != url_id(url + "x")
    assert len(url_id(url)) == 16
    assert "s3cr3t" not in url_id(url)
