"""Upgrade credentials, pulse cadence and JWT sources (pure parts)."""

from __future__ import annotations

import base64
import json
import random
import sys
from pathlib import Path

import pytest

from riskwatch.qfex.cadence import CADENCE_SAMPLES, TOLERANCE, PulseCadence
from riskwatch.qfex.credentials import TokenSource, jwt_expiry
from riskwatch.qfex.upgrade import USER_AGENT, handshake
from riskwatch.secret import Secret


def _jwt(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{body}.sig"


def test_both_forms_for_hmac() -> None:
    """``both``: api_key in the query and the four signed headers, fresh nonce each call."""
    nonces = iter(["n1", "n2"])
    h = handshake(
        "wss://trade.qfex.com/?x=1", mode="both", now=100.9, public_key="pub",
        secret_key="s", nonce_factory=lambda: next(nonces),
    )  # fmt: skip
    assert h.url == "wss://trade.qfex.com/?x=1&api_key=pub"
    names = dict(h.headers)
    assert names["x-qfex-nonce"] == "n1"
    assert names["x-qfex-timestamp"] == "100"
    assert names["x-qfex-hmac-signature"] not in repr(h)
    again = handshake("wss://h/", mode="headers", now=1, public_key="p", secret_key="s",
                      nonce_factory=lambda: next(nonces))  # fmt: skip
    assert again.url == "wss://h/"
    assert dict(again.headers)["x-qfex-nonce"] == "n2"
    assert USER_AGENT.startswith("riskwatch/")


def test_jwt_never_in_the_url() -> None:
    """A JWT goes in a Bearer header only; ``none`` sends nothing."""
    h = handshake("wss://h/", mode="both", now=0, jwt="tok")
    assert h.url == "wss://h/"
    assert h.headers == (("Authorization", "Bearer tok"),)
    assert "tok" not in repr(h)
    assert handshake("wss://h/", mode="none", now=0, public_key="p", secret_key="s").headers == ()


def test_cadence_median_and_stale_after() -> None:
    """stale_after is pulses × the median interval; initial before two pulses; pinned wins."""
    c = PulseCadence(pulses=3, initial=30.0)
    assert c.stale_after == 30.0
    for t in (0.0, 10.0, 20.0, 30.0, 95.0):  # one 65 s gap (a stall) does not move it
        c.observe(t)
    assert c.interval == pytest.approx(10.0)
    assert c.stale_after == pytest.approx(30.0)
    c.connection_lost()
    c.observe(500.0)
    assert c.interval == pytest.approx(10.0)
    assert PulseCadence(pulses=3, initial=30.0, pinned=5.0).stale_after == 5.0


def test_cadence_keeps_its_value_through_jitter_and_follows_a_real_change() -> None:
    """Receive-time noise under TOLERANCE does not move the cadence (nor the gauges and
    threshold read from it); a change of the exchange's cadence does."""
    c = PulseCadence(pulses=3, initial=30.0)
    rng = random.Random(7)
    t = 0.0
    seen = set()
    for _ in range(200):
        t += 1.0 + rng.uniform(-0.004, 0.004)
        c.observe(t)
        if c.interval is not None:
            seen.add((c.interval, c.stale_after))
    assert len(seen) == 1
    (interval, stale_after), *_ = seen
    assert interval == pytest.approx(1.0, abs=TOLERANCE)
    assert stale_after == 3 * interval
    for _ in range(CADENCE_SAMPLES):
        t += 1.5
        c.observe(t)
    assert c.interval == pytest.approx(1.5)
    assert c.stale_after == pytest.approx(4.5)


def test_jwt_expiry_claim() -> None:
    """exp is read from the payload; malformed tokens give None."""
    assert jwt_expiry(_jwt({"exp": 1700000000})) == 1700000000.0
    assert jwt_expiry(_jwt({"sub": "x"})) is None
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.!!!.c") is None


async def test_token_from_command_and_file(tmp_path: Path) -> None:
    """jwt_command's output is the token; a failing command keeps the last good one."""
    token = _jwt({"exp": 42})
    src = TokenSource(command=[sys.executable, "-c", f"print({token!r})"])
    await src.refresh()
    assert src.token is not None
    assert src.token.reveal() == token
    assert src.expires_at == 42.0
    bad = TokenSource(token=Secret("old"), command=[sys.executable, "-c", "raise SystemExit(3)"])
    await bad.refresh()
    assert bad.token is not None
    assert bad.token.reveal() == "old"
    assert bad.failures == 1
    assert "status 3" in bad.last_error
    path = tmp_path / "t.jwt"
    path.write_text("first\n", encoding="utf-8")
    from_file = TokenSource(path=path)
    await from_file.refresh()
    path.write_text("second\n", encoding="utf-8")
    await from_file.refresh()
    assert from_file.token is not None
    assert from_file.token.reveal() == "second"


async def test_a_refreshed_token_is_masked_in_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A token read at run time never shows in a log line, whatever logs it."""
    import logging

    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        path = tmp_path / "t.jwt"
        token = _jwt({"exp": 99, "nonce": "refreshed-token-value"})
        path.write_text(token + "\n", encoding="utf-8")
        src = TokenSource(path=path)
        await src.refresh()
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "saw %s", (token,), None)
        for flt in handler.filters:
            assert not isinstance(flt, logging.Filter) or flt.filter(record)
        assert token not in record.getMessage()
    finally:
        root.removeHandler(handler)
