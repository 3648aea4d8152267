"""``riskwatch run --record FILE``: every received exchange frame, as JSON lines.

One line per frame: ``{"t": <receive time, Unix s>, "account": <name or "">,
"source": "trade" | "mds", "frame": <text>}``; a binary frame is stored as
``"frame_b64"`` instead. ``riskwatch replay`` reads the same format back with
:func:`read_recording`. Lines are flushed as written so that a crash loses at most
the frame being written.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One frame of a recording."""

    t: float
    account: str
    source: str
    frame: str | bytes


class Recorder:
    """Appends received frames to a JSONL file (line-buffered)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8", buffering=1)

    def write(self, account: str, source: str, frame: str | bytes, now: float) -> None:
        """Append one frame with its receive time."""
        row: dict[str, object] = {"t": now, "account": account, "source": source}
        if isinstance(frame, bytes):
            row["frame_b64"] = base64.b64encode(frame).decode("ascii")
        else:
            row["frame"] = frame
        self._file.write(json.dumps(row, separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


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
