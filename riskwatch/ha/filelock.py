"""The leader lease as an exclusive ``flock`` on a file of a volume the replicas share.

For two containers on one host (docker compose with a named volume): the kernel holds
the lock for the process that took it and drops it the moment that process dies, even
by SIGKILL, so the other replica's next attempt (every third of the lease period)
takes it. The holder writes its identity into the file for operators to read. A lock
file that was replaced or deleted (a different inode at the path) is no longer a lock
anyone else sees: leadership ends and the file is locked anew.

Not for network file systems: ``flock`` over NFS is not reliable across hosts; use etcd
or the Kubernetes Lease there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from riskwatch.ha.base import HaMetrics, LeaseLeadership

__all__ = ["FileLockLeadership"]


class FileLockLeadership(LeaseLeadership):
    """Leadership held as ``flock(LOCK_EX)`` on ``path``."""

    backend = "file"

    def __init__(
        self,
        path: Path,
        lease: float,
        identity: str | None = None,
        metrics: HaMetrics | None = None,
    ) -> None:
        super().__init__(lease, identity, metrics)
        self.path = path
        self._fd: int | None = None
        self._locked = False

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def _still_the_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _drop(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor releases the lock
        self._fd, self._locked = None, False

    async def step(self) -> float | None:
        fd = self._open()
        if self._locked:
            if self._still_the_file(fd):
                return self.lease_seconds
            self._drop()
            fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        self._locked = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.identity}\n".encode(), 0)
        return self.lease_seconds

    async def release(self) -> None:
        if self._locked and self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        self._drop()
