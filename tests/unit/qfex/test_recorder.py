"""``run --record``: frames written by the recorder's thread, read back by replay; a write
error stops the recording once, loudly, and never reaches the caller."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from riskwatch.qfex.recorder import Recorder, read_recording


def test_frames_round_trip_and_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    rec = Recorder(path)
    rec.write("desk-a", "trade", '{"type":"ping"}', 1.5)
    rec.write("", "mds", b"\x00\x01", 2.5)
    rec.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    frames = list(read_recording(path))
    assert [(f.t, f.account, f.source, f.frame) for f in frames] == [
        (1.5, "desk-a", "trade", '{"type":"ping"}'),
        (2.5, "", "mds", b"\x00\x01"),
    ]
    assert rec.active
    assert rec.written == 2


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_full_disk_stops_the_recording_once_and_never_raises() -> None:
    """/dev/full answers every write with ENOSPC, as a full filesystem does."""
    errors: list[str] = []
    called = threading.Event()

    def on_error(message: str) -> None:
        errors.append(message)
        called.set()

    rec = Recorder(Path("/dev/full"), on_error=on_error)
    for n in range(50):
        rec.write("desk-a", "trade", f'{{"n":{n}}}', float(n))  # never raises
    assert called.wait(5.0)
    rec.close()
    assert not rec.active
    assert len(errors) == 1
    assert "No space left on device" in errors[0]
    rec.write("desk-a", "trade", "{}", 99.0)  # after the stop: ignored, silently
    assert len(errors) == 1


def test_a_file_that_cannot_be_opened_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        Recorder(tmp_path / "missing-dir" / "rec.jsonl")
