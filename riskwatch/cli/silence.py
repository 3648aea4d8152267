"""``riskwatch silence add|list|expire``: a small client of a running daemon's HTTP API.

The daemon's address comes from ``--url`` or from the config's ``http.listen`` (a
wildcard host is reached on 127.0.0.1); the admin token from the config or the
``RISKWATCH_ADMIN_TOKEN`` environment variable. The token is sent only as a bearer
header and never printed. Exit status: 0 done, 1 refused or failed, 2 bad config.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from riskwatch.cli.apiclient import call
from riskwatch.config import load_config
from riskwatch.durations import parse_duration
from riskwatch.errors import ConfigError

__all__ = ["run_silence"]

_WILDCARD = {"0.0.0.0", "::", "", "[::]"}  # noqa: S104 - compared against, not bound


def _endpoint(config_path: Path | None, url: str | None) -> tuple[str, str | None]:
    token = os.environ.get("RISKWATCH_ADMIN_TOKEN") or None
    if config_path is not None:
        config = load_config(config_path)
        if config.http.admin_token is not None:
            token = config.http.admin_token.reveal()
        if url is None:
            host = config.http.host
            host = "127.0.0.1" if host in _WILDCARD else host
            url = f"http://{host}:{config.http.port}"
    return (url or "http://127.0.0.1:9464").rstrip("/"), token


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _line(s: dict[str, Any]) -> str:
    matchers = ",".join(f"{m['name']}{m.get('op', '=')}{m['value']}" for m in s["matchers"])
    return (
        f"{s['id']}  {matchers}  {_when(s['starts_at'])} → {_when(s['ends_at'])}"
        f"  by {s['created_by']}: {s['comment']}"
    )


def run_silence(
    action: str,
    *,
    config_path: Path | None,
    url: str | None,
    matchers: list[str] | None = None,
    duration: str = "1h",
    author: str | None = None,
    comment: str = "",
    silence_id: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Run ``silence add|list|expire`` (printing to ``out``, default stdout); return the status."""
    out = out if out is not None else sys.stdout
    try:
        base, token = _endpoint(config_path, url)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        if action == "list":
            # The admin token also opens the read endpoints (when a read token guards them).
            status, doc = call("GET", f"{base}/api/silences", token)
            if status == 200:
                for s in doc["silences"]:
                    print(_line(s), file=out)
                return 0
        elif action == "add":
            seconds = parse_duration(duration).seconds
            body = {
                "matchers": matchers or [],
                "duration": seconds,
                "created_by": author or os.environ.get("USER", "cli"),
                "comment": comment,
            }
            status, doc = call("POST", f"{base}/api/silences", token, body)
            if status == 201:
                print(doc["id"], file=out)
                return 0
        else:
            status, doc = call("DELETE", f"{base}/api/silences/{silence_id}", token)
            if status == 200:
                print(f"expired {doc['id']}", file=out)
                return 0
    except (OSError, ValueError) as exc:
        print(f"riskwatch silence {action}: {exc}", file=sys.stderr)
        return 1
    error = doc.get("error") if isinstance(doc, dict) else None
    print(f"riskwatch silence {action}: HTTP {status}: {error or 'failed'}", file=sys.stderr)
    return 1
