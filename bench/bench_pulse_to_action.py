"""Pulse-to-action: one account trips at a time while N accounts × 20 symbols stream.

Run: ``.venv/bin/python bench/bench_pulse_to_action.py [--accounts 1 20 100] [--trips 200]
[--loop default|uvloop|asyncio] [--stages]`` (about 30 s per N). Writes ``build/bench/pulse_to_action.json``.

Two processes. The simulator runs in its own process (``bench/trip_sim.py``): N accounts
× 20 symbols, each connection pulsed every second at its own phase (1 Hz; N = 1 pulses
every 0.1 s so that 200 trips take 40 s instead of 7 minutes: the daemon is idle
between pulses either way). It trips one account at a time (at most one trip every
0.1 s, round robin): the account's ``S00-USD`` position goes from 10 to 20 on its next
pulse and the rule ``position > 15`` asks for ``close_position``. The daemon runs in
this process (``riskwatch.daemon.app.Daemon``, actions armed, state database on disk, the
default rule pack of ``rules/`` plus the trip rule), alone on its event loop, run as
``riskwatch run`` runs it (``riskwatch/daemon/eventloop.py``: uvloop where installed,
the short thread switch interval; ``--loop asyncio`` for the standard loop) with its
garbage-collector policy (``riskwatch/daemon/gcpolicy.py``).

Measured, per trip:

- ``wire``: the simulator process writes the first frame of the breaching pulse → the
  simulator process reads ``close_position`` (both stamps in that process);
- ``daemon_trigger``: the daemon receives the frame that tripped the rule (the pulse's
  ``balance_response``, which closes the burst: core.py) → the command's socket write
  starts (``ws.send``), stamped in this process;
- ``daemon_burst``: the daemon receives the *first* frame of the breaching pulse → the
  command's write (includes receiving the rest of the burst);
- ``pulse_to_action``: the values ``riskwatch_pulse_to_action_seconds`` observes
  (trigger frame received → command handed to the socket), kept by the bench's probe;
- with ``--stages``, where the tripping frame's handling spends its time: the fold of
  held repeats, the evaluation before and after the intent, the intent itself
  (``bench/trip_stages.py``).

The floors, measured in the same run before the daemon starts: a bare websockets echo
round trip in one process (``bench_echo.echo_rtts``) and between this process and an
echo server in the simulator's process (the same path as a trip's two hops).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_echo import FRAME, echo_rtts
from common import ROOT, SIM_SECRET, sim_env, summary_ms, write_result
from trip_stages import STAGES, TripStages
from websockets.asyncio.client import ClientConnection, connect

from riskwatch.config import load_config
from riskwatch.daemon import eventloop
from riskwatch.daemon.app import Daemon
from riskwatch.daemon.serve import memory_upkeep
from riskwatch.model import Event
from riskwatch.qfex import client as client_mod
from riskwatch.qfex.session import TradeSession
from riskwatch.rules.load import load_rule_files
from riskwatch.store import Store

TRIP_RULE = """rules:
  - name: BenchPositionCap
    scope: position
    when: position > 15
    severity: critical
    actions: [close_position]
    summary: "{{ symbol }} position {{ position }} on {{ account }}"
"""


async def remote_echo(url: str, count: int, pause: float = 0.0) -> list[float]:
    """``count`` round trips to the echo server in the simulator's process, back to
    back or ``pause`` seconds apart (both processes idle in between, as between pulses:
    each trip then pays the wake-up of an idle process, twice)."""
    async with connect(url, compression=None, proxy=None) as ws:
        out = []
        warm = 200 if not pause else 5
        for i in range(count + warm):
            if pause:
                await asyncio.sleep(pause)
            t0 = time.perf_counter()
            await ws.send(FRAME)
            await ws.recv()
            if i >= warm:
                out.append(time.perf_counter() - t0)
        return out


class Probe:
    """Daemon-side stamps: frame receive times per account, command write times."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.burst: dict[str, float] = {}
        self.trigger: list[float] = []
        self.from_burst: list[float] = []
        self.latencies: list[float] = []

    def wrap(self, daemon: Daemon) -> None:
        histogram = daemon.metrics.pulse_to_action_seconds
        latencies = self.latencies

        class Observed:
            """The pulse-to-action histogram, its observations kept for percentiles."""

            def observe(self, value: float) -> None:
                latencies.append(value)
                histogram.observe(value)

        daemon.metrics.pulse_to_action_seconds = Observed()  # type: ignore[assignment]
        # The frame handler (riskwatch/daemon/frames.py); trees before that module had
        # it on the Daemon itself, and the bench also runs against them (before/after).
        owner: Any = getattr(daemon, "frames", daemon)
        name = "on_trade_events" if hasattr(owner, "on_trade_events") else "_on_trade_events"
        inner = getattr(owner, name)

        def on_events(account: str, events: Sequence[Event], now: float) -> list[str]:
            if now - self.last.get(account, 0.0) > 0.05:
                self.burst[account] = now  # first frame of a pulse burst
            self.last[account] = now
            frames: list[str] = inner(account, events, now)
            return frames

        setattr(owner, name, on_events)
        probe = self

        async def flush(self: Any, ws: ClientConnection, session: TradeSession) -> None:
            # TradeConnection._flush, stamped just before the command's socket write: the
            # write itself wakes the simulator's process, which the scheduler may run on
            # this CPU before the write call returns (measured: ~0.4 ms on 2 vCPUs).
            for frame in session.data_to_send():
                if '"close_position"' in frame:
                    account, written = self.account, time.time()
                    probe.trigger.append(written - probe.last[account])
                    probe.from_burst.append(written - probe.burst[account])
                await ws.send(frame)

        client_mod.TradeConnection._flush = flush  # type: ignore[method-assign, assignment]


def daemon_config(
    folder: Path,
    trade_url: str,
    rest_url: str,
    accounts: int,
    transport: str = "websockets",
    notify: str = "",
) -> Path:
    """Write the daemon's config for ``accounts`` simulated accounts; return its path.

    ``rest_url``: the simulator's reference data (``trip_sim.py`` prints it), so that the
    daemon never asks the real exchange's. ``notify``: an apprise URL for one
    notification route (apprise and its plugins are loaded then:
    riskwatch/notify/deliver.py); none by default.
    """
    (folder / "secret").write_text(SIM_SECRET + "\n")
    (folder / "trip.rules.yaml").write_text(TRIP_RULE)
    packs = sorted((ROOT / "rules").glob("*.yaml"))
    lines = ["exchange:", f"  url: {trade_url}", f"  rest_url: {rest_url}", "  stale_after: 5s"]
    if transport != "websockets":  # the default; older trees know no other
        lines.append(f"  transport: {transport}")
    lines.append("accounts:")
    for a in range(accounts):
        lines += [
            f"  - name: acc{a:03d}",
            f"    public_key: pub_acc{a:03d}",
            f"    secret_key_file: {folder / 'secret'}",
        ]
    lines.append("rules:")
    lines += [f"  - {p}" for p in [*packs, folder / "trip.rules.yaml"]]
    lines += [
        "actions:",
        "  mode: armed",
        "  max_per_account_per_hour: 100000",
        "http:",
        "  listen: 127.0.0.1:0",
        "state:",
        f"  path: {folder / 'state.db'}",
    ]
    if notify:
        lines += ["notifications:", "  routes:", "    - name: bench", f"      urls: ['{notify}']"]
    path = folder / "riskwatch.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def run(
    accounts: int, trips: int, folder: Path, stages: TripStages | None = None
) -> dict[str, Any]:
    interval = 1.0 if accounts > 1 else 0.1
    out = folder / "sim.json"
    env = sim_env()
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "trip_sim.py"),
        f"--accounts={accounts}",
        f"--interval={interval}",
        f"--trips={trips}",
        f"--out={out}",
        stdout=subprocess.PIPE,
        env=env,
    )
    assert sim.stdout is not None
    try:
        ready = (await asyncio.wait_for(sim.stdout.readline(), 60)).decode().split()
        if not ready or ready[0] != "READY":
            msg = f"simulator did not start: {ready!r}"
            raise SystemExit(msg)
        trade_url, echo_url, rest_url = ready[1], ready[2], ready[3]
        local = summary_ms(await echo_rtts(3000))
        remote = summary_ms(await remote_echo(echo_url, 3000))
        paced = summary_ms(await remote_echo(echo_url, 200, pause=0.02))
        config = load_config(daemon_config(folder, trade_url, rest_url, accounts))
        store = Store.open(config.state.path)
        daemon = Daemon(config, rules=load_rule_files(list(config.rules.files)), store=store)
        probe = Probe()
        probe.wrap(daemon)
        await daemon.start()
        try:
            async with memory_upkeep():  # as riskwatch.daemon.serve.serve() does
                line = await asyncio.wait_for(sim.stdout.readline(), 60 + trips * 0.5)
                if line.strip() != b"DONE":
                    msg = f"simulator ended early: {line!r}"
                    raise SystemExit(msg)
                await asyncio.sleep(0.1)
        finally:
            await daemon.stop()
            store.close()
        wire = json.loads(out.read_text())
    finally:
        with contextlib.suppress(ProcessLookupError):
            sim.terminate()
        await sim.wait()
    warm = len(probe.trigger) - len(wire["wire"])
    result: dict[str, Any] = {
        "accounts": accounts,
        "symbols": 20,
        "pulse_interval_s": interval,
        "echo_rtt_in_process": local,
        "echo_rtt_cross_process": remote,
        "echo_rtt_cross_process_paced": paced,
        "wire": summary_ms(wire["wire"]),
        "daemon_trigger": summary_ms(probe.trigger[warm:]),
        "daemon_burst": summary_ms(probe.from_burst[warm:]),
        "pulse_to_action": summary_ms(probe.latencies[warm:]),
        "late_trips": len(wire["late"]),
    }
    if stages is not None:
        timed = len(wire["wire"])  # the trips the simulator timed: the last ones
        for stage in STAGES:
            samples = stages.samples[stage]
            result[f"stage_{stage}"] = summary_ms(samples[-timed:] if timed else [])
    for name, echo in (("echo", local), ("cross_echo", remote), ("paced_echo", paced)):
        w99, e99 = result["wire"].get("p99_ms"), echo.get("p99_ms")
        if w99 and e99:
            result[f"wire_p99_over_{name}_p99"] = round(float(w99) / float(e99), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--trips", type=int, default=200)
    parser.add_argument(
        "--loop",
        choices=["default", "uvloop", "asyncio"],
        default="default",
        help="the daemon's event loop: as `riskwatch run` picks it (default), or forced",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="time the stages of the tripping frame's handling (bench/trip_stages.py)",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        filename=str(Path(tempfile.gettempdir()) / "rw-bench-pulse-to-action.log"),
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    runs = []
    for n in args.accounts:
        stages = TripStages() if args.stages else None
        timed = stages.installed() if stages is not None else contextlib.nullcontext()
        with timed, tempfile.TemporaryDirectory(prefix="rw-bench-") as tmp:
            res = eventloop.run(run(n, args.trips, Path(tmp), stages), args.loop)
        runs.append(res)
        print(f"N = {n} accounts × 20 symbols, pulses every {res['pulse_interval_s']} s")
        for key in (
            "echo_rtt_in_process",
            "echo_rtt_cross_process",
            "echo_rtt_cross_process_paced",
            "wire",
            "daemon_trigger",
            "daemon_burst",
            "pulse_to_action",
            *(f"stage_{stage}" for stage in STAGES if stages is not None),
        ):
            s = res[key]
            print(
                f"  {key:24} p50 {s.get('p50_ms', float('nan')):7.3f} ms"
                f"  p99 {s.get('p99_ms', float('nan')):7.3f} ms"
                f"  max {s.get('max_ms', float('nan')):7.3f} ms  (n={s['count']})"
            )
        if res["late_trips"]:
            print(f"  trips without a command before the next pulse: {res['late_trips']}")
    write_result("pulse_to_action", {"runs": runs})


if __name__ == "__main__":
    main()
