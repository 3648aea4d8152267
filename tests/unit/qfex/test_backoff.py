"""Reconnection delays (riskwatch.qfex.backoff): a pure schedule."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import pytest

from riskwatch.qfex.backoff import AUTH_REJECTED_MIN_DELAY, auth_rejected_delays, backoff_delays


def take(it: Iterator[float], n: int) -> list[float]:
    return list(itertools.islice(it, n))


def test_no_jitter_is_capped_exponential() -> None:
    """Without jitter the delays double from initial and stop at cap."""
    delays = take(backoff_delays(initial=1.0, factor=2.0, cap=30.0, jitter=0.0), 8)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_proportional_jitter_bounds() -> None:
    """With jitter j each delay lies in [(1 - j) x nominal, nominal] and never above cap."""
    rng = random.Random(7)
    nominal = [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    got = take(backoff_delays(initial=0.5, cap=5.0, jitter=0.2, rng=rng), 8)
    for d, n in zip(got, nominal, strict=True):
        assert 0.8 * n <= d <= n
    assert len(set(got)) == len(got)


def test_full_jitter_and_seeded_determinism() -> None:
    """jitter=1 spreads over [0, nominal]; the same seed gives the same sequence."""
    a = take(backoff_delays(jitter=1.0, rng=random.Random(1)), 20)
    b = take(backoff_delays(jitter=1.0, rng=random.Random(1)), 20)
    assert a == b
    assert min(a) < 0.5 * 30.0
    assert all(0 <= d <= 30.0 for d in a)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0.0},
        {"factor": 0.5},
        {"initial": 10.0, "cap": 5.0},
        {"jitter": 1.5},
        {"jitter": -0.1},
    ],
)
def test_bad_parameters(kwargs: dict[str, Any]) -> None:
    """Nonsensical parameters raise ValueError at the first draw."""
    with pytest.raises(ValueError, match=next(iter(kwargs)) if "cap" not in kwargs else "cap"):
        next(backoff_delays(**kwargs))


def test_auth_rejection_delays_never_below_30s() -> None:
    """Delays after an auth rejection are at least 30 s, grow, and stay under cap + jitter."""
    got = take(auth_rejected_delays(rng=random.Random(3)), 10)
    assert AUTH_REJECTED_MIN_DELAY == 30.0
    assert all(d >= 30.0 for d in got)
    assert got[1] >= 60.0
    assert max(got) <= 300.0 * 1.2
