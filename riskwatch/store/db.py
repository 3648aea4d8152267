"""The state database: what makes a restart safe (docs/configuration.md, "The state database").

One SQLite file holds alert states (with pending ``for`` timers, trip ids and latches,
inside the caller's records), daily baselines and peaks, downsampled window history,
silences, and the action and notification audit logs.

Durability: the file is in WAL mode with ``synchronous=FULL``: every commit is
fsync'd to the WAL before ``COMMIT`` returns, so neither a process crash nor a power
loss can lose what a method wrote. One exception, on the path from a breaching frame
to the protective command: :meth:`Store.record_intent` commits with
``synchronous=NORMAL`` (:data:`INTENT_SYNCHRONOUS`). ``COMMIT`` then appends the row
to the WAL with ``write()`` without an fsync: once it returns the row is in the
operating system, so a crash of the process (SIGKILL included) cannot lose it and
the intent still precedes the send (docs/design.md item 11; tests/unit/store/test_db_crash.py,
tests/integration/test_actions_sim.py). The writer thread's next :meth:`Store.sync`
(within :data:`riskwatch.store.writer.SYNC_INTERVAL` of the batch that marks the send)
fsyncs the WAL and the intent with it. Only a power loss or a kernel crash before then
can drop the row; after the restart the exchange's state (``get_user_orders`` and the next
pulse: reconciliation in actions/executor.py) shows what was done. Measured on the
build machine: ``record_intent`` 0.34 ms p50 / 0.60 ms p99 with FULL, 0.08 / 0.21 ms
with NORMAL (docs/performance.md).

The writer thread's batches (:meth:`Store.write_batch`) commit with NORMAL too: an
fsync there (4 ms p50 on a busy build machine) would hold the write lock that the next
intent commit waits for. Their durability against a power loss comes from
:meth:`Store.sync`, a checkpoint on a connection of its own that fsyncs the WAL and
the database without holding the store's lock; the writer runs it within
:data:`riskwatch.store.writer.SYNC_INTERVAL` of a batch. A process crash loses nothing
committed; a power loss at most what was committed since the last sync.
Each method writes one logical record, or one batch, in one transaction: a crash
(even SIGKILL) leaves either all of it or none of it.

A batch gives way: when another write (the intent commit on the event loop) waits for
the lock, the batch commits the operations it has run and returns the rest to its
caller, so that write waits one operation, not a whole batch: at 1000 accounts with a
day of window history, the periodic save's batch held the lock past the intent's 0.1 s
(docs/reliability.md). It does not remove the intent's smaller waits behind the
writer thread: those come from the interpreter lock passing between the two threads,
once per SQLite statement (each statement releases it). So a write runs as few
statements as it can: a PRAGMA only when its value changes (:meth:`Store._settle`), no
savepoint per batch op (:meth:`Store.write_batch`). At 1000 accounts that took the
intent commit from 0.15 to 0.12 ms p50 (docs/performance.md).

Threads and waiting: a :class:`Store` may be used from any thread (its connections are
opened with ``check_same_thread=False``). Writes share one connection and an internal
lock, so at most one write transaction runs at a time. No write waits without bound:
the lock and SQLite's busy handler (another process holding the write lock) are each
waited for at most ``wait`` seconds (:data:`WRITE_WAIT_S` by default), then
:class:`StateStoreError` is raised: a caller on the event loop (the intent commit) is
held up at most that long, never the five seconds a busy database once froze the
daemon for. Every other write of the daemon goes through :class:`riskwatch.store.writer.
StateWriter`, one thread that batches them (:meth:`Store.write_batch`). Reads use a
second connection with its own lock: WAL lets them read the last committed state while
a write is in progress, so a read never waits behind a write's fsync. One process per
file: two daemons sharing a state database are not supported.

Files: the database (and SQLite's ``-wal`` and ``-shm`` beside it) is created with mode
0600, owner only; an existing file that others could read is narrowed to 0600.

Errors: any failure of the database raises :class:`StateStoreError` (nothing
partial is written). A record that is not JSON-able raises ``ValueError`` before any
write starts.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from riskwatch.records import (
    LATCH_KEY,
    PENDING_STATUSES,
    ActionRecord,
    AlertRow,
    JSONDict,
    NotificationRecord,
    Silence,
)
from riskwatch.store.codec import dumps, loads_dict, loads_dict_list, symbol_key, symbol_value
from riskwatch.store.errors import DuplicateActionError, DuplicateRecordError, StateStoreError
from riskwatch.store.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES_BY_VERSION,
    inspect_file,
    table_names,
)

#: Longest a write waits for the store's lock, then again for SQLite's write lock, seconds.
WRITE_WAIT_S = 0.1

#: Longest :meth:`Store.open` waits for another process's write lock (at start, before
#: any event loop runs), seconds.
OPEN_WAIT_S = 5.0

#: File mode of the database and its ``-wal``/``-shm`` files: owner only.
STATE_FILE_MODE = 0o600

#: ``PRAGMA synchronous`` of the intent commit (module docstring: process-crash safe).
INTENT_SYNCHRONOUS = "NORMAL"

log = logging.getLogger(__name__)

BatchOp = Callable[["Store"], object]
"""One write of a batch: called with the store, inside the batch's transaction."""


class BatchResult(NamedTuple):
    """What :meth:`Store.write_batch` did: ``refused`` (index, error) of the ops that
    ran and were rolled back alone, and ``done``, how many ops ran (the first ones)."""

    refused: list[tuple[int, Exception]]
    done: int


_ACTION_COLUMNS = (
    "action_id, trip_key, rule, account, symbol, action, attempt, params, client_order_id,"
    " reason, mode, status, detail, intent_at, sent_at, outcome_at"
)
_NOTIFICATION_COLUMNS = "id, route, url_id, alert_key, status, result, detail, at"
_SILENCE_COLUMNS = "id, matchers, starts_at, ends_at, created_by, comment, created_at, expired_at"


class Store:
    """The riskwatch state database. Build it with :meth:`Store.open`; end with :meth:`close`.

    Every method is synchronous, may block on disk I/O (an fsync per write), and is
    serialised by an internal lock: see the module docstring.
    """

    def __init__(
        self, conn: sqlite3.Connection, path: Path, reader: sqlite3.Connection | None = None
    ) -> None:
        """Wrap an open, migrated connection; use :meth:`Store.open` instead.

        ``reader`` is a second connection to the same file for reads (the writing one
        when None).
        """
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = reader if reader is not None else conn
        self._rlock = threading.Lock() if reader is not None else self._lock
        self._batch_thread: int | None = None  # the thread inside write_batch, if any
        # Writes outside a batch waiting for the lock (or holding it): a batch gives way.
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._syncer: sqlite3.Connection | None = None  # for sync(), opened when first used
        self._sync_lock = threading.Lock()
        # The writing connection's PRAGMA busy_timeout (ms) and synchronous, as last set:
        # a PRAGMA is run only when a transaction needs another value (each statement
        # lets another thread take the interpreter lock: module docstring).
        self._busy_ms: int | None = None
        self._synchronous = "FULL"

    # -- lifecycle -------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open the state database at ``path``, creating the file and schema if absent.

        The parent directory must exist. An existing file is checked first, without
        writing to it (see :func:`riskwatch.store.schema.inspect_file`): one that is
        not SQLite, fails ``quick_check``, belongs to another application or has a
        newer schema is refused with :class:`StateStoreError` and left as it was.
        An older schema of ours is migrated forward in one transaction. A new file is
        created with mode 0600 (module docstring).
        """
        path = Path(path)
        found = inspect_file(path)
        _create_private(path)
        try:
            conn = _connect(path, OPEN_WAIT_S)
        except sqlite3.Error as exc:
            msg = f"cannot open state database {path}: {exc}"
            raise StateStoreError(msg) from exc
        reader: sqlite3.Connection | None = None
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                msg = f"state database {path} cannot use WAL journal mode (got {mode})"
                raise StateStoreError(msg)
            conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn, path, found.version)
            _narrow_modes(path)
            reader = _connect(path, WRITE_WAIT_S)
        except sqlite3.Error as exc:
            conn.close()
            msg = f"cannot prepare state database {path}: {exc}"
            raise StateStoreError(msg) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, reader)

    @property
    def path(self) -> Path:
        """The database file's path."""
        return self._path

    def close(self) -> None:
        """Close the database; later calls raise :class:`StateStoreError`. Idempotent."""
        with self._sync_lock:
            if self._syncer is not None:
                self._syncer.close()
                self._syncer = None
        with self._rlock:
            if self._reader is not None and self._reader is not self._conn:
                self._reader.close()
            self._reader = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"<Store {self._path} {state}>"

    # -- alert states and latches ----------------------------------------------------

    def save_alert(
        self, rule: str, account: str, symbol: str | None, record: Mapping[str, Any], now: float
    ) -> None:
        """Insert or replace the alert state of ``(rule, account, symbol)``.

        ``symbol`` is ``None`` (or ``""``) at account scope. ``record`` is the engine's
        JSON-able dict; ``record["latched"] is True`` marks a latch (see :data:`LATCH_KEY`).
        """
        self.save_alerts([(rule, account, symbol, record)], now)

    def save_alerts(
        self, rows: Iterable[tuple[str, str, str | None, Mapping[str, Any]]], now: float
    ) -> None:
        """Insert or replace several alert states in one transaction (all or none)."""
        params = [
            (rule, account, symbol_key(symbol), *_alert_blob(record, rule, account))
            for rule, account, symbol, record in rows
        ]
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO alert_state (rule, account, symbol, record, latched, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (rule, account, symbol) DO UPDATE SET"
                " record = excluded.record, latched = excluded.latched,"
                " updated_at = excluded.updated_at",
                [(*p, now) for p in params],
            )

    def load_alerts(self) -> list[AlertRow]:
        """Return every stored alert state, ordered by account, rule, symbol."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT rule, account, symbol, record FROM alert_state"
                " ORDER BY account, rule, symbol"
            ).fetchall()
        return [_alert_row(r) for r in rows]

    def reset_latch(
        self,
        account: str,
        *,
        rule: str | None = None,
        symbol: str | None = None,
        now: float,
        actor: str,
    ) -> list[AlertRow]:
        """Clear the latch flag of the matching latched states; return them as now stored.

        ``rule=None`` matches every rule of the account; ``symbol=None`` every symbol
        (and account scope). Each reset is logged with ``actor`` and ``now`` (the
        ``latch_reset`` table). The stored record keeps its other fields: the engine,
        which owns the lifecycle, must clear its own latch too (docs/rules.md).
        An empty list means nothing matched.
        """
        sql = "SELECT rule, account, symbol, record FROM alert_state WHERE latched = 1"
        sql += " AND account = ?"
        args: list[str] = [account]
        if rule is not None:
            sql += " AND rule = ?"
            args.append(rule)
        if symbol is not None:
            sql += " AND symbol = ?"
            args.append(symbol_key(symbol))
        reset: list[AlertRow] = []
        with self._tx() as conn:
            for row in conn.execute(sql + " ORDER BY rule, symbol", args).fetchall():
                r_rule, r_account, r_symbol = str(row[0]), str(row[1]), str(row[2])
                record = loads_dict(row[3])
                record[LATCH_KEY] = False
                conn.execute(
                    "UPDATE alert_state SET record = ?, latched = 0, updated_at = ?"
                    " WHERE rule = ? AND account = ? AND symbol = ?",
                    (dumps(record, "alert record"), now, r_rule, r_account, r_symbol),
                )
                conn.execute(
                    "INSERT INTO latch_reset (rule, account, symbol, actor, at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (r_rule, r_account, r_symbol, actor, now),
                )
                reset.append(AlertRow(r_rule, r_account, symbol_value(r_symbol), record))
        return reset

    # -- daily baselines and peaks, window history -----------------------------------

    def save_daily(self, account: str, record: Mapping[str, Any]) -> None:
        """Replace ``account``'s daily baseline and peaks record (a JSON-able dict)."""
        self._save_blob("daily", account, record)

    def load_daily(self) -> dict[str, JSONDict]:
        """Return every account's daily record."""
        return self._load_blobs("daily")

    def save_windows(self, account: str, record: Mapping[str, Any]) -> None:
        """Replace ``account``'s downsampled window history (a JSON-able dict)."""
        self._save_blob("windows", account, record)

    def load_windows(self) -> dict[str, JSONDict]:
        """Return every account's window history record."""
        return self._load_blobs("windows")

    def _save_blob(self, table: str, account: str, record: Mapping[str, Any]) -> None:
        blob = dumps(dict(record), f"{table} record of {account}")
        with self._tx() as conn:
            conn.execute(
                f"INSERT INTO {table} (account, record) VALUES (?, ?)"  # noqa: S608 (fixed names)
                " ON CONFLICT (account) DO UPDATE SET record = excluded.record",
                (account, blob),
            )

    def _load_blobs(self, table: str) -> dict[str, JSONDict]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT account, record FROM {table} ORDER BY account"  # noqa: S608
            ).fetchall()
        return {str(r[0]): loads_dict(r[1]) for r in rows}

    # -- action audit log ------------------------------------------------------------

    def record_intent(
        self,
        *,
        action_id: str,
        trip_key: str,
        rule: str,
        account: str,
        symbol: str | None,
        action: str,
        attempt: int = 1,
        params: Mapping[str, Any],
        client_order_id: str | None,
        reason: str,
        mode: str,
        now: float,
    ) -> ActionRecord:
        """Record the intent to take an action, committed before returning (in the WAL,
        without an fsync: see the module docstring).

        Call it before sending; send only if it returns. The stored status is
        ``"intent"``; follow with :meth:`mark_sent` and :meth:`record_outcome`.

        Raises :class:`DuplicateActionError` (with ``existing``) when the same
        ``action_id`` or the same ``(trip_key, action, symbol, attempt)`` is already
        recorded: the action was already taken (or refused, or dry-run) for this trip
        and must not be sent again. ``symbol`` is ``None`` for account-wide actions.
        """
        if attempt < 1:
            msg = f"attempt must be 1 or more, got {attempt}"
            raise ValueError(msg)
        blob = dumps(dict(params), f"params of action {action_id}")
        sym = symbol_key(symbol)
        with self._tx(synchronous=INTENT_SYNCHRONOUS) as conn:
            try:
                conn.execute(
                    f"INSERT INTO action ({_ACTION_COLUMNS})"  # noqa: S608 (fixed names)
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'intent', NULL, ?, NULL, NULL)",
                    (
                        action_id,
                        trip_key,
                        rule,
                        account,
                        sym,
                        action,
                        attempt,
                        blob,
                        client_order_id,
                        reason,
                        mode,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                existing = _get_action(conn, action_id) or _find_action(
                    conn, trip_key, action, sym, attempt
                )
                if existing is None:  # pragma: no cover - only NOT NULL could get here
                    raise
                msg = (
                    f"action already recorded: {action} of trip {trip_key}"
                    f" (symbol {symbol!r}, attempt {attempt}) as {existing.action_id}"
                    f" with status {existing.status}"
                )
                raise DuplicateActionError(msg, existing) from None
            stored = _get_action(conn, action_id)
        if stored is None:  # pragma: no cover - just inserted in the same transaction
            msg = f"action {action_id} vanished after insert"
            raise StateStoreError(msg)
        return stored

    def mark_sent(self, action_id: str, now: float) -> ActionRecord:
        """Record that the action's command went out; return the stored record.

        Moves ``"intent"`` to ``"sent"``. If an outcome is already recorded (a fast
        reply won the race), the status is kept and only ``sent_at`` is filled.
        Raises :class:`StateStoreError` for an unknown ``action_id``.
        """
        with self._tx() as conn:
            conn.execute(
                "UPDATE action SET"
                " status = CASE status WHEN 'intent' THEN 'sent' ELSE status END,"
                " sent_at = COALESCE(sent_at, ?) WHERE action_id = ?",
                (now, action_id),
            )
            return _require_action(conn, action_id)

    def record_outcome(
        self, action_id: str, outcome: str, detail: str | None, now: float
    ) -> ActionRecord:
        """Record the action's outcome (``confirmed``, ``failed``, ``refused``, ``dry_run``,
        ``unknown``, ...); return the stored record.

        A later outcome replaces an earlier one (``unknown`` reconciled to ``confirmed``).
        Raises ``ValueError`` for ``"intent"``/``"sent"``/empty outcomes and
        :class:`StateStoreError` for an unknown ``action_id``.
        """
        if not outcome or outcome in PENDING_STATUSES:
            msg = f"not a final outcome: {outcome!r}"
            raise ValueError(msg)
        with self._tx() as conn:
            conn.execute(
                "UPDATE action SET status = ?, detail = ?, outcome_at = ? WHERE action_id = ?",
                (outcome, detail, now, action_id),
            )
            return _require_action(conn, action_id)

    def unfinished_actions(self) -> list[ActionRecord]:
        """Return the actions with an intent or a send but no outcome, oldest first.

        After a restart these are reconciled against the exchange, never resent blindly.
        """
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM action"  # noqa: S608 (fixed names)
                " WHERE status IN ('intent', 'sent') ORDER BY seq"
            ).fetchall()
        return [_action(r) for r in rows]

    def actions(self, limit: int = 100, account: str | None = None) -> list[ActionRecord]:
        """Return the latest ``limit`` actions (of ``account``, or all), newest first."""
        sql = f"SELECT {_ACTION_COLUMNS} FROM action"  # noqa: S608 (fixed names)
        args: list[object] = []
        if account is not None:
            sql += " WHERE account = ?"
            args.append(account)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit]).fetchall()
        return [_action(r) for r in rows]

    def actions_for_trip(self, trip_key: str) -> list[ActionRecord]:
        """Return every action attempt of one trip, in the order recorded."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM action"  # noqa: S608 (fixed names)
                " WHERE trip_key = ? ORDER BY seq",
                (trip_key,),
            ).fetchall()
        return [_action(r) for r in rows]

    # -- notification log ------------------------------------------------------------

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
    ) -> int:
        """Log one delivery attempt; return its id.

        ``url_id`` must be :func:`riskwatch.records.url_id` of the URL, never the URL:
        a value containing ``://`` is refused with ``ValueError`` (URLs carry secrets).
        """
        if "://" in url_id:
            msg = "url_id looks like a url: pass url_id(url), never the url itself"
            raise ValueError(msg)
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO notification (route, url_id, alert_key, status, result, detail, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (route, url_id, alert_key, status, result, detail, now),
            )
            return int(cur.lastrowid or 0)

    def notifications(self, limit: int = 100) -> list[NotificationRecord]:
        """Return the latest ``limit`` notification log entries, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM notification"  # noqa: S608
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_notification(r) for r in rows]

    def purge_notifications(self, before: float, limit: int | None = None) -> int:
        """Delete notification log entries older than ``before``; return how many.

        With ``limit``, at most that many (the oldest first) in this one transaction, so
        that a large purge can be done in short transactions between other writes.
        """
        with self._tx() as conn:
            if limit is None:
                return conn.execute("DELETE FROM notification WHERE at < ?", (before,)).rowcount
            return conn.execute(
                "DELETE FROM notification WHERE id IN"
                " (SELECT id FROM notification WHERE at < ? ORDER BY at LIMIT ?)",
                (before, limit),
            ).rowcount

    # -- silences --------------------------------------------------------------------

    def add_silence(
        self,
        *,
        id: str,
        matchers: Sequence[Mapping[str, Any]],
        starts_at: float,
        ends_at: float,
        created_by: str,
        comment: str,
        now: float,
    ) -> Silence:
        """Store a new silence and return it.

        ``matchers`` is a non-empty list of JSON-able dicts (the caller's matcher
        records); ``ends_at`` must be after ``starts_at``. Raises ``ValueError`` on a
        bad silence and :class:`DuplicateRecordError` if ``id`` exists.
        """
        if not matchers:
            msg = f"silence {id} has no matchers"
            raise ValueError(msg)
        if ends_at <= starts_at:
            msg = f"silence {id} ends at {ends_at} before it starts at {starts_at}"
            raise ValueError(msg)
        blob = dumps([dict(m) for m in matchers], f"matchers of silence {id}")
        with self._tx() as conn:
            try:
                conn.execute(
                    f"INSERT INTO silence ({_SILENCE_COLUMNS})"  # noqa: S608
                    " VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                    (id, blob, starts_at, ends_at, created_by, comment, now),
                )
            except sqlite3.IntegrityError:
                msg = f"silence already exists: {id}"
                raise DuplicateRecordError(msg) from None
            silence = _get_silence(conn, id)
        if silence is None:  # pragma: no cover - just inserted in the same transaction
            msg = f"silence {id} vanished after insert"
            raise StateStoreError(msg)
        return silence

    def silences(self, active_at: float | None = None) -> list[Silence]:
        """Return the silences active at ``active_at``, or all kept ones if ``None``.

        Ordered by start time, then id.
        """
        sql = f"SELECT {_SILENCE_COLUMNS} FROM silence"  # noqa: S608
        args: tuple[float, ...] = ()
        if active_at is not None:
            sql += " WHERE starts_at <= ? AND ends_at > ?"
            args = (active_at, active_at)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY starts_at, id", args).fetchall()
        return [_silence(r) for r in rows]

    def expire_silence(self, id: str, now: float) -> Silence | None:
        """End the silence ``id`` at ``now`` (kept for history); return it, or ``None``.

        A silence that has already ended is returned unchanged; one that has not
        started yet ends before it begins (it never applies).
        """
        with self._tx() as conn:
            conn.execute(
                "UPDATE silence SET ends_at = ?, expired_at = ? WHERE id = ? AND ends_at > ?",
                (now, now, id, now),
            )
            return _get_silence(conn, id)

    def purge_silences(self, before: float) -> int:
        """Delete silences that ended before ``before``; return how many.

        Call it with ``now - keep_for`` (e.g. 5 days) to bound the history kept.
        """
        with self._tx() as conn:
            return conn.execute("DELETE FROM silence WHERE ends_at < ?", (before,)).rowcount

    # -- batches (the writer thread) ----------------------------------------------------

    def write_batch(self, ops: Sequence[BatchOp], *, wait: float = WRITE_WAIT_S) -> BatchResult:
        """Run ``ops`` in order in one transaction; return how many ran and which of
        those were refused.

        When another write waits for the store's lock, the batch stops after the op
        it is running (at least one runs), commits, and returns: ``done`` ops ran, the
        caller submits ``ops[done:]`` again (module docstring). The commit is
        process-crash safe but not fsync'd (module docstring): call :meth:`sync` for
        that.

        Each op is called with this store and writes through its usual methods, which
        join the batch's transaction. An op that raises ``ValueError`` or a
        :class:`StateStoreError` of its own (an unknown action id: not a database
        fault) is left out and returned as ``(index, error)``; the others are
        committed. (The transaction is rolled back and run again without it, rather
        than each op kept in a savepoint: two statements fewer per op, on a path where
        each statement is a chance for the event loop to take the interpreter lock
        while this thread holds the store's lock.) A database fault (disk full, I/O
        error, busy beyond ``wait``) rolls the whole batch back and raises
        :class:`StateStoreError`: nothing was written, and the caller may run the same
        batch again.
        """
        refused: dict[int, Exception] = {}
        while True:
            refusal: list[tuple[int, Exception]] = []
            try:
                done = self._run_batch(ops, refused, wait, refusal)
            except (StateStoreError, ValueError):
                if not refusal:
                    raise  # the database failed: nothing was written
                index, error = refusal[0]
                refused[index] = error
                continue  # rolled back: run it again without the refused op
            return BatchResult([(i, e) for i, e in sorted(refused.items()) if i < done], done)

    def _run_batch(
        self,
        ops: Sequence[BatchOp],
        skip: Mapping[int, Exception],
        wait: float,
        refusal: list[tuple[int, Exception]],
    ) -> int:
        """One try of :meth:`write_batch`: run ``ops`` but those in ``skip`` in one
        transaction and commit; return how many ran. At the first op that refuses, put
        ``(index, error)`` in ``refusal`` and raise its error, the transaction rolled
        back."""
        done = 0
        with self._tx(INTENT_SYNCHRONOUS, wait=wait):
            self._batch_thread = threading.get_ident()
            try:
                for index, op in enumerate(ops):
                    if index and self._waiting:
                        break  # another write waits: commit what ran, give way
                    done = index + 1
                    if index in skip:
                        continue
                    try:
                        op(self)
                    except (StateStoreError, ValueError) as exc:
                        if not isinstance(exc.__cause__, sqlite3.Error):
                            refusal.append((index, exc))  # this op's, not the database's
                        raise
            finally:
                self._batch_thread = None
        return done

    def sync(self) -> None:
        """Fsync what was committed (a passive WAL checkpoint), without the store's lock.

        Runs on a connection of its own, so that no write waits behind this fsync;
        raises :class:`StateStoreError` when the database refuses.
        """
        with self._sync_lock:
            try:
                if self._syncer is None:
                    self._syncer = _connect(self._path, WRITE_WAIT_S)
                    self._syncer.execute("PRAGMA synchronous = FULL")
                self._syncer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:
                msg = f"state database {self._path} sync failed: {exc}"
                raise StateStoreError(msg) from exc

    # -- plumbing --------------------------------------------------------------------

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            msg = f"state database {self._path} is closed"
            raise StateStoreError(msg)
        return self._conn

    @contextmanager
    def _tx(
        self, synchronous: str | None = None, *, wait: float = WRITE_WAIT_S
    ) -> Iterator[sqlite3.Connection]:
        """Hold the lock and run the body in one write transaction (all or nothing).

        ``synchronous``: the ``PRAGMA synchronous`` of this commit (None: FULL); the
        PRAGMA runs only when the previous commit had another (:meth:`_settle`).
        ``wait``: the most seconds spent waiting for the lock, then for SQLite's write
        lock (module docstring). Inside :meth:`write_batch`, on its thread, the body
        joins the batch's transaction.
        """
        if self._batch_thread == threading.get_ident() and self._conn is not None:
            yield self._conn
            return
        with self._waiting_lock:
            self._waiting += 1
        try:
            acquired = self._lock.acquire(timeout=wait)
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        if not acquired:
            msg = (
                f"state database {self._path} write failed: another write held it for"
                f" more than {wait:g} s"
            )
            raise StateStoreError(msg)
        try:
            conn = self._require_open()
            try:
                self._settle(conn, round(wait * 1000), synchronous or "FULL")
                # IMMEDIATE: take the write lock now, so COMMIT cannot fail on a
                # reader upgrading to writer.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    with _suppress_sqlite():
                        conn.execute("ROLLBACK")
                msg = f"state database {self._path} write failed: {exc}"
                raise StateStoreError(msg) from exc
        finally:
            self._lock.release()

    def _settle(self, conn: sqlite3.Connection, busy_ms: int, synchronous: str) -> None:
        """Give the writing connection this busy timeout and ``PRAGMA synchronous``,
        running a PRAGMA only for a value that changed (called holding the lock,
        outside a transaction: SQLite applies ``synchronous`` per connection)."""
        busy_ms = max(0, busy_ms)
        if busy_ms != self._busy_ms:
            self._busy_ms = None  # unknown until the PRAGMA returns
            conn.execute(f"PRAGMA busy_timeout = {busy_ms:d}")
            self._busy_ms = busy_ms
        if synchronous != self._synchronous:
            self._synchronous = ""  # unknown until the PRAGMA returns
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            self._synchronous = synchronous

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Hold the read lock for a read; each statement sees one committed snapshot."""
        with self._rlock:
            conn = self._reader
            if conn is None:
                msg = f"state database {self._path} is closed"
                raise StateStoreError(msg)
            try:
                yield conn
            except sqlite3.Error as exc:
                msg = f"state database {self._path} read failed: {exc}"
                raise StateStoreError(msg) from exc


@contextmanager
def _suppress_sqlite() -> Iterator[None]:
    """Clean-up after a failed write must not hide the write's own error."""
    try:
        yield
    except sqlite3.Error as exc:
        log.debug("state database clean-up failed: %s", exc)


def _connect(path: Path, wait: float) -> sqlite3.Connection:
    return sqlite3.connect(
        str(path),
        timeout=wait,
        isolation_level=None,  # autocommit: transactions are explicit BEGIN/COMMIT
        check_same_thread=False,  # serialised by Store's locks instead
    )


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if absent (SQLite gives ``-wal``/``-shm`` the
    database file's mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, STATE_FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        msg = f"cannot create state database {path}: {exc.strerror}"
        raise StateStoreError(msg) from exc
    os.close(fd)


def _narrow_modes(path: Path) -> None:
    """Make the database and its ``-wal``/``-shm`` files owner-only (0600)."""
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                os.chmod(file, mode & 0o700)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not make %s owner-only: %s", file, exc.strerror)


def _migrate(conn: sqlite3.Connection, path: Path, found: int) -> None:
    """Bring the database from its version to :data:`SCHEMA_VERSION` in one transaction.

    The identity is read again under the write lock, so a file changed since
    :func:`inspect_file` looked at it is still refused rather than migrated.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = table_names(conn)
        fresh = app_id == 0 and version == 0 and not tables
        ours = (
            app_id == APPLICATION_ID
            and 0 <= version <= SCHEMA_VERSION
            and tables == TABLES_BY_VERSION[version]
        )
        if version != found or not (fresh or ours):
            msg = f"refusing {path}: it changed while being opened"
            raise StateStoreError(msg)
        for step in MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        # Both pragmas write the file header inside this transaction: a crash leaves
        # the old identity with the old tables, or the new with the new.
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _alert_blob(record: Mapping[str, Any], rule: str, account: str) -> tuple[str, int]:
    blob = dumps(dict(record), f"alert record of {rule} on {account}")
    return blob, int(record.get(LATCH_KEY) is True)


def _alert_row(row: Sequence[Any]) -> AlertRow:
    return AlertRow(str(row[0]), str(row[1]), symbol_value(str(row[2])), loads_dict(row[3]))


def _action(row: Sequence[Any]) -> ActionRecord:
    return ActionRecord(
        action_id=row[0],
        trip_key=row[1],
        rule=row[2],
        account=row[3],
        symbol=symbol_value(row[4]),
        action=row[5],
        attempt=int(row[6]),
        params=loads_dict(row[7]),
        client_order_id=row[8],
        reason=row[9],
        mode=row[10],
        status=row[11],
        detail=row[12],
        intent_at=float(row[13]),
        sent_at=None if row[14] is None else float(row[14]),
        outcome_at=None if row[15] is None else float(row[15]),
    )


def _get_action(conn: sqlite3.Connection, action_id: str) -> ActionRecord | None:
    row = conn.execute(
        f"SELECT {_ACTION_COLUMNS} FROM action WHERE action_id = ?",  # noqa: S608
        (action_id,),
    ).fetchone()
    return None if row is None else _action(row)


def _require_action(conn: sqlite3.Connection, action_id: str) -> ActionRecord:
    found = _get_action(conn, action_id)
    if found is None:
        msg = f"unknown action id: {action_id}"
        raise StateStoreError(msg)
    return found


def _find_action(
    conn: sqlite3.Connection, trip_key: str, action: str, symbol: str, attempt: int
) -> ActionRecord | None:
    row = conn.execute(
        f"SELECT {_ACTION_COLUMNS} FROM action"  # noqa: S608
        " WHERE trip_key = ? AND action = ? AND symbol = ? AND attempt = ?",
        (trip_key, action, symbol, attempt),
    ).fetchone()
    return None if row is None else _action(row)


def _notification(row: Sequence[Any]) -> NotificationRecord:
    return NotificationRecord(
        id=int(row[0]),
        route=row[1],
        url_id=row[2],
        alert_key=row[3],
        status=row[4],
        result=row[5],
        detail=row[6],
        at=float(row[7]),
    )


def _silence(row: Sequence[Any]) -> Silence:
    matchers = loads_dict_list(row[1])
    return Silence(
        id=row[0],
        matchers=tuple(matchers),
        starts_at=float(row[2]),
        ends_at=float(row[3]),
        created_by=row[4],
        comment=row[5],
        created_at=float(row[6]),
        expired_at=None if row[7] is None else float(row[7]),
    )


def _get_silence(conn: sqlite3.Connection, silence_id: str) -> Silence | None:
    row = conn.execute(
        f"SELECT {_SILENCE_COLUMNS} FROM silence WHERE id = ?",  # noqa: S608
        (silence_id,),
    ).fetchone()
    return None if row is None else _silence(row)
