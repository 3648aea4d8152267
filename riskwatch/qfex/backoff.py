"""Reconnection delays: a pure schedule, no sleeping, no sockets, no clock.

docs/reliability.md: reconnect with capped exponential backoff and jitter;
docs/design.md#precise-points: rejected credentials are retried on a slow backoff (at
least 30 s apart), never treated as fatal. The caller starts a fresh
:func:`backoff_delays` generator after every connection that reached LIVE (the "reset
after success" of docs/design.md item 4) and sleeps the delays itself; whether a
failure is retried at all is :func:`riskwatch.qfex.transport.classify_failure`, which
knows the socket libraries' exceptions.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Final

__all__ = [
    "AUTH_REJECTED_MIN_DELAY",
    "auth_rejected_delays",
    "backoff_delays",
]

AUTH_REJECTED_MIN_DELAY: Final = 30.0
"""Seconds between two attempts after the exchange rejected the credentials
(docs/design.md#precise-points)."""


def backoff_delays(
    initial: float = 1.0,
    factor: float = 2.0,
    cap: float = 30.0,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield reconnection delays in seconds, forever.

    The nominal delay starts at ``initial`` and is multiplied by ``factor`` after each
    yield until it reaches ``cap``. Jitter is *proportional*: each yielded delay is
    the nominal one scaled by a factor drawn uniformly from ``[1 - jitter, 1]``, so
    delays never exceed ``cap`` and never fall below ``(1 - jitter) × nominal``
    (``jitter=1`` gives "full jitter", uniform in ``[0, nominal]``; ``jitter=0`` none).
    Proportional rather than full jitter keeps the first retries quick while still
    spreading many accounts' reconnects apart. ``rng`` (a seeded ``random.Random`` in
    tests) supplies the draws; it defaults to a fresh unseeded one.

    Raises ValueError on ``initial <= 0``, ``factor < 1``, ``cap < initial`` or
    ``jitter`` outside ``[0, 1]`` (at the first ``next``, as generators do).
    """
    if not initial > 0:
        msg = f"initial must be > 0, got {initial!r}"
        raise ValueError(msg)
    if not factor >= 1:
        msg = f"factor must be >= 1, got {factor!r}"
        raise ValueError(msg)
    if not cap >= initial:
        msg = f"cap must be >= initial ({initial!r}), got {cap!r}"
        raise ValueError(msg)
    if not 0 <= jitter <= 1:
        msg = f"jitter must be within [0, 1], got {jitter!r}"
        raise ValueError(msg)
    draw = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
    nominal = initial
    while True:
        yield nominal * (1.0 - jitter * draw.random())
        nominal = min(cap, nominal * factor)


def auth_rejected_delays(
    minimum: float = AUTH_REJECTED_MIN_DELAY,
    cap: float = 300.0,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield delays after authentication rejections: never below ``minimum`` seconds.

    Doubles from ``minimum`` to ``cap`` (default 30 s → 5 min); jitter only ever
    *adds* up to ``jitter × nominal``, so the ≥ 30 s floor of docs/design.md#precise-points holds.
    """
    if not minimum > 0:
        msg = f"minimum must be > 0, got {minimum!r}"
        raise ValueError(msg)
    if not cap >= minimum:
        msg = f"cap must be >= minimum ({minimum!r}), got {cap!r}"
        raise ValueError(msg)
    if not 0 <= jitter <= 1:
        msg = f"jitter must be within [0, 1], got {jitter!r}"
        raise ValueError(msg)
    draw = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
    nominal = minimum
    while True:
        yield nominal * (1.0 + jitter * draw.random())
        nominal = min(cap, nominal * 2.0)
