"""The state store's API: alert states, latches, daily and window records, silences, logs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskwatch.records import url_id
from riskwatch.store import DuplicateActionError, DuplicateRecordError, StateStoreError, Store
from tests.support.store_queries import (
    actions_in_window,
    delete_alert,
    find_action,
    get_action,
    get_silence,
    last_notification,
    latch_resets,
    latched,
)

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state.db") as s:
        yield s


def _intent(store: Store, n: int, **over: Any) -> None:
    fields: dict[str, Any] = {
        "action_id": f"act-{n}",
        "trip_key": f"trip-{n}",
        "rule": "MarginUsageCritical",
        "account": "desk-a",
        "symbol": "BTC-USD",
        "action": "close_position",
        "params": {"symbol": "BTC-USD", "quantity": 0.5},
        "client_order_id": f"rw-{n:08x}",
        "reason": "margin_usage 0.97 > 0.95",
        "mode": "armed",
        "now": T0 + n,
    }
    fields.update(over)
    store.record_intent(**fields)


# -- alert states and latches ----------------------------------------------------------


def test_alert_save_load_replace_delete(tmp_path: Path) -> None:
    """Alert states round-trip, are replaced by key, survive reopen and can be deleted."""
    path = tmp_path / "state.db"
    pending = {"state": "pending", "active_since": T0, "trip": None}
    with Store.open(path) as store:
        store.save_alert("MarginUsageHigh", "desk-a", None, pending, T0)
        store.save_alert("LeverageCap", "desk-a", "BTC-USD", {"state": "firing"}, T0)
        store.save_alert("MarginUsageHigh", "desk-a", None, {**pending, "trip": "t1"}, T0 + 1)
    with Store.open(path) as store:
        rows = store.load_alerts()
        assert rows == [
            ("LeverageCap", "desk-a", "BTC-USD", {"state": "firing"}),
            ("MarginUsageHigh", "desk-a", None, {**pending, "trip": "t1"}),
        ]
        rule, account, symbol, record = rows[1]
        assert (rule, account, symbol, record["active_since"]) == (
            "MarginUsageHigh",
            "desk-a",
            None,
            T0,
        )
        assert delete_alert(store, "MarginUsageHigh", "desk-a", "") is True
        assert delete_alert(store, "MarginUsageHigh", "desk-a", None) is False
        assert [r.rule for r in store.load_alerts()] == ["LeverageCap"]


def test_save_alerts_batch_is_all_or_nothing(store: Store) -> None:
    """A batch with one non-JSON-able record writes nothing at all."""
    store.save_alerts([("A", "acct", None, {"n": 1}), ("B", "acct", "X", {"n": 2})], T0)
    with pytest.raises(ValueError, match="alert record of C on acct is not json-serialisable"):
        store.save_alerts([("A", "acct", None, {"n": 9}), ("C", "acct", None, {"x": {1, 2}})], T0)
    assert [(r.rule, r.record["n"]) for r in store.load_alerts()] == [("A", 1), ("B", 2)]


def test_nan_in_record_is_refused(store: Store) -> None:
    """Records must be strict JSON: NaN is refused before writing."""
    with pytest.raises(ValueError, match="not json-serialisable"):
        store.save_daily("acct", {"peak": float("nan")})
    assert store.load_daily() == {}


def test_latched_listing_and_reset(store: Store) -> None:
    """Latched states are listed, and reset clears only the matching ones and logs who did it."""
    firing = {"state": "firing", "trip": "t1", "latched": True}
    store.save_alert("DailyLoss", "desk-a", None, firing, T0)
    store.save_alert("MarginUsageCritical", "desk-a", None, firing, T0)
    store.save_alert("LeverageCap", "desk-a", "ETH-USD", firing, T0)
    store.save_alert("DailyLoss", "desk-b", None, firing, T0)
    store.save_alert("MarginUsageHigh", "desk-a", None, {"state": "firing"}, T0)
    store.save_alert("Other", "desk-a", None, {"state": "firing", "latched": "yes"}, T0)

    assert [(r.account, r.rule) for r in latched(store)] == [
        ("desk-a", "DailyLoss"),
        ("desk-a", "LeverageCap"),
        ("desk-a", "MarginUsageCritical"),
        ("desk-b", "DailyLoss"),
    ]
    assert len(latched(store, "desk-b")) == 1

    reset = store.reset_latch("desk-a", rule="DailyLoss", now=T0 + 5, actor="ops@desk")
    assert reset == [("DailyLoss", "desk-a", None, {**firing, "latched": False})]
    assert store.reset_latch("desk-a", rule="DailyLoss", now=T0 + 6, actor="ops") == []

    by_symbol = store.reset_latch("desk-a", symbol="ETH-USD", now=T0 + 7, actor="cli")
    assert [(r.rule, r.symbol) for r in by_symbol] == [("LeverageCap", "ETH-USD")]

    rest = store.reset_latch("desk-a", now=T0 + 8, actor="api")
    assert [r.rule for r in rest] == ["MarginUsageCritical"]
    assert [(r.account, r.rule) for r in latched(store)] == [("desk-b", "DailyLoss")]

    stored = {(r.rule, r.account): r.record for r in store.load_alerts()}
    assert stored["DailyLoss", "desk-a"] == {"state": "firing", "trip": "t1", "latched": False}
    assert stored["DailyLoss", "desk-b"]["latched"] is True

    log = latch_resets(store)
    assert [(e.rule, e.symbol, e.actor, e.at) for e in log] == [
        ("MarginUsageCritical", None, "api", T0 + 8),
        ("LeverageCap", "ETH-USD", "cli", T0 + 7),
        ("DailyLoss", None, "ops@desk", T0 + 5),
    ]


def test_saving_a_latched_record_again_keeps_listing_in_step(store: Store) -> None:
    """The latch listing follows the record's latched flag on every save."""
    store.save_alert("R", "a", None, {"latched": True}, T0)
    assert len(latched(store)) == 1
    store.save_alert("R", "a", None, {"latched": False}, T0 + 1)
    assert latched(store) == []


# -- daily and windows ------------------------------------------------------------------


def test_daily_and_windows_round_trip(tmp_path: Path) -> None:
    """Daily records and window blobs are replaced per account and survive reopen."""
    path = tmp_path / "state.db"
    history = {"equity": [[T0, 1000.0], [T0 + 60, 990.5]], "step": 60}
    with Store.open(path) as store:
        store.save_daily("desk-a", {"baseline": 1000.0, "day": "2024-01-01"})
        store.save_daily("desk-a", {"baseline": 1010.0, "day": "2024-01-02", "peak": 1020.0})
        store.save_daily("desk-b", {"baseline": 5.0})
        store.save_windows("desk-a", history)
    with Store.open(path) as store:
        assert store.load_daily() == {
            "desk-a": {"baseline": 1010.0, "day": "2024-01-02", "peak": 1020.0},
            "desk-b": {"baseline": 5.0},
        }
        assert store.load_windows() == {"desk-a": history}


# -- action audit log -------------------------------------------------------------------


def test_intent_lifecycle(store: Store) -> None:
    """An intent is recorded, marked sent and given an outcome, with every field kept."""
    _intent(store, 1)
    rec = get_action(store, "act-1")
    assert rec is not None
    assert (rec.status, rec.sent_at, rec.outcome_at, rec.finished) == ("intent", None, None, False)
    assert rec.params == {"symbol": "BTC-USD", "quantity": 0.5}
    assert (rec.client_order_id, rec.mode, rec.attempt) == ("rw-00000001", "armed", 1)

    sent = store.mark_sent("act-1", T0 + 1.25)
    assert (sent.status, sent.sent_at) == ("sent", T0 + 1.25)
    done = store.record_outcome("act-1", "confirmed", "position flat", T0 + 2)
    assert (done.status, done.detail, done.outcome_at, done.finished) == (
        "confirmed",
        "position flat",
        T0 + 2,
        True,
    )
    assert done.to_dict()["params"] == {"symbol": "BTC-USD", "quantity": 0.5}


def test_duplicate_intent_is_detected(store: Store) -> None:
    """The same (trip, action, symbol, attempt) or action id cannot be recorded twice."""
    _intent(store, 1)
    store.mark_sent("act-1", T0 + 2)
    with pytest.raises(DuplicateActionError, match="already recorded") as info:
        _intent(store, 1, action_id="act-other")
    assert info.value.existing.action_id == "act-1"
    assert info.value.existing.status == "sent"
    with pytest.raises(DuplicateActionError) as info2:
        _intent(store, 2, action_id="act-1")
    assert info2.value.existing.trip_key == "trip-1"
    assert isinstance(info2.value, StateStoreError)
    assert [a.action_id for a in store.actions()] == ["act-1"]


def test_distinct_attempt_symbol_or_action_is_not_a_duplicate(store: Store) -> None:
    """Another attempt, symbol or action of the same trip is a new record."""
    _intent(store, 1)
    _intent(store, 1, action_id="a2", attempt=2, client_order_id="rw-2")
    _intent(store, 1, action_id="a3", symbol="ETH-USD")
    _intent(store, 1, action_id="a4", action="cancel_all_orders", symbol=None, params={})
    assert len(store.actions_for_trip("trip-1")) == 4
    found = find_action(store, "trip-1", "close_position", "BTC-USD", 2)
    assert found is not None
    assert found.action_id == "a2"
    account_wide = find_action(store, "trip-1", "cancel_all_orders", None)
    assert account_wide is not None
    assert account_wide.symbol is None
    assert find_action(store, "trip-1", "close_position", "BTC-USD", 3) is None


def test_unfinished_actions(tmp_path: Path) -> None:
    """Actions with an intent or a send but no outcome are listed after reopen, oldest first."""
    path = tmp_path / "state.db"
    with Store.open(path) as store:
        _intent(store, 1)
        _intent(store, 2)
        store.mark_sent("act-2", T0 + 2.1)
        _intent(store, 3)
        store.mark_sent("act-3", T0 + 3.1)
        store.record_outcome("act-3", "failed", "err 1005", T0 + 3.5)
        _intent(store, 4, mode="dry-run")
        store.record_outcome("act-4", "dry_run", None, T0 + 4)
    with Store.open(path) as store:
        unfinished = store.unfinished_actions()
        assert [(a.action_id, a.status) for a in unfinished] == [
            ("act-1", "intent"),
            ("act-2", "sent"),
        ]


def test_mark_sent_never_downgrades_an_outcome(store: Store) -> None:
    """A late mark_sent after an outcome keeps the outcome and fills sent_at."""
    _intent(store, 1)
    store.record_outcome("act-1", "confirmed", None, T0 + 2)
    rec = store.mark_sent("act-1", T0 + 1.5)
    assert (rec.status, rec.sent_at) == ("confirmed", T0 + 1.5)


def test_outcome_validation_and_unknown_ids(store: Store) -> None:
    """Non-final outcomes and unknown action ids are refused."""
    _intent(store, 1)
    with pytest.raises(ValueError, match="not a final outcome: 'sent'"):
        store.record_outcome("act-1", "sent", None, T0)
    with pytest.raises(StateStoreError, match="unknown action id: nope"):
        store.mark_sent("nope", T0)
    with pytest.raises(StateStoreError, match="unknown action id: nope"):
        store.record_outcome("nope", "failed", None, T0)
    with pytest.raises(ValueError, match="attempt must be 1 or more, got 0"):
        _intent(store, 2, attempt=0)
    assert get_action(store, "nope") is None


def test_outcome_can_be_reconciled(store: Store) -> None:
    """An unknown outcome can later be replaced by the reconciled one."""
    _intent(store, 1)
    store.record_outcome("act-1", "unknown", "no reply", T0 + 10)
    assert store.unfinished_actions() == []
    rec = store.record_outcome("act-1", "confirmed", "reconciled from pulse", T0 + 20)
    assert (rec.status, rec.outcome_at) == ("confirmed", T0 + 20)


def test_actions_newest_first_and_by_account(store: Store) -> None:
    """The audit listing is newest first, limited, and filterable by account."""
    for n in range(5):
        _intent(store, n, account="desk-a" if n % 2 == 0 else "desk-b")
    assert [a.action_id for a in store.actions()] == [f"act-{n}" for n in (4, 3, 2, 1, 0)]
    assert [a.action_id for a in store.actions(limit=2)] == ["act-4", "act-3"]
    assert [a.action_id for a in store.actions(account="desk-b")] == ["act-3", "act-1"]


def test_actions_in_window_counts_for_the_breaker(store: Store) -> None:
    """Actions since a time are counted per account, retries once, refusals not at all."""
    _intent(store, 1)
    _intent(store, 1, action_id="retry", attempt=2, now=T0 + 30)
    _intent(store, 2)
    _intent(store, 3)
    store.record_outcome("act-3", "refused", "CIRCUIT_BREAKER_OPEN: 6 actions in 1h", T0 + 3)
    _intent(store, 4, account="desk-b")
    _intent(store, 5, now=T0 - 4000)
    assert actions_in_window(store, "desk-a", T0 - 3600) == 2
    assert actions_in_window(store, "desk-a", T0 - 3600, exclude=()) == 3
    assert actions_in_window(store, "desk-a", T0 - 5000) == 3
    assert actions_in_window(store, "desk-a", T0 + 2.5) == 1  # only the retry
    assert actions_in_window(store, "desk-b", T0 - 3600) == 1
    assert actions_in_window(store, "nobody", 0.0) == 0


# -- notifications ----------------------------------------------------------------------


def test_notification_log(store: Store) -> None:
    """Deliveries are logged newest first, and the last successful one is found per key."""
    uid = url_id("mailtos://user:pw@example.com")
    log = [
        ("critical", "MarginUsageCritical/desk-a", "firing", "sent", T0),
        ("critical", "MarginUsageCritical/desk-a", "firing", "failed", T0 + 300),
        ("default", "MarginUsageCritical/desk-a", "firing", "sent", T0 + 301),
        ("critical", "DailyLoss/desk-a", "firing", "sent", T0 + 302),
    ]
    ids = [
        store.record_notification(
            route=route, url_id=uid, alert_key=key, status=st, result=res, detail=None, now=t
        )
        for route, key, st, res, t in log
    ]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    assert [n.at for n in store.notifications()] == [T0 + 302, T0 + 301, T0 + 300, T0]
    assert len(store.notifications(limit=1)) == 1

    last = last_notification(store, "critical", "MarginUsageCritical/desk-a")
    assert last is not None
    assert (last.at, last.result, last.url_id) == (T0, "sent", uid)
    any_last = last_notification(store, "critical", "MarginUsageCritical/desk-a", result=None)
    assert any_last is not None
    assert any_last.result == "failed"
    assert last_notification(store, "critical", "nothing") is None

    assert store.purge_notifications(T0 + 301) == 2
    assert [n.at for n in store.notifications()] == [T0 + 302, T0 + 301]


def test_notification_refuses_a_url(store: Store) -> None:
    """Passing a URL where its id belongs is refused without echoing the URL."""
    with pytest.raises(ValueError, match="url_id looks like a url") as info:
        store.record_notification(
            route="r",
            url_id="slack://T/B/s3cr3t",
            alert_key="k",
            status="firing",
            result="sent",
            detail=None,
            now=T0,
        )
    assert "s3cr3t" not in str(info.value)
    assert store.notifications() == []


# -- silences ---------------------------------------------------------------------------


def _silence(store: Store, sid: str, starts: float, ends: float) -> None:
    store.add_silence(
        id=sid,
        matchers=[{"name": "account", "value": "desk-a", "op": "="}],
        starts_at=starts,
        ends_at=ends,
        created_by="ops",
        comment="maintenance",
        now=T0,
    )


def test_silences_active_expire_and_purge(tmp_path: Path) -> None:
    """Silences are listed when active, expired ones are kept for history, then purged."""
    path = tmp_path / "state.db"
    with Store.open(path) as store:
        _silence(store, "s1", T0, T0 + 3600)
        _silence(store, "s2", T0 + 7200, T0 + 9000)
        s = get_silence(store, "s1")
        assert s is not None
        assert s.matchers == ({"name": "account", "value": "desk-a", "op": "="},)
        assert s.to_dict()["matchers"] == [{"name": "account", "value": "desk-a", "op": "="}]
        assert [x.id for x in store.silences(active_at=T0 + 10)] == ["s1"]
        assert [x.id for x in store.silences(active_at=T0 + 8000)] == ["s2"]
        assert store.silences(active_at=T0 + 3600) == []

        expired = store.expire_silence("s1", T0 + 100)
        assert expired is not None
        assert (expired.ends_at, expired.expired_at) == (T0 + 100, T0 + 100)
        assert not expired.active_at(T0 + 100)
        assert expired.active_at(T0 + 99)
        again = store.expire_silence("s1", T0 + 200)
        assert again == expired
        assert store.expire_silence("missing", T0) is None
    with Store.open(path) as store:
        assert store.silences(active_at=T0 + 150) == []
        assert [x.id for x in store.silences()] == ["s1", "s2"]
        assert store.purge_silences(T0 + 101) == 1
        assert [x.id for x in store.silences()] == ["s2"]


def test_silence_validation(store: Store) -> None:
    """Bad spans, empty matchers and duplicate ids are refused."""
    _silence(store, "s1", T0, T0 + 1)
    with pytest.raises(DuplicateRecordError, match="silence already exists: s1"):
        _silence(store, "s1", T0, T0 + 5)
    with pytest.raises(ValueError, match="ends at"):
        _silence(store, "s2", T0, T0)
    with pytest.raises(ValueError, match="no matchers"):
        store.add_silence(
            id="s3", matchers=[], starts_at=T0, ends_at=T0 + 1, created_by="x", comment="", now=T0
        )
    assert [s.id for s in store.silences()] == ["s1"]


# -- threads ----------------------------------------------------------------------------


def test_calls_from_many_threads_are_serialised(store: Store) -> None:
    """Concurrent calls from several threads all land, none is lost or interleaved."""
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(25):
                _intent(store, k * 100 + i)
                store.save_alert("R", f"acct-{k}", str(i), {"i": i}, T0)
                store.actions(limit=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == []
    assert len(store.actions(limit=1000)) == 100
    assert len(store.load_alerts()) == 100
