"""Credentials on the trade WebSocket's HTTP upgrade (pure; takes ``now``).

docs/protocol.md §1: the AsyncAPI and every docs example put the public key in the
query string (``?api_key=<public key>``); the official CLI instead sends the REST
authentication headers on the upgrade (§2.2): ``x-qfex-public-key``,
``x-qfex-hmac-signature``, ``x-qfex-nonce``, ``x-qfex-timestamp``, or
``Authorization: Bearer <jwt>``. Neither replaces the ``auth`` frame, which follows.
riskwatch sends both forms by default (``upgrade_auth: both``), since a gateway that
wants one ignores the other. A JWT never goes into the URL (URLs end up in proxy and
access logs): a JWT account gets the Bearer header only. Each upgrade signs a fresh
nonce, never the one of the ``auth`` frame (nonces are single-use, §2.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from riskwatch import USER_AGENT
from riskwatch.config import UpgradeAuth
from riskwatch.qfex.auth import new_nonce, sign

__all__ = ["USER_AGENT", "Handshake", "handshake"]


@dataclass(frozen=True, slots=True)
class Handshake:
    """The URL and extra headers of one upgrade request.

    ``headers`` may hold a bearer token: never log them (``__repr__`` hides values).
    """

    url: str
    headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self.headers)
        return f"Handshake(url={self.url!r}, headers=[{names}])"


def _with_query(url: str, key: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != key]
    query.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def handshake(
    url: str,
    *,
    mode: UpgradeAuth,
    now: float,
    public_key: str | None = None,
    secret_key: str | None = None,
    jwt: str | None = None,
    nonce_factory: Callable[[], str] = new_nonce,
) -> Handshake:
    """The upgrade request for one connection attempt at Unix time ``now``.

    HMAC credentials (``public_key`` + ``secret_key``): ``query`` adds
    ``api_key=<public key>``, ``headers`` adds the four ``x-qfex-*`` headers signed
    over a fresh ``nonce:unix_ts``. A ``jwt``: ``headers`` adds ``Authorization:
    Bearer``; ``query`` adds nothing. ``both`` does both, ``none`` neither.
    """
    out_url = url
    headers: list[tuple[str, str]] = []
    send_query = mode in ("both", "query")
    send_headers = mode in ("both", "headers")
    if jwt is not None:
        if send_headers:
            headers.append(("Authorization", f"Bearer {jwt}"))
    elif public_key:
        if send_query:
            out_url = _with_query(url, "api_key", public_key)
        if send_headers and secret_key is not None:
            nonce, unix_ts = nonce_factory(), int(now)
            headers += [
                ("x-qfex-public-key", public_key),
                ("x-qfex-hmac-signature", sign(secret_key, nonce, unix_ts)),
                ("x-qfex-nonce", nonce),
                ("x-qfex-timestamp", str(unix_ts)),
            ]
    return Handshake(url=out_url, headers=tuple(headers))
