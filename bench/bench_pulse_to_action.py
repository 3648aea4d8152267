"""Pulse-to-action latency: from a trade frame's receive time to its command's write.

Run: ``.venv/bin/python bench/bench_pulse_to_action.py`` (``--accounts``, ``--symbols``).

The simulator streams 20 accounts × 20 symbols (a pulse every 0.2 s: 420 frames per
pulse) to the real daemon, armed, over loopback WebSockets. Every position holds 10
units at 100; then every mark drops to 90 at once, so one position-scope rule
(``unrealised_pnl < -5``, action ``close_position``) trips for each of the 400
positions on their next pulse. Each trip's latency is measured from the receive time
of the pulse frame that tripped it to the moment its ``close_position`` frame is
handed to the socket, *including* the fsync'd audit write that must precede it.
Prints p50/p99/max and writes ``build/bench/pulse_to_action.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from riskwatch.app import Daemon
from riskwatch.config import load_config
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.scenario import load_scenario
from riskwatch.sim.server import Simulator
from riskwatch.store import Store

RULES = """
rules:
  - name: PositionLoss
    scope: position
    when: unrealised_pnl < -5
    severity: critical
    actions: [close_position]
"""


def scenario_yaml(accounts: int, symbols: int) -> str:
    lines = ["name: bench", "duration: 3600s", "symbols:"]
    for s in range(symbols):
        lines += [f"  - symbol: S{s:02d}-USD", "    mark: 100", "    max_leverage: 20"]
    lines.append("accounts:")
    for a in range(accounts):
        lines += [
            f"  - name: acc{a:02d}",
            f"    public_key: pub_acc{a:02d}",
            "    deposit: 1000000",
            "    positions:",
        ]
        lines += [
            f"      - {{symbol: S{s:02d}-USD, qty: 10, avg: 100, leverage: 10}}"
            for s in range(symbols)
        ]
    return "\n".join(lines) + "\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(accounts: int, symbols: int, folder: Path) -> dict[str, object]:
    (folder / "scenario.yaml").write_text(scenario_yaml(accounts, symbols), encoding="utf-8")
    (folder / "rules.yaml").write_text(RULES, encoding="utf-8")
    scenario = load_scenario(folder / "scenario.yaml")
    secret = secrets.token_hex(16)
    (folder / "secret").write_text(secret + "\n", encoding="utf-8")
    sim_secrets = {acc.public_key: secret for acc in scenario.accounts}
    async with Simulator(scenario, sim_secrets, pulse_interval=0.2) as sim:
        sim.pause()
        lines = ["exchange:", f"  url: {sim.trade_url}", "  stale_after: 5s", "accounts:"]
        for acc in scenario.accounts:
            lines += [
                f"  - name: {acc.name}",
                f"    public_key: {acc.public_key}",
                f"    secret_key_file: {folder / 'secret'}",
            ]
        lines += [
            f"rules: [{folder / 'rules.yaml'}]",
            "actions:",
            "  mode: armed",
            "  max_per_account_per_hour: 1000",
            "http:",
            "  listen: 127.0.0.1:0",
            "state:",
            f"  path: {folder / 'state.db'}",
        ]
        (folder / "riskwatch.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = load_config(folder / "riskwatch.yaml")
        store = Store.open(config.state.path)
        daemon = Daemon(config, rules=load_rule_files(list(config.rules.files)), store=store)
        await daemon.start()
        try:
            deadline = time.monotonic() + 30
            while any(rt.core.snapshot.balance is None for rt in daemon.accounts.values()):
                if time.monotonic() > deadline:
                    raise SystemExit("accounts did not come up")
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # a few pulses of steady streaming first
            for s in range(symbols):
                await sim.set_mark(f"S{s:02d}-USD", 90.0)
            want = accounts * symbols
            deadline = time.monotonic() + 60
            while len(daemon.executor.latencies) < want and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            latencies = list(daemon.executor.latencies)
        finally:
            await daemon.stop()
            store.close()
    return {
        "accounts": accounts,
        "symbols": symbols,
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--dir", help="folder for the state database (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rw-bench-", dir=args.dir) as tmp:
        result = asyncio.run(run(args.accounts, args.symbols, Path(tmp)))
    result["python"] = platform.python_version()
    result["state_dir"] = args.dir or tempfile.gettempdir()
    out = Path("build/bench/pulse_to_action.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(
        f"pulse_to_action over {result['samples']} actions: p50 {result['p50_ms']:.3f} ms, "
        f"p99 {result['p99_ms']:.3f} ms, max {result['max_ms']:.3f} ms → {out}"
    )


if __name__ == "__main__":
    main()
