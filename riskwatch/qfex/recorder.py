"""``riskwatch run --record FILE``: the complete input of the daemon's pure core, as JSON lines.

A recording holds every received exchange frame and every firing of the daemon's timers
that lets time pass for the pure parts (the account cores and the action book), in the
order the daemon handled them, so that ``riskwatch replay`` sees the same inputs, at the
same times, as the daemon did (docs/rules.md, "Replaying a recording"):

- a frame: ``{"t": <receive time, Unix s>, "account": <name or "">, "source": "trade" |
  "mds", "frame": <text>}``; a binary frame is stored as ``"frame_b64"`` instead;
- a rule tick: ``{"t": <the tick's now, Unix s>, "source": "tick"}`` (every account's
  core ticked: ``for`` expiry, ``keep_firing_for``, stale data; riskwatch/daemon/ticks.py);
- an action tick: ``{"t": <now>, "source": "action_tick"}`` (the action book's timeouts,
  backoffs and queued sends; riskwatch/actions/executor.py). Written only while actions
  are in flight: a tick of an empty book changes nothing;
- a burst flush: ``{"t": <now>, "account": <name>, "source": "flush"}`` (position
  frames no balance closed, evaluated; riskwatch/daemon/frames.py);
- a disconnect: ``{"t": <now>, "account": <name>, "source": "disconnect"}`` (the
  account's trade link went down: no frame says so; riskwatch/daemon/frames.py).

:func:`read_recording` reads them back as :class:`RecordedFrame`, :class:`RecordedTick`
(the three timers) and :class:`RecordedDisconnect`. A recording without tick lines (made
before they were recorded, or by hand) is still valid: replay then ticks on its own
schedule, and takes a new ``authenticated`` frame for the end of the previous connection.

The connections and the timers never wait for the disk and never see its errors:
:meth:`Recorder.write` and the tick methods put the line on one bounded queue (O(1),
never raise; one queue, so ticks and frames keep their order in the file) and a thread
writes the lines, each flushed as written. A write error (a full disk) or a full queue
(a disk that cannot keep up) stops the recording for good: later lines are not
recorded, the file keeps every line written before, and ``on_error(message)`` is called
once (on the recorder's thread; the daemon counts it, and notifies: docs/reliability.md).
A crash loses the lines still queued. The file is created with mode 0600 (owner only):
frames carry account data.
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
"""Lines (frames and ticks) waiting for the disk before the recording gives up."""
RECORDING_FILE_MODE: Final = 0o600
RULE_TICK: Final = "tick"
"""The ``source`` of a rule tick's line."""
ACTION_TICK: Final = "action_tick"
"""The ``source`` of an action tick's line."""
BURST_FLUSH: Final = "flush"
"""The ``source`` of a burst flush's line (it names its account)."""
TICK_SOURCES: Final = frozenset({RULE_TICK, ACTION_TICK, BURST_FLUSH})
DISCONNECT: Final = "disconnect"
"""The ``source`` of a disconnect's line (it names its account)."""

_Item = tuple[float, str, str, "str | bytes | None"] | None


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One frame of a recording."""

    t: float
    account: str
    source: str
    frame: str | bytes


@dataclass(frozen=True, slots=True)
class RecordedTick:
    """One firing of a daemon timer at ``t`` (its now), with no frame (module docstring).

    ``source``: :data:`RULE_TICK`, :data:`ACTION_TICK` or :data:`BURST_FLUSH`;
    ``account``: the account of a burst flush ("" for the other two).
    """

    t: float
    source: str = RULE_TICK
    account: str = ""


@dataclass(frozen=True, slots=True)
class RecordedDisconnect:
    """``account``'s trade link went down at ``t`` (its commands' replies are lost)."""

    t: float
    account: str


Recorded = RecordedFrame | RecordedTick | RecordedDisconnect
"""One line of a recording."""


class Recorder:
    """Appends received frames and rule ticks to a JSONL file from its own thread
    (module docstring).

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
        """True while frames and ticks are being recorded (no error yet)."""
        return self.error is None

    def write(self, account: str, source: str, frame: str | bytes, now: float) -> None:
        """Queue one frame with its receive time (never blocks, never raises)."""
        self._put((now, account, source, frame))

    def tick(self, now: float) -> None:
        """Queue one rule tick with its ``now`` (never blocks, never raises). This and
        the two below are called before the timer reaches the pure parts, as
        :meth:`write` is called before a frame reaches them."""
        self._put((now, "", RULE_TICK, None))

    def action_tick(self, now: float) -> None:
        """Queue one tick of the action book's timer (never blocks, never raises)."""
        self._put((now, "", ACTION_TICK, None))

    def burst_flush(self, account: str, now: float) -> None:
        """Queue the flush of ``account``'s unterminated burst (never blocks, never raises)."""
        self._put((now, account, BURST_FLUSH, None))

    def disconnected(self, account: str, now: float) -> None:
        """Queue the end of ``account``'s trade link (never blocks, never raises)."""
        self._put((now, account, DISCONNECT, None))

    def _put(self, item: _Item) -> None:
        if self.error is not None:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._stop(f"recording queue full ({self._queue.maxsize} lines): disk too slow")
        except RuntimeError:  # interpreter shutting down
            return

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (at most ``timeout`` s), then close the file."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            self._stop(f"lines still queued at stop were not written to {self.path}")
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
            row: dict[str, object]
            if frame is None:
                row = {"t": t, "source": source}
                if account:
                    row["account"] = account
            elif isinstance(frame, bytes):
                row = {"t": t, "account": account, "source": source}
                row["frame_b64"] = base64.b64encode(frame).decode("ascii")
            else:
                row = {"t": t, "account": account, "source": source, "frame": frame}
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


def read_recording(path: Path) -> Iterator[Recorded]:
    """Yield the frames, tick lines and disconnects of a recording in file order.

    Raises ``ValueError`` naming the line for a line that is neither a recorded frame
    nor a tick or disconnect line (a ``flush`` or ``disconnect`` line names its account).
    """
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = _parse_line(line)
            except (ValueError, KeyError, TypeError) as exc:
                msg = f"{path}:{lineno}: not a recorded frame or tick: {exc}"
                raise ValueError(msg) from exc
            yield item


def _parse_line(line: str) -> Recorded:
    row = json.loads(line)
    t = float(row["t"])
    source = str(row.get("source", "trade"))
    account = str(row.get("account", ""))
    if source in (BURST_FLUSH, DISCONNECT) and not account:
        msg = f"a {source} line names no account"
        raise ValueError(msg)
    if source in TICK_SOURCES:
        return RecordedTick(t=t, source=source, account=account)
    if source == DISCONNECT:
        return RecordedDisconnect(t=t, account=account)
    frame: str | bytes
    if "frame_b64" in row:
        frame = base64.b64decode(row["frame_b64"])
    else:
        frame = str(row["frame"])
    return RecordedFrame(t=t, account=account, source=source, frame=frame)
