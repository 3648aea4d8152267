"""Soak: hours of scenario time in seconds of wall time, 100 accounts, faults sprinkled in.

Memory and the number of asyncio tasks stay flat, and at the end every account's
figures equal the simulator's books. ``RISKWATCH_SOAK_SECONDS`` sets the wall time
(default 20 s, 180 s under ``-m slow``); the simulator runs at ``RISKWATCH_SOAK_SPEED``
(default 180: 20 s of wall time is one hour of scenario time).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from riskwatch.sim.scenario import parse_scenario
from tests.support.rig import Http, in_process, metric, setup_for, simulator, wait_for

ACCOUNTS = 100


def soak_seconds(config: pytest.Config) -> float:
    if "RISKWATCH_SOAK_SECONDS" in os.environ:
        return float(os.environ["RISKWATCH_SOAK_SECONDS"])
    return 180.0 if "slow" in (config.getoption("-m") or "") else 20.0


def _scenario(hours: float, rng: random.Random) -> Any:
    """100 leveraged accounts on two drifting symbols, with drops, stalls and bad frames."""
    accounts = []
    for i in range(ACCOUNTS):
        accounts.append(
            {
                "name": f"acct-{i:03d}",
                "public_key": f"qfex_pub_soak_{i:03d}",
                "deposit": 20_000 + 500 * i,
                "positions": [
                    {"symbol": "AAPL-USD", "qty": 20 + i % 30, "avg": 200, "leverage": 5},
                    {"symbol": "MSFT-USD", "qty": -(5 + i % 7), "avg": 400, "leverage": 5},
                ],
            }
        )
    duration = hours * 3600
    faults: list[dict[str, Any]] = []
    t = 120.0
    while t < duration - 300:
        kind = rng.choice(
            ["drop_connections", "drop_connections", "stall_pulses", "malformed_frame"]
        )
        fault: dict[str, Any] = {"at": f"{t:.0f}s", "kind": kind}
        if kind != "stall_pulses":
            fault["account"] = f"acct-{rng.randrange(ACCOUNTS):03d}"
        else:
            fault["seconds"] = "300ms"
        faults.append(fault)
        t += rng.uniform(120, 600)
    return parse_scenario(
        {
            "name": "soak",
            "duration": f"{duration:.0f}s",
            "symbols": [
                {
                    "symbol": "AAPL-USD",
                    "mark": 200,
                    "generators": [
                        {"kind": "random_walk", "sigma": 0.0005, "step": "10s", "seed": 1}
                    ],
                },
                {
                    "symbol": "MSFT-USD",
                    "mark": 400,
                    "generators": [
                        {"kind": "random_walk", "sigma": 0.0005, "step": "10s", "seed": 2}
                    ],
                },
            ],
            "accounts": accounts,
            "faults": faults,
        },
        "soak",
    )


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_soak_stays_flat_and_agrees_with_the_simulator(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Tasks and memory stay flat over the run, and every account's figures match at the end."""
    wall = soak_seconds(request.config)
    speed = float(os.environ.get("RISKWATCH_SOAK_SPEED", "180"))
    hours = wall * speed / 3600
    scenario = _scenario(hours + 0.1, random.Random(7))
    async with simulator(scenario, speed=speed, pulse_interval=0.5) as (sim, secret):
        setup = setup_for(sim, tmp_path, secret, mode="dry-run", stale_after="5s")
        async with in_process(setup) as daemon:
            assert daemon.http_port is not None
            http = Http(daemon.http_port)
            try:
                await wait_for(
                    lambda: all(
                        rt.core.snapshot.balance is not None for rt in daemon.accounts.values()
                    ),
                    timeout=20,
                    what="for every account's first pulse",
                )
                samples: list[tuple[float, int, float]] = []
                started = time.monotonic()
                while (elapsed := time.monotonic() - started) < wall:
                    await asyncio.sleep(min(1.0, wall / 20))
                    samples.append((elapsed, len(asyncio.all_tasks()), _rss_mb()))
                    await http.get("/metrics")  # scraped as Prometheus would
                sim.pause()
                await asyncio.sleep(1.0)  # reconnects in progress finish
                await wait_for(
                    lambda: all(
                        rt.status is not None and rt.status.authenticated
                        for rt in daemon.accounts.values()
                    ),
                    timeout=10,
                    what="for every account to be connected",
                )
                await sim.pulse_now()
                await asyncio.sleep(0.5)
                doc = json.loads((await http.get("/api/state"))[1])
                m = await http.metrics()
            finally:
                await http.close()
    warm = [s for s in samples if s[0] >= wall * 0.25]
    assert len(warm) >= 3
    tasks = [s[1] for s in warm]
    rss = [s[2] for s in warm]
    # Flat: no upward trend. The busiest sample of the last third holds at most 20 more
    # tasks than the busiest of the first third (dips while accounts reconnect are
    # fine), and memory grows by less than 30 MB.
    third = max(1, len(warm) // 3)
    assert max(tasks[-third:]) <= max(tasks[:third]) + 20, tasks
    assert max(rss[-third:]) - max(rss[:third]) < 30, rss
    matched = 0
    for acc in doc["accounts"]:
        fig = sim.ledger(acc["name"]).figures()
        f = acc["figures"]
        assert f["equity"] == pytest.approx(fig.equity, rel=1e-9), acc["name"]
        assert f["margin_usage"] == pytest.approx(fig.margin_usage, rel=1e-9), acc["name"]
        assert f["maintenance_usage"] == pytest.approx(fig.maintenance_usage, rel=1e-9)
        matched += 1
    assert matched == ACCOUNTS
    faults = scenario.faults
    drops = sum(1 for f in faults if f.kind == "drop_connections" and f.at <= hours * 3600)
    reconnects = sum(
        metric(m, "riskwatch_reconnects_total", account=a["name"]) for a in doc["accounts"]
    )
    assert reconnects >= drops
    bad = sum(metric(m, "riskwatch_messages_total", account=a["name"], kind="bad")
              for a in doc["accounts"])  # fmt: skip
    malformed = sum(1 for f in faults if f.kind == "malformed_frame" and f.at <= hours * 3600)
    assert bad >= malformed * 0.5  # a frame sent while its account reconnects is lost
    print(
        f"soak: {hours:.1f} h of scenario in {wall:.0f} s, {ACCOUNTS} accounts, "
        f"{len([f for f in faults if f.at <= hours * 3600])} faults, tasks {min(tasks)}-{max(tasks)}, "
        f"rss {rss[0]:.0f}->{rss[-1]:.0f} MB, reconnects {reconnects:.0f}, bad frames {bad:.0f}"
    )
