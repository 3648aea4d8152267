"""Authentication decisions of the simulated trade gateway (pure; takes ``now``).

docs/protocol.md §2.1: HMAC-SHA256 over ``nonce:unix_ts``, nonces unique within 15
minutes, timestamps within a tolerance (REST says "typically ±5 minutes"; here
configurable, default 300 s); or a JWT; optional ``account_id`` selects a
subaccount. Secrets come from the caller, never from the scenario.

The signature check is the simulator's own (:func:`expected_signature`), written from
the docs and not shared with the client's signing code, so that a mistake in one
cannot hide in both. :func:`check_upgrade` decides the credentials of the HTTP upgrade
(§1) in the simulator's upgrade modes; :func:`jwt_claims` reads a token's claims in
the JWT-expiry mode.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac as hmac_mod
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from riskwatch.sim.scenario import AccountSpec

UpgradeMode = Literal["api_key", "hmac_headers", "bearer"]
UPGRADE_MODES: Final[tuple[UpgradeMode, ...]] = ("api_key", "hmac_headers", "bearer")

NONCE_WINDOW = 15 * 60.0
# A documented simulator credential, not a real secret.
DEFAULT_SECRET = "sim-secret"  # noqa: S105


def expected_signature(secret: str, nonce: str, unix_ts: int) -> str:
    """The docs' signature: lowercase hex HMAC-SHA256 keyed by the secret's UTF-8 bytes
    over the ASCII text ``<nonce>:<decimal unix_ts>`` (nothing else is signed)."""
    text = nonce + ":" + str(unix_ts)
    return hmac_mod.new(secret.encode("utf-8"), text.encode("ascii"), hashlib.sha256).hexdigest()


def signature_ok(secret: str, nonce: str, unix_ts: int, signature: str) -> bool:
    """Compare ``signature`` (hex, any case) with the expected one in constant time."""
    return hmac_mod.compare_digest(expected_signature(secret, nonce, unix_ts), signature.lower())


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a compact JWT (signature not checked), or None if unreadable."""
    parts = token.split(".")
    if len(parts) != 3:  # header.payload.signature
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def jwt_expired(token: str, now: float) -> bool:
    """True when ``token`` carries an ``exp`` claim at or before ``now``."""
    claims = jwt_claims(token)
    exp = claims.get("exp") if claims is not None else None
    return isinstance(exp, int | float) and not isinstance(exp, bool) and now >= exp


def signed_jwt_holder(
    token: str,
    accounts: Sequence[AccountSpec],
    secrets: Mapping[str, str],
    now: float,
    default_secret: str = DEFAULT_SECRET,
) -> AccountSpec | None:
    """The JWT-expiry mode's token check: an HS256 JWT whose ``sub`` is an account's
    public key, signed with that account's secret, whose ``exp`` has not passed."""
    claims = jwt_claims(token)
    if claims is None or jwt_expired(token, now) or not isinstance(claims.get("exp"), int):
        return None
    holder = next((a for a in accounts if a.public_key == claims.get("sub")), None)
    if holder is None:
        return None
    head, payload, sig = token.split(".")
    secret = secrets.get(holder.public_key, default_secret)
    digest = hmac_mod.new(
        secret.encode("utf-8"), f"{head}.{payload}".encode("ascii"), hashlib.sha256
    ).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return holder if hmac_mod.compare_digest(expected, sig) else None


@dataclass(frozen=True, slots=True)
class AuthResult:
    """``account`` is the authenticated account's name, or None with a ``reason``."""

    account: str | None
    reason: str = ""


@dataclass(slots=True)
class NonceCache:
    """Nonces seen in the last ``window`` seconds (replay protection)."""

    window: float = NONCE_WINDOW
    _seen: dict[str, float] = field(default_factory=dict)

    def use(self, key: str, now: float) -> bool:
        """Record ``key`` at ``now``; False if it was already used within the window."""
        for old in [k for k, t in self._seen.items() if now - t > self.window]:
            del self._seen[old]
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


def _select(candidates: Sequence[AccountSpec], account_id: object) -> AccountSpec | None:
    """Pick the subaccount named by ``account_id``, else the primary (no account_id)."""
    if account_id is None:
        primary = [a for a in candidates if a.account_id is None]
        pool = primary or list(candidates)
        return pool[0] if pool else None
    for acc in candidates:
        if acc.account_id == account_id:
            return acc
    return None


def check_auth(
    params: object,
    accounts: Sequence[AccountSpec],
    secrets: Mapping[str, str],
    nonces: NonceCache,
    now: float,
    tolerance: float = 300.0,
    default_secret: str = DEFAULT_SECRET,
    allow_api_key: bool = False,
    signed_jwt: bool = False,
) -> AuthResult:
    """Decide an ``auth`` command's params at Unix time ``now``.

    Reasons (never containing a secret): ``malformed``, ``unknown key``, ``bad
    signature``, ``stale timestamp``, ``nonce reused``, ``unknown account_id``,
    ``bad jwt``. ``allow_api_key`` accepts the legacy ``{"api_key": …}`` form;
    ``signed_jwt`` checks JWTs as :func:`signed_jwt_holder` (expiry enforced).
    """
    if not isinstance(params, dict):
        return AuthResult(None, "malformed")
    account_id = params.get("account_id")
    hmac_params: Any = params.get("hmac")
    if isinstance(hmac_params, dict):
        key = hmac_params.get("public_key")
        nonce = hmac_params.get("nonce")
        ts = hmac_params.get("unix_ts")
        sig = hmac_params.get("signature")
        if not (
            isinstance(key, str)
            and isinstance(nonce, str)
            and 0 < len(nonce) <= 100
            and isinstance(ts, int)
            and not isinstance(ts, bool)
            and isinstance(sig, str)
        ):
            return AuthResult(None, "malformed")
        candidates = [a for a in accounts if a.public_key == key]
        if not candidates:
            return AuthResult(None, "unknown key")
        if not signature_ok(secrets.get(key, default_secret), nonce, ts, sig):
            return AuthResult(None, "bad signature")
        if abs(now - ts) > tolerance:
            return AuthResult(None, "stale timestamp")
        if not nonces.use(f"{key}:{nonce}", now):
            return AuthResult(None, "nonce reused")
        chosen = _select(candidates, account_id)
        if chosen is None:
            return AuthResult(None, "unknown account_id")
        return AuthResult(chosen.name)
    token = params.get("jwt")
    if isinstance(token, str):
        if signed_jwt:
            signed = signed_jwt_holder(token, accounts, secrets, now, default_secret)
            holders = [signed] if signed is not None else []
        else:
            holders = [a for a in accounts if a.jwt is not None and a.jwt == token]
        if not holders:
            return AuthResult(None, "bad jwt")
        # The token identifies a user; account_id may pick any account of that user.
        keys = {a.public_key for a in holders}
        candidates = (
            holders if account_id is None else [a for a in accounts if a.public_key in keys]
        )
        chosen = _select(candidates, account_id)
        return AuthResult(None, "unknown account_id") if chosen is None else AuthResult(chosen.name)
    api_key = params.get("api_key")
    if allow_api_key and isinstance(api_key, str):
        chosen = _select([a for a in accounts if a.public_key == api_key], account_id)
        return AuthResult(None, "unknown key") if chosen is None else AuthResult(chosen.name)
    return AuthResult(None, "malformed")


def check_upgrade(
    mode: UpgradeMode,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    accounts: Sequence[AccountSpec],
    secrets: Mapping[str, str],
    nonces: NonceCache,
    now: float,
    tolerance: float = 300.0,
    default_secret: str = DEFAULT_SECRET,
    signed_jwt: bool = False,
) -> str:
    """Decide the upgrade's credentials in ``mode``; return "" when accepted, else why.

    ``api_key``: the query string's ``api_key`` is a known public key (it does not
    authenticate: the ``auth`` frame still must, §1). ``hmac_headers``: the CLI's four
    ``x-qfex-*`` headers, signed like the ``auth`` frame, nonce single-use, or a
    Bearer token (the CLI's JWT form). ``bearer``: ``Authorization: Bearer <jwt>`` of
    a known token. ``headers`` keys are lowercase.
    """
    if mode == "api_key":
        key = query.get("api_key", "")
        return "" if any(a.public_key == key for a in accounts) else "missing or unknown api_key"
    bearer = headers.get("authorization", "")
    if bearer.startswith("Bearer "):
        token = bearer[len("Bearer ") :]
        if signed_jwt:
            holder = signed_jwt_holder(token, accounts, secrets, now, default_secret)
            return "" if holder is not None else "bad or expired bearer token"
        if not any(a.jwt is not None and a.jwt == token for a in accounts):
            return "unknown bearer token"
        return "" if not jwt_expired(token, now) else "bearer token expired"
    if mode == "bearer":
        return "missing bearer token"
    key = headers.get("x-qfex-public-key", "")
    sig = headers.get("x-qfex-hmac-signature", "")
    nonce = headers.get("x-qfex-nonce", "")
    ts_text = headers.get("x-qfex-timestamp", "")
    if not (key and sig and nonce and ts_text.isdigit() and len(nonce) <= 100):
        return "missing x-qfex headers"
    if not any(a.public_key == key for a in accounts):
        return "unknown key"
    ts = int(ts_text)
    if not signature_ok(secrets.get(key, default_secret), nonce, ts, sig):
        return "bad signature"
    if abs(now - ts) > tolerance:
        return "stale timestamp"
    if not nonces.use(f"{key}:{nonce}", now):
        return "nonce reused"
    return ""
