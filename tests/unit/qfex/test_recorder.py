"""``run --record``: frames and tick lines written by the recorder's thread, in order, read
back by replay; a write error stops the recording once, loudly, and never reaches the
caller."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path
from typing import cast

import pytest

from riskwatch.qfex.recorder import (
    ACTION_TICK,
    BURST_FLUSH,
    RULE_TICK,
    RecordedDisconnect,
    RecordedFrame,
    RecordedTick,
    Recorder,
    read_recording,
)


def test_frames_round_trip_and_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    rec = Recorder(path)
    rec.write("desk-a", "trade", '{"type":"ping"}', 1.5)
    rec.write("", "mds", b"\x00\x01", 2.5)
    rec.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    frames = cast(list[RecordedFrame], list(read_recording(path)))
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


def test_ticks_and_frames_keep_their_order_and_round_trip(tmp_path: Path) -> None:
    """Tick and disconnect lines go through the frames' queue: the file holds them in call
    order, in the documented format, and read_recording gives them back."""
    path = tmp_path / "rec.jsonl"
    rec = Recorder(path)
    rec.tick(1.0)
    rec.write("desk-a", "trade", '{"type":"ping"}', 1.1)
    rec.tick(1.25)
    rec.write("", "mds", '{"mark_price":1}', 1.3)
    rec.action_tick(1.35)
    rec.burst_flush("desk-a", 1.4)
    rec.disconnected("desk-a", 1.45)
    rec.tick(1.5)
    rec.close()
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == [
        {"t": 1.0, "source": "tick"},
        {"t": 1.1, "account": "desk-a", "source": "trade", "frame": '{"type":"ping"}'},
        {"t": 1.25, "source": "tick"},
        {"t": 1.3, "account": "", "source": "mds", "frame": '{"mark_price":1}'},
        {"t": 1.35, "source": "action_tick"},
        {"t": 1.4, "account": "desk-a", "source": "flush"},
        {"t": 1.45, "account": "desk-a", "source": "disconnect"},
        {"t": 1.5, "source": "tick"},
    ]
    assert list(read_recording(path)) == [
        RecordedTick(1.0),
        RecordedFrame(1.1, "desk-a", "trade", '{"type":"ping"}'),
        RecordedTick(1.25, RULE_TICK),
        RecordedFrame(1.3, "", "mds", '{"mark_price":1}'),
        RecordedTick(1.35, ACTION_TICK),
        RecordedTick(1.4, BURST_FLUSH, "desk-a"),
        RecordedDisconnect(1.45, "desk-a"),
        RecordedTick(1.5),
    ]
    assert rec.written == 8


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"source":"tick"}', "'t'"),
        ('{"t":1.0,"source":"flush"}', "a flush line names no account"),
        ('{"t":1.0,"source":"disconnect","account":""}', "a disconnect line names no account"),
        ('{"t":1.0,"source":"trade","account":"desk-a"}', "'frame'"),
    ],
)
def test_a_line_that_is_neither_frame_nor_tick_is_refused_with_its_line(
    tmp_path: Path, line: str, why: str
) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text('{"t":0.5,"source":"tick"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"rec\.jsonl:2: not a recorded frame or tick: .*{why}"):
        list(read_recording(path))
