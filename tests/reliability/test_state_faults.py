"""`riskwatch run` on a corrupt or foreign state file: refused, explained, left untouched."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from riskwatch.store import Store


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 100)


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('someone else')")
    conn.commit()
    conn.close()


def _corrupt(path: Path) -> None:
    store = Store.open(path)
    store.save_alerts([("R", "desk-a", None, {"state": "firing"})], 1.0)
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) >= 2 * page
    data[page + 8 : 2 * page] = b"\xa5" * (page - 8)  # the second page, past its header
    path.write_bytes(bytes(data))


def _truncated(path: Path) -> None:
    _corrupt(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])


def _run(folder: Path, state: Path, state_extra: str = "") -> subprocess.CompletedProcess[str]:
    """``riskwatch run`` on a one-account config with ``state`` (plus ``state_extra``
    lines of its ``state:`` section), expected to refuse at start."""
    config = folder / "riskwatch.yaml"
    config.write_text(
        "exchange:\n  url: ws://127.0.0.1:9/\n  rest_url: http://127.0.0.1:9/\naccounts:\n  - name: a\n    public_key: pk\n"
        "    secret_key: sk-state-test\nhttp:\n  listen: 127.0.0.1:0\n"
        f"state:\n  path: {state}\n{state_extra}",
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, "-m", "riskwatch", "run", "-c", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_garbage, "not an sqlite database"),
        (_foreign, "not riskwatch's"),
        (_corrupt, "refusing"),
        (_truncated, "refusing"),
    ],
    ids=["garbage", "foreign", "corrupt", "truncated"],
)
def test_bad_state_file_is_refused_and_not_overwritten(
    tmp_path: Path, make: Callable[[Path], None], words: str
) -> None:
    """The daemon exits 2 naming the state file, and the file's bytes stay as they were."""
    state = tmp_path / "state.db"
    make(state)
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    proc = _run(tmp_path, state)
    assert proc.returncode == 2, proc.stderr
    assert str(state) in proc.stderr
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before


def test_start_is_refused_below_the_free_space_floor(tmp_path: Path) -> None:
    """``state.min_free_mb`` above what the state folder has: exit 2, the figures said,
    and no state database created."""
    state = tmp_path / "state.db"
    proc = _run(tmp_path, state, "  min_free_mb: 1000000000\n")
    assert proc.returncode == 2, proc.stderr
    assert "below state.min_free_mb (1000000000 MiB)" in proc.stderr
    assert str(tmp_path) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not state.exists()
