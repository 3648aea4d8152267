"""A tiny client of a running daemon's HTTP API, for the operator commands.

Used by ``riskwatch arm|disarm|latch-reset|actions`` and ``riskwatch silence``. The
admin token is sent only as a bearer header; nothing here prints it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["call"]


def call(
    method: str, url: str, token: str | None, body: Any = None, *, timeout: float = 10.0
) -> tuple[int, Any]:
    """Send one JSON request; return the status and the decoded JSON reply (or None).

    An HTTP error status is returned, not raised; a network failure raises ``OSError``.
    """
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
