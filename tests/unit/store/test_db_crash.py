"""Crash safety: a writer SIGKILLed at random moments leaves a whole, consistent database."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from riskwatch.store import Store

MS = 0.001

# The writer logs each step to its progress file only after the store call returned,
# that is after the transaction was committed: every logged step must survive the kill.
WRITER = """
import sys
from riskwatch.store import Store

store = Store.open(sys.argv[1])
i = int(sys.argv[2])
log = open(sys.argv[3], "a", buffering=1)
log.write("ready\\n")
while True:
    aid = f"act-{i}"
    store.record_intent(
        action_id=aid, trip_key=f"trip-{i}", rule="DailyLoss", account="desk-a",
        symbol=f"SYM-{i % 7}", action="close_position",
        params={"i": i, "pad": "p" * (i % 500)}, client_order_id=f"rw-{i}",
        reason=f"reason {i}", mode="armed", now=float(i),
    )
    log.write(f"intent {i}\\n")
    store.mark_sent(aid, i + 0.5)
    log.write(f"sent {i}\\n")
    store.record_outcome(aid, "confirmed", f"detail {i}", i + 1.0)
    store.save_alert("DailyLoss", "desk-a", f"SYM-{i % 7}",
                     {"i": i, "latched": True, "pad": "q" * (i % 300)}, float(i))
    log.write(f"done {i}\\n")
    i += 1
"""

KILLS = 6


def _progress(path: Path) -> tuple[bool, dict[str, set[int]]]:
    steps: dict[str, set[int]] = {"intent": set(), "sent": set(), "done": set()}
    ready = False
    if path.exists():
        for line in path.read_text().splitlines():
            if line == "ready":
                ready = True
            elif line.count(" ") == 1 and line.endswith(tuple("0123456789")):
                step, n = line.split(" ")
                steps[step].add(int(n))
    return ready, steps


def _check_whole(db: Path, steps: dict[str, set[int]]) -> int:
    """Verify every committed step is present and every stored record is whole.

    Returns the next unused action number.
    """
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    with Store.open(db) as store:  # runs quick_check and the identity checks too
        actions = {a.action_id: a for a in store.actions(limit=1_000_000)}
        for a in actions.values():
            i = int(a.action_id.removeprefix("act-"))
            assert a.trip_key == f"trip-{i}"
            assert a.symbol == f"SYM-{i % 7}"
            assert a.params == {"i": i, "pad": "p" * (i % 500)}
            assert (a.client_order_id, a.reason, a.intent_at) == (f"rw-{i}", f"reason {i}", i)
            assert a.status in {"intent", "sent", "confirmed"}
            if a.status != "intent":
                assert a.sent_at == i + 0.5
            if a.status == "confirmed":
                assert (a.detail, a.outcome_at) == (f"detail {i}", i + 1.0)
        for i in steps["intent"]:
            assert f"act-{i}" in actions
        for i in steps["sent"]:
            assert actions[f"act-{i}"].status in {"sent", "confirmed"}
        for i in steps["done"]:
            assert actions[f"act-{i}"].status == "confirmed"
        # At most the one action being written at the kill can be unfinished per run.
        assert len(store.unfinished_actions()) <= KILLS
        for row in store.load_alerts():
            i = row.record["i"]
            assert row.record == {"i": i, "latched": True, "pad": "q" * (i % 300)}
        return 1 + max((int(k.removeprefix("act-")) for k in actions), default=-1)


@pytest.mark.timeout(30)
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_writes_leaves_a_consistent_file(tmp_path: Path) -> None:
    """Several SIGKILLs at seeded random moments lose no committed record and tear none."""
    rng = random.Random(20240611)
    db = tmp_path / "state.db"
    Store.open(db).close()
    all_steps: dict[str, set[int]] = {"intent": set(), "sent": set(), "done": set()}
    start = 0
    for run in range(KILLS):
        progress = tmp_path / f"progress-{run}.txt"
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(start), str(progress)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 10
            while not _progress(progress)[0]:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "writer did not start"
                time.sleep(5 * MS)
            time.sleep(rng.uniform(20 * MS, 250 * MS))
            assert proc.poll() is None, "writer stopped before it was killed"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=5)
            if proc.stderr:
                proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        _, steps = _progress(progress)
        for key in all_steps:
            all_steps[key] |= steps[key]
        start = _check_whole(db, all_steps)
    assert len(all_steps["done"]) >= KILLS  # the writer made progress in every run
    assert start >= len(all_steps["intent"])
