"""A logging filter that masks every known secret in every log record.

Secrets are kept out of log calls by construction (they are :class:`Secret` objects
that print as ``********``); this filter is the second line of defence for text that
comes from elsewhere (a library's exception message echoing a URL, say).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from riskwatch.secret import redact


class RedactingFilter(logging.Filter):
    """Replaces each secret value in a record's formatted message with ``********``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so that a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        """Mask ``secret`` too (ignored below 4 characters, as at construction)."""
        if len(secret) >= 4 and secret not in self._secrets:
            self._secrets = sorted({*self._secrets, secret}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask secrets in the message (and its arguments, by formatting first)."""
        if not self._secrets:
            return True
        message = record.getMessage()
        masked = redact(message, self._secrets)
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text, self._secrets)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


def install_redaction(secrets: Iterable[str]) -> RedactingFilter:
    """Attach a :class:`RedactingFilter` to every handler of the root logger."""
    flt = RedactingFilter(secrets)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(flt)
    return flt


_RUNTIME: list[RedactingFilter] = []


def protect(secret: str) -> None:
    """Mask ``secret`` in every log record from now on: for secrets learned at run time
    (a JWT re-read from ``jwt_file`` or printed by ``jwt_command``). One filter collects
    them; it is attached to every handler of the root logger that lacks it."""
    if not _RUNTIME:
        _RUNTIME.append(RedactingFilter(()))
    flt = _RUNTIME[0]
    flt.add(secret)
    for handler in logging.getLogger().handlers:
        if flt not in handler.filters:
            handler.addFilter(flt)
