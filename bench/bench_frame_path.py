"""CPU per received frame of the daemon's own path, without the network: one process.

Run: ``.venv/bin/python bench/bench_frame_path.py --accounts 1000 --market static``
(``--market moving``, the default: every mark moves at every pulse; ``--cpu K`` pins
the process to CPU K; ``--seconds``, ``--warmup``).

``bench/bench_scale.py`` measures the daemon under a real simulator and a real
Prometheus, but on this kind of machine its CPU figure moves by a few points of a core
from one run to the next with the same code (docs/performance.md, "This machine's
speed is not constant"): too much to see a change of one µs per frame. This benchmark
keeps only the daemon's process. The whole daemon starts (:meth:`Daemon.start`: its
HTTP server, state writer, timers; the rule pack of ``rules/`` and the benchmarks' trip
rule, armed; reference data from an in-process ``GET /refdata`` in the simulator's
form) with every trade connection on an in-process socket
(``riskwatch.qfex.client.open_socket`` is replaced) that answers the auth and subscribe
commands in the documented forms and then delivers, at each account's phase of the
second, the account's pulse as one read: 20 ``position_response`` frames and a
``balance_response`` (docs/protocol.md §4.2). Once a second the metrics are rendered as
a scrape would (:func:`riskwatch.metrics.exposition_chunks`). Everything the daemon
does from the received text on is measured: the session, decoding, the state, the
figures, the rules, the metrics, the scrape's rendering and the daemon's timers. Not
measured: the WebSocket library, the scrape's HTTP, actions (nothing trips).

Two code trees can be compared on the same machine at the same time: run this file
with ``PYTHONPATH=TREE`` twice at once, each on its own CPU (``--cpu 0``, ``--cpu 1``),
then again with the CPUs swapped; what slows the machine slows both.

Prints the CPU per frame (the process's CPU time over the window, divided by the frames
delivered), the CPU one render of the metrics took (p50), the process's largest RSS and
the event loop's lag over the window (how late a 5 ms sleep wakes, as in
``bench_scale.py``: here without the network, so what the daemon's own blocks of work
cost the loop), and writes ``build/bench/frame_path.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import resource
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from bench_pulse_to_action import daemon_config
from common import lag_probe, pct

import riskwatch.qfex.client as client_mod
from riskwatch.config import load_config
from riskwatch.daemon import eventloop
from riskwatch.daemon.app import Daemon
from riskwatch.daemon.serve import memory_upkeep
from riskwatch.metrics import exposition_chunks
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.frames import refdata_symbol
from riskwatch.sim.scenario import SymbolSpec
from riskwatch.store.db import Store

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = 20
QTY, ENTRY, DEPOSIT, IM_RATE, MM_RATE = 10.0, 100.0, 1_000_000.0, 0.1, 0.05


class PulsedSocket:
    """An exchange connection in the process: answers the auth and subscribe commands,
    then delivers each pulse given to :meth:`deliver` as one read."""

    def __init__(self) -> None:
        self._buffer: deque[str] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.live = False
        self._next = len(SOCKETS) * 7  # where in PULSES this socket starts

    def __aiter__(self) -> PulsedSocket:
        return self

    async def __anext__(self) -> str:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._buffer.popleft()

    def _feed(self, frames: Sequence[str]) -> None:
        self._buffer.extend(frames)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, message: str) -> None:
        frame = json.loads(message)
        kind = frame.get("type")
        if kind == "auth":
            self._feed([json.dumps({"authenticated": True})])
        elif kind == "subscribe":
            channels = frame["params"]["channels"]
            self._feed([json.dumps({"subscribed": ch}) for ch in channels])
            self.live = True
        # Other commands go unanswered: their replies are not what is measured.

    async def close(self) -> None:
        self._closed = True
        self._feed([])

    def deliver(self) -> int:
        """Queue the socket's next pulse; return its frame count."""
        frames = PULSES[self._next % len(PULSES)]
        self._next += 1
        self._feed(frames)
        return len(frames)


def make_pulses(count: int, moving: bool, seed: int = 1) -> list[list[str]]:
    """``count`` successive pulses of one account, marks moving by up to 0.1 % between
    two when ``moving``, else all at the entry price (built before the measured window:
    the benchmark's own JSON encoding is not the daemon's CPU)."""
    rng = random.Random(seed)
    marks = [ENTRY] * SYMBOLS
    pulses = []
    for _ in range(count):
        frames = []
        upnl = margin = 0.0
        for s in range(SYMBOLS):
            if moving:
                marks[s] *= 1.0 + rng.uniform(-0.001, 0.001)
            pnl = QTY * (marks[s] - ENTRY)
            upnl += pnl
            margin += QTY * marks[s] * IM_RATE
            frames.append(
                json.dumps(
                    {
                        "position_response": {
                            "id": f"00000000-0000-0000-0000-{s:012d}",
                            "symbol": f"S{s:02d}-USD",
                            "position": QTY,
                            "margin_alloc": 0.0,
                            "realised_pnl": 0.0,
                            "unrealised_pnl": pnl,
                            "net_funding": 0.0,
                            "open_orders": 0.0,
                            "open_quantity": 0.0,
                            "leverage": 10.0,
                            "initial_margin": IM_RATE,
                            "maintenance_margin": MM_RATE,
                            "average_price": ENTRY,
                        }
                    }
                )
            )
        frames.append(
            json.dumps(
                {
                    "balance_response": {
                        "id": "bench",
                        "user_id": "bench",
                        "deposit": DEPOSIT,
                        "realised_pnl": 0.0,
                        "order_margin": 0.0,
                        "position_margin": margin,
                        "unrealised_pnl": upnl,
                        "net_funding": 0.0,
                        "available_balance": DEPOSIT + upnl - margin,
                    }
                }
            )
        )
        pulses.append(frames)
    return pulses


PULSES: list[list[str]] = []
"""Every socket walks through these in turn, from its own starting point: ten minutes
of distinct pulses before one repeats (``--market moving``)."""

SOCKETS: list[PulsedSocket] = []


@contextlib.asynccontextmanager
async def pulsed_socket(*_args: Any, **_kwargs: Any) -> AsyncIterator[PulsedSocket]:
    ws = PulsedSocket()
    SOCKETS.append(ws)
    try:
        yield ws
    finally:
        ws.live = False


async def pulse(seconds: float) -> int:
    """Pulse every live socket once a second, each at its own phase; render the metrics
    once a second; return the frames delivered."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    delivered = 0
    n = len(SOCKETS)
    second = 0
    while loop.time() - start < seconds:
        base = start + second
        for i, ws in enumerate(SOCKETS):
            at = base + i / n
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if ws.live:
                delivered += ws.deliver()
        second += 1
    return delivered


async def scrape_every_second(daemon: Daemon, rendered: list[int], cpu: list[float]) -> None:
    """Render the metrics once a second as a scrape does; keep each body's size and the
    CPU time its rendering took (the pieces only, not what ran between them)."""
    while True:
        await asyncio.sleep(1.0)
        size = 0
        spent = 0.0
        pieces = exposition_chunks(daemon.metrics.registry)
        while True:
            t0 = time.thread_time()
            piece = next(pieces, None)
            spent += time.thread_time() - t0
            if piece is None:
                break
            size += len(piece)
            await asyncio.sleep(0)
        rendered.append(size)
        cpu.append(spent)


async def serve_refdata() -> tuple[web.AppRunner, str]:
    """``GET /refdata`` with the benchmark's symbols, as the simulator answers it."""
    body = {
        "type": "refdata",
        "data": [
            refdata_symbol(SymbolSpec(symbol=f"S{s:02d}-USD", mark=ENTRY), ENTRY)
            for s in range(SYMBOLS)
        ],
    }

    async def refdata(_request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/refdata", refdata)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def run(accounts: int, seconds: float, warmup: float, market: str) -> dict[str, Any]:
    # The connections' socket opener, looked up by riskwatch/qfex/client.py at each
    # connection: every trade connection gets a PulsedSocket.
    vars(client_mod)["open_socket"] = pulsed_socket
    rest, rest_url = await serve_refdata()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = daemon_config(folder, "ws://127.0.0.1:9/", rest_url, accounts)
        config = load_config(path)
        store = Store.open(config.state.path)
        daemon = Daemon(config, rules=load_rule_files(list(config.rules.files)), store=store)
        await daemon.start()
        rendered: list[int] = []
        scrape_cpu: list[float] = []
        scraper = asyncio.create_task(scrape_every_second(daemon, rendered, scrape_cpu))
        upkeep = contextlib.AsyncExitStack()
        try:
            # As riskwatch.daemon.serve.serve() does after start-up.
            await upkeep.enter_async_context(memory_upkeep())
            while sum(ws.live for ws in SOCKETS) < accounts:
                await asyncio.sleep(0.05)
            await pulse(warmup)
            lags: list[float] = []
            probe = asyncio.create_task(lag_probe(lags))
            c0 = time.process_time()
            k = len(scrape_cpu)
            frames = await pulse(seconds)
            cpu = time.process_time() - c0
            probe.cancel()
            scrapes = sorted(scrape_cpu[k:])
        finally:
            scraper.cancel()
            await upkeep.aclose()
            await daemon.stop()
            store.close()
            await rest.cleanup()
    return {
        "accounts": accounts,
        "market": market,
        "symbols": SYMBOLS,
        "seconds": seconds,
        "frames": frames,
        "cpu_s": round(cpu, 3),
        "us_per_frame": round(cpu / frames * 1e6, 2) if frames else math.nan,
        "scrape_bytes": rendered[-1] if rendered else 0,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "scrape_cpu_ms_p50": round(scrapes[len(scrapes) // 2] * 1e3, 1) if scrapes else math.nan,
        "lag_ms": {q: round(pct(lags, p) * 1e3, 2) for q, p in (("p50", 0.5), ("p99", 0.99))}
        | {"max": round(max(lags, default=math.nan) * 1e3, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    parser.add_argument(
        "--market",
        choices=["moving", "static"],
        default="moving",
        help="moving: every mark moves at every pulse; static: marks stay at the entry"
        " price, as in bench_scale.py's simulator (rows unchanged, skipped)",
    )
    parser.add_argument("--label", default="", help="printed before the figures")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    PULSES[:] = make_pulses(600, moving=args.market == "moving")
    result = eventloop.run(run(args.accounts, args.seconds, args.warmup, args.market))
    print(
        f"{args.label} N={result['accounts']}, {args.market}: {result['us_per_frame']} µs of CPU per frame "
        f"({result['frames']} frames, {result['cpu_s']} s CPU, "
        f"scrape {result['scrape_bytes']} bytes, {result['scrape_cpu_ms_p50']} ms of CPU p50, RSS max {result['max_rss_mb']} MB, "
        f"loop lag p50 {result['lag_ms']['p50']} p99 {result['lag_ms']['p99']} max {result['lag_ms']['max']} ms)"
    )
    out = ROOT / "build" / "bench" / "frame_path.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
