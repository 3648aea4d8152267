"""QFEX HMAC-SHA256 signing, shared by the client and the simulator.

The signed string is ``f"{nonce}:{unix_ts}"`` and nothing else (docs/protocol.md §2.1);
the signature is the lowercase hex HMAC-SHA256 of it keyed by the secret key's bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_nonce() -> str:
    """Return a fresh nonce: 16 random bytes as 32 hex characters (≤ 100 allowed)."""
    return secrets.token_hex(16)


def sign(secret_key: str, nonce: str, unix_ts: int) -> str:
    """Return the lowercase hex HMAC-SHA256 of ``nonce:unix_ts`` under ``secret_key``."""
    message = f"{nonce}:{unix_ts}".encode("ascii")
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(secret_key: str, nonce: str, unix_ts: int, signature: str) -> bool:
    """Tell whether ``signature`` is right for ``nonce:unix_ts``, in constant time."""
    expected = sign(secret_key, nonce, unix_ts)
    return hmac.compare_digest(expected, signature.lower())
