"""Scale: N accounts × 20 symbols pulsed every second, scraped by a real Prometheus.

Run: ``.venv/bin/python bench/bench_scale.py [--accounts 10 100 1000] [--seconds 30]
[--scrape-interval 1 15] [--loop default|uvloop|asyncio] [--transport websockets|aiohttp]
[--gc policy|interpreter] [--heap-trim on|off] [--history SECONDS] [--notify URL]
[--cpus separate|shared] [--profile DIR]`` (about 1 min
per N and interval, then a few shorter runs to bisect the largest N that keeps the
event-loop lag under 10 ms at the first interval). Writes ``build/bench/scale.json``.

Three processes, as in production:

- the simulator (``bench/trip_sim.py``): N accounts × 20 symbols, each connection
  pulsed every second at its own phase (21 frames per account per second), one account
  tripping at a time (at most one trip every ``--gap`` s, the rule ``position > 15`` →
  ``close_position``);
- the daemon (``riskwatch.daemon.app.Daemon``, in this process and alone on its event loop:
  armed, state database on disk, the default rule pack of ``rules/`` plus the trip
  rule, the garbage collector's policy of ``riskwatch run`` (``riskwatch/daemon/gcpolicy.py``;
  ``--gc interpreter``: the interpreter's collector, start-up objects frozen), and
  its heap trimming (``riskwatch/daemon/heaptrim.py``; ``--heap-trim off``: none);
  every account starts with ``--history`` seconds of window history (default a day,
  as a daemon up that long holds; ``fill_history``);
- Prometheus (the ``prometheus`` binary) scraping the daemon's ``/metrics`` every
  ``--scrape-interval`` seconds (default 1; ``scrape_timeout`` 1 s), storage in a
  temporary folder.

Where they run (``--cpus``): ``separate`` (the default, on a machine with two CPUs or
more) gives the daemon the last CPU to itself and the simulator, Prometheus and py-spy
the others, as a deployment gives the daemon its core and runs the exchange and
Prometheus elsewhere; ``shared`` leaves them all to the scheduler. Shared, on two CPUs,
the daemon's loop waits behind the other two for a time slice now and then: at N = 1000
that alone doubled the reaction's p99 (docs/performance.md).

Measured over ``--seconds`` after a warm-up, per N:

- the daemon's CPU share of one core (utime + stime of this process, /proc), the
  frames it received per second (``riskwatch_messages_total``) and so its CPU per
  frame, all in (scrapes included), and its resident memory at the end (and its
  minimum, median and maximum over the window, sampled every 0.5 s); the state-database
  writes that failed in the window (``riskwatch_state_errors_total``) and whether
  ``/readyz`` answers 200 at its end (its reasons when not);
- scrape durations as Prometheus measured them (``scrape_duration_seconds`` samples of
  the window, read back through its HTTP API) and the scrapes that failed (``up`` 0);
- event-loop lag: a task on the daemon's loop sleeps ``common.LAG_PERIOD`` and records how
  late it wakes (its own cost: ~200 wake-ups per second);
- pulse-to-action under that load, per trip: ``daemon_trigger`` (trigger frame
  received → the command's socket write starts, stamped in the daemon's process),
  ``pulse_to_action`` (the values the ``riskwatch_pulse_to_action_seconds`` histogram
  observes) and ``wire``
  (the simulator writes the breaching pulse's first frame → reads ``close_position``,
  both stamped in the simulator's process); see bench/bench_pulse_to_action.py;
- the machine's speed: the CPU one fixed piece of Python (:func:`machine_speed_ms`)
  takes in the daemon's process just before and just after the window. This machine's
  speed moves by a third from one minute to the next; two runs whose readings differ
  measured different machines.

N "keeps up" when the lag p99 stays under ``LAG_LIMIT`` (10 ms) and the daemon received
at least ``DELIVERED_ENOUGH`` (97 %) of the frames pulsed; the max is reported beside
it. A run whose simulator fell behind (its pulses late: a lighter load than N accounts
pulsed every second) says so in a ``LOAD NOT DELIVERED`` line. The largest such N is
bisected between the highest N that kept up and the lowest that did not (``--bisect``
shorter runs).

With ``--profile DIR``, py-spy samples the daemon during each window and the CPU per
frame is split by stage (receive, decode, reduce, figures, evaluation, metrics, scrape,
timers…: ``bench/stages.py``); the raw stacks stay in DIR. py-spy stops the daemon for
each sample, so a profiled run's lag and reaction figures are not the daemon's.

Each N runs in a fresh process, in a process group of its own with its simulator and
Prometheus: a run that does not finish within its warm-up and window plus
``RUN_SLACK`` is killed with them, and the benchmark stops with an error instead of
waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import functools
import gc
import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from bench_pulse_to_action import Probe, daemon_config
from common import (
    ROOT,
    ProcStat,
    free_port,
    lag_probe,
    sim_env,
    summary_ms,
    wait_http,
    write_result,
)
from stages import per_frame_us, stage_samples

from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon
from riskwatch.daemon.eventloop import run as run_loop
from riskwatch.daemon.serve import memory_upkeep
from riskwatch.rules.load import load_rule_files
from riskwatch.store import Store

SYMBOLS = 20
LAG_LIMIT = 0.010  # seconds: the lag p99 under which one core "keeps up"
JOB = "riskwatch"
DELIVERED_ENOUGH = 0.97  # share of the pulsed frames a run must receive to measure its N
RUN_SLACK = 420.0  # seconds a run may take beyond its warm-up and window: start-up (the
# daemon's /readyz within 180 s, Prometheus within 60), the queries and the teardown


async def rss_probe(me: ProcStat, out: list[float], period: float = 0.5) -> None:
    """Append, forever, this process's resident memory (MB) every ``period`` seconds."""
    while True:
        out.append(me.rss_mb())
        await asyncio.sleep(period)


def machine_speed_ms() -> float:
    """CPU milliseconds (this thread's) of a fixed piece of pure Python, about 50 ms on
    the project's build machine: the same code takes longer when the machine is in one
    of its slow spells (docs/performance.md), so two runs' figures are compared with it."""
    started = time.thread_time()
    kept: dict[int, str] = {}
    for i in range(200_000):
        kept[i % 1000] = repr(i * 1.5) + "x"
    return (time.thread_time() - started) * 1e3


def prometheus_config(folder: Path, target_port: int, interval: float) -> Path:
    """A Prometheus config scraping ``127.0.0.1:target_port`` every ``interval`` seconds
    (``scrape_timeout`` 1 s: what a 1 s interval allows, and a scrape that needs more
    stalls reactions anyway)."""
    path = folder / "prometheus.yml"
    path.write_text(
        f"global:\n  scrape_interval: {interval:g}s\n  scrape_timeout: 1s\n"
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


def fill_history(daemon: Daemon, seconds: float, now: float) -> int:
    """Give every account ``seconds`` of window history (one sample per bucket of each
    tracked window, up to its length) as a daemon up that long holds: the rule pack's
    ``drawdown(equity, 24h)`` is 1000 records per account once a day has passed.
    The values are a random walk per account (equity moving by up to 0.1 % a bucket):
    what a drawdown keeps depends on the path (riskwatch/state/windows.py, _PeakTier).
    Returns the samples pushed."""
    pushed = 0
    for k, rt in enumerate(daemon.accounts.values()):
        windows = rt.core.rules_state.windows
        rng = random.Random(k)
        for name, spans in windows.tracked.items():
            span = max(spans)
            step = max(0.1, span / 1000)
            t = now - min(seconds, span)
            value = 1_000_000.0
            while t < now:
                value += rng.uniform(-1000.0, 1000.0)
                windows.push("", {name: value}, t)
                t += step
                pushed += 1
    return pushed


async def start_sim(
    folder: Path, n: int, gap: float, place: Callable[[], None] | None = None
) -> tuple[asyncio.subprocess.Process, str, str]:
    """Start the simulator process (``place`` run in it before it starts: its CPUs);
    return it, its trade URL and its REST URL."""
    env = sim_env()
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
        preexec_fn=place,  # sets the CPU affinity only: no locks taken
    )
    assert sim.stdout is not None
    ready = (await asyncio.wait_for(sim.stdout.readline(), 120)).decode().split()
    if not ready or ready[0] != "READY":
        msg = f"simulator did not start: {ready!r}"
        raise SystemExit(msg)
    return sim, ready[1], ready[3]


@dataclass(frozen=True)
class Options:
    """One measured run: N accounts, the window, the scrape interval, the event loop."""

    accounts: int
    seconds: float
    warmup: float
    gap: float
    scrape_interval: float
    loop: str
    transport: str = "websockets"
    gc: str = "policy"
    heap_trim: bool = True
    cpus: str = "separate"
    history: float = 86_400.0
    notify: str = ""
    profile: Path | None = None


def cpu_sets(layout: str) -> tuple[set[int], set[int]] | None:
    """``(the daemon's CPUs, the other processes' CPUs)`` for ``--cpus layout``; None
    leaves placement to the scheduler (``shared``, or fewer than two CPUs)."""
    if layout == "shared" or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def pin_this_process(cpus: set[int]) -> None:
    """Every thread of this process, and those it starts later, on ``cpus``."""
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), cpus)


def state_errors(daemon: Daemon) -> float:
    """Failed state-database writes so far (``riskwatch_state_errors_total``)."""
    return sum(
        sample.value
        for family in daemon.metrics.state_errors.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def message_count(daemon: Daemon) -> float:
    """Frames received so far by every account (``riskwatch_messages_total``)."""
    return sum(
        value
        for (account, _), value in daemon.metrics.messages.values().items()
        if account  # market data has no account label; there is none here
    )


def start_profiler(
    out: Path, seconds: float, place: Callable[[], None] | None = None
) -> subprocess.Popen[bytes]:
    """py-spy sampling this process for ``seconds`` (raw stacks, idle samples dropped).

    Each sample stops the process while py-spy reads its stack: read from a running
    process (``--nonblocking``), the stack changes under the read, and a fifth of the
    samples stopped at a call site without its callee, charged to the caller's stage
    (docs/performance.md, "Where a frame's CPU goes"). 50 samples a second: at 250 the
    pauses made the daemon fall behind. They still delay the loop: a profiled run's lag
    and reaction figures are not the daemon's."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        msg = "--profile needs py-spy (pip install py-spy)"
        raise SystemExit(msg)
    return subprocess.Popen(
        [
            exe,
            "record",
            f"--pid={os.getpid()}",
            f"--duration={math.ceil(seconds)}",
            "--rate=50",
            "--gil",  # samples that hold the GIL: CPU work, not waits in epoll or fsync
            "--format=raw",
            f"--output={out}",
        ],
        preexec_fn=place,  # sets the CPU affinity only: no locks taken
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class GcTimer:
    """Times the interpreter's garbage collections (``gc.callbacks``), by generation."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def clear(self) -> None:
        for pauses in self.pauses.values():
            pauses.clear()

    def summary(self, seconds: float) -> dict[str, Any]:
        """Per generation: collections, their share of the wall time, the longest."""
        return {
            f"gen{g}": {
                "collections": len(p),
                "ms_per_s": round(sum(p) / seconds * 1e3, 2),
                "max_ms": round(max(p, default=0.0) * 1e3, 2),
            }
            for g, p in self.pauses.items()
        }

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


async def run(opts: Options, folder: Path) -> dict[str, Any]:
    n, seconds = opts.accounts, opts.seconds
    sets = cpu_sets(opts.cpus)
    # Run in each child before it starts: the simulator, Prometheus, py-spy.
    place = None if sets is None else functools.partial(os.sched_setaffinity, 0, sets[1])
    if sets is not None:
        pin_this_process(sets[0])
    sim, trade_url, rest_url = await start_sim(folder, n, opts.gap, place)
    prom: subprocess.Popen[bytes] | None = None
    daemon: Daemon | None = None
    store: Store | None = None
    lags: list[float] = []
    probe_task: asyncio.Task[None] | None = None
    upkeep = contextlib.AsyncExitStack()
    try:
        path = daemon_config(folder, trade_url, rest_url, n, opts.transport, opts.notify)
        config = load_config(path)
        store = Store.open(config.state.path)
        daemon = Daemon(config, rules=load_rule_files(list(config.rules.files)), store=store)
        fill_history(daemon, opts.history, time.time())
        probe = Probe()
        probe.wrap(daemon)
        started = time.monotonic()
        await daemon.start()
        # As riskwatch.daemon.serve.serve() does after start-up.
        await upkeep.enter_async_context(
            memory_upkeep(gc_policy=opts.gc == "policy", heap_trim=opts.heap_trim)
        )
        if opts.gc != "policy":  # the interpreter's collector, start-up objects frozen
            gc.freeze()
        await wait_http(f"http://127.0.0.1:{daemon.http_port}/readyz", timeout=180)
        ready_s = time.monotonic() - started
        prom_port = free_port()
        prom_base = f"http://127.0.0.1:{prom_port}"
        prom_yml = prometheus_config(folder, daemon.http_port or 0, opts.scrape_interval)
        prom = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={prom_yml}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "prometheus.log").open("wb"),
            preexec_fn=place,  # sets the CPU affinity only: no locks taken
        )
        await wait_http(f"{prom_base}/-/ready", timeout=60)
        probe_task = asyncio.create_task(lag_probe(lags))
        await asyncio.sleep(opts.warmup)
        speed_before = machine_speed_ms()  # before the window: its CPU is not counted
        me = ProcStat(os.getpid())
        lags.clear()
        rss_samples: list[float] = []
        rss_task = asyncio.create_task(rss_probe(me, rss_samples))
        k_trips = len(probe.trigger)
        k_lat = len(probe.latencies)
        profiler = None
        if opts.profile is not None:
            profiler = start_profiler(opts.profile, seconds, place)
        m0 = message_count(daemon)
        e0 = state_errors(daemon)
        gc_timer = GcTimer()
        c0, t0, w0 = me.cpu_seconds(), time.monotonic(), time.time()
        await asyncio.sleep(seconds)
        w1 = time.time()
        elapsed = time.monotonic() - t0
        gc_timer.close()
        collections = gc_timer.summary(elapsed)
        cpu = (me.cpu_seconds() - c0) / elapsed
        speed_after = machine_speed_ms()
        frames_per_s = (message_count(daemon) - m0) / elapsed
        frames_expected = opts.accounts * (SYMBOLS + 1)  # a pulse a second per account
        window_lags = list(lags)
        trigger = probe.trigger[k_trips:]
        latencies = probe.latencies[k_lat:]
        rss = me.rss_mb()
        rss_task.cancel()
        errors = state_errors(daemon) - e0
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{daemon.http_port}/readyz") as r:
                ready = (r.status, (await r.text()).strip())
        probe_task.cancel()
        sim.terminate()  # writes sim.json: the wire time of every trip so far
        await sim.wait()
        profile: dict[str, Any] | None = None
        if profiler is not None and opts.profile is not None:
            await asyncio.to_thread(profiler.wait)
            samples = stage_samples(opts.profile)
            profile = {
                "raw": str(opts.profile),
                "samples": dict(samples),
                "us_per_frame": {
                    k: round(v, 2) for k, v in per_frame_us(samples, cpu, frames_per_s).items()
                },
            }
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
            series = await prom_samples(
                http, prom_base, f'scrape_samples_scraped{{job="{JOB}"}}{window}'
            )
        lag = summary_ms(window_lags)
        return {
            "accounts": n,
            "symbols": SYMBOLS,
            "seconds": seconds,
            "scrape_interval_s": opts.scrape_interval,
            "loop": opts.loop,
            "transport": opts.transport,
            "gc": opts.gc,
            "heap_trim": opts.heap_trim,
            "cpus": "shared"
            if sets is None
            else f"daemon on CPU {sorted(sets[0])}, the others on {sorted(sets[1])}",
            "history_s": opts.history,
            "notify": opts.notify,
            "ready_after_s": round(ready_s, 1),
            "cpu_share_of_one_core": round(cpu, 3),
            "machine_speed_ms": {"before": round(speed_before, 1), "after": round(speed_after, 1)},
            "frames_per_s": round(frames_per_s, 1),
            "frames_expected_per_s": frames_expected,
            "cpu_us_per_frame": round(cpu / frames_per_s * 1e6, 2) if frames_per_s else None,
            "state_errors": errors,
            "ready_at_end": ready[0] == 200,
            "not_ready_because": "" if ready[0] == 200 else ready[1][:300],
            "rss_mb": round(rss, 1),
            "rss_window_mb": {
                "min": round(min(rss_samples), 1),
                "median": round(sorted(rss_samples)[len(rss_samples) // 2], 1),
                "max": round(max(rss_samples), 1),
            },
            "scrape_prometheus": summary_ms(durations),
            "scrapes": len(up),
            "scrapes_failed": sum(1 for u in up if u == 0.0),
            "scrape_series": int(series[-1]) if series else 0,
            "loop_lag": lag,
            # A run whose simulator fell behind measured a lighter load: it does not count.
            "keeps_up": bool(window_lags)
            and pct_ms(lag, "p99_ms") < LAG_LIMIT * 1e3
            and frames_per_s >= DELIVERED_ENOUGH * frames_expected,
            "trips": len(trigger),
            "daemon_trigger": summary_ms(trigger),
            "pulse_to_action": summary_ms(latencies),
            "wire": summary_ms(wire),
            "late_trips": late,
            "gc_collections": collections,
            "load_average": os.getloadavg(),
            "profile": profile,
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
        await upkeep.aclose()
        if store is not None:
            store.close()
        with contextlib.suppress(ProcessLookupError):
            sim.terminate()
        await sim.wait()


def pct_ms(summary: dict[str, float | int], key: str) -> float:
    """``summary[key]`` as a float; inf when the summary is empty."""
    return float(summary.get(key, math.inf))


def run_in_own_group(args: list[str], timeout: float, what: str) -> None:
    """Run ``args`` in a process group of its own; past ``timeout`` seconds kill the
    group (the run's simulator and Prometheus with it) and stop with an error, instead
    of waiting for a run that hangs. Raises SystemExit on a failed or killed run."""
    child = subprocess.Popen(args, start_new_session=True)
    try:
        code = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Where it waits, on its stderr (run_one): threads, then the loop's tasks.
        for sig in (signal.SIGUSR2, signal.SIGUSR1):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, sig)
            time.sleep(2.0)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        msg = (
            f"{what}: the run did not finish within {timeout:.0f} s; killed with its"
            " processes (where it waited is printed above)"
        )
        raise SystemExit(msg) from None
    except BaseException:  # Ctrl-C: the run's processes must not outlive the benchmark
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        raise
    if code != 0:
        msg = f"{what}: the run failed (exit status {code}; its output is above)"
        raise SystemExit(msg)


def measure(opts: Options) -> dict[str, Any]:
    """One run in a fresh process (its RSS is that N's alone); printed."""
    with tempfile.TemporaryDirectory(prefix="rw-scale-") as tmp:
        out = Path(tmp) / "result.json"
        args = [
            sys.executable,
            __file__,
            f"--one={opts.accounts}",
            f"--seconds={opts.seconds}",
            f"--warmup={opts.warmup}",
            f"--gap={opts.gap}",
            f"--scrape-interval={opts.scrape_interval}",
            f"--loop={opts.loop}",
            f"--transport={opts.transport}",
            f"--gc={opts.gc}",
            f"--heap-trim={'on' if opts.heap_trim else 'off'}",
            f"--cpus={opts.cpus}",
            f"--history={opts.history:g}",
            f"--notify={opts.notify}",
            f"--out={out}",
        ]
        if opts.profile is not None:
            args.append(f"--profile={opts.profile}")
        run_in_own_group(args, opts.warmup + opts.seconds + RUN_SLACK, f"N={opts.accounts}")
        r: dict[str, Any] = json.loads(out.read_text())
    s, lag = r["scrape_prometheus"], r["loop_lag"]
    load = ", ".join(f"{x:.2f}" for x in r["load_average"])
    print(
        f"N={opts.accounts:5d} scrape every {opts.scrape_interval:g} s, {opts.loop},"
        f" {opts.transport}, gc {opts.gc}, heap trim {'on' if opts.heap_trim else 'off'},"
        f" cpus {r['cpus']},"
        f" history {opts.history:g} s{', notify ' + opts.notify if opts.notify else ''}"
        f" ({r['seconds']:.0f} s, load {load}):"
        f" CPU {r['cpu_share_of_one_core'] * 100:5.1f}% of a core"
        f" ({r['cpu_us_per_frame']} µs per frame, {r['frames_per_s']:.0f} frames/s),"
        f" RSS {r['rss_mb']:.0f} MB (window min {r['rss_window_mb']['min']:.0f},"
        f" median {r['rss_window_mb']['median']:.0f}, max {r['rss_window_mb']['max']:.0f}),"
        f" scrape p50 {pct_ms(s, 'p50_ms'):.1f}"
        f" p99 {pct_ms(s, 'p99_ms'):.1f} ms ({r['scrapes_failed']} of {r['scrapes']} failed,"
        f" {r['scrape_series']} series),"
        f" lag p99 {pct_ms(lag, 'p99_ms'):.1f} max {pct_ms(lag, 'max_ms'):.1f} ms,"
        f" trigger→write p99 {pct_ms(r['daemon_trigger'], 'p99_ms'):.2f} ms,"
        f" pulse_to_action p99 {pct_ms(r['pulse_to_action'], 'p99_ms'):.2f} ms,"
        f" wire p99 {pct_ms(r['wire'], 'p99_ms'):.2f} ms ({r['trips']} trips,"
        f" {r['late_trips']} late), state write errors {r['state_errors']:g},"
        f" {'ready' if r['ready_at_end'] else 'NOT READY: ' + r['not_ready_because']}",
        flush=True,
    )
    delivered = r["frames_per_s"] / r["frames_expected_per_s"]
    if delivered < DELIVERED_ENOUGH:
        print(
            f"  LOAD NOT DELIVERED: the simulator sent {r['frames_per_s']:.0f} of the"
            f" {r['frames_expected_per_s']} frames a second ({delivered:.0%}): it fell"
            " behind, pulses came late, and the figures above are not those of N accounts"
            ' pulsed every second (docs/performance.md, "What held the event loop")',
            flush=True,
        )
    speed = r["machine_speed_ms"]
    print(
        f"  machine: a fixed piece of Python took {speed['before']:.1f} ms of CPU before the"
        f" window, {speed['after']:.1f} ms after it",
        flush=True,
    )
    print(
        "  garbage collections: "
        + ", ".join(
            f"{g} {c['collections']} ({c['ms_per_s']:.1f} ms/s, max {c['max_ms']:.1f} ms)"
            for g, c in r["gc_collections"].items()
        ),
        flush=True,
    )
    if r.get("profile"):
        us = r["profile"]["us_per_frame"]
        print(
            "  µs of CPU per frame by stage: "
            + ", ".join(f"{k} {v:.2f}" for k, v in us.items() if v >= 0.005)
            + f" (total {sum(us.values()):.2f}; {r['profile']['raw']})",
            flush=True,
        )
    return r


def dump_tasks() -> None:
    """Print where every task of the running loop waits, down its chain of awaits
    (SIGUSR1: a run past its time)."""
    for task in asyncio.all_tasks():
        print(f"task {task.get_name()}:", file=sys.stderr)
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                print(f"  {code.co_filename}:{frame.f_lineno} {code.co_name}", file=sys.stderr)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    sys.stderr.flush()


async def run_answering_dumps(opts: Options, folder: Path) -> dict[str, Any]:
    """:func:`run`, with SIGUSR1 printing the loop's tasks (:func:`run_in_own_group`)."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    return await run(opts, folder)


def run_one(opts: Options, out: Path) -> None:
    """``--one N``: the run of :func:`measure`, in this (fresh) process. SIGUSR2 prints
    every thread's stack, even with the loop blocked; SIGUSR1 the loop's tasks."""
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    with tempfile.TemporaryDirectory(prefix="rw-scale-") as tmp:
        r = run_loop(run_answering_dumps(opts, Path(tmp)), opts.loop)
    out.write_text(json.dumps(r) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per N")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between two trips")
    parser.add_argument(
        "--scrape-interval",
        type=float,
        nargs="+",
        default=[1.0],
        help="Prometheus scrape interval(s), seconds; each N is run at each (the window"
        " is at least 3 intervals); the bisection uses the first",
    )
    parser.add_argument(
        "--loop",
        choices=["default", "uvloop", "asyncio"],
        default="default",
        help="the daemon's event loop: as `riskwatch run` picks it (default), or forced",
    )
    parser.add_argument(
        "--transport",
        choices=["websockets", "aiohttp"],
        default="websockets",
        help="the daemon's WebSocket library (config exchange.transport)",
    )
    parser.add_argument(
        "--gc",
        choices=["policy", "interpreter"],
        default="policy",
        help="the garbage collector: riskwatch run's policy (riskwatch/daemon/gcpolicy.py),"
        " or the interpreter's with the start-up objects frozen",
    )
    parser.add_argument(
        "--heap-trim",
        choices=["on", "off"],
        default="on",
        help="give free C heap pages back every 10 s as riskwatch run does"
        " (riskwatch/daemon/heaptrim.py), or not",
    )
    parser.add_argument(
        "--cpus",
        choices=["separate", "shared"],
        default="separate",
        help="the daemon on a CPU of its own, the simulator and Prometheus on the others"
        " (with two CPUs or more), or all left to the scheduler",
    )
    parser.add_argument(
        "--history",
        type=float,
        default=86_400.0,
        help="seconds of window history every account starts with (fill_history;"
        " default a day: the steady state of the rule pack's 24 h drawdown; 0: none)",
    )
    parser.add_argument(
        "--notify",
        default="",
        help="an apprise URL the daemon routes every notification to (e.g. a json://"
        " webhook on loopback); default none: alerts go nowhere but /metrics",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="folder: sample the daemon with py-spy during each window and print the"
        " CPU per frame by stage (bench/stages.py)",
    )
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

    def options(n: int, seconds: float, interval: float) -> Options:
        profile = None
        if args.profile is not None and args.one is not None:
            profile = args.profile  # the file measure() chose
        elif args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            profile = (args.profile / f"scale-{n}-{interval:g}s.txt").resolve()
        return Options(
            accounts=n,
            seconds=max(seconds, 3 * interval),
            warmup=args.warmup,
            gap=args.gap,
            scrape_interval=interval,
            loop=args.loop,
            transport=args.transport,
            gc=args.gc,
            heap_trim=args.heap_trim == "on",
            cpus=args.cpus,
            history=args.history,
            notify=args.notify,
            profile=profile,
        )

    if args.one is not None:
        run_one(options(args.one, args.seconds, args.scrape_interval[0]), args.out)
        return
    results = [
        measure(options(n, args.seconds, interval))
        for interval in args.scrape_interval
        for n in sorted(args.accounts)
    ]
    first = [r for r in results if r["scrape_interval_s"] == args.scrape_interval[0]]
    bisect: list[dict[str, Any]] = []
    ok = [r["accounts"] for r in first if r["keeps_up"]]
    bad = [r["accounts"] for r in first if not r["keeps_up"]]
    lo, hi = (max(ok) if ok else 0), (min(bad) if bad else 0)
    for _ in range(args.bisect):
        if not hi or hi - lo <= max(10, lo // 10):
            break
        mid = round(math.sqrt(max(lo, 1) * hi) / 10) * 10 or 10
        if mid in (lo, hi):
            break
        r = measure(options(mid, args.bisect_seconds, args.scrape_interval[0]))
        bisect.append(r)
        lo, hi = (mid, hi) if r["keeps_up"] else (lo, mid)
    largest = {
        "accounts": lo,
        "first_failing": hi or None,
        "criterion": f"event-loop lag p99 < {LAG_LIMIT * 1e3:.0f} ms",
        "scrape_interval_s": args.scrape_interval[0],
    }
    print(
        f"largest N that keeps the lag p99 under {LAG_LIMIT * 1e3:.0f} ms"
        f" (scrape every {args.scrape_interval[0]:g} s): {lo}"
        + (f" (N = {hi} does not)" if hi else " (every N tried)")
    )
    write_result("scale", {"results": results, "bisect": bisect, "largest_n": largest})


if __name__ == "__main__":
    main()
