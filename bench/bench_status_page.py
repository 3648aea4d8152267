"""The status page: render time and event-loop lag while it is served, in process.

Run: ``.venv/bin/python bench/bench_status_page.py [--accounts 100 500]``.

A real daemon (not started) is built as ``bench_metrics.py`` builds it: N accounts of 20
positions each, the default rule pack. Measured per N:

- ``documents``: gathering the page's inputs from the read view
  (:func:`riskwatch.web.statuspage.page_data`, on the event loop), ms;
- ``render``: :func:`riskwatch.web.statuspage.render` of those inputs, ms;
- ``loop lag``: the largest delay of a 1 ms timer on the loop while 10 pages are built as
  ``GET /`` builds them (documents on the loop, rendering in a worker thread), and,
  for comparison, with the rendering on the loop.

Writes ``build/bench/status_page.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_metrics import build
from common import summary_ms, write_result

from riskwatch.web import statuspage

PAGES = 10


async def _lag(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - started - 0.001)


async def measure(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        daemon = await build(n, Path(tmp))
        view = daemon.views
        statuspage.render(statuspage.page_data(view))  # the template compiled once
        gather, render = [], []
        for _ in range(PAGES):
            t0 = time.perf_counter()
            data = statuspage.page_data(view)
            t1 = time.perf_counter()
            statuspage.render(data)
            gather.append(t1 - t0)
            render.append(time.perf_counter() - t1)
        doc: dict[str, Any] = {"documents": summary_ms(gather), "render": summary_ms(render)}
        for where in ("thread", "loop"):
            lags: list[float] = []
            stop = asyncio.Event()
            ticker = asyncio.create_task(_lag(stop, lags))
            await asyncio.sleep(0.05)
            for _ in range(PAGES):
                data = statuspage.page_data(view)
                if where == "thread":
                    await asyncio.to_thread(statuspage.render, data)
                else:
                    statuspage.render(data)
                await asyncio.sleep(0.01)
            stop.set()
            await ticker
            doc[f"loop_lag_render_in_{where}"] = summary_ms(lags)
        print(
            f"{n:5d} accounts: documents p50 {doc['documents']['p50_ms']:.1f} ms, render p50"
            f" {doc['render']['p50_ms']:.1f} ms; loop lag max"
            f" {doc['loop_lag_render_in_thread']['max_ms']:.1f} ms (render in a thread),"
            f" {doc['loop_lag_render_in_loop']['max_ms']:.1f} ms (render on the loop)"
        )
        return doc


async def main(sizes: list[int]) -> dict[str, Any]:
    return {str(n): await measure(n) for n in sizes}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[100, 500])
    args = parser.parse_args()
    write_result("status_page", {"accounts": asyncio.run(main(args.accounts))})
