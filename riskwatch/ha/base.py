"""The one leadership interface, and the lease loop every backend shares.

A backend implements :meth:`LeaseLeadership.step`: one round trip to its coordination
service that acquires or renews the lease and says whether this replica holds it.
The loop calls it every third of the lease period. Leadership is trusted only until
``start of the last successful step + lease period`` by this process's monotonic
clock: the coordination service cannot have let the lease go before then (it counts
its period from when it received the renewal, later than when it was sent), so a
replica that can no longer renew — partitioned, its service down — stops leader-only
work within one lease period, before another replica can have taken over.

Errors talking to the service are counted (``riskwatch_ha_errors_total``), logged,
and end leadership once the lease runs out; the loop goes on.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = [
    "HaMetrics",
    "Leadership",
    "LeaseLeadership",
    "Role",
    "Standalone",
    "default_identity",
]

log = logging.getLogger(__name__)

Role = Literal["leader", "follower", "standalone"]

RENEW_FRACTION: Final = 3
"""The lease is renewed (or campaigned for) this many times per lease period."""
UNREADY_AFTER_ERRORS: Final = 3
"""Failed round trips in a row (one lease period) after which ``/readyz`` fails."""


def default_identity() -> str:
    """``HOST-PID``: unique among replicas on different hosts or in one host."""
    return f"{socket.gethostname()}-{os.getpid()}"


class HaMetrics:
    """``riskwatch_ha_leader`` (1 leader or standalone, 0 follower), lease errors and
    leadership changes."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.leader = Gauge(
            "riskwatch_ha_leader",
            "1 when this replica holds the leader lease (or runs alone), 0 when a follower.",
            ["backend", "identity"],
            registry=registry,
        )
        self.errors = Counter(
            "riskwatch_ha_errors_total",
            "Failed round trips to the coordination service holding the leader lease.",
            ["backend"],
            registry=registry,
        )
        self.changes = Counter(
            "riskwatch_ha_leadership_changes_total",
            "Times this replica became leader (to=leader) or stopped being it (to=follower).",
            ["to"],
            registry=registry,
        )


class Leadership(abc.ABC):
    """Whether this replica may do what must happen once (see the package docstring)."""

    backend: str = "none"
    identity: str = ""

    def __init__(self) -> None:
        self.listeners: list[Callable[[bool], None]] = []

    @abc.abstractmethod
    def is_leader(self) -> bool:
        """True while this replica holds an unexpired lease (always, when standalone)."""

    @property
    def role(self) -> Role:
        """``leader``, ``follower`` or ``standalone``."""
        return "leader" if self.is_leader() else "follower"

    @property
    @abc.abstractmethod
    def lease_seconds(self) -> float:
        """The lease period: the longest a lost lease may still look held here."""

    async def run(self) -> None:
        """Keep the lease (or campaign for it) until cancelled."""
        await asyncio.Event().wait()

    async def close(self) -> None:  # noqa: B027 - nothing to give up by default
        """Give the lease up at once (clean shutdown), so another replica takes over."""

    def readiness_reasons(self) -> list[str]:
        """Why ``/readyz`` should fail (the lease cannot be kept or sought)."""
        return []

    def status(self) -> dict[str, object]:
        """For ``/api/state`` and the status page."""
        return {
            "role": self.role,
            "backend": self.backend,
            "identity": self.identity,
            "lease_seconds": self.lease_seconds,
        }


class Standalone(Leadership):
    """No coordination: the only replica, leader of everything."""

    def __init__(self, identity: str | None = None) -> None:
        super().__init__()
        self.identity = identity or default_identity()

    def is_leader(self) -> bool:
        return True

    @property
    def role(self) -> Role:
        return "standalone"

    @property
    def lease_seconds(self) -> float:
        return 0.0


class LeaseLeadership(Leadership):
    """A lease kept by :meth:`step` every ``lease / 3`` seconds (module docstring)."""

    def __init__(
        self, lease: float, identity: str | None = None, metrics: HaMetrics | None = None
    ) -> None:
        super().__init__()
        self.identity = identity or default_identity()
        self._lease = lease
        self._valid_until = 0.0  # monotonic
        self._was_leader = False
        self.metrics = metrics
        self.last_error: str | None = None
        self._errors_in_row = 0
        self._closed = False

    @property
    def lease_seconds(self) -> float:
        return self._lease

    def is_leader(self) -> bool:
        return not self._closed and time.monotonic() < self._valid_until

    def readiness_reasons(self) -> list[str]:
        """Not ready while the coordination service fails: no replica may be leading,
        and then nobody sends leader-only actions or pages (fail loud)."""
        if self._errors_in_row >= UNREADY_AFTER_ERRORS:
            return [f"ha {self.backend}: lease service failing: {self.last_error}"]
        return []

    @abc.abstractmethod
    async def step(self) -> float | None:
        """Acquire or renew the lease; the period it is now held for, or None if not held.

        Raises on a failed round trip (the loop counts and logs it)."""

    async def release(self) -> None:
        """Give the lease up (best effort); backends override."""

    async def run(self) -> None:
        while not self._closed:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._lease / RENEW_FRACTION):
                    held = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
            else:
                self._errors_in_row = 0
                self.last_error = None
                # Trust the lease from when the request left, not when the answer came.
                self._valid_until = started + held if held is not None else 0.0
            self._notice()
            spent = time.monotonic() - started
            await asyncio.sleep(max(0.05, self._lease / RENEW_FRACTION - spent))

    def _failed(self, exc: BaseException) -> None:
        self._errors_in_row += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if self.metrics is not None:
            self.metrics.errors.labels(self.backend).inc()
        level = logging.WARNING if self._errors_in_row <= 3 else logging.DEBUG
        if self._errors_in_row % 30 == 0:
            level = logging.WARNING
        log.log(
            level,
            "ha %s: lease round trip failed (%d in a row)%s: %s",
            self.backend,
            self._errors_in_row,
            ", leadership ends when the lease runs out" if self.is_leader() else "",
            self.last_error,
        )

    def _notice(self) -> None:
        """Tell listeners when the role changed (also when the lease ran out)."""
        now_leader = self.is_leader()
        if self.metrics is not None:
            self.metrics.leader.labels(self.backend, self.identity).set(1 if now_leader else 0)
        if now_leader == self._was_leader:
            return
        self._was_leader = now_leader
        if self.metrics is not None:
            self.metrics.changes.labels("leader" if now_leader else "follower").inc()
        log.warning(
            "ha %s: this replica (%s) is now the %s",
            self.backend,
            self.identity,
            "LEADER" if now_leader else "follower",
        )
        for listener in self.listeners:
            try:
                listener(now_leader)
            except Exception:  # a listener's bug must not end the lease loop
                log.exception("leadership listener failed")

    async def watch_expiry(self) -> None:
        """Notice a lease running out between steps (runs beside :meth:`run`)."""
        while not self._closed:
            wait = self._valid_until - time.monotonic()
            await asyncio.sleep(max(0.02, min(wait + 0.001, self._lease / RENEW_FRACTION)))
            self._notice()

    async def close(self) -> None:
        self._closed = True
        self._notice()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.release()
