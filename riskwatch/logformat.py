"""Log output formats: the readable text line and one JSON object per line (docs/logging.md).

A JSON line carries ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger`` and
``message``, then whichever of the context fields (:data:`CONTEXT_FIELDS`) are known for
the record: passed by the call (``log.warning(..., extra={"account": name})``) or bound
for the running task with :func:`log_context` (a trade connection binds its account, so
every line it logs names it). ``exception`` holds the traceback when there is one.

Secrets are masked by :class:`riskwatch.logredact.RedactingFilter` before a record
reaches the formatter (it rewrites the message and the traceback text), so both formats
print the same masked text.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final, Literal

__all__ = [
    "CONTEXT_FIELDS",
    "JsonFormatter",
    "LogFormat",
    "bound_context",
    "log_context",
    "setup_logging",
]

LogFormat = Literal["text", "json"]

#: Fields a record may carry besides the message, in the order they are printed.
CONTEXT_FIELDS: Final = ("account", "rule", "symbol", "action_id", "trip_id", "role")

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "riskwatch_log_context", default=None
)

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind context fields to every record logged inside the block (this task only)."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bound_context(**fields: Any) -> contextvars.Context:
    """A copy of the current context with ``fields`` bound: for ``create_task(context=...)``."""
    ctx = contextvars.copy_context()
    ctx.run(_context.set, {**(_context.get() or {}), **fields})
    return ctx


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside strings are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record``; never raises on a value JSON cannot hold (it becomes its str)."""
        stamp = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        bound = _context.get() or {}
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name, bound.get(name))
            if value is not None:
                doc[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str, separators=(",", ":"))


def setup_logging(level: str, fmt: LogFormat = "text") -> None:
    """Configure the root logger on stderr in ``fmt`` at ``level`` (replacing its handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # websockets logs every failed handshake at INFO with a traceback; keep ours readable.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
