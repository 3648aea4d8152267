"""Opening the state database: creation, identity, refusal of files that are not ours."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest

from riskwatch.store import APPLICATION_ID, SCHEMA_VERSION, StateStoreError, Store
from riskwatch.store.schema import TABLES_BY_VERSION


def _pragma(path: Path, name: str) -> object:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
        return {r[0] for r in rows}
    finally:
        conn.close()


def _assert_refused_untouched(path: Path, match: str) -> None:
    before = path.read_bytes()
    siblings = sorted(os.listdir(path.parent))
    with pytest.raises(StateStoreError, match=match):
        Store.open(path)
    assert path.read_bytes() == before
    # Only SQLite's side files of a WAL-mode file may appear (the read-only check's
    # shared-memory index, and an empty WAL), never anything with data in it.
    leftovers = set(os.listdir(path.parent)) - set(siblings)
    assert leftovers <= {f"{path.name}-shm", f"{path.name}-wal"}
    if f"{path.name}-wal" in leftovers:
        assert Path(f"{path}-wal").stat().st_size == 0


def test_creates_file_and_schema(tmp_path: Path) -> None:
    """A new file gets WAL mode, our application_id, the schema version and every table."""
    path = tmp_path / "state.db"
    store = Store.open(path)
    store.close()
    assert path.is_file()
    assert _pragma(path, "application_id") == APPLICATION_ID
    assert _pragma(path, "user_version") == SCHEMA_VERSION
    assert _pragma(path, "journal_mode") == "wal"
    assert _tables(path) == set(TABLES_BY_VERSION[SCHEMA_VERSION])


def test_connection_is_durable_wal_full(tmp_path: Path) -> None:
    """The live connection uses WAL with synchronous=FULL so commits are fsync'd."""
    with Store.open(tmp_path / "state.db") as store:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopen_keeps_data(tmp_path: Path) -> None:
    """Data written before close is there after reopening, and reopening changes no schema."""
    path = tmp_path / "state.db"
    with Store.open(path) as store:
        store.save_daily("desk-a", {"baseline": 1000.0, "peak": 1200.0})
    with Store.open(path) as store:
        assert store.load_daily() == {"desk-a": {"baseline": 1000.0, "peak": 1200.0}}
    assert _pragma(path, "user_version") == SCHEMA_VERSION


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A path whose parent directory does not exist is refused and nothing is created."""
    path = tmp_path / "nope" / "state.db"
    with pytest.raises(StateStoreError, match="directory does not exist"):
        Store.open(path)
    assert not path.parent.exists()


def test_directory_path_is_refused(tmp_path: Path) -> None:
    """A path that is a directory is refused."""
    with pytest.raises(StateStoreError, match="not a regular file"):
        Store.open(tmp_path)


def test_empty_file_is_initialised(tmp_path: Path) -> None:
    """A zero-byte file holds nothing and becomes a new state database."""
    path = tmp_path / "state.db"
    path.touch()
    Store.open(path).close()
    assert _pragma(path, "application_id") == APPLICATION_ID


def test_empty_sqlite_database_is_initialised(tmp_path: Path) -> None:
    """An SQLite file with no tables and no identity is claimed and initialised."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("VACUUM")  # writes the header: a valid, empty database
    conn.close()
    assert path.stat().st_size > 0
    Store.open(path).close()
    assert _pragma(path, "user_version") == SCHEMA_VERSION


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    """A file of random bytes is refused as not SQLite and left byte-for-byte unchanged."""
    path = tmp_path / "state.db"
    path.write_bytes(random.Random(7).randbytes(8192))
    _assert_refused_untouched(path, "not an sqlite database")


def test_short_text_file_is_refused(tmp_path: Path) -> None:
    """A short text file is refused and left unchanged."""
    path = tmp_path / "state.db"
    path.write_text("hello\n")
    _assert_refused_untouched(path, "not an sqlite database")


def test_foreign_sqlite_tables_are_refused(tmp_path: Path) -> None:
    """Another application's SQLite file (its own tables) is refused and left unchanged."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    _assert_refused_untouched(path, "application_id 0x0 is not riskwatch's")
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM users").fetchall() == [("ada",)]
    conn.close()


def test_foreign_application_id_is_refused(tmp_path: Path) -> None:
    """An SQLite file stamped with another application_id is refused, even with no tables."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.close()
    _assert_refused_untouched(path, "application_id 0x4d2")


def test_foreign_wal_file_is_not_checkpointed(tmp_path: Path) -> None:
    """A foreign WAL-mode file with unmerged WAL frames is refused without touching its bytes."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    wal = Path(f"{path}-wal")
    main_before, wal_before = path.read_bytes(), wal.read_bytes()
    with pytest.raises(StateStoreError, match="not riskwatch's"):
        Store.open(path)
    assert path.read_bytes() == main_before
    assert wal.read_bytes() == wal_before
    conn.close()


def test_our_id_with_foreign_table_is_refused(tmp_path: Path) -> None:
    """A file with our application_id but a table that is not ours is refused."""
    path = tmp_path / "state.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE intruder (x)")
    conn.commit()
    conn.close()
    _assert_refused_untouched(path, r"unexpected \['intruder'\]")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file with a newer user_version than this code knows is refused and left unchanged."""
    path = tmp_path / "state.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    _assert_refused_untouched(path, f"schema version {SCHEMA_VERSION + 1} is newer")


def test_corrupted_file_is_refused(tmp_path: Path) -> None:
    """A state database whose table pages were overwritten fails quick_check and is refused."""
    path = tmp_path / "state.db"
    with Store.open(path) as store:
        for i in range(200):
            store.save_daily(f"acct-{i}", {"pad": "x" * 200})
    page = int(_pragma(path, "page_size"))  # type: ignore[call-overload]
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * page
    data[page : 3 * page] = random.Random(3).randbytes(2 * page)
    path.write_bytes(bytes(data))
    _assert_refused_untouched(path, "corrupted|quick_check failed")


def test_closed_store_raises(tmp_path: Path) -> None:
    """Every call after close raises StateStoreError, and close is idempotent."""
    store = Store.open(tmp_path / "state.db")
    store.close()
    store.close()
    with pytest.raises(StateStoreError, match="is closed"):
        store.load_alerts()
    with pytest.raises(StateStoreError, match="is closed"):
        store.save_daily("a", {})
    assert "closed" in repr(store)


def test_state_store_error_is_the_shared_one() -> None:
    """The store raises the StateStoreError of riskwatch.errors, so the CLI's exit 2 applies."""
    from riskwatch import errors

    assert StateStoreError is errors.StateStoreError
    assert issubclass(StateStoreError, errors.RiskwatchError)


def test_older_schema_is_migrated_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file at an older version gets only the missing migrations, and keeps its data."""
    import riskwatch.store.db as db
    import riskwatch.store.schema as schema

    path = tmp_path / "state.db"
    with Store.open(path) as store:
        store.save_daily("desk-a", {"baseline": 1.0})
    step = ("CREATE TABLE extra (k TEXT PRIMARY KEY)",)
    newer = SCHEMA_VERSION + 1
    tables = (*TABLES_BY_VERSION, TABLES_BY_VERSION[-1] | {"extra"})
    migrations = (*schema.MIGRATIONS, step)
    for module in (schema, db):
        monkeypatch.setattr(module, "SCHEMA_VERSION", newer)
        monkeypatch.setattr(module, "MIGRATIONS", migrations)
        monkeypatch.setattr(module, "TABLES_BY_VERSION", tables)
    with Store.open(path) as store:
        assert store.load_daily() == {"desk-a": {"baseline": 1.0}}
    assert _pragma(path, "user_version") == newer
    assert "extra" in _tables(path)
