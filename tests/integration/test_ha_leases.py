"""Leader leases in each backend: one leader at a time, take-over after a death, loss on a cut.

etcd and the file lock are the real things (Debian's etcd-server, ``flock`` on a real
file); the Kubernetes Lease is tested against a server with the Lease API's semantics
(tests/support/k8s_lease.py), since no API server can run here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry

from riskwatch.ha.base import HaMetrics, LeaseLeadership
from riskwatch.ha.etcd import EtcdLeadership
from riskwatch.ha.filelock import FileLockLeadership
from riskwatch.ha.kubernetes import KubernetesLeadership
from tests.support.etcd import running_etcd
from tests.support.k8s_lease import LeaseServer
from tests.support.rig import wait_for

LEASE = 2.0


class Replica:
    """One leadership's tasks, killable without giving the lease up (a dead process)."""

    def __init__(self, leadership: LeaseLeadership) -> None:
        self.l = leadership
        self.changes: list[bool] = []
        leadership.listeners.append(self.changes.append)
        self.tasks = [
            asyncio.create_task(leadership.run()),
            asyncio.create_task(leadership.watch_expiry()),
        ]

    async def die(self) -> None:
        """Stop renewing, give nothing up (as SIGKILL would)."""
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        session = getattr(self.l, "_session", None)
        if session is not None:
            await session.close()
        if isinstance(self.l, FileLockLeadership):
            self.l._drop()  # the kernel drops a dead process's lock with its descriptors

    async def stop(self) -> None:
        """Clean shutdown: the lease is given up."""
        await self.l.close()
        await self.die()


@asynccontextmanager
async def pair(make: Callable[[str], LeaseLeadership]) -> AsyncIterator[tuple[Replica, Replica]]:
    a = Replica(make("replica-a"))
    await wait_for(a.l.is_leader, timeout=10, what="the first replica to lead")
    b = Replica(make("replica-b"))
    try:
        yield a, b
    finally:
        for r in (a, b):
            await r.stop()


async def exercise(make: Callable[[str], LeaseLeadership]) -> float:
    """One leader; it dies; the other takes over. Returns the take-over time (seconds)."""
    async with pair(make) as (a, b):
        for _ in range(int(LEASE * 2 / 0.1)):  # two lease periods: never two leaders
            assert a.l.is_leader()
            assert not b.l.is_leader()
            await asyncio.sleep(0.1)
        assert b.l.role == "follower"
        await a.die()
        died = time.monotonic()
        await wait_for(b.l.is_leader, timeout=LEASE * 3, what="the take-over")
        took = time.monotonic() - died
        assert b.changes == [True]
        # Clean hand-over back: b gives the lease up, a new replica takes it at once.
        c = Replica(make("replica-c"))
        try:
            await asyncio.sleep(0.3)
            assert not c.l.is_leader()
            handed = time.monotonic()
            await b.stop()
            await wait_for(c.l.is_leader, timeout=LEASE * 3, what="the hand-over")
            assert time.monotonic() - handed < LEASE  # no need to wait for an expiry
        finally:
            await c.stop()
    return took


async def test_etcd_lease(tmp_path: Path) -> None:
    async with running_etcd(tmp_path) as etcd:
        metrics = HaMetrics(CollectorRegistry())

        def make(name: str) -> LeaseLeadership:
            return EtcdLeadership((etcd.url,), "/riskwatch/test", LEASE, name, metrics)

        took = await exercise(make)
        # etcd expires the dead leader's lease after its TTL; the other's next
        # campaign (every third of the period) wins.
        assert took <= LEASE + LEASE / 3 + 1.0, took
        assert metrics.changes.labels("leader")._value.get() >= 3


async def test_etcd_unreachable_ends_leadership_within_one_lease(tmp_path: Path) -> None:
    metrics = HaMetrics(CollectorRegistry())
    async with running_etcd(tmp_path) as etcd:
        a = Replica(EtcdLeadership((etcd.url,), "/riskwatch/cut", LEASE, "a", metrics))
        try:
            await wait_for(a.l.is_leader, timeout=10, what="leadership")
            etcd.kill()
            cut = time.monotonic()
            await wait_for(lambda: not a.l.is_leader(), timeout=LEASE * 2, what="the loss")
            assert time.monotonic() - cut <= LEASE + 0.1
            await wait_for(lambda: a.changes == [True, False], timeout=0.5, what="the notice")
            assert metrics.errors.labels("etcd")._value.get() >= 1
            assert metrics.leader.labels("etcd", "a")._value.get() == 0
            assert a.l.last_error
            await wait_for(lambda: bool(a.l.readiness_reasons()), timeout=LEASE * 2, what="unready")
            assert a.l.readiness_reasons()[0].startswith("ha etcd: lease service failing: ")
        finally:
            await a.die()


async def test_file_lock(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "riskwatch.lock"
    path.parent.mkdir()

    def make(name: str) -> LeaseLeadership:
        return FileLockLeadership(path, LEASE, name)

    took = await exercise(make)
    assert took <= LEASE / 3 + 0.5, took  # the lock is free at once; next attempt wins


async def test_file_lock_replaced_file_ends_leadership(tmp_path: Path) -> None:
    path = tmp_path / "riskwatch.lock"
    a = Replica(FileLockLeadership(path, LEASE, "a"))
    try:
        await wait_for(a.l.is_leader, timeout=5, what="leadership")
        assert path.read_text() == "a\n"
        os.unlink(path)
        path.write_text("someone else's file\n")
        # a notices, drops the old lock and takes the new file's (nobody else holds it).
        await wait_for(lambda: path.read_text() == "a\n", timeout=LEASE * 2, what="re-lock")
        assert a.l.is_leader()
    finally:
        await a.stop()


async def test_kubernetes_lease_api(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sa-token-Jx81\n")
    server = LeaseServer("sa-token-Jx81")
    await server.start()
    try:

        def make(name: str) -> LeaseLeadership:
            return KubernetesLeadership(
                "riskwatch-leader",
                LEASE,
                namespace="risk",
                api=server.url,
                token_file=token,
                identity=name,
            )

        took = await exercise(make)
        # The follower waits a whole period after its last sight of a renewal, which it
        # made up to a third of a period before or after the death: 2/3 to 5/3 of a period.
        assert LEASE * 2 / 3 - 0.1 <= took <= LEASE * 5 / 3 + 0.5, took
        lease = server.leases[("risk", "riskwatch-leader")]
        assert lease["spec"]["leaseDurationSeconds"] == 2
        assert lease["spec"]["leaseTransitions"] >= 2
        methods = {m for m, _, _ in server.requests}
        assert {"GET", "POST", "PUT"} <= methods
        assert all(code != 401 for _, _, code in server.requests)
    finally:
        await server.stop()


async def test_kubernetes_conflict_means_not_leader(tmp_path: Path) -> None:
    """Two replicas writing the same resourceVersion: the API server accepts one."""
    token = tmp_path / "token"
    token.write_text("t0k3n-abcdef")
    server = LeaseServer("t0k3n-abcdef")
    await server.start()
    try:
        a, b = (
            KubernetesLeadership(
                "l", LEASE, namespace="n", api=server.url, token_file=token, identity=n
            )
            for n in ("a", "b")
        )
        results = await asyncio.gather(a.step(), b.step(), a.step(), b.step())
        holders = {server.leases[("n", "l")]["spec"]["holderIdentity"]}
        assert len(holders) == 1
        winner = "a" if holders == {"a"} else "b"
        won = [r for r, who in zip(results, "abab", strict=True) if r is not None]
        assert won
        assert all(who == winner for r, who in zip(results, "abab", strict=True) if r)
        assert any(code == 409 for _, _, code in server.requests)
        for x in (a, b):
            if x._session is not None:
                await x._session.close()
    finally:
        await server.stop()
