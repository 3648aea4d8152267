"""Reaction time: breaching frame written by the simulator → protective commands received.

Run: ``.venv/bin/python bench/bench_reaction.py [--trips 200]`` (about 30 s).

The simulator (in this process) serves one leveraged account (AAPL long, 10x, as in
the crash scenario) with pulses driven by the benchmark; the daemon is a real
``riskwatch run`` subprocess, actions ``armed``, with one rule::

    when: margin_usage > 0.95   actions: [cancel_all_orders, {close_position: all}]

Each trip: a calm pulse (mark 200: the alert resolves), then the mark is moved to 170
and a pulse is sent. t0 is the moment the simulator writes the first frame of that
pulse (the AAPL ``position_response``: the earliest frame that shows the breach);
the trip ends when the simulator has received both ``cancel_all_orders`` and
``close_position``, and the webhook receiver the notification. Reported: p50, p99 and
max of both, next to a bare websockets echo round trip measured in the same run
(the floor of anything measured over a socket). Between trips the position is put back.

``--mark-lead``: the mark-price lead instead. Market data on, pulses every second from
the simulator's own loop; the mark drops to the breaching price at a random moment
between pulses, and the lead is the time from the notification (the breach detected
from the mark) to the next exchange pulse. Writes ``build/bench/mark_lead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Self

from bench_echo import echo_rtts
from common import Daemon, daemon_config, free_port, summary_ms, wait_http, webhook, write_result

from riskwatch.sim.scenario import load_scenario
from riskwatch.sim.server import Simulator

ACCOUNT = "desk-a"
RULE = """rules:
  - name: BenchCrash
    scope: account
    when: margin_usage > 0.95
    severity: critical
    actions: [cancel_all_orders, {close_position: all}]
    summary: "margin usage {{ margin_usage | pct }} on {{ account }}"
"""
CALM, CRASH = 200.0, 170.0


class StampingSimulator(Simulator):
    """The simulator, stamping (wall time) the first position frame it writes after arm()."""

    armed = False
    stamp = 0.0

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        return self

    async def _reply(self, conn: Any, frame: dict[str, Any]) -> None:
        if self.armed and "position_response" in frame:
            self.stamp = time.time()
            self.armed = False
        await super()._reply(conn, frame)


def _commands_after(sim: Simulator, index: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in sim.received_commands(ACCOUNT)[index:]:
        if isinstance(f.frame, dict):
            out.setdefault(str(f.frame.get("type")), f.time)
    return out


async def reaction(trips: int, work: Path) -> dict[str, Any]:
    scenario = load_scenario("crash")
    async with webhook() as hook, StampingSimulator(scenario, pulse_interval=3600.0) as sim:
        rules = work / "bench.rules.yaml"
        rules.write_text(RULE)
        port = free_port()
        cfg = daemon_config(
            work / "riskwatch.yaml",
            trade_url=sim.trade_url,
            rest_url=sim.rest_url,
            accounts=[(ACCOUNT, scenario.accounts[0].public_key)],
            port=port,
            rules=[rules],
            webhook=f"json://127.0.0.1:{hook.port}/hook",
        )
        daemon = Daemon(cfg, port)
        daemon.start()
        try:
            await wait_http(f"http://127.0.0.1:{port}/healthz", timeout=20)
            while not sim.received_commands(ACCOUNT):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            ledger = sim.exchange.ledgers[ACCOUNT]
            saved = copy.deepcopy(ledger.positions)
            orders = copy.deepcopy(ledger.orders)
            actions: list[float] = []
            notes: list[float] = []
            missing = 0
            for trip in range(trips + 5):
                ledger.positions = copy.deepcopy(saved)
                ledger.orders = copy.deepcopy(orders)
                await sim.set_mark("AAPL-USD", CALM)
                await sim.pulse_now()
                await asyncio.sleep(0.02)
                index = len(sim.received_commands(ACCOUNT))
                seen = len(hook.received)
                await sim.set_mark("AAPL-USD", CRASH)
                sim.armed = True
                await sim.pulse_now()
                t0 = sim.stamp
                deadline = time.monotonic() + 2.0
                cmds: dict[str, float] = {}
                while time.monotonic() < deadline:
                    cmds = _commands_after(sim, index)
                    if "cancel_all_orders" in cmds and "close_position" in cmds:
                        break
                    await asyncio.sleep(0.0005)
                got_note = await hook.wait(seen + 1, 0.1)
                if trip < 5:
                    continue  # warm-up
                if "cancel_all_orders" in cmds and "close_position" in cmds:
                    actions.append(max(cmds["cancel_all_orders"], cmds["close_position"]) - t0)
                else:
                    missing += 1
                if got_note:
                    # The webhook stamps with perf_counter; convert via the offset now.
                    offset = time.time() - time.perf_counter()
                    notes.append(hook.received[seen][0] + offset - t0)
            return {"actions": actions, "notifications": notes, "missing_actions": missing}
        finally:
            daemon.stop()


async def mark_lead(trips: int, work: Path) -> dict[str, Any]:
    scenario = load_scenario("crash")
    async with webhook() as hook, Simulator(scenario, pulse_interval=1.0) as sim:
        rules = work / "bench.rules.yaml"
        rules.write_text(RULE)
        port = free_port()
        cfg = daemon_config(
            work / "riskwatch.yaml",
            trade_url=sim.trade_url,
            rest_url=sim.rest_url,
            mds_url=sim.mds_url,
            accounts=[(ACCOUNT, scenario.accounts[0].public_key)],
            port=port,
            rules=[rules],
            webhook=f"json://127.0.0.1:{hook.port}/hook",
        )
        daemon = Daemon(cfg, port)
        daemon.start()
        pulses: list[float] = []
        original = sim._pulse

        async def stamped_pulse() -> None:
            pulses.append(time.perf_counter())
            await original()

        sim._pulse = stamped_pulse  # type: ignore[method-assign]
        leads: list[float] = []
        ledger = sim.exchange.ledgers[ACCOUNT]
        saved = copy.deepcopy(ledger.positions)
        rng = random.Random(7)
        try:
            await wait_http(f"http://127.0.0.1:{port}/readyz", timeout=20)
            for _ in range(trips):
                ledger.positions = copy.deepcopy(saved)
                await sim.set_mark("AAPL-USD", CALM)
                n = len(pulses)
                while len(pulses) < n + 2:  # a calm pulse, then a random point after it
                    await asyncio.sleep(0.005)
                await asyncio.sleep(rng.uniform(0.05, 0.9))
                seen = len(hook.received)
                await sim.set_mark("AAPL-USD", CRASH)
                if not await hook.wait(seen + 1, 2.0):
                    continue
                detected = hook.received[seen][0]
                while not pulses or pulses[-1] < detected:
                    await asyncio.sleep(0.005)
                nxt = min(p for p in pulses if p >= detected)
                leads.append(nxt - detected)
        finally:
            daemon.stop()
        return {"leads": leads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trips", type=int, default=200)
    parser.add_argument("--mark-lead", action="store_true", help="measure the mark-price lead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rw-bench-") as tmp:
        if args.mark_lead:
            res = asyncio.run(mark_lead(args.trips, Path(tmp)))
            stats = summary_ms(res["leads"])
            print(f"mark-price lead before the next pulse: {stats}")
            write_result("mark_lead", {"lead_before_next_pulse": stats, "pulse_interval_s": 1.0})
            return
        echo = summary_ms(asyncio.run(echo_rtts(3000)))
        res = asyncio.run(reaction(args.trips, Path(tmp)))
    act, note = summary_ms(res["actions"]), summary_ms(res["notifications"])
    print(f"echo RTT floor       p50 {echo['p50_ms']:.3f} ms  p99 {echo['p99_ms']:.3f} ms")
    for label, s in (("frame -> commands", act), ("frame -> webhook", note)):
        if s["count"]:
            print(
                f"{label:20} p50 {s['p50_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms"
                f"  max {s['max_ms']:.3f} ms  ({s['count']} trips)"
            )
    if res["missing_actions"]:
        print(f"trips without both commands within 2 s: {res['missing_actions']}")
    ratio = act["p99_ms"] / echo["p99_ms"] if act["count"] else None
    write_result(
        "reaction",
        {
            "echo_rtt": echo,
            "frame_to_commands": act,
            "frame_to_notification": note,
            "missing_actions": res["missing_actions"],
            "p99_over_echo_p99": round(ratio, 2) if ratio else None,
        },
    )


if __name__ == "__main__":
    main()
