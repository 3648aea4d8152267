"""``Authorization: Bearer <admin_token>`` on the mutating endpoints.

No token configured: every mutating endpoint answers 403 (disabled). A missing or
wrong token: 401, counted (``riskwatch_http_unauthorized_total{reason}``) and logged
without the token. The comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from aiohttp import web

from riskwatch.secret import Secret
from riskwatch.web.jsondoc import error_response

__all__ = ["AdminGuard"]

log = logging.getLogger(__name__)


class AdminGuard:
    """Checks the admin token of a request (``http.admin_token``, docs/configuration.md;
    docs/metrics.md, "HTTP endpoints")."""

    def __init__(self, token: Secret | None, on_denied: Callable[[str], None] | None = None):
        self._token = token.reveal().encode() if token is not None else None
        self._on_denied = on_denied

    @property
    def enabled(self) -> bool:
        """Whether mutating endpoints are available at all."""
        return self._token is not None

    def check(self, request: web.Request) -> web.Response | None:
        """None when ``request`` may proceed, else the error response to send."""
        if self._token is None:
            return error_response(
                403, "mutating endpoints are disabled: no http.admin_token configured"
            )
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)
        if ok:
            return None
        reason = "missing" if not header else "wrong"
        log.warning(
            "%s %s refused: %s admin token (from %s)",
            request.method,
            request.path,
            reason,
            request.remote,
        )
        if self._on_denied is not None:
            self._on_denied(reason)
        return error_response(401, "unauthorized")
