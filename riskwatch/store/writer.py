"""One writer thread for the state database: every write but the intent commit.

The event loop must never wait on SQLite: a write can take an fsync (milliseconds), and
another process holding the database's write lock once froze the daemon for seconds.
So the daemon hands its writes (alert states, daily baselines and peaks, window
history, action outcomes, the notification log, latch resets) to a
:class:`StateWriter`: each call only queues the write (O(1), never blocks, never
raises on a database fault) and one thread commits what is queued in batches, one
transaction and one fsync per batch (:meth:`riskwatch.store.Store.write_batch`).
Only the intent commit stays on the reaction path, with its bounded wait
(:mod:`riskwatch.store.db`).

Coalescing: a record that replaces the previous one of the same key (an alert state,
an account's daily record or window history) is queued once; a newer value replaces
a queued one. Log rows (outcomes, notifications, latch resets) are queued in order.

Order: writes are committed in the order they were queued, except that coalesced
records are written with the batch that holds their latest value.

Faults: when a batch fails (disk full, I/O error, the database busy beyond its wait),
nothing of it is written; it stays queued, ``on_error(op, message)`` is called for each
kind of record in it, and the batch is tried again after a backoff (50 ms doubling to
2 s). The first batch that commits after a failure calls ``on_recovered()``. Log rows
beyond ``max_pending`` drop the oldest (counted in :attr:`StateWriter.dropped`, and
reported through ``on_error("queue", ...)``). A single write the database refuses on
its own merits (an outcome for an unknown action id, a record that is not JSON) is
dropped and reported, without holding back the rest. The callbacks run on the writer
thread: the caller hands them to its event loop (``loop.call_soon_threadsafe``).

Durability: what is queued but not yet committed is lost by a crash. Batches start as
soon as the thread is free, so that window is one batch (milliseconds) while the
database works; while it fails, the queued records are kept in memory (and an alert
raised by the caller) until it works again. A batch's commit is not fsync'd (an fsync
would hold the write lock the intent commit waits for: :mod:`riskwatch.store.db`); the
thread fsyncs within :data:`SYNC_INTERVAL` of it, with a checkpoint that holds no lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from riskwatch.records import PENDING_STATUSES
from riskwatch.store.db import BatchOp, Store
from riskwatch.store.errors import StateStoreError

__all__ = ["ErrorListener", "OutcomeLog", "StateWriter"]

log = logging.getLogger(__name__)

ErrorListener = Callable[[str, str], None]
"""``(op, message)``: a write of kind ``op`` failed (called on the writer thread)."""


class OutcomeLog(Protocol):
    """Where an action's send and outcome are recorded: a :class:`StateWriter` (queued,
    off the event loop) or a :class:`~riskwatch.store.Store` (at once)."""

    def mark_sent(self, action_id: str, now: float) -> object:
        """Record that the action's command went out."""
        ...

    def record_outcome(
        self, action_id: str, outcome: str, detail: str | None, now: float
    ) -> object:
        """Record the action's outcome."""
        ...


MAX_BATCH: Final = 2000
"""Most queued log rows committed in one transaction."""
SYNC_INTERVAL: Final = 1.0
"""Most seconds between a batch's commit and its fsync (``Store.sync``): what a power
loss can cost. A process crash costs nothing committed."""
RETRY_INITIAL: Final = 0.05
RETRY_CAP: Final = 2.0


@dataclass(slots=True)
class _Write:
    op: str
    """The kind of record, as ``riskwatch_state_errors_total{op}`` names it."""
    apply: BatchOp


class StateWriter:
    """Queues writes for ``store`` and commits them on one thread (module docstring).

    Build it, :meth:`start` it, and :meth:`close` it when done (which commits what is
    queued, waiting at most its ``timeout``). Thread-safe.
    """

    def __init__(
        self,
        store: Store,
        *,
        on_error: ErrorListener | None = None,
        on_recovered: Callable[[], None] | None = None,
        max_pending: int = 100_000,
        retry_initial: float = RETRY_INITIAL,
        retry_cap: float = RETRY_CAP,
    ) -> None:
        self.store = store
        self.on_error = on_error
        self.on_recovered = on_recovered
        self.max_pending = max_pending
        self.retry_initial = retry_initial
        self.retry_cap = retry_cap
        self.dropped = 0
        """Log rows dropped because the queue was full (the database failing for long)."""
        self.written = 0
        """Records committed so far."""
        self._cond = threading.Condition()
        self._keyed: dict[Hashable, _Write] = {}
        self._rows: deque[_Write] = deque()
        self._busy = False  # a batch is being written
        self._closing = False
        self._failing = False
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> bool:
        """Commit what is queued (waiting at most ``timeout`` s), then stop the thread.

        Returns False when records were left unwritten (the database failing). A
        writer never started is started for this last flush.
        """
        if self._thread is None and not self._closing:
            self.start()
        done = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.1, timeout))
            self._thread = None
        if not done:
            left = self.pending()
            log.error("state database: %d queued record(s) not written at stop", left)
        return done

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is committed; False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._keyed or self._rows or self._busy:
                if self._thread is None:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def pending(self) -> int:
        """Records queued and not yet committed."""
        with self._cond:
            return len(self._keyed) + len(self._rows)

    @property
    def failing(self) -> bool:
        """True from a failed batch until the next one that commits."""
        return self._failing

    # -- writes (any thread; each only queues) -----------------------------------------

    def save_alerts(
        self, rows: Iterable[tuple[str, str, str | None, Mapping[str, Any]]], now: float
    ) -> None:
        """Queue alert states (``Store.save_alerts``), each replacing a queued one."""
        for rule, account, symbol, record in rows:
            blob = dict(record)
            self._put(
                ("alert", rule, account, symbol or ""),
                _alert_write(rule, account, symbol, blob, now),
            )

    def save_daily(self, account: str, record: Mapping[str, Any]) -> None:
        """Queue ``account``'s daily baseline and peaks record (``Store.save_daily``)."""
        blob = dict(record)
        self._put(("daily", account), _Write("daily", lambda s: s.save_daily(account, blob)))

    def save_windows(self, account: str, record: Mapping[str, Any]) -> None:
        """Queue ``account``'s window history (``Store.save_windows``)."""
        blob = dict(record)
        self._put(("windows", account), _Write("windows", lambda s: s.save_windows(account, blob)))

    def mark_sent(self, action_id: str, now: float) -> None:
        """Queue ``Store.mark_sent``."""
        self._put(None, _Write("outcome", lambda s: s.mark_sent(action_id, now)))

    def record_outcome(self, action_id: str, outcome: str, detail: str | None, now: float) -> None:
        """Queue ``Store.record_outcome`` (a bad ``outcome`` raises ``ValueError`` here)."""
        if not outcome or outcome in PENDING_STATUSES:
            msg = f"not a final outcome: {outcome!r}"
            raise ValueError(msg)
        self._put(
            None, _Write("outcome", lambda s: s.record_outcome(action_id, outcome, detail, now))
        )

    def record_notification(
        self,
        *,
        route: str,
        url_id: str,
        alert_key: str,
        status: str,
        result: str,
        detail: str | None,
        now: float,
    ) -> None:
        """Queue ``Store.record_notification`` (a URL as ``url_id`` raises ``ValueError``)."""
        if "://" in url_id:
            msg = "url_id looks like a url: pass url_id(url), never the url itself"
            raise ValueError(msg)

        def write(s: Store) -> None:
            s.record_notification(
                route=route,
                url_id=url_id,
                alert_key=alert_key,
                status=status,
                result=result,
                detail=detail,
                now=now,
            )

        self._put(None, _Write("notification", write))

    def reset_latch(
        self, account: str, *, rule: str | None, symbol: str | None, now: float, actor: str
    ) -> None:
        """Queue ``Store.reset_latch`` (the stored latch flags and the reset log)."""

        def write(s: Store) -> None:
            s.reset_latch(account, rule=rule, symbol=symbol, now=now, actor=actor)

        self._put(None, _Write("latch_reset", write))

    # -- the thread ------------------------------------------------------------------

    def _put(self, key: Hashable | None, write: _Write) -> None:
        overflow = 0
        with self._cond:
            if key is None:
                self._rows.append(write)
                while len(self._rows) > self.max_pending:
                    self._rows.popleft()
                    overflow += 1
            else:
                self._keyed[key] = write
            self._cond.notify()
        if overflow:
            self.dropped += overflow
            self._report("queue", f"{overflow} record(s) dropped: write queue full")

    def _take(self, sync_at: float | None) -> tuple[dict[Hashable, _Write], list[_Write]] | None:
        """Wait for work; take a batch (None when closing with nothing queued; an empty
        batch when ``sync_at``, a monotonic time, came first)."""
        with self._cond:
            while not self._keyed and not self._rows:
                if self._closing:
                    return None
                if sync_at is None:
                    self._cond.wait()
                    continue
                left = sync_at - time.monotonic()
                if left <= 0:
                    return {}, []
                self._cond.wait(left)
            keyed, self._keyed = self._keyed, {}
            rows = [self._rows.popleft() for _ in range(min(MAX_BATCH, len(self._rows)))]
            self._busy = True
            return keyed, rows

    def _give_back(self, keyed: dict[Hashable, _Write], rows: list[_Write]) -> None:
        """Requeue a failed batch in front, keeping values queued since (they are newer)."""
        with self._cond:
            for key, write in keyed.items():
                self._keyed.setdefault(key, write)
            self._rows.extendleft(reversed(rows))
            self._busy = False
            self._cond.notify_all()

    def _sync(self) -> bool:
        """Fsync what the batches committed (``Store.sync``); False when it failed."""
        try:
            self.store.sync()
        except StateStoreError as exc:
            self._report("sync", str(exc))
            return False
        return True

    def _run(self) -> None:
        delay = self.retry_initial
        unsynced: float | None = None  # when the oldest batch not yet fsync'd committed
        while True:
            batch = self._take(None if unsynced is None else unsynced + SYNC_INTERVAL)
            if batch is None:
                if unsynced is not None:
                    self._sync()
                return
            keyed, rows = batch
            writes = [*keyed.values(), *rows]
            if not writes:
                if self._sync():
                    unsynced = None
                continue
            try:
                refused, done = self.store.write_batch([w.apply for w in writes])
            except StateStoreError as exc:
                self._give_back(keyed, rows)
                self._failing = True
                for op in sorted({w.op for w in writes}):
                    self._report(op, str(exc))
                with self._cond:
                    if self._closing:
                        return  # close() gave up waiting: what is left is reported there
                    self._cond.wait(delay)
                delay = min(self.retry_cap, delay * 2)
                continue
            except Exception as exc:  # a bug must not end the thread: drop, say so
                log.exception("state writer: batch dropped")
                self._report("batch", f"batch dropped: {exc}")
                refused, done = [], len(writes)
            if done < len(writes):
                # The batch gave way to a write on the event loop (Store.write_batch):
                # what did not run goes back in front, behind nothing newer.
                self._give_back(dict(list(keyed.items())[done:]), rows[max(0, done - len(keyed)) :])
            delay = self.retry_initial
            now = time.monotonic()
            if unsynced is None:
                unsynced = now
            elif now - unsynced >= SYNC_INTERVAL and self._sync():
                unsynced = None
            for index, error in refused:
                log.error("state database refused a %s write: %s", writes[index].op, error)
                self._report(writes[index].op, str(error))
            with self._cond:
                self.written += done - len(refused)
                self._busy = False
                self._cond.notify_all()
            if self._failing:
                self._failing = False
                log.warning("state database writes work again")
                if self.on_recovered is not None:
                    try:
                        self.on_recovered()
                    except Exception:
                        log.exception("state writer: recovery listener failed")

    def _report(self, op: str, message: str) -> None:
        if self.on_error is None:
            return
        try:
            self.on_error(op, message)
        except Exception:
            log.exception("state writer: error listener failed")


def _alert_write(
    rule: str, account: str, symbol: str | None, record: dict[str, Any], now: float
) -> _Write:
    def write(s: Store) -> None:
        s.save_alerts([(rule, account, symbol, record)], now)

    return _Write("alert_state", write)
