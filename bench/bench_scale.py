"""Scale: N accounts × 20 symbols pulsed every second, scraped by a real Prometheus.

Run: ``.venv/bin/python bench/bench_scale.py [--accounts 10 100 1000] [--seconds 30]``
(about 1 min per N, then a few shorter runs to bisect the largest N that keeps the
event-loop lag under 10 ms). Writes ``build/bench/scale.json``.

Three processes, as in production:

- the simulator (``bench/trip_sim.py``): N accounts × 20 symbols, each connection
  pulsed every second at its own phase (21 frames per account per second), one account
  tripping at a time (at most one trip every ``--gap`` s, the rule ``position > 15`` →
  ``close_position``);
- the daemon (``riskwatch.daemon.app.Daemon``, in this process and alone on its event loop:
  armed, state database on disk, the default rule pack of ``rules/`` plus the trip
  rule, ``gc.freeze()`` after start-up as ``riskwatch run`` does);
- Prometheus (the ``prometheus`` binary) scraping the daemon's ``/metrics`` every
  second (``scrape_timeout`` 1 s), storage in a temporary folder.

Measured over ``--seconds`` after a warm-up, per N:

- the daemon's CPU share of one core (utime + stime of this process, /proc) and its
  resident memory at the end;
- scrape durations as Prometheus measured them (``scrape_duration_seconds`` samples of
  the window, read back through its HTTP API) and the scrapes that failed (``up`` 0);
- event-loop lag: a task on the daemon's loop sleeps ``LAG_PERIOD`` and records how
  late it wakes (its own cost: ~200 wake-ups per second);
- pulse-to-action under that load, per trip: ``daemon_trigger`` (trigger frame
  received → the command's socket write starts, stamped in the daemon's process),
  ``pulse_to_action`` (``ActionExecutor.latencies``, as the histogram) and ``wire``
  (the simulator writes the breaching pulse's first frame → reads ``close_position``,
  both stamped in the simulator's process); see bench/bench_pulse_to_action.py.

N "keeps up" when the lag p99 stays under ``LAG_LIMIT`` (10 ms); the max is reported
beside it. The largest such N is bisected between the highest N that kept up and the
lowest that did not (``--bisect`` shorter runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from bench_pulse_to_action import Probe, daemon_config
from common import ROOT, SIM_SECRET, ProcStat, free_port, summary_ms, wait_http, write_result

from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon
from riskwatch.rules.load import load_rule_files
from riskwatch.store import Store

SYMBOLS = 20
LAG_PERIOD = 0.005  # seconds between two wake-ups of the lag probe
LAG_LIMIT = 0.010  # seconds: the lag p99 under which one core "keeps up"
JOB = "riskwatch"


async def lag_probe(out: list[float], period: float = LAG_PERIOD) -> None:
    """Append, forever, how late (seconds) a ``period`` sleep wakes on this loop."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(period)
        out.append(max(0.0, time.perf_counter() - t - period))


def prometheus_config(folder: Path, target_port: int) -> Path:
    """A Prometheus config scraping ``127.0.0.1:target_port`` every second."""
    path = folder / "prometheus.yml"
    path.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: {JOB}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    )
    return path


async def prom_samples(http: aiohttp.ClientSession, base: str, expr: str) -> list[float]:
    """Sample values of the range vector ``expr`` (one series expected), now."""
    async with http.get(f"{base}/api/v1/query", params={"query": expr}) as r:
        doc = await r.json()
    if doc.get("status") != "success":
        msg = f"prometheus query {expr!r} failed: {doc!r}"
        raise RuntimeError(msg)
    return [float(v) for series in doc["data"]["result"] for _, v in series["values"]]


async def start_sim(folder: Path, n: int, gap: float) -> tuple[asyncio.subprocess.Process, str]:
    env = {**os.environ, "RISKWATCH_SIM_SECRET": SIM_SECRET}
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "trip_sim.py"),
        f"--accounts={n}",
        f"--symbols={SYMBOLS}",
        "--interval=1.0",
        f"--gap={gap}",
        "--trips=1000000",  # until SIGTERM: the file is written then
        "--warmup=0",
        f"--out={folder / 'sim.json'}",
        stdout=subprocess.PIPE,
        env=env,
    )
    assert sim.stdout is not None
    ready = (await asyncio.wait_for(sim.stdout.readline(), 120)).decode().split()
    if not ready or ready[0] != "READY":
        msg = f"simulator did not start: {ready!r}"
        raise SystemExit(msg)
    return sim, ready[1]


async def run(n: int, seconds: float, warmup: float, gap: float, folder: Path) -> dict[str, Any]:
    sim, trade_url = await start_sim(folder, n, gap)
    prom: subprocess.Popen[bytes] | None = None
    daemon: Daemon | None = None
    store: Store | None = None
    lags: list[float] = []
    probe_task: asyncio.Task[None] | None = None
    try:
        config = load_config(daemon_config(folder, trade_url, n))
        store = Store.open(config.state.path)
        daemon = Daemon(config, rules=load_rule_files(list(config.rules.files)), store=store)
        probe = Probe()
        probe.wrap(daemon)
        started = time.monotonic()
        await daemon.start()
        gc.freeze()  # as riskwatch.daemon.serve.serve() does after start-up
        await wait_http(f"http://127.0.0.1:{daemon.http_port}/readyz", timeout=180)
        ready_s = time.monotonic() - started
        prom_port = free_port()
        prom_base = f"http://127.0.0.1:{prom_port}"
        prom = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={prometheus_config(folder, daemon.http_port or 0)}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "prometheus.log").open("wb"),
        )
        await wait_http(f"{prom_base}/-/ready", timeout=60)
        probe_task = asyncio.create_task(lag_probe(lags))
        await asyncio.sleep(warmup)
        me = ProcStat(os.getpid())
        lags.clear()
        k_trips = len(probe.trigger)
        k_lat = len(daemon.executor.latencies)
        c0, t0, w0 = me.cpu_seconds(), time.monotonic(), time.time()
        await asyncio.sleep(seconds)
        w1 = time.time()
        cpu = (me.cpu_seconds() - c0) / (time.monotonic() - t0)
        window_lags = list(lags)
        trigger = probe.trigger[k_trips:]
        latencies = list(daemon.executor.latencies)[k_lat:]
        rss = me.rss_mb()
        probe_task.cancel()
        sim.terminate()  # writes sim.json: the wire time of every trip so far
        await sim.wait()
        wire_doc = json.loads((folder / "sim.json").read_text())
        wire = [
            w
            for w, at in zip(wire_doc["wire"], wire_doc["wire_at"], strict=True)
            if w0 <= at - w <= w1
        ]
        late = sum(1 for at in wire_doc["late_at"] if w0 <= at - 1.0 <= w1)
        window = f"[{math.ceil(seconds)}s]"
        async with aiohttp.ClientSession() as http:
            durations = await prom_samples(
                http, prom_base, f'scrape_duration_seconds{{job="{JOB}"}}{window}'
            )
            up = await prom_samples(http, prom_base, f'up{{job="{JOB}"}}{window}')
            samples = await prom_samples(
                http, prom_base, f'scrape_samples_scraped{{job="{JOB}"}}{window}'
            )
        lag = summary_ms(window_lags)
        return {
            "accounts": n,
            "symbols": SYMBOLS,
            "seconds": seconds,
            "ready_after_s": round(ready_s, 1),
            "cpu_share_of_one_core": round(cpu, 3),
            "rss_mb": round(rss, 1),
            "scrape_prometheus": summary_ms(durations),
            "scrapes_failed": sum(1 for u in up if u == 0.0),
            "scrape_series": int(samples[-1]) if samples else 0,
            "loop_lag": lag,
            "keeps_up": bool(window_lags) and pct_ms(lag, "p99_ms") < LAG_LIMIT * 1e3,
            "trips": len(trigger),
            "daemon_trigger": summary_ms(trigger),
            "pulse_to_action": summary_ms(latencies),
            "wire": summary_ms(wire),
            "late_trips": late,
        }
    finally:
        if probe_task is not None:
            probe_task.cancel()
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(timeout=20)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
        if daemon is not None:
            await daemon.stop()
        if store is not None:
            store.close()
        with contextlib.suppress(ProcessLookupError):
            sim.terminate()
        await sim.wait()


def pct_ms(summary: dict[str, float | int], key: str) -> float:
    """``summary[key]`` as a float; inf when the summary is empty."""
    return float(summary.get(key, math.inf))


def measure(n: int, seconds: float, warmup: float, gap: float) -> dict[str, Any]:
    """One run at N accounts in a fresh process (its RSS is that N's alone); printed."""
    with tempfile.TemporaryDirectory(prefix="rw-scale-") as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run(
            [
                sys.executable,
                __file__,
                f"--one={n}",
                f"--seconds={seconds}",
                f"--warmup={warmup}",
                f"--gap={gap}",
                f"--out={out}",
            ],
            check=True,
        )
        r: dict[str, Any] = json.loads(out.read_text())
    s, lag = r["scrape_prometheus"], r["loop_lag"]
    print(
        f"N={n:5d} ({r['seconds']:.0f} s): CPU {r['cpu_share_of_one_core'] * 100:5.1f}% of a core,"
        f" RSS {r['rss_mb']:.0f} MB, scrape p50 {pct_ms(s, 'p50_ms'):.1f}"
        f" p99 {pct_ms(s, 'p99_ms'):.1f} ms ({r['scrapes_failed']} failed),"
        f" lag p99 {pct_ms(lag, 'p99_ms'):.1f} max {pct_ms(lag, 'max_ms'):.1f} ms,"
        f" trigger→write p99 {pct_ms(r['daemon_trigger'], 'p99_ms'):.2f} ms,"
        f" wire p99 {pct_ms(r['wire'], 'p99_ms'):.2f} ms ({r['trips']} trips,"
        f" {r['late_trips']} late)",
        flush=True,
    )
    return r


def run_one(n: int, seconds: float, warmup: float, gap: float, out: Path) -> None:
    """``--one N``: the run of :func:`measure`, in this (fresh) process."""
    with tempfile.TemporaryDirectory(prefix="rw-scale-") as tmp:
        r = asyncio.run(run(n, seconds, warmup, gap, Path(tmp)))
    out.write_text(json.dumps(r) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per N")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between two trips")
    parser.add_argument("--bisect", type=int, default=3, help="extra runs for the largest N")
    parser.add_argument("--bisect-seconds", type=float, default=15.0)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if shutil.which("prometheus") is None:
        msg = "the prometheus binary is not on PATH (Debian: apt-get install prometheus)"
        raise SystemExit(msg)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        filename=str(Path(tempfile.gettempdir()) / "rw-bench-scale.log"),
    )
    if args.one is not None:
        run_one(args.one, args.seconds, args.warmup, args.gap, args.out)
        return
    results = [measure(n, args.seconds, args.warmup, args.gap) for n in sorted(args.accounts)]
    bisect: list[dict[str, Any]] = []
    ok = [r["accounts"] for r in results if r["keeps_up"]]
    bad = [r["accounts"] for r in results if not r["keeps_up"]]
    lo, hi = (max(ok) if ok else 0), (min(bad) if bad else 0)
    for _ in range(args.bisect):
        if not hi or hi - lo <= max(10, lo // 10):
            break
        mid = round(math.sqrt(max(lo, 1) * hi) / 10) * 10 or 10
        if mid in (lo, hi):
            break
        r = measure(mid, args.bisect_seconds, args.warmup, args.gap)
        bisect.append(r)
        lo, hi = (mid, hi) if r["keeps_up"] else (lo, mid)
    largest = {
        "accounts": lo,
        "first_failing": hi or None,
        "criterion": f"event-loop lag p99 < {LAG_LIMIT * 1e3:.0f} ms",
    }
    print(
        f"largest N that keeps the lag p99 under {LAG_LIMIT * 1e3:.0f} ms: {lo}"
        + (f" (N = {hi} does not)" if hi else " (every N tried)")
    )
    write_result("scale", {"results": results, "bisect": bisect, "largest_n": largest})


if __name__ == "__main__":
    main()
