"""Authentication decisions of the simulated trade gateway (pure; takes ``now``).

docs/protocol.md §2.1: HMAC-SHA256 over ``nonce:unix_ts`` (``riskwatch.qfex.auth.verify``),
nonces unique within 15 minutes, timestamps within a tolerance (REST says "typically
±5 minutes"; here configurable, default 300 s); or a JWT; optional ``account_id``
selects a subaccount. Secrets come from the caller, never from the scenario.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from riskwatch.qfex.auth import verify
from riskwatch.sim.scenario import AccountSpec

NONCE_WINDOW = 15 * 60.0
# A documented simulator credential, not a real secret.
DEFAULT_SECRET = "sim-secret"  # noqa: S105


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
) -> AuthResult:
    """Decide an ``auth`` command's params at Unix time ``now``.

    Reasons (never containing a secret): ``malformed``, ``unknown key``, ``bad
    signature``, ``stale timestamp``, ``nonce reused``, ``unknown account_id``,
    ``bad jwt``. ``allow_api_key`` accepts the legacy ``{"api_key": …}`` form.
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
        if not verify(secrets.get(key, default_secret), nonce, ts, sig):
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
