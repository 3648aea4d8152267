"""Who may call what: the Host check, the read and admin tokens, the admin rate limit and
the failed-login throttle (docs/http.md, "Authentication" and "Limits").

- Host: with ``http.allowed_hosts`` set (the default when listening on loopback), a
  request whose ``Host`` header names another host is refused with 403, so that a web
  page whose DNS name was rebound to this address cannot read or drive the API.
- Admin routes: no ``admin_token`` configured: 403 (disabled). Otherwise
  ``Authorization: Bearer <admin_token>`` is required (401), and at most
  ``admin_requests_per_minute`` authenticated requests are served (429 beyond, all
  clients together) — except ``POST /api/disarm``, which is never rate-limited.
- Read routes (the status page, ``/api/*`` reads; ``/metrics`` with ``protect_metrics``,
  ``/healthz`` and ``/readyz`` with ``protect_health``): with a ``read_token``
  configured, ``Authorization: Bearer <token>`` or HTTP basic authentication with the
  token as password (for browsers) is required, the admin token also being accepted.
- Failed logins: a client address with ``failed_logins_per_minute`` wrong tokens within
  a minute is refused with 429 (its tokens are not even compared) until the oldest of
  them is a minute old. A request without a token is refused (401) but guesses nothing,
  so it does not count (a browser's first request to the status page is one).

Refusals are counted (``riskwatch_http_unauthorized_total{reason}``,
``riskwatch_http_refused_total{reason}``) and logged without the token. Tokens are
compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import logging
import math
import time
from collections.abc import Callable

from aiohttp import web

from riskwatch.config import HttpConfig
from riskwatch.secret import Secret
from riskwatch.web.jsondoc import error_response
from riskwatch.web.limits import LoginThrottle, TokenBucket

__all__ = ["Access", "AccessGuard", "host_name"]

log = logging.getLogger(__name__)


class Access(enum.Enum):
    """Who may call a route (:data:`riskwatch.web.routes.ROUTES`)."""

    METRICS = "metrics"
    """``/metrics``: open unless ``protect_metrics`` (then as ``READ``)."""
    HEALTH = "health"
    """``/healthz``, ``/readyz``: open unless ``protect_health`` (then as ``READ``)."""
    READ = "read"
    """The status page and the read API: the read token when one is configured."""
    ADMIN = "admin"
    """Mutations: the admin token, rate-limited."""
    KILL_SWITCH = "kill-switch"
    """``POST /api/disarm``: the admin token, never rate-limited (disarming is always
    possible, whatever else an operator's scripts did)."""


def host_name(header: str) -> str:
    """The host of a ``Host`` header, lower-case, without port or IPv6 brackets."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _secret_bytes(token: Secret | None) -> bytes | None:
    return token.reveal().encode() if token is not None else None


class AccessGuard:
    """Checks each request against the access of its route (module docstring)."""

    def __init__(
        self,
        config: HttpConfig,
        *,
        on_denied: Callable[[str], None] | None = None,
        on_refused: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = _secret_bytes(config.admin_token)
        self._read = _secret_bytes(config.read_token)
        self._protect_metrics = config.protect_metrics
        self._protect_health = config.protect_health
        self._hosts = frozenset(config.allowed_hosts)
        self._admin_rate = TokenBucket(config.admin_requests_per_minute)
        self._logins = LoginThrottle(config.failed_logins_per_minute)
        self._on_denied = on_denied
        self._on_refused = on_refused
        self._clock = clock

    def _refused(self, reason: str) -> None:
        if self._on_refused is not None:
            self._on_refused(reason)

    def _denied(self, request: web.Request, reason: str, what: str) -> None:
        log.warning(
            "%s %s refused: %s %s token (from %s)",
            request.method,
            request.path,
            reason,
            what,
            request.remote,
        )
        if self._on_denied is not None:
            self._on_denied(reason)
        if reason == "wrong":  # a guess; a request without a token guesses nothing
            self._logins.failed(request.remote or "", self._clock())

    def check_host(self, request: web.Request) -> web.Response | None:
        """403 when ``Host`` names a host outside ``allowed_hosts`` (when set)."""
        if not self._hosts:
            return None
        header = request.headers.get("Host")
        if header is None or host_name(header) in self._hosts:
            return None
        self._refused("host")
        log.warning(
            "%s %s refused: Host %.100r not in http.allowed_hosts (from %s)",
            request.method,
            request.path,
            header,
            request.remote,
        )
        return error_response(403, "host not allowed: see http.allowed_hosts")

    def check(self, request: web.Request, access: Access) -> web.Response | None:
        """None when ``request`` may proceed to a route of ``access``, else the refusal."""
        if access is Access.ADMIN:
            return self._check_admin(request, rate_limited=True)
        if access is Access.KILL_SWITCH:
            return self._check_admin(request, rate_limited=False)
        if access is Access.METRICS and not self._protect_metrics:
            return None
        if access is Access.HEALTH and not self._protect_health:
            return None
        if self._read is None:
            return None
        return self._check_read(request, self._read)

    def _throttled(self, request: web.Request) -> web.Response | None:
        wait = self._logins.blocked(request.remote or "", self._clock())
        if wait is None:
            return None
        self._refused("login_throttled")
        resp = error_response(429, "too many failed logins from this address: retry later")
        resp.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return resp

    def _check_admin(self, request: web.Request, *, rate_limited: bool) -> web.Response | None:
        if self._admin is None:
            return error_response(
                403, "mutating endpoints are disabled: no http.admin_token configured"
            )
        throttled = self._throttled(request)
        if throttled is not None:
            return throttled
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if not (
            scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._admin)
        ):
            self._denied(request, "missing" if not header else "wrong", "admin")
            return error_response(401, "unauthorized")
        # Counted once the token is right: requests without it cannot spend the budget.
        wait = self._admin_rate.take(self._clock()) if rate_limited else None
        if wait is not None:
            self._refused("admin_rate")
            resp = error_response(429, "too many admin requests: retry later")
            resp.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return resp
        return None

    def _check_read(self, request: web.Request, read: bytes) -> web.Response | None:
        throttled = self._throttled(request)
        if throttled is not None:
            return throttled
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        scheme = scheme.lower()
        token = b""
        if scheme == "bearer":
            token = given.strip().encode()
        elif scheme == "basic":
            try:
                decoded = base64.b64decode(given.strip(), validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            token = decoded.partition(b":")[2]
        ok = hmac.compare_digest(token, read) or (
            self._admin is not None and hmac.compare_digest(token, self._admin)
        )
        if ok:
            return None
        self._denied(request, "missing" if not header else "wrong", "read")
        resp = error_response(401, "unauthorized: this endpoint needs the read token")
        resp.headers["WWW-Authenticate"] = 'Basic realm="riskwatch", charset="UTF-8"'
        return resp
