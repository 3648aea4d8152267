"""The writer thread: batched, coalesced, ordered writes; faults reported, kept and retried;
bounded waits when another process holds the database's write lock; private files."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from riskwatch.store import StateStoreError, Store
from riskwatch.store.db import WRITE_WAIT_S, BatchResult
from riskwatch.store.writer import SYNC_INTERVAL, StateWriter

T0 = 1_700_000_000.0


class Reports:
    """What the writer reported, from its thread."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []
        self.recovered = threading.Event()

    def error(self, op: str, message: str) -> None:
        self.errors.append((op, message))

    def ok(self) -> None:
        self.recovered.set()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state.db") as s:
        yield s


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def writer(store: Store, reports: Reports) -> Iterator[StateWriter]:
    w = StateWriter(store, on_error=reports.error, on_recovered=reports.ok, retry_initial=0.02)
    w.start()
    yield w
    w.close(2.0)


def _intent(store: Store, n: int) -> str:
    aid = f"act-{n}"
    store.record_intent(
        action_id=aid,
        trip_key=f"trip-{n}",
        rule="LossFlatten",
        account="desk-a",
        symbol=None,
        action="cancel_all_orders",
        params={"trip_id": n},
        client_order_id=None,
        reason="test",
        mode="armed",
        now=T0,
    )
    return aid


class HeldLock:
    """Another connection (as another process would) holding the write lock."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def test_writes_are_committed_coalesced_and_in_order(store: Store, writer: StateWriter) -> None:
    """A replaced record is written with its latest value; log rows keep their order."""
    aid = _intent(store, 1)
    for peak in (100.0, 110.0, 120.0):
        writer.save_daily("desk-a", {"version": 1, "intraday_peak": peak})
    writer.save_alerts([("R", "desk-a", None, {"state": "firing", "latched": True})], T0)
    writer.mark_sent(aid, T0 + 1)
    writer.record_outcome(aid, "confirmed", "effect seen", T0 + 2)
    assert writer.flush(5.0)
    assert store.load_daily() == {"desk-a": {"version": 1, "intraday_peak": 120.0}}
    assert [r.record["latched"] for r in store.load_alerts()] == [True]
    rec = store.actions()[0]
    assert (rec.status, rec.sent_at, rec.outcome_at) == ("confirmed", T0 + 1, T0 + 2)
    assert writer.pending() == 0
    assert not writer.failing


def test_a_write_the_database_refuses_is_dropped_alone(
    store: Store, writer: StateWriter, reports: Reports
) -> None:
    """An outcome for an unknown action is reported; the rest of its batch is written."""
    writer.record_outcome("no-such-action", "confirmed", None, T0)
    writer.save_daily("desk-a", {"version": 1})
    assert writer.flush(5.0)
    assert store.load_daily() == {"desk-a": {"version": 1}}
    assert [op for op, _ in reports.errors] == ["outcome"]
    assert "unknown action id" in reports.errors[0][1]
    assert not writer.failing


def test_a_held_write_lock_is_reported_kept_and_retried(
    tmp_path: Path, store: Store, writer: StateWriter, reports: Reports
) -> None:
    """While another connection holds the lock: errors reported, nothing lost; then written."""
    lock = HeldLock(tmp_path / "state.db")
    try:
        writer.save_daily("desk-a", {"version": 1, "baseline": 1.0})
        writer.record_notification(
            route="r0", url_id="u", alert_key="k", status="firing", result="sent",
            detail=None, now=T0,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while not writer.failing and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.failing
        assert {op for op, _ in reports.errors} >= {"daily", "notification"}
        assert "locked" in reports.errors[0][1]
        assert writer.pending() == 2
        assert not writer.flush(0.2)
        # A newer value queued while failing wins over the one being retried.
        writer.save_daily("desk-a", {"version": 1, "baseline": 2.0})
    finally:
        lock.release()
    assert reports.recovered.wait(5.0)
    assert writer.flush(5.0)
    assert store.load_daily() == {"desk-a": {"version": 1, "baseline": 2.0}}
    assert [n.alert_key for n in store.notifications()] == ["k"]
    assert not writer.failing


def test_full_queue_drops_oldest_log_rows_and_says_so(store: Store, reports: Reports) -> None:
    """Bounded memory while the database fails: the oldest log rows go, counted."""
    w = StateWriter(store, on_error=reports.error, max_pending=3)  # not started: rows stay
    for n in range(5):
        w.record_notification(
            route="r0", url_id="u", alert_key=f"k{n}", status="firing", result="sent",
            detail=None, now=T0 + n,
        )  # fmt: skip
    assert w.dropped == 2
    assert w.pending() == 3
    assert [op for op, _ in reports.errors] == ["queue", "queue"]
    w.start()
    assert w.close(5.0)
    assert [n.alert_key for n in store.notifications()] == ["k4", "k3", "k2"]


def test_intent_commit_waits_a_bounded_time_for_a_held_lock(tmp_path: Path, store: Store) -> None:
    """The one write on the reaction path fails fast instead of freezing the caller."""
    lock = HeldLock(tmp_path / "state.db")
    try:
        started = time.monotonic()
        with pytest.raises(StateStoreError, match="locked"):
            _intent(store, 1)
        waited = time.monotonic() - started
        assert waited < WRITE_WAIT_S + 0.5, waited
        # Reads go on: WAL readers never wait for the writer.
        started = time.monotonic()
        assert store.actions() == []
        assert time.monotonic() - started < 0.05
    finally:
        lock.release()
    _intent(store, 1)
    assert [r.action_id for r in store.actions()] == ["act-1"]


def test_intent_commit_waits_a_bounded_time_behind_the_writer(store: Store) -> None:
    """The store's own lock held by a long write: the intent gives up after its bound."""
    release = threading.Event()

    def slow(_: Store) -> None:
        release.wait(5.0)

    t = threading.Thread(target=store.write_batch, args=([slow],))
    t.start()
    try:
        time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(StateStoreError, match="another write held it"):
            _intent(store, 2)
        assert time.monotonic() - started < WRITE_WAIT_S + 0.5
    finally:
        release.set()
        t.join(5.0)


def test_a_batch_gives_way_to_a_waiting_write(store: Store) -> None:
    """A write waiting for the lock (the intent commit) waits for the op the batch is
    running, not the batch: the batch commits what ran and returns the count."""

    def op(n: int) -> Callable[[Store], None]:
        def apply(s: Store) -> None:
            time.sleep(0.02)
            s.save_daily(f"desk-{n}", {"version": 1, "n": n})

        return apply

    result: list[BatchResult] = []
    t = threading.Thread(
        target=lambda: result.append(store.write_batch([op(n) for n in range(50)]))
    )
    t.start()
    time.sleep(0.05)  # a few ops in
    started = time.monotonic()
    _intent(store, 3)
    waited = time.monotonic() - started
    t.join(5.0)
    assert waited < 0.2, waited  # the whole batch would hold it for 1 s
    (done,) = result
    assert done.refused == []
    assert 1 <= done.done < 50
    assert sorted(store.load_daily()) == sorted(f"desk-{n}" for n in range(done.done))
    assert [r.action_id for r in store.actions()] == ["act-3"]


def test_the_writer_writes_later_what_a_batch_left(store: Store, writer: StateWriter) -> None:
    """What a batch left for a waiting write is written by the next batches, newest
    values kept."""
    slow = threading.Event()
    real = store.save_daily

    def save_daily(account: str, record: dict[str, object]) -> None:
        if slow.is_set():
            time.sleep(0.005)
        real(account, record)

    store.save_daily = save_daily  # type: ignore[method-assign, assignment]
    slow.set()
    for n in range(100):
        writer.save_daily(f"desk-{n}", {"version": 1, "n": n})
    time.sleep(0.03)  # the writer is inside its batch
    started = time.monotonic()
    _intent(store, 4)
    assert time.monotonic() - started < 0.2
    writer.save_daily("desk-99", {"version": 1, "n": 990})  # newer than the queued one
    assert writer.flush(10.0)
    daily = store.load_daily()
    assert len(daily) == 100
    assert daily["desk-99"]["n"] == 990
    assert writer.pending() == 0
    assert not writer.failing


def test_state_files_are_created_owner_only(tmp_path: Path) -> None:
    """The database and SQLite's -wal/-shm beside it are 0600; a wider file is narrowed."""
    path = tmp_path / "state.db"
    with Store.open(path) as s:
        s.save_daily("desk-a", {"version": 1})
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    path.chmod(0o644)
    with Store.open(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_committed_batches_are_fsynced_within_the_sync_interval(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches commit without an fsync; a lock-free checkpoint follows within a second,
    and one more at close."""
    synced: list[float] = []
    sync = store.sync

    def counting_sync() -> None:
        sync()
        synced.append(time.monotonic())

    monkeypatch.setattr(store, "sync", counting_sync)
    w = StateWriter(store)
    w.start()
    committed = time.monotonic()
    w.save_daily("desk-a", {"version": 1})
    assert w.flush(5.0)
    deadline = time.monotonic() + 5
    while not synced and time.monotonic() < deadline:
        time.sleep(0.02)
    assert synced, "no fsync after a committed batch"
    assert synced[0] - committed < SYNC_INTERVAL + 1.0
    time.sleep(0.3)
    assert len(synced) == 1  # nothing new: no sync
    w.save_daily("desk-a", {"version": 2})
    assert w.close(5.0)
    assert len(synced) == 2
    assert store.load_daily() == {"desk-a": {"version": 2}}


def test_a_refused_op_is_left_out_whole_and_the_rest_committed(store: Store) -> None:
    """An op that wrote and then refused leaves nothing of its own; the ops around it
    are committed, and only it is returned as refused."""

    def write_then_refuse(s: Store) -> None:
        s.save_daily("desk-half", {"version": 1})
        msg = "refused after a write"
        raise ValueError(msg)

    ops: list[Callable[[Store], object]] = [
        lambda s: s.save_daily("desk-a", {"version": 1}),
        write_then_refuse,
        lambda s: s.save_daily("desk-b", {"version": 1}),
        lambda s: s.record_outcome("no-such-action", "confirmed", None, T0),
        lambda s: s.save_daily("desk-c", {"version": 1}),
    ]
    result = store.write_batch(ops)
    assert result.done == 5
    assert [(i, type(e).__name__) for i, e in result.refused] == [
        (1, "ValueError"),
        (3, "StateStoreError"),
    ]
    assert sorted(store.load_daily()) == ["desk-a", "desk-b", "desk-c"]


def test_a_refusal_after_the_batch_gave_way_is_not_reported_twice(store: Store) -> None:
    """An op refused in a try that then gave way before reaching it is not reported by
    this batch: it is among the ops the caller submits again."""
    entered = threading.Event()
    go_on = threading.Event()
    tries = []

    def slow(s: Store) -> None:
        tries.append(1)
        if len(tries) == 2:  # the second try: let a write wait behind it
            entered.set()
            go_on.wait(5.0)
        s.save_daily("desk-a", {"version": 1})

    def refuse(_: Store) -> None:
        msg = "refused"
        raise ValueError(msg)

    def rest(s: Store) -> None:
        s.save_daily("desk-b", {"version": 1})

    result: list[BatchResult] = []
    t = threading.Thread(target=lambda: result.append(store.write_batch([slow, rest, refuse])))
    t.start()
    assert entered.wait(5.0)
    waiter = threading.Thread(target=_intent, args=(store, 5))
    waiter.start()
    while not store._waiting:  # the intent waits for the lock
        time.sleep(0.001)
    go_on.set()
    t.join(5.0)
    waiter.join(5.0)
    (done,) = result
    assert (done.done, done.refused) == (1, [])
    assert sorted(store.load_daily()) == ["desk-a"]


def test_a_commit_runs_a_pragma_only_when_its_setting_changes(store: Store) -> None:
    """The intent commit runs no PRAGMA after one of its own kind (each statement is a
    chance for another thread to take the interpreter lock); a FULL write after it
    sets FULL again, and commits with it."""
    statements: list[str] = []
    conn = store._conn
    assert conn is not None
    _intent(store, 1)
    conn.set_trace_callback(statements.append)
    _intent(store, 2)
    assert not [s for s in statements if s.startswith("PRAGMA")], statements
    store.save_daily("desk-a", {"version": 1})
    assert [s for s in statements if s.startswith("PRAGMA")] == ["PRAGMA synchronous = FULL"]
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    statements.clear()
    store.write_batch([lambda s: s.save_daily("desk-b", {"version": 1})])
    assert [s for s in statements if s.startswith(("PRAGMA", "SAVEPOINT"))] == [
        "PRAGMA synchronous = NORMAL"
    ]
