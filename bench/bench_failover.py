"""What a failover costs: the time from a leader's death to another replica holding the lease.

Run: `.venv/bin/python bench/bench_failover.py [--rounds N] [--lease SECONDS]`. Writes
`build/bench/failover.json`.

Set-up: two leaderships of one backend in this process — a real etcd (Debian's
`etcd-server`, started on loopback) and a file lock on a temporary file. Each round:
replica A takes the lease, replica B campaigns, A dies without giving the lease up (its
renewals stop; for the file lock its descriptor closes, as the kernel does at SIGKILL),
and the time until B holds the lease is measured on one monotonic clock. Reported per
backend: min / median / max seconds and the median as a share of the lease period. A
clean shutdown (the lease given up) is measured too.

Expected: etcd — the lease period plus up to a third of it (B campaigns every third of
the period); file lock — up to a third of the period (the kernel frees the lock at once).
The whole-daemon figure (SIGKILL of a `riskwatch run` to the other replica's role and
first leader-only command) is printed by `tests/system/test_ha_daemons.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from riskwatch.ha.base import LeaseLeadership
from riskwatch.ha.etcd import EtcdLeadership
from riskwatch.ha.filelock import FileLockLeadership


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def running_etcd(folder: Path) -> AsyncIterator[str]:
    """A one-member etcd on loopback (Debian's etcd-server); yields its client URL."""
    binary = shutil.which("etcd")
    if binary is None:
        raise SystemExit("etcd is not installed (Debian package etcd-server)")
    url, peer = f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
    proc = subprocess.Popen(
        [binary, "--name=bench", f"--data-dir={folder / 'etcd'}",
         f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
         f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
         f"--initial-cluster=bench={peer}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as s:
            while True:
                try:
                    async with s.get(url + "/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("etcd did not become healthy")
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            msg = "timed out"
            raise TimeoutError(msg)
        await asyncio.sleep(0.005)


async def _round(make: Callable[[str], LeaseLeadership], lease: float, clean: bool) -> float:
    a, b = make("a"), make("b")
    tasks_a = [asyncio.create_task(a.run()), asyncio.create_task(a.watch_expiry())]
    await _until(a.is_leader, 10)
    tasks_b = [asyncio.create_task(b.run()), asyncio.create_task(b.watch_expiry())]
    await asyncio.sleep(lease / 2)
    if clean:
        await a.close()
    for t in tasks_a:
        t.cancel()
    await asyncio.gather(*tasks_a, return_exceptions=True)
    if isinstance(a, FileLockLeadership):
        a._drop()  # the descriptor closes with the process
    if isinstance(a, EtcdLeadership) and a._session is not None:
        await a._session.close()
    died = time.monotonic()
    await _until(b.is_leader, lease * 3)
    took = time.monotonic() - died
    await b.close()
    for t in tasks_b:
        t.cancel()
    await asyncio.gather(*tasks_b, return_exceptions=True)
    return took


def _summary(times: list[float], lease: float) -> dict[str, float]:
    return {
        "min_s": min(times),
        "median_s": statistics.median(times),
        "max_s": max(times),
        "median_over_lease": statistics.median(times) / lease,
    }


async def main(rounds: int, lease: float) -> dict[str, object]:
    results: dict[str, object] = {"lease_s": lease, "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        lock = Path(tmp) / "leader.lock"

        def file_lock(name: str) -> LeaseLeadership:
            return FileLockLeadership(lock, lease, name)

        async with running_etcd(Path(tmp)) as etcd_url:
            for backend in ("etcd", "file"):
                for clean in (False, True):
                    times = []
                    for n in range(rounds):
                        key = f"/bench/{backend}/{clean}/{n}"  # a fresh election each round

                        def make(
                            name: str, key: str = key, backend: str = backend
                        ) -> LeaseLeadership:
                            if backend == "etcd":
                                return EtcdLeadership((etcd_url,), key, lease, name)
                            return file_lock(name)

                        times.append(await _round(make, lease, clean))
                    label = f"{backend}_{'shutdown' if clean else 'death'}"
                    results[label] = _summary(times, lease)
                    s = results[label]
                    assert isinstance(s, dict)
                    print(
                        f"{label:15s} min {s['min_s']:.2f}s  median {s['median_s']:.2f}s  "
                        f"max {s['max_s']:.2f}s  (median = {s['median_over_lease']:.2f} x lease)"
                    )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lease", type=float, default=2.0)
    args = parser.parse_args()
    out = asyncio.run(main(args.rounds, args.lease))
    out["machine"] = platform.platform()
    path = Path("build/bench/failover.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
