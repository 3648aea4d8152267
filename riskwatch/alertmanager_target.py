"""``alertmanager://`` route targets: what the URL says (pure; docs/notifications-alertmanager.md).

``alertmanager://HOST:PORT[/PREFIX][?resend=SECONDS&timeout=SECONDS]`` posts to
``http://HOST:PORT[/PREFIX]/api/v2/alerts``; ``alertmanagers://`` to ``https://``.
User info (``alertmanager://user:password@host:9093``) becomes HTTP basic
authentication. ``resend`` is how often a firing alert is posted again (default 60 s,
Prometheus' own ``resend_delay``); each post says ``endsAt`` = now + 4 × ``resend``, so
an alert whose sender died resolves in Alertmanager on its own. ``timeout`` bounds one
post (default 10 s).

This module imports nothing but the standard library: the config loader validates
route URLs with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from riskwatch.secret import Secret

__all__ = ["SCHEMES", "AlertmanagerTarget", "is_alertmanager", "parse_target"]

SCHEMES: Final = {"alertmanager": "http", "alertmanagers": "https"}
DEFAULT_RESEND: Final = 60.0
DEFAULT_TIMEOUT: Final = 10.0
_OPTIONS: Final = frozenset({"resend", "timeout"})


@dataclass(frozen=True, slots=True)
class AlertmanagerTarget:
    """Where and how to post. ``alerts_url`` holds no credentials (safe to log)."""

    alerts_url: str
    username: str | None
    password: Secret | None
    resend: float
    timeout: float

    @property
    def display(self) -> str:
        """The endpoint as shown in logs and ``notify-test`` (no credentials)."""
        return self.alerts_url


def is_alertmanager(url: str) -> bool:
    """Whether a route target URL is an Alertmanager endpoint (by scheme)."""
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"alertmanager url: {name} must be a number of seconds"
        raise ValueError(msg) from None
    if not 0.1 <= value <= 86_400:
        msg = f"alertmanager url: {name} must be between 0.1 and 86400 seconds"
        raise ValueError(msg)
    return value


def parse_target(url: str) -> AlertmanagerTarget:
    """Parse an ``alertmanager(s)://`` URL; ValueError says what is wrong, never quoting it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        msg = "alertmanager url: host or port not understood"
        raise ValueError(msg) from None
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        msg = "not an alertmanager:// or alertmanagers:// url"
        raise ValueError(msg)
    if not parts.hostname:
        msg = "alertmanager url: a host is required (alertmanager://host:9093)"
        raise ValueError(msg)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        msg = f"alertmanager url: unknown option(s) {', '.join(unknown)} (resend, timeout)"
        raise ValueError(msg)
    resend = _seconds("resend", options["resend"]) if "resend" in options else DEFAULT_RESEND
    timeout = _seconds("timeout", options["timeout"]) if "timeout" in options else DEFAULT_TIMEOUT
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port is None else f"{host}:{port}"
    prefix = parts.path.rstrip("/")
    return AlertmanagerTarget(
        alerts_url=f"{scheme}://{netloc}{prefix}/api/v2/alerts",
        username=parts.username,
        password=Secret(parts.password) if parts.password else None,
        resend=resend,
        timeout=timeout,
    )
