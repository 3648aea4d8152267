"""The peer path: exporter + Prometheus alert rule + Alertmanager + webhook, timed.

Run: ``.venv/bin/python bench/bench_peer_path.py [--common-trials 1] [--tuned-trials 3]``
(needs Debian's ``prometheus`` and ``prometheus-alertmanager``; about 1-2 minutes).

The same breach (the crash account's mark drops to 170: margin usage > 0.95) travels
two ways in one run, both ending at webhook receivers in this process:

- riskwatch: its rule notifies at once (webhook ``/rw``); its action time comes from
  ``build/bench/reaction.json`` (bench_reaction.py, run first);
- the peer path: riskwatch's own ``/metrics`` as the exporter, a real Prometheus with
  the alert rule ``riskwatch_margin_usage_ratio > 0.95``, a real Alertmanager, and its
  webhook (``/am``); once with common settings (15 s scrape and evaluation, 30 s
  ``group_wait``) and once tuned hard (1 s, 1 s, 0 s).

t0 is the simulator writing the first frame of the breaching pulse (pulses every 1 s).
Each trial starts a fresh stack. Writes ``build/bench/peer_path.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_reaction import ACCOUNT, CRASH, RULE, StampingSimulator
from common import (
    OUT_DIR,
    Daemon,
    daemon_config,
    free_port,
    summary_ms,
    wait_http,
    webhook,
    write_result,
)

from riskwatch.sim.scenario import load_scenario

SETTINGS = {"common": (15, 15, 30), "tuned": (1, 1, 0)}


def _prometheus(work: Path, target: int, am: int, scrape: int, evaluate: int) -> Path:
    (work / "peer.rules.yml").write_text(
        "groups:\n  - name: peer\n    rules:\n      - alert: MarginUsageCritical\n"
        "        expr: riskwatch_margin_usage_ratio > 0.95\n"
    )
    cfg = work / "prometheus.yml"
    cfg.write_text(
        f"global: {{scrape_interval: {scrape}s, evaluation_interval: {evaluate}s}}\n"
        "rule_files: [peer.rules.yml]\n"
        f"alerting: {{alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{am}']}}]}}]}}\n"
        f"scrape_configs: [{{job_name: riskwatch, static_configs: [{{targets: ['127.0.0.1:{target}']}}]}}]\n"
    )
    return cfg


def _alertmanager(work: Path, hook: int, group_wait: int) -> Path:
    cfg = work / "alertmanager.yml"
    cfg.write_text(
        f"route: {{receiver: hook, group_wait: {group_wait}s, group_interval: 1m, repeat_interval: 4h}}\n"
        f"receivers: [{{name: hook, webhook_configs: [{{url: 'http://127.0.0.1:{hook}/am', send_resolved: false}}]}}]\n"
    )
    return cfg


async def trial(work: Path, setting: str) -> dict[str, float | None]:
    scrape, evaluate, group_wait = SETTINGS[setting]
    scenario = load_scenario("crash")
    procs: list[subprocess.Popen[bytes]] = []
    async with webhook() as hook, StampingSimulator(scenario, pulse_interval=1.0) as sim:
        rules = work / "bench.rules.yaml"
        rules.write_text(RULE)
        port, prom_port, am_port = free_port(), free_port(), free_port()
        cfg = daemon_config(
            work / "riskwatch.yaml",
            trade_url=sim.trade_url,
            rest_url=sim.rest_url,
            accounts=[(ACCOUNT, scenario.accounts[0].public_key)],
            port=port,
            rules=[rules],
            webhook=f"json://127.0.0.1:{hook.port}/rw",
            mode="dry-run",  # the breach must stay visible for the peer path
        )
        daemon = Daemon(cfg, port)
        daemon.start()
        try:
            procs.append(
                subprocess.Popen(
                    [
                        "prometheus-alertmanager",
                        f"--config.file={_alertmanager(work, hook.port, group_wait)}",
                        f"--storage.path={work}/am",
                        f"--web.listen-address=127.0.0.1:{am_port}",
                        "--cluster.listen-address=",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=(work / "am.log").open("wb"),
                )
            )
            procs.append(
                subprocess.Popen(
                    [
                        "prometheus",
                        f"--config.file={_prometheus(work, port, am_port, scrape, evaluate)}",
                        f"--storage.tsdb.path={work}/prom",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=(work / "prom.log").open("wb"),
                )
            )
            await wait_http(f"http://127.0.0.1:{port}/readyz", timeout=30)
            await wait_http(f"http://127.0.0.1:{prom_port}/-/ready", timeout=30)
            await wait_http(f"http://127.0.0.1:{am_port}/-/ready", timeout=30)
            await asyncio.sleep(2 * scrape + 0.5)  # Prometheus has scraped the calm account
            await sim.set_mark("AAPL-USD", CRASH)
            sim.armed = True
            while sim.armed:
                await asyncio.sleep(0.001)
            t0 = sim.stamp - time.time() + time.perf_counter()
            deadline = time.monotonic() + 3 * (scrape + evaluate + group_wait) + 20
            rw = am = None
            while time.monotonic() < deadline and am is None:
                for t, body in hook.received:
                    path = "am" if isinstance(body, dict) and "alerts" in body else "rw"
                    if path == "rw" and rw is None:
                        rw = t - t0
                    if path == "am" and am is None:
                        am = t - t0
                await asyncio.sleep(0.01)
            return {"riskwatch_notification_s": rw, "peer_webhook_s": am}
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=10)
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--common-trials", type=int, default=1)
    parser.add_argument("--tuned-trials", type=int, default=3)
    args = parser.parse_args()
    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            raise SystemExit(f"{binary} not found: run scripts/ci-apt.sh")
    results: dict[str, list[dict[str, float | None]]] = {"common": [], "tuned": []}
    for setting, count in (("tuned", args.tuned_trials), ("common", args.common_trials)):
        for i in range(count):
            with tempfile.TemporaryDirectory(prefix="rw-peer-") as tmp:
                r = asyncio.run(trial(Path(tmp), setting))
            results[setting].append(r)
            print(f"{setting} trial {i + 1}: {r}")
    reaction: dict[str, Any] = {}
    with_reaction = OUT_DIR / "reaction.json"
    if with_reaction.exists():
        reaction = json.loads(with_reaction.read_text())
    act_p50 = reaction.get("frame_to_commands", {}).get("p50_ms")
    # The wire-to-wire action time of bench_pulse_to_action.py (simulator in its own
    # process), N = 1, when it was run: the ratio is given against both.
    wire_p50 = None
    with_trips = OUT_DIR / "pulse_to_action.json"
    if with_trips.exists():
        runs = json.loads(with_trips.read_text()).get("runs", [])
        wire_p50 = next((r["wire"]["p50_ms"] for r in runs if r.get("accounts") == 1), None)
    doc: dict[str, Any] = {"settings_s": SETTINGS, "trials": results, "ratios": {}}
    for setting, rows in results.items():
        peer = [r["peer_webhook_s"] for r in rows if r["peer_webhook_s"] is not None]
        rw = [r["riskwatch_notification_s"] for r in rows if r["riskwatch_notification_s"]]
        if not peer:
            continue
        peer_ms = summary_ms(peer)
        rw_ms = summary_ms(rw)
        ratios = {
            "peer_over_riskwatch_notification": round(peer_ms["p50_ms"] / rw_ms["p50_ms"], 1)
            if rw
            else None,
            "peer_over_riskwatch_action": round(peer_ms["p50_ms"] / act_p50, 1)
            if act_p50
            else None,
            "peer_over_riskwatch_action_wire": round(peer_ms["p50_ms"] / wire_p50, 1)
            if wire_p50
            else None,
        }
        doc["ratios"][setting] = {"peer": peer_ms, "riskwatch_notification": rw_ms, **ratios}
        print(f"{setting}: peer p50 {peer_ms['p50_ms']:.0f} ms; ratios {ratios}")
    write_result("peer_path", doc)


if __name__ == "__main__":
    main()
