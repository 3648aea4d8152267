"""The state database's identity, schema, migrations and the checks made before use.

Identity: ``PRAGMA application_id`` is :data:`APPLICATION_ID` and ``PRAGMA
user_version`` is the schema version. Migrations only go forward: ``MIGRATIONS[n]``
takes a database from version ``n`` to ``n + 1``, and a file whose version is newer
than :data:`SCHEMA_VERSION` is refused (an older riskwatch must not guess at a newer
layout).

:func:`inspect_file` decides, before anything writes to the file, whether it is ours:
it reads the header bytes, then opens the file **read-only** (``mode=ro``: SQLite then
neither writes the main file nor checkpoints a leftover WAL into it) to run
``PRAGMA quick_check`` and read the identity and the table names. A refused file's
bytes are therefore never changed.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from riskwatch.store.errors import StateStoreError

#: ``PRAGMA application_id`` of a riskwatch state database: ASCII "RWst".
APPLICATION_ID = 0x52577374

#: The schema version this code reads and writes (``PRAGMA user_version``).
SCHEMA_VERSION = 1

#: Every SQLite file begins with these 16 bytes (sqlite.org/fileformat.html §1.3).
SQLITE_MAGIC = b"SQLite format 3\x00"

#: Statements of each migration, in order: ``MIGRATIONS[n]`` goes from version n to n+1.
#: A migration runs inside one transaction with the identity pragmas, so a crash
#: leaves either the old version or the new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # Alert states, one per (rule, account, symbol); symbol '' at account scope.
        # `latched` mirrors record["latched"] so latches can be listed without decoding.
        """CREATE TABLE alert_state (
            rule TEXT NOT NULL,
            account TEXT NOT NULL,
            symbol TEXT NOT NULL,
            record TEXT NOT NULL,
            latched INTEGER NOT NULL CHECK (latched IN (0, 1)),
            updated_at REAL NOT NULL,
            PRIMARY KEY (rule, account, symbol)
        ) WITHOUT ROWID""",
        "CREATE INDEX alert_state_latched ON alert_state (account) WHERE latched = 1",
        """CREATE TABLE latch_reset (
            id INTEGER PRIMARY KEY,
            rule TEXT NOT NULL,
            account TEXT NOT NULL,
            symbol TEXT NOT NULL,
            actor TEXT NOT NULL,
            at REAL NOT NULL
        )""",
        # Daily baselines and peaks, and downsampled window history: one blob per account.
        """CREATE TABLE daily (
            account TEXT PRIMARY KEY,
            record TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE windows (
            account TEXT PRIMARY KEY,
            record TEXT NOT NULL
        ) WITHOUT ROWID""",
        # The action audit log. One row per attempt; the UNIQUE key is what makes
        # "once per trip" hold across restarts (docs/design.md item 11).
        """CREATE TABLE action (
            seq INTEGER PRIMARY KEY,
            action_id TEXT NOT NULL UNIQUE,
            trip_key TEXT NOT NULL,
            rule TEXT NOT NULL,
            account TEXT NOT NULL,
            symbol TEXT NOT NULL,
            action TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            params TEXT NOT NULL,
            client_order_id TEXT,
            reason TEXT NOT NULL,
            mode TEXT NOT NULL,
            status TEXT NOT NULL,
            detail TEXT,
            intent_at REAL NOT NULL,
            sent_at REAL,
            outcome_at REAL,
            UNIQUE (trip_key, action, symbol, attempt)
        )""",
        "CREATE INDEX action_account_time ON action (account, intent_at)",
        "CREATE INDEX action_pending ON action (seq) WHERE status IN ('intent', 'sent')",
        # The notification log: what was sent where (by URL id, never the URL).
        """CREATE TABLE notification (
            id INTEGER PRIMARY KEY,
            route TEXT NOT NULL,
            url_id TEXT NOT NULL,
            alert_key TEXT NOT NULL,
            status TEXT NOT NULL,
            result TEXT NOT NULL,
            detail TEXT,
            at REAL NOT NULL
        )""",
        "CREATE INDEX notification_route_key ON notification (route, alert_key, id)",
        "CREATE INDEX notification_at ON notification (at)",
        """CREATE TABLE silence (
            id TEXT PRIMARY KEY,
            matchers TEXT NOT NULL,
            starts_at REAL NOT NULL,
            ends_at REAL NOT NULL,
            created_by TEXT NOT NULL,
            comment TEXT NOT NULL,
            created_at REAL NOT NULL,
            expired_at REAL
        ) WITHOUT ROWID""",
    ),
)

#: Tables each schema version has (index = version). A file claiming our
#: application_id but holding other tables is refused.
TABLES_BY_VERSION: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset(
        {"alert_state", "latch_reset", "daily", "windows", "action", "notification", "silence"}
    ),
)

if len(MIGRATIONS) != SCHEMA_VERSION or len(TABLES_BY_VERSION) != SCHEMA_VERSION + 1:
    msg = "schema tables out of step with SCHEMA_VERSION"  # pragma: no cover
    raise RuntimeError(msg)  # pragma: no cover


@dataclass(frozen=True, slots=True)
class FileState:
    """What :func:`inspect_file` found: ``version`` 0 means new (nothing of ours yet)."""

    version: int


def inspect_file(path: Path) -> FileState:
    """Check that ``path`` can be a riskwatch state database, without writing to it.

    Returns the schema version found (0 when the file is absent, empty, or an empty
    SQLite database, all of which the caller may initialise). Raises
    :class:`StateStoreError` when the parent directory is missing, or the file is not
    SQLite, fails ``quick_check``, belongs to another application (another
    application_id, or tables that are not ours), or has a newer schema version.
    """
    parent = path.parent
    if not parent.is_dir():
        msg = f"state database directory does not exist: {parent}"
        raise StateStoreError(msg)
    if path.exists() and not path.is_file():
        msg = f"state database path is not a regular file: {path}"
        raise StateStoreError(msg)
    if not path.exists() or path.stat().st_size == 0:
        return FileState(version=0)
    _check_header(path)
    return FileState(version=_check_contents(path))


def _check_header(path: Path) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        msg = f"cannot read state database {path}: {exc.strerror}"
        raise StateStoreError(msg) from exc
    if head != SQLITE_MAGIC:
        msg = f"refusing {path}: not an sqlite database"
        raise StateStoreError(msg)


def _check_contents(path: Path) -> int:
    # mode=ro: reads only; SQLite may create the -shm index beside it, but never
    # writes the database file or checkpoints its WAL on close.
    uri = Path(os.path.abspath(path)).as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        msg = f"cannot open state database {path}: {exc}"
        raise StateStoreError(msg) from exc
    try:
        return _identify(conn, path)
    except sqlite3.Error as exc:
        msg = f"refusing {path}: unreadable or corrupted sqlite database: {exc}"
        raise StateStoreError(msg) from exc
    finally:
        conn.close()


def _identify(conn: sqlite3.Connection, path: Path) -> int:
    problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        msg = f"refusing {path}: quick_check failed: {'; '.join(map(str, problems[:3]))}"
        raise StateStoreError(msg)
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = table_names(conn)
    if app_id == 0 and version == 0 and not tables:
        return 0  # an empty SQLite database: nothing to lose, ours to initialise
    if app_id != APPLICATION_ID:
        msg = f"refusing {path}: application_id {app_id:#x} is not riskwatch's"
        raise StateStoreError(msg)
    if version > SCHEMA_VERSION:
        msg = (
            f"refusing {path}: schema version {version} is newer than this riskwatch "
            f"knows ({SCHEMA_VERSION})"
        )
        raise StateStoreError(msg)
    expected = TABLES_BY_VERSION[version] if version >= 0 else frozenset()
    if version < 0 or tables != expected:
        foreign = sorted(tables - expected)
        missing = sorted(expected - tables)
        msg = (
            f"refusing {path}: tables do not match schema version {version}"
            f" (unexpected {foreign}, missing {missing})"
        )
        raise StateStoreError(msg)
    return version


def table_names(conn: sqlite3.Connection) -> frozenset[str]:
    """Return the names of the user tables in ``conn``'s main database."""
    rows = conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return frozenset(str(row[0]) for row in rows)
