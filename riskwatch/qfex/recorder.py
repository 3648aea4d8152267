"""``riskwatch run --record FILE``: every received exchange frame, as JSON lines.

One line per frame: ``{"t": <receive time, Unix s>, "account": <name or "">,
"source": "trade" | "mds", "frame": <text>}``; a binary frame is stored as
``"frame_b64"`` instead. ``riskwatch replay`` reads the same format back with
:func:`read_recording`.

The connections never wait for the disk and never see its errors: :meth:`Recorder.write`
puts the frame on a bounded queue (O(1), never raises) and a thread writes the lines,
each flushed as written. A write error (a full disk) or a full queue (a disk that
cannot keep up) stops the recording for good: later frames are not recorded, the file
keeps every line written before, and ``on_error(message)`` is called once (on the
recorder's thread; the daemon counts it, and notifies: docs/reliability.md). A crash
loses the frames still queued. The file is created with mode 0600 (owner only): frames
carry account data.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

MAX_QUEUE: Final = 100_000
"""Frames waiting for the disk before the recording gives up."""
RECORDING_FILE_MODE: Final = 0o600

_Item = tuple[float, str, str, "str | bytes"] | None


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One frame of a recording."""

    t: float
    account: str
    source: str
    frame: str | bytes


class Recorder:
    """Appends received frames to a JSONL file from its own thread (module docstring).

    Raises ``OSError`` when the file cannot be opened at all (``run`` then exits 2).
    """

    def __init__(
        self,
        path: Path,
        *,
        max_queue: int = MAX_QUEUE,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.on_error = on_error
        self.error: str | None = None
        """Why the recording stopped, once it has."""
        self.written = 0
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, RECORDING_FILE_MODE)
        self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        self._queue: queue.Queue[_Item] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        """True while frames are being recorded (no error yet)."""
        return self.error is None

    def write(self, account: str, source: str, frame: str | bytes, now: float) -> None:
        """Queue one frame with its receive time (never blocks, never raises)."""
        if self.error is not None:
            return
        try:
            self._queue.put_nowait((now, account, source, frame))
        except queue.Full:
            self._stop(f"recording queue full ({self._queue.maxsize} frames): disk too slow")
        except RuntimeError:  # interpreter shutting down
            return

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (at most ``timeout`` s), then close the file."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            self._stop(f"frames still queued at stop were not written to {self.path}")
        self._thread.join(timeout)
        try:
            self._file.close()
        except OSError as exc:
            self._stop(f"closing {self.path} failed: {exc.strerror or exc}")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            t, account, source, frame = item
            if self.error is not None:
                continue  # stopped: drain without writing
            row: dict[str, object] = {"t": t, "account": account, "source": source}
            if isinstance(frame, bytes):
                row["frame_b64"] = base64.b64encode(frame).decode("ascii")
            else:
                row["frame"] = frame
            try:
                self._file.write(json.dumps(row, separators=(",", ":")) + "\n")
            except (OSError, ValueError) as exc:
                self._stop(f"writing {self.path} failed: {getattr(exc, 'strerror', None) or exc}")
                continue
            self.written += 1

    def _stop(self, message: str) -> None:
        if self.error is not None:
            return
        self.error = message
        log.critical("recording stopped: %s; the connections and protection go on", message)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                log.exception("recorder: error listener failed")


def read_recording(path: Path) -> Iterator[RecordedFrame]:
    """Yield the frames of a recording in file order.

    Raises ``ValueError`` naming the line for a line that is not a recorded frame.
    """
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                t = float(row["t"])
                account = str(row.get("account", ""))
                source = str(row.get("source", "trade"))
                frame: str | bytes
                if "frame_b64" in row:
                    frame = base64.b64decode(row["frame_b64"])
                else:
                    frame = str(row["frame"])
            except (ValueError, KeyError, TypeError) as exc:
                msg = f"{path}:{lineno}: not a recorded frame: {exc}"
                raise ValueError(msg) from exc
            yield RecordedFrame(t=t, account=account, source=source, frame=frame)
