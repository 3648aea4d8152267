"""``riskwatch replay`` prints what the daemon did: the same actions, refusals and outcomes
as the armed daemon's audit log, for the frames the daemon recorded."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon
from riskwatch.qfex.recorder import Recorder
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.scenario import load_scenario
from riskwatch.sim.server import Simulator
from riskwatch.store import Store
from tests.integration.test_replay_crash import SPEED, ScaledClock
from tests.support.daemon_harness import daemon_config_text
from tests.support.paths import REPO as ROOT

RUN_UNTIL = 60.0
"""Scenario seconds: every rule of the default pack that acts on the crash has acted,
and the circuit breaker has refused the last ones."""

Row = tuple[str, str, str | None, int, str, str]


def _code(status: str, detail: str | None) -> str:
    if status in ("refused", "failed") and detail:
        return detail.split(":", 1)[0]
    return ""


async def _armed_crash(folder: Path) -> tuple[Path, Path, list[Row]]:
    """Sim + armed daemon (default pack, --record) through the crash; the audit log."""
    scenario = load_scenario("crash")
    secret = "s3cr3t-for-replay-audit"
    secret_file = folder / "secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    clock = ScaledClock(SPEED)
    recording = folder / "crash.jsonl"
    async with Simulator(
        scenario,
        {a.public_key: secret for a in scenario.accounts},
        speed=SPEED,
        pulse_interval=1.0 / SPEED,
        clock=clock,
    ) as sim:
        text = daemon_config_text(
            sim,
            scenario,
            secret_file,
            folder / "state.db",
            stale_after="5s",
            extra=(
                f"rules: ['{ROOT / 'rules'}/*.yaml']\n"
                "actions:\n  mode: armed\n  max_per_account_per_hour: 4\n"
            ),
        )
        config_path = folder / "riskwatch.yaml"
        config_path.write_text(text, encoding="utf-8")
        config = load_config(config_path)
        rules = load_rule_files(list(config.rules.files))
        store = Store.open(folder / "state.db")
        daemon = Daemon(config, rules=rules, clock=clock, recorder=Recorder(recording), store=store)
        await daemon.start()
        try:
            await asyncio.sleep(max(0.0, RUN_UNTIL - sim.scenario_time()) / SPEED)
        finally:
            await daemon.stop()
        rows = [
            (r.rule, r.action, r.symbol, r.attempt, r.status, _code(r.status, r.detail))
            for r in reversed(store.actions(limit=1000))
        ]
        store.close()
    return recording, config_path, rows


@pytest.fixture(scope="module")
def armed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Row]]:
    return asyncio.run(_armed_crash(tmp_path_factory.mktemp("armed-crash")))


@pytest.mark.timeout(60)
def test_replay_prints_the_daemons_actions_refusals_and_outcomes(
    armed: tuple[Path, Path, list[Row]],
) -> None:
    """Replay's audit log (and timeline) equals the live daemon's, row for row."""
    recording, config_path, live = armed
    statuses = {row[4] for row in live}
    assert "confirmed" in statuses  # the daemon acted, and the exchange confirmed it
    assert any(row[5] == "CIRCUIT_BREAKER_OPEN" for row in live)  # and refused some
    cmd = [sys.executable, "-m", "riskwatch", "replay", str(recording), "-c", str(config_path)]
    js = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=30, check=False)
    assert js.returncode == 0, js.stderr
    doc: dict[str, Any] = json.loads(js.stdout)
    replayed = [
        (r["rule"], r["action"], r["symbol"], r["attempt"], r["status"],
         _code(r["status"], r["detail"]))
        for r in doc["audit"]
    ]  # fmt: skip
    assert replayed == live
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert text.returncode == 0, text.stderr
    for rule, action, symbol, _attempt, status, code in live:
        kind = {"confirmed": "SENT", "refused": "REFUSED"}.get(status)
        if kind is None:
            continue
        line = next(
            (ln for ln in text.stdout.splitlines()
             if f"{rule} {kind} {action}" in ln and (symbol is None or symbol in ln)),
            None,
        )  # fmt: skip
        assert line is not None, (rule, kind, action, text.stdout)
        if code:
            assert code in line
    assert "CONFIRMED" in text.stdout
