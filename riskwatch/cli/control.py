"""``riskwatch arm|disarm|latch-reset|actions``: operator controls of a running daemon.

Talks to the daemon's HTTP API (``--url``, default ``http://127.0.0.1:9464``). The
admin token is read from ``--token-file`` or ``$RISKWATCH_ADMIN_TOKEN``, sent only as
a bearer header, and never printed. Exit status: 0 done, 1 refused or failed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TextIO

from riskwatch.cli.apiclient import call

__all__ = ["run_control"]

DEFAULT_URL = "http://127.0.0.1:9464"


def _token(token_file: Path | None) -> str | None:
    if token_file is not None:
        return token_file.read_text(encoding="utf-8").strip() or None
    return os.environ.get("RISKWATCH_ADMIN_TOKEN") or None


def _line(a: dict[str, Any]) -> str:
    detail = f"  {a['detail']}" if a.get("detail") else ""
    return (
        f"{a.get('intent_at', 0):.3f}  {a.get('account')}  {a.get('rule')}  {a.get('action')}"
        f" {a.get('symbol') or ''}  attempt {a.get('attempt')}  {a.get('outcome')}{detail}"
    )


def run_control(
    command: str,
    *,
    url: str | None = None,
    token_file: Path | None = None,
    account: str | None = None,
    rule: str | None = None,
    symbol: str | None = None,
    limit: int = 50,
    out: TextIO | None = None,
) -> int:
    """Run one control ``command`` (``arm``, ``disarm``, ``latch-reset``, ``actions``)."""
    stream = out or sys.stdout
    base = (url or DEFAULT_URL).rstrip("/")
    try:
        token = _token(token_file)
        if command == "actions":
            # The admin token also opens the read endpoints (when a read token guards them).
            status, doc = call("GET", f"{base}/api/actions?limit={limit}", token)
        elif command in ("arm", "disarm"):
            status, doc = call("POST", f"{base}/api/{command}", token, {})
        elif command == "latch-reset":
            body = {"account": account, "rule": rule, "symbol": symbol}
            status, doc = call("POST", f"{base}/api/latches/reset", token, body)
        else:
            stream.write(f"unknown control command {command!r}\n")
            return 1
    except (OSError, ValueError) as exc:
        stream.write(f"cannot reach riskwatch at {base}: {exc}\n")
        return 1
    if status != 200:
        error = doc.get("error") if isinstance(doc, dict) else None
        stream.write(f"{command} refused (HTTP {status}): {error or doc}\n")
        return 1
    if command == "actions":
        stream.write(
            f"mode {doc['mode']}, armed {doc['armed']}, kill switch {doc['kill_switch']}\n"
        )
        for a in doc.get("actions", []):
            stream.write(_line(a) + "\n")
    elif command == "latch-reset":
        reset = doc.get("reset", [])
        stream.write(f"{len(reset)} latch(es) reset\n")
    else:
        stream.write(
            f"mode {doc['mode']}, armed {doc['armed']}, kill switch {doc['kill_switch']}\n"
        )
    return 0
