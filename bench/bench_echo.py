"""The floor of any reaction measured over a socket: a bare websockets echo round trip.

Run: ``.venv/bin/python bench/bench_echo.py [--count 5000]``. A websockets server and
one client on loopback in this process (compression off, as riskwatch and the
simulator run), a ~400-byte text frame sent and echoed ``count`` times; prints p50/p99
and writes ``build/bench/echo.json``. bench_reaction.py measures the same floor in its
own run and compares riskwatch against it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import summary_ms, write_result
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

FRAME = (
    '{"position_response": {"symbol": "AAPL-USD", "position": 250.0, "pad": "' + "x" * 330 + '"}}'
)


async def echo_rtts(count: int) -> list[float]:
    """``count`` loopback echo round trips, in seconds (after 200 warm-up trips)."""

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, proxy=None) as ws:
            out = []
            for i in range(count + 200):
                t0 = time.perf_counter()
                await ws.send(FRAME)
                await ws.recv()
                if i >= 200:
                    out.append(time.perf_counter() - t0)
            return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    stats = summary_ms(asyncio.run(echo_rtts(args.count)))
    print(f"websockets echo RTT: p50 {stats['p50_ms']:.3f} ms  p99 {stats['p99_ms']:.3f} ms")
    write_result("echo", {"echo_rtt": stats})


if __name__ == "__main__":
    main()
