"""The simulator side of bench_pulse_to_action.py, in its own process.

Run by the benchmark (not by hand): ``python bench/trip_sim.py --accounts N --out FILE``.
Prints ``READY <trade_url> <echo_url> <rest_url>`` on stdout once the servers listen
(``rest_url`` serves the reference data: ``GET /refdata``), then:

- serves N accounts × S symbols (each holds 10 units at 100, ``S00-USD`` first) with the
  project's :class:`~riskwatch.sim.server.Simulator`; each connection is pulsed every
  ``--interval`` s at its own phase (account i at i/N of the period), as QFEX pulses
  each connection on its own timer (docs/protocol.md §4.2), so N accounts at 1 Hz are N
  bursts spread over the second rather than one burst of N × 21 frames;
- trips one account at a time: at most one trip every ``--gap`` s, on the next account
  (round robin) whose position is back to calm, by setting its ``S00-USD`` quantity to
  20 just before its pulse (the rule ``position > 15`` → ``close_position``). t0 is taken
  just before the first frame of that pulse (the breaching ``S00-USD`` position) is
  written; t1 when the ``close_position`` frame is read (both ``time.perf_counter``,
  this process). The close fills; the next pulse shows the position flat (the daemon
  confirms), then the quantity is put back to 10 for the account's next trip;
- serves a bare websockets echo on a second port (the cross-process floor).

After ``--trips`` trips (plus ``--warmup``), or on SIGTERM, it writes ``--out`` (JSON:
wire-to-wire seconds per trip, the trips without a command before the next pulse, and
the wall-clock ``time.time()`` of each, for benchmarks that keep a window) and keeps
serving until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from riskwatch.sim.scenario import parse_scenario
from riskwatch.sim.server import Simulator, _Conn, _send_text

TRIP_SYMBOL = "S00-USD"
CALM_QTY, TRIP_QTY = 10.0, 20.0


def scenario(accounts: int, symbols: int) -> dict[str, Any]:
    """N accounts × S symbols, every position long 10 at 100 (leverage 10)."""
    return {
        "name": "bench-trips",
        "duration": "24h",
        "symbols": [
            {"symbol": f"S{s:02d}-USD", "mark": 100, "max_leverage": 20} for s in range(symbols)
        ],
        "accounts": [
            {
                "name": f"acc{a:03d}",
                "public_key": f"pub_acc{a:03d}",
                "deposit": 1_000_000,
                "positions": [
                    {"symbol": f"S{s:02d}-USD", "qty": CALM_QTY, "avg": 100, "leverage": 10}
                    for s in range(symbols)
                ],
            }
            for a in range(accounts)
        ],
    }


class TripSimulator(Simulator):
    """Staggered per-connection pulses and one-at-a-time trips (module docstring)."""

    def __init__(self, *args: Any, gap: float, wanted: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gap = gap
        self.wanted = wanted
        self.state: dict[str, str] = {}  # account -> calm | tripped | closed
        self.t0: dict[str, float] = {}
        self.wire: list[tuple[str, float]] = []
        self.late: list[str] = []  # trips whose command had not come by the next pulse
        self.wire_at: list[float] = []  # time.time() of each wire entry (window filters)
        self.late_at: list[float] = []  # time.time() of each late entry
        self.next_trip = 0.0
        self.done = asyncio.Event()
        self._texts: dict[tuple[Any, ...], str] = {}  # position body values -> frame text

    async def _pulse_loop(self) -> None:
        # Replaces the shared pulse: one timer per account, phases spread over the period.
        names = sorted(self.exchange.ledgers)
        self.state = dict.fromkeys(names, "calm")
        loop = asyncio.get_running_loop()
        start = loop.time() + 1.0
        tasks = [
            asyncio.create_task(self._account_loop(n, start + i * self.pulse_interval / len(names)))
            for i, n in enumerate(names)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def _account_loop(self, account: str, at: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, at - loop.time()))
            at += self.pulse_interval
            for conn in self.connections(account):
                await self._pulse_one(conn, account)

    async def _pulse_one(self, conn: _Conn, account: str) -> None:
        ledger = self.exchange.ledgers[account]
        pos = ledger.positions[TRIP_SYMBOL]
        state = self.state[account]
        stamp = False
        if state == "tripped":
            # The command did not arrive before this pulse: not a reaction; count it.
            self.late.append(account)
            self.late_at.append(time.time())
            self.state[account] = "closed"
        elif state == "closed":
            # This pulse shows the closed position (the daemon confirms); calm afterwards.
            pass
        elif (
            state == "calm"
            and pos.qty == CALM_QTY
            and time.perf_counter() >= self.next_trip
            and len(self.wire) < self.wanted
            and "positions" in conn.channels
        ):
            pos.qty = TRIP_QTY
            self.state[account] = "tripped"
            self.next_trip = time.perf_counter() + self.gap
            stamp = True
        if "positions" in conn.channels:
            first = True
            for symbol in ledger.positions:
                text = self._position_text(ledger.position_payload(symbol))
                if first and stamp:
                    self.t0[account] = time.perf_counter()
                first = False
                await _send_text(conn.ws, text)
        if "balances" in conn.channels:
            await _send_text(conn.ws, json.dumps({"balance_response": ledger.balance_payload()}))
        if state == "closed":
            pos.qty, pos.average_price = CALM_QTY, 100.0
            self.state[account] = "calm"

    def _position_text(self, body: dict[str, Any]) -> str:
        # A position unchanged since the last pulse is sent as the same text, not encoded
        # again: json.dumps was a seventh of this process's CPU at N = 1000, and a simulator
        # that falls behind does not deliver the load it is meant to (bench/bench_scale.py).
        key = tuple(body.values())
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = json.dumps({"position_response": body})
        return text

    async def _on_text(self, conn: _Conn, text: str) -> None:
        t1 = time.perf_counter()
        account = conn.account
        if account is not None and self.state.get(account) == "tripped" and "close_pos" in text:
            self.wire.append((account, t1 - self.t0.pop(account)))
            self.wire_at.append(time.time())
            self.state[account] = "closed"
            if len(self.wire) >= self.wanted:
                self.done.set()
        await super()._on_text(conn, text)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0, help="pulse period, seconds")
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between trips")
    parser.add_argument("--trips", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sim = TripSimulator(
        parse_scenario(scenario(args.accounts, args.symbols)),
        pulse_interval=args.interval,
        gap=args.gap,
        wanted=args.trips + args.warmup,
        ping_interval=3600.0,
        rate_limit=1e9,
    )

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with sim, serve(echo, "127.0.0.1", 0, compression=None) as echo_server:
        port = next(iter(echo_server.sockets)).getsockname()[1]
        print(f"READY {sim.trade_url} ws://127.0.0.1:{port}/ {sim.rest_url}", flush=True)
        waiter = asyncio.create_task(sim.done.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        trips = sim.wire[args.warmup :]
        doc = {
            "wire": [w for _, w in trips],
            "accounts": [a for a, _ in trips],
            "late": sim.late,
            "wire_at": sim.wire_at[args.warmup :],
            "late_at": sim.late_at,
        }
        args.out.write_text(json.dumps(doc) + "\n")
        print("DONE", flush=True)
        await stop.wait()
        waiter.cancel()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
