"""The simulator's own HMAC check, against a vector computed by another implementation."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from riskwatch.qfex.auth import sign
from riskwatch.sim.authcheck import NonceCache, check_upgrade, expected_signature, signature_ok
from riskwatch.sim.scenario import load_scenario

# printf 'c0ffee00c0ffee00c0ffee00c0ffee00:1760545414' | openssl dgst -sha256 -hmac sim-secret
NONCE = "c0ffee00c0ffee00c0ffee00c0ffee00"
TS = 1760545414  # the docs example's unix_ts
VECTOR = "750fa5d726c3739f6be696eacf60938d6c0ccaef0ec486a2c378e0e114611209"


def test_signature_matches_the_openssl_vector() -> None:
    """The simulator signs ``nonce:unix_ts`` exactly as openssl's HMAC-SHA256 does."""
    assert expected_signature("sim-secret", NONCE, TS) == VECTOR
    assert signature_ok("sim-secret", NONCE, TS, VECTOR.upper())
    assert not signature_ok("sim-secret", NONCE, TS + 1, VECTOR)


def test_client_signing_agrees_with_the_independent_check() -> None:
    """riskwatch's signing (qfex/auth.py) meets the simulator's independent check."""
    assert sign("sim-secret", NONCE, TS) == VECTOR


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary")
def test_vector_is_what_openssl_computes() -> None:
    """The stored vector is re-derived with the real openssl binary."""
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", "sim-secret"],
        input=f"{NONCE}:{TS}".encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert out.strip().endswith(VECTOR)


def test_upgrade_headers_nonce_is_single_use() -> None:
    """The same signed headers are refused the second time (nonce reused)."""
    accounts = load_scenario("crash").accounts
    key = accounts[0].public_key
    headers = {
        "x-qfex-public-key": key,
        "x-qfex-hmac-signature": VECTOR,
        "x-qfex-nonce": NONCE,
        "x-qfex-timestamp": str(TS),
    }
    nonces = NonceCache()
    assert check_upgrade("hmac_headers", {}, headers, accounts, {}, nonces, TS) == ""
    assert check_upgrade("hmac_headers", {}, headers, accounts, {}, nonces, TS) == "nonce reused"
    assert check_upgrade("hmac_headers", {}, {}, accounts, {}, nonces, TS) != ""
    assert check_upgrade("api_key", {"api_key": key}, {}, accounts, {}, nonces, TS) == ""
    assert check_upgrade("api_key", {}, {}, accounts, {}, nonces, TS) != ""
