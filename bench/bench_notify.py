"""Cost of handing notifications to the service while a channel hangs.

Run: `.venv/bin/python bench/bench_notify.py [--quick]`. Writes `build/bench/notify.json`.

Set-up: a NotifyService with one route of two URLs — a TCP server on 127.0.0.1 that
accepts and never answers (apprise's call times out after 0.5 s, retried twice), and a
live JSON webhook. Measured: the wall time of each `enqueue_alert` call (what the
evaluation path pays: a `put_nowait`), p50/p99/max in µs over N calls made in bursts
of 100 between event-loop turns (so the worker, the lanes and the hanging channel run
concurrently); and, alongside, the event-loop lag (how late a 1 ms timer fires) while
the worker dispatches and the channel hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from types import MappingProxyType

from aiohttp import web

from riskwatch.config import NotificationsConfig, RouteConfig
from riskwatch.notify.deliver import DeliveryPolicy
from riskwatch.notify.notice import AlertNotice
from riskwatch.notify.service import NotifyService
from riskwatch.secret import Secret

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench" / "notify.json"


def pct(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


async def run(n: int) -> dict[str, object]:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)

    hang = await asyncio.start_server(hold, "127.0.0.1", 0)
    hang_port = hang.sockets[0].getsockname()[1]
    received = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal received
        received += 1
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    route = RouteConfig(
        urls=(
            Secret(f"json://127.0.0.1:{hang_port}/hook/token"),
            Secret(f"json://127.0.0.1:{hook_port}/hook/token"),
        ),
        match=MappingProxyType({}),
        match_re=MappingProxyType({}),
    )
    svc = NotifyService(
        NotificationsConfig(routes=(route,)),
        delivery=DeliveryPolicy(timeout=0.5, attempts=2, backoff=0.05, queue_size=100_000),
        queue_size=n + 10,
        tick=0.05,
    )
    await svc.start()
    costs: list[float] = []
    lags: list[float] = []
    stop = asyncio.Event()

    async def lag_probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t - 0.001)

    probe = asyncio.create_task(lag_probe())
    now = time.time()
    for i in range(n):
        notice = AlertNotice(
            rule=f"Rule{i % 50}",
            account=f"acct-{i % 7}",
            symbol=f"S{i}-USD",
            status="firing",
            severity="warning",
            at=now,
            trip_id=1,
            summary="margin usage 91 %",
        )
        t = time.perf_counter()
        svc.enqueue_alert(notice)
        costs.append(time.perf_counter() - t)
        if i % 100 == 99:
            await asyncio.sleep(0)
    await asyncio.sleep(1.5)
    stop.set()
    await probe
    await svc.stop(drain=0)
    await runner.cleanup()
    hang.close()
    costs.sort()
    lags.sort()
    us = 1e6
    return {
        "enqueue_calls": n,
        "enqueue_us_p50": round(pct(costs, 0.50) * us, 2),
        "enqueue_us_p99": round(pct(costs, 0.99) * us, 2),
        "enqueue_us_max": round(costs[-1] * us, 2),
        "enqueue_us_mean": round(statistics.fmean(costs) * us, 2),
        "loop_lag_ms_p50": round(pct(lags, 0.50) * 1e3, 3),
        "loop_lag_ms_p99": round(pct(lags, 0.99) * 1e3, 3),
        "loop_lag_ms_max": round(lags[-1] * 1e3, 3),
        "webhook_messages_received": received,
        "failed_outcomes": sum(o.result == "failed" for o in svc.outcomes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    n = 2_000 if args.quick else 20_000
    result = asyncio.run(run(n))
    result.update(python=platform.python_version(), machine=platform.machine())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for key, value in result.items():
        print(f"{key:28} {value}")
    print(f"wrote {OUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
