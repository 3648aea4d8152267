"""Scale: N accounts × 20 symbols pulsed every second, with /metrics scraped every second.

Run: ``.venv/bin/python bench/bench_scale.py [--accounts 10 100 1000] [--seconds 15]``.

The simulator (this process) serves N accounts of 20 positions each and pulses every
second (21 frames per account per second); the daemon is a ``riskwatch run``
subprocess with the default rule pack (``rules/*.yaml``). A client in this process
GETs ``/metrics`` every second, as Prometheus would. Measured over ``--seconds`` after
a warm-up: the daemon's CPU share of one core (from /proc), its resident memory, and
the duration of each scrape. Writes ``build/bench/scale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from common import ROOT, Daemon, daemon_config, free_port, summary_ms, wait_http, write_result

from riskwatch.sim.scenario import load_scenario
from riskwatch.sim.server import Simulator

SYMBOLS = [f"S{i:02d}-USD" for i in range(20)]


def scenario_file(path: Path, n: int) -> Path:
    lines = ["name: scale", "duration: 3600s", "symbols:"]
    lines += [
        f"  - {{symbol: {s}, mark: {100 + i}, max_leverage: 20}}" for i, s in enumerate(SYMBOLS)
    ]
    lines.append("accounts:")
    for a in range(n):
        lines += [f"  - name: acct-{a:04d}", f"    public_key: pk-{a:04d}", "    deposit: 1000000"]
        lines.append("    positions:")
        lines += [
            f"      - {{symbol: {s}, qty: {1 + i}, avg: {100 + i}, leverage: 10}}"
            for i, s in enumerate(SYMBOLS)
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def run(n: int, seconds: float, work: Path) -> dict[str, Any]:
    scenario = load_scenario(scenario_file(work / "scale.yaml", n))
    async with Simulator(scenario, pulse_interval=1.0) as sim:
        port = free_port()
        cfg = daemon_config(
            work / "riskwatch.yaml",
            trade_url=sim.trade_url,
            accounts=[(a.name, a.public_key) for a in scenario.accounts],
            port=port,
            rules=[ROOT / "rules" / "*.yaml"],
            stale_after="10s",
        )
        daemon = Daemon(cfg, port)
        daemon.start()
        try:
            await wait_http(f"http://127.0.0.1:{port}/readyz", timeout=120)
            await asyncio.sleep(3)
            stat = daemon.stat
            scrapes: list[float] = []
            c0, t0 = stat.cpu_seconds(), time.monotonic()
            async with aiohttp.ClientSession() as http:
                while time.monotonic() - t0 < seconds:
                    s0 = time.perf_counter()
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                        body = await r.read()
                    scrapes.append(time.perf_counter() - s0)
                    await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - s0)))
            cpu = (stat.cpu_seconds() - c0) / (time.monotonic() - t0)
            return {
                "accounts": n,
                "symbols": len(SYMBOLS),
                "cpu_share_of_one_core": round(cpu, 3),
                "rss_mb": round(stat.rss_mb(), 1),
                "scrape": summary_ms(scrapes),
                "scrape_bytes": len(body),
            }
        finally:
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    results = []
    for n in args.accounts:
        with tempfile.TemporaryDirectory(prefix="rw-scale-") as tmp:
            r = asyncio.run(run(n, args.seconds, Path(tmp)))
        results.append(r)
        print(
            f"N={n:5d}: CPU {r['cpu_share_of_one_core'] * 100:5.1f}% of a core, RSS {r['rss_mb']:.0f} MB,"
            f" scrape p50 {r['scrape']['p50_ms']:.1f} ms p99 {r['scrape']['p99_ms']:.1f} ms"
        )
    write_result("scale", {"results": results})


if __name__ == "__main__":
    main()
