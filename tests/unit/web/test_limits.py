"""The HTTP surface's pure rate limits: the admin token bucket and the login throttle."""

from __future__ import annotations

import pytest

from riskwatch.web.guard import host_name
from riskwatch.web.limits import LIMIT_WINDOW, LoginThrottle, TokenBucket


def test_bucket_allows_a_burst_then_refills_at_the_minute_rate() -> None:
    """``per_minute`` requests at once, then one more every ``60 / per_minute`` s."""
    bucket = TokenBucket(6)
    assert all(bucket.take(0.0) is None for _ in range(6))
    wait = bucket.take(0.0)
    assert wait == pytest.approx(10.0)
    assert bucket.take(9.9) is not None
    assert bucket.take(10.0 + 9.9 + 0.2) is None


def test_bucket_never_holds_more_than_its_capacity() -> None:
    """A long quiet spell does not bank more than one burst."""
    bucket = TokenBucket(3)
    bucket.take(0.0)
    assert all(bucket.take(3600.0) is None for _ in range(3))
    assert bucket.take(3600.0) is not None


def test_throttle_refuses_an_address_after_the_limit_until_the_window_passes() -> None:
    """The Nth failure within a minute blocks the address until the oldest is 60 s old."""
    throttle = LoginThrottle(3)
    for t in (0.0, 1.0, 2.0):
        assert throttle.blocked("10.0.0.1", t) is None
        throttle.failed("10.0.0.1", t)
    assert throttle.blocked("10.0.0.1", 2.0) == pytest.approx(LIMIT_WINDOW - 2.0)
    assert throttle.blocked("10.0.0.2", 2.0) is None  # per address
    assert throttle.blocked("10.0.0.1", LIMIT_WINDOW - 0.1) is not None
    assert throttle.blocked("10.0.0.1", LIMIT_WINDOW + 0.1) is None


def test_throttle_forgets_failures_older_than_the_window() -> None:
    """Failures spread wider than a minute never add up to a refusal."""
    throttle = LoginThrottle(2)
    for t in range(0, 600, 31):
        assert throttle.blocked("a", float(t)) is None
        throttle.failed("a", float(t))


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("LocalHost:9464", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:9464", "::1"),
        ("[::1]", "::1"),
        ("evil.example:80", "evil.example"),
    ],
)
def test_host_header_name(header: str, name: str) -> None:
    """The Host header's host, without port or brackets, lower-case."""
    assert host_name(header) == name
