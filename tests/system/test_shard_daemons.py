"""Sharded daemons (``riskwatch run --shard I/N``) watch every account exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from riskwatch.shard import shard_of
from riskwatch.sim.scenario import load_scenario
from riskwatch.sim.server import Simulator

MS = 0.001
ACCOUNTS = [f"desk-{i}" for i in range(7)]


def _scenario(tmp_path: Path) -> Path:
    lines = ["name: shards", "duration: 600s", "symbols:", "  - {symbol: AAPL-USD, mark: 200}"]
    lines.append("accounts:")
    for name in ACCOUNTS:
        lines += [f"  - name: {name}", f"    public_key: pk-{name}", "    deposit: 10000"]
    path = tmp_path / "shards.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(tmp_path: Path, sim: Simulator, secret: Path, n: int, i: int) -> Path:
    lines = ["exchange:", f"  url: {sim.trade_url}", f"  rest_url: {sim.rest_url}", "accounts:"]
    for name in ACCOUNTS:
        lines += [
            f"  - name: {name}",
            f"    public_key: pk-{name}",
            f"    secret_key_file: {secret}",
        ]
    lines += ["http:", "  listen: 127.0.0.1:0", "state:", f"  path: {tmp_path}/s{n}-{i}.db"]
    path = tmp_path / f"riskwatch-{n}-{i}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _auths(sim: Simulator) -> dict[str, int]:
    return {
        name: sum(
            1
            for f in sim.received_commands(name)
            if isinstance(f.frame, dict) and f.frame.get("type") == "auth"
        )
        for name in ACCOUNTS
    }


@pytest.mark.timeout(60)
async def test_every_account_is_watched_exactly_once_for_1_2_3_shards(tmp_path: Path) -> None:
    """For N = 1, 2, 3 the N daemons together authenticate each account exactly once."""
    secret = tmp_path / "secret"
    secret.write_text("sim-secret")
    env = {**os.environ, "RISKWATCH_SIM_SECRET": "sim-secret"}
    async with Simulator(load_scenario(_scenario(tmp_path)), pulse_interval=3600.0) as sim:
        before = _auths(sim)
        for n in (1, 2, 3):
            procs = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "riskwatch",
                    "run",
                    "-c",
                    str(_config(tmp_path, sim, secret, n, i)),
                    "--shard",
                    f"{i}/{n}",
                    env=env,
                    stderr=asyncio.subprocess.PIPE,
                )
                for i in range(n)
            ]
            try:
                for _ in range(int(15_000 * MS / (50 * MS))):
                    now = _auths(sim)
                    if all(now[a] > before[a] for a in ACCOUNTS):
                        break
                    await asyncio.sleep(50 * MS)
                await asyncio.sleep(300 * MS)  # a duplicate would show up by now
                now = _auths(sim)
                assert {a: now[a] - before[a] for a in ACCOUNTS} == dict.fromkeys(ACCOUNTS, 1)
                before = now
            finally:
                for p in procs:
                    p.send_signal(signal.SIGTERM)
                logs = [(await p.communicate())[1].decode() for p in procs]
            assert all(p.returncode == 0 for p in procs), logs
            for i, log in enumerate(logs):
                owned = sum(1 for a in ACCOUNTS if shard_of(a, n) == i)
                if n > 1:
                    assert f"shard {i}/{n}: watching {owned} account(s)" in log
