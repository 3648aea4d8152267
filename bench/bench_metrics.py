"""/metrics rendering: time per scrape and event-loop lag during a scrape, in process.

Run: ``.venv/bin/python bench/bench_metrics.py [--accounts 100 1000] [--library] [--moving]``.

A real :class:`riskwatch.daemon.app.Daemon` (not started: no socket) is built for N accounts
with the default rule pack (``rules/*.yaml``); each account is fed one pulse of 20
positions and a balance through its core, so every per-account and per-position
series exists. With ``--moving``, every account gets a new pulse before each timed
render, its unrealised PnL moved on every symbol (a market whose marks all move every
second: every position line is rendered again). Measured:

- ``render``: the daemon's ``/metrics`` body built from its registry, as the handler
  builds it (:func:`riskwatch.metrics.exposition_chunks`), ms per scrape and lines;
- ``library``: ``prometheus_client.generate_latest`` of the same registry (the
  handler's former path), for comparison (``--library``);
- ``loop lag``: the handler served by aiohttp on loopback while a 1 ms timer runs on
  the same loop: the largest delay of that timer during scrapes is the longest time a
  frame would wait for the loop.

Writes ``build/bench/metrics.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from common import ROOT, daemon_config, summary_ms, write_result
from prometheus_client import generate_latest

from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon
from riskwatch.metrics import exposition_chunks
from riskwatch.model import BalanceUpdate, PositionUpdate
from riskwatch.rules.load import load_rule_files
from riskwatch.web.routes import build_app

SYMBOLS = [f"S{i:02d}-USD" for i in range(20)]
T0 = 1_767_225_600.0


def pulse(at: float, step: int = 0) -> list[list[Any]]:
    """One pulse's frames: 20 position frames then a balance frame; ``step`` moves every
    position's unrealised PnL."""
    frames: list[list[Any]] = [
        [
            PositionUpdate(
                symbol=s,
                position=float(1 + i),
                average_price=100.0 + i,
                unrealised_pnl=5.0 * i - 20.0 + 0.01 * step,
                realised_pnl=0.0,
                net_funding=0.0,
                margin_alloc=10.0 * (1 + i),
                open_orders=0,
                open_quantity=0.0,
                leverage=10.0,
                initial_margin_rate=0.1,
                maintenance_margin_rate=0.05,
                received_at=at,
            )
        ]
        for i, s in enumerate(SYMBOLS)
    ]
    frames.append(
        [
            BalanceUpdate(
                deposit=1_000_000.0,
                realised_pnl=0.0,
                unrealised_pnl=10.0,
                net_funding=0.0,
                order_margin=0.0,
                position_margin=2000.0,
                available_balance=990_000.0,
                fees=None,
                referral_rewards=None,
                received_at=at,
            )
        ]
    )
    return frames


async def build(n: int, work: Path) -> Daemon:
    cfg_path = daemon_config(
        work / "riskwatch.yaml",
        trade_url="ws://127.0.0.1:9/",
        rest_url="http://127.0.0.1:9/",  # nothing listens: no exchange in this benchmark
        accounts=[(f"acct-{a:04d}", f"pk-{a:04d}") for a in range(n)],
        port=0,
        rules=[ROOT / "rules" / "*.yaml"],
    )
    config = load_config(cfg_path)
    daemon = Daemon(config, rules=load_rule_files(list(config.rules.files)))
    for name, rt in daemon.accounts.items():
        for frame in pulse(T0):
            daemon.frames.on_trade_events(name, frame, T0)
        rt.status = None
    await asyncio.sleep(0)
    gc.freeze()  # the state out of the collector's reach, as riskwatch/daemon/gcpolicy.py keeps it
    return daemon


def move(daemon: Daemon, step: int) -> None:
    """Feed every account's core the pulse ``step`` (untimed)."""
    at = T0 + step
    for rt in daemon.accounts.values():
        for frame in pulse(at, step):
            rt.core.handle(frame, at)


def render(daemon: Daemon) -> bytes:
    return b"".join(exposition_chunks(daemon.registry))


async def loop_lag(daemon: Daemon, scrapes: int) -> dict[str, Any]:
    app = build_app(daemon.views, daemon.commands, daemon.registry, daemon.guard)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    lags: list[float] = []
    durations: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t - 0.001)

    task = asyncio.create_task(ticker())
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(scrapes):
                s0 = time.perf_counter()
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    await r.read()
                durations.append(time.perf_counter() - s0)
                await asyncio.sleep(0.05)
    finally:
        running = False
        await task
        await runner.cleanup()
    return {"scrape_over_http": summary_ms(durations), "loop_lag": summary_ms(lags)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--library", action="store_true", help="also time generate_latest")
    parser.add_argument(
        "--moving", action="store_true", help="a new pulse, every figure moved, before each render"
    )
    args = parser.parse_args()
    results = []
    for n in args.accounts:
        with tempfile.TemporaryDirectory(prefix="rw-metrics-") as tmp:
            daemon = asyncio.run(build(n, Path(tmp)))
            times = []
            for k in range(args.repeat):
                if args.moving:
                    move(daemon, k + 1)
                t = time.perf_counter()
                body = render(daemon)
                times.append(time.perf_counter() - t)
            res: dict[str, Any] = {
                "accounts": n,
                "moving": args.moving,
                "lines": body.count(b"\n"),
                "bytes": len(body),
                "render": summary_ms(times),
            }
            if args.library:
                lib = []
                for _ in range(max(1, args.repeat // 2)):
                    t = time.perf_counter()
                    lbody = generate_latest(daemon.registry)
                    lib.append(time.perf_counter() - t)
                res["library"] = summary_ms(lib)
                res["library_lines"] = lbody.count(b"\n")
            res.update(asyncio.run(loop_lag(daemon, args.repeat)))
        results.append(res)
        print(
            f"N={n:5d}: {res['lines']} lines, render p50 {res['render']['p50_ms']:.1f} ms"
            + (
                f" (library {res['library']['p50_ms']:.1f} ms, {res['library_lines']} lines)"
                if "library" in res
                else ""
            )
            + f", loop lag during scrapes max {res['loop_lag']['max_ms']:.2f} ms"
            f" p99 {res['loop_lag']['p99_ms']:.2f} ms"
        )
    write_result("metrics", {"results": results})


if __name__ == "__main__":
    main()
