"""Shared harness of the latency and scale benchmarks (bench/README.md).

Every benchmark prints its figures and writes them as JSON under ``build/bench/``.
The daemon always runs as a real ``riskwatch run`` subprocess (its own interpreter and
event loop, as in production); the simulator, webhook receivers and clients run in the
benchmark's process, and every latency is taken between two events seen by that
process on one clock (``time.perf_counter``), so no cross-process clock is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

OUT_DIR = Path("build/bench")
ROOT = Path(__file__).resolve().parent.parent
SIM_SECRET = "sim-secret"  # noqa: S105 - the simulator's documented non-secret default
CLK_TCK = os.sysconf("SC_CLK_TCK")


LAG_PERIOD = 0.005
"""Seconds between two wake-ups of :func:`lag_probe`."""


async def lag_probe(out: list[float], period: float = LAG_PERIOD) -> None:
    """Append, forever, how late (seconds) a ``period`` sleep wakes on this loop."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(period)
        out.append(max(0.0, time.perf_counter() - t - period))


def sim_env() -> dict[str, str]:
    """The environment of a simulator process (``bench/trip_sim.py``): its secret, and
    always this tree's code, also when PYTHONPATH points the daemon at another tree to
    compare two codes (docs/performance.md): the same load for both."""
    return {**os.environ, "RISKWATCH_SIM_SECRET": SIM_SECRET, "PYTHONPATH": str(ROOT)}


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; nan when empty."""
    if not values:
        return float("nan")
    xs = sorted(values)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50/p99/max/mean in milliseconds of a list of seconds, and the count."""
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "p50_ms": round(pct(seconds, 0.5) * 1e3, 3),
        "p99_ms": round(pct(seconds, 0.99) * 1e3, 3),
        "max_ms": round(max(seconds) * 1e3, 3),
        "mean_ms": round(sum(seconds) / len(seconds) * 1e3, 3),
    }


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_result(name: str, doc: dict[str, Any]) -> Path:
    """Write ``build/bench/NAME.json`` with the machine description added."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"{name}.json"
    out.write_text(json.dumps({"machine": machine(), **doc}, indent=2) + "\n")
    print(f"wrote {out}")
    return out


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for binaries that cannot be given port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- processes


@dataclass
class ProcStat:
    """CPU seconds and resident memory of one process, read from /proc."""

    pid: int

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@dataclass
class Daemon:
    """A ``riskwatch run`` subprocess on a known HTTP port."""

    config: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, extra: Sequence[str] = ()) -> None:
        self.log = self.config.with_suffix(".log")
        env = {**os.environ, "RISKWATCH_SIM_SECRET": SIM_SECRET}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riskwatch", "run", "-c", str(self.config), *extra],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
            env=env,
        )

    @property
    def stat(self) -> ProcStat:
        assert self.proc is not None
        return ProcStat(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def daemon_config(
    path: Path,
    *,
    trade_url: str,
    rest_url: str,
    accounts: Sequence[tuple[str, str]],
    port: int,
    rules: Sequence[Path],
    mds_url: str | None = None,
    webhook: str | None = None,
    mode: str = "armed",
    stale_after: str = "5s",
) -> Path:
    """Write a daemon config: ``accounts`` are ``(name, public_key)`` pairs; ``rest_url``
    is where the reference data comes from (the simulator's: never the real exchange)."""
    secret = path.parent / "sim-secret"
    secret.write_text(SIM_SECRET)
    lines = ["exchange:", f"  url: {trade_url}", f"  rest_url: {rest_url}"]
    lines.append(f"  stale_after: {stale_after}")
    if mds_url:
        lines.append(f"  market_data_url: {mds_url}")
    lines.append("accounts:")
    for name, key in accounts:
        lines += [f"  - name: {name}", f"    public_key: {key}", f"    secret_key_file: {secret}"]
    lines.append("rules:")
    lines += [f"  - {r}" for r in rules]
    lines += ["actions:", f"  mode: {mode}", "  max_per_account_per_hour: 100000"]
    if webhook:
        lines += ["notifications:", "  routes:", f"    - urls: ['{webhook}']"]
        lines += ["      repeat_interval: 4h", "  send_resolved: false"]
    lines += ["http:", f"  listen: 127.0.0.1:{port}", "state:", f"  path: {path.parent}/state.db"]
    path.write_text("\n".join(lines) + "\n")
    return path


async def wait_http(url: str, timeout: float = 20.0) -> None:
    """Wait until ``url`` answers 200."""
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
    msg = f"{url} did not answer within {timeout}s"
    raise TimeoutError(msg)


# --------------------------------------------------------------------------- webhooks


@dataclass
class Webhook:
    """A loopback HTTP receiver recording (perf_counter time, JSON body) of each POST."""

    received: list[tuple[float, Any]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, request: web.Request) -> web.Response:
        t = time.perf_counter()
        try:
            body = await request.json()
        except ValueError:
            body = await request.text()
        self.received.append((t, body))
        self._event.set()
        return web.Response(text="ok")

    async def wait(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` deliveries arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            self._event.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)
        return True


@contextlib.asynccontextmanager
async def webhook() -> AsyncIterator[Webhook]:
    """Run a :class:`Webhook` on a free loopback port."""
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield hook
    finally:
        await runner.cleanup()
