"""Replay of a recording made by the real daemon against the simulator's crash scenario."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon
from riskwatch.offline.replay import cores_for, replay
from riskwatch.qfex.recorder import (
    RULE_TICK,
    RecordedDisconnect,
    RecordedFrame,
    RecordedTick,
    Recorder,
    read_recording,
)
from riskwatch.rules.engine import Decision
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.scenario import load_scenario
from riskwatch.sim.server import Simulator
from tests.support.daemon_harness import daemon_config_text
from tests.support.paths import REPO as ROOT

SPEED = 10.0
"""Scenario seconds per wall second: the crash's first 45 s take 4.5 s."""
RUN_UNTIL = 45.0
"""Scenario seconds to record: both margin rules have fired by then."""


class ScaledClock:
    """Unix time running ``speed`` times faster than the wall clock, from now."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.t0 = time.time()
        self.m0 = time.monotonic()

    def now(self) -> float:
        return self.t0 + (time.monotonic() - self.m0) * self.speed


async def _record_crash(folder: Path) -> tuple[Path, Path, list[Decision], float]:
    """Run sim + daemon (with the default pack and --record) through the crash."""
    scenario = load_scenario("crash")
    secret = "s3cr3t-for-replay-test"
    secret_file = folder / "secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    clock = ScaledClock(SPEED)
    recording = folder / "crash.jsonl"
    live: list[Decision] = []
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
            extra=f"rules: ['{ROOT / 'rules'}/*.yaml']\n",
        )
        config_path = folder / "riskwatch.yaml"
        config_path.write_text(text, encoding="utf-8")
        config = load_config(config_path)
        rules = load_rule_files(list(config.rules.files))
        daemon = Daemon(config, rules=rules, clock=clock, recorder=Recorder(recording))
        for rt in daemon.accounts.values():
            evaluate = rt.core._evaluate

            def spy(now: float, trigger: str, _f=evaluate) -> Decision:  # type: ignore[no-untyped-def]
                decision: Decision = _f(now, trigger)
                live.append(decision)
                return decision

            rt.core._evaluate = spy  # type: ignore[method-assign]
        started = clock.now()
        await daemon.start()
        try:
            await asyncio.sleep(max(0.0, RUN_UNTIL - sim.scenario_time()) / SPEED)
        finally:
            await daemon.stop()
    return recording, config_path, live, started


def _firing(decisions: list[Decision], rule: str) -> list[float]:
    return [
        t.at
        for d in decisions
        for t in d.transitions
        if t.rule == rule and t.reason.value == "firing"
    ]


@pytest.fixture(scope="module")
def crash(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Decision], float]:
    folder = tmp_path_factory.mktemp("crash")
    return asyncio.run(_record_crash(folder))


@pytest.mark.timeout(30)
def test_run_record_writes_frames(crash: tuple[Path, Path, list[Decision], float]) -> None:
    """The daemon's recorder writes trade and market-data frames, and its rule ticks,
    with increasing times."""
    recording, _, _, _ = crash
    lines = list(read_recording(recording))
    frames = [f for f in lines if isinstance(f, RecordedFrame)]
    ticks = [f.t for f in lines if isinstance(f, RecordedTick) and f.source == RULE_TICK]
    others = [f for f in lines if isinstance(f, RecordedTick) and f.source != RULE_TICK]
    drops = [f for f in lines if isinstance(f, RecordedDisconnect)]
    assert len(frames) + len(ticks) + len(others) + len(drops) == len(lines)
    assert all(f.account == "desk-a" for f in drops)  # at most the stop's, in this run
    assert len(drops) <= 1
    # The rule tick runs every 0.25 s of wall time (2.5 s of scenario time at SPEED 10).
    assert len(ticks) >= (RUN_UNTIL - 10.0) / (0.25 * SPEED)
    assert ticks == sorted(ticks)
    assert [f.t for f in lines] == sorted(f.t for f in lines)
    kinds = {f.source for f in frames}
    assert kinds == {"trade", "mds"}
    assert any('"position_response"' in str(f.frame) for f in frames)
    assert any('"balance_response"' in str(f.frame) for f in frames)
    assert all(f.account == "desk-a" for f in frames if f.source == "trade")
    times = [f.t for f in frames]
    assert times == sorted(times)
    assert times[-1] - times[0] > 30.0


@pytest.mark.timeout(30)
def test_replay_fires_margin_rules_at_crash_times(
    crash: tuple[Path, Path, list[Decision], float],
) -> None:
    """Replay shows the margin warning, then the critical rule, when the crash crosses them."""
    recording, config_path, _, started = crash
    config = load_config(config_path)
    rules = load_rule_files(list(config.rules.files))
    result = replay(read_recording(recording), cores_for(config, rules), exchange=config.exchange)
    high = _firing(result.decisions, "MarginUsageHigh")
    critical = _firing(result.decisions, "MarginUsageCritical")
    assert len(high) == 1
    assert len(critical) == 1
    # crash.yaml: margin usage passes 0.80 near 25 s (+5 s for) and 0.95 near 32 s (+2 s).
    assert 27.0 <= high[0] - started <= 34.0
    assert 31.0 <= critical[0] - started <= 38.0
    assert high[0] < critical[0]
    actions = [e for e in result.entries if e.kind == "action" and e.rule == "MarginUsageCritical"]
    assert [a.what for a in actions] == ["cancel_all_orders"]


@pytest.mark.timeout(30)
def test_replay_matches_live_daemon(crash: tuple[Path, Path, list[Decision], float]) -> None:
    """Replay decides the same firings, in the same order, as the live daemon did."""
    recording, config_path, live, _ = crash
    config = load_config(config_path)
    rules = load_rule_files(list(config.rules.files))
    result = replay(read_recording(recording), cores_for(config, rules), exchange=config.exchange)

    def firings(decisions: list[Decision]) -> list[tuple[str, str | None, float]]:
        return [
            (t.rule, t.symbol, t.at)
            for d in decisions
            for t in d.transitions
            if t.reason.value == "firing" and t.rule != "DataStale"
        ]

    got, want = firings(result.decisions), firings(live)
    assert [(r, s) for r, s, _ in got] == [(r, s) for r, s, _ in want]
    # The recording holds the daemon's rule ticks: a firing decided by a tick is
    # decided at the same time in replay, to the recorded digit.
    assert got == want

    def transitions(decisions: list[Decision]) -> list[tuple[str, str | None, str, float]]:
        return [(t.rule, t.symbol, t.reason.value, t.at) for d in decisions for t in d.transitions]

    assert transitions(result.decisions) == transitions(live)
    intents = [(i.rule, i.symbol) for d in result.decisions for i in d.intents]
    assert intents == [(i.rule, i.symbol) for d in live for i in d.intents]


@pytest.mark.timeout(30)
def test_replay_command_prints_timeline(crash: tuple[Path, Path, list[Decision], float]) -> None:
    """``riskwatch replay`` prints the timeline in text and as JSON, and exits 0."""
    recording, config_path, _, _ = crash
    cmd = [sys.executable, "-m", "riskwatch", "replay", str(recording), "-c", str(config_path)]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    assert text.returncode == 0, text.stderr
    assert "MarginUsageCritical FIRING" in text.stdout
    assert "MarginUsageCritical ACTION cancel_all_orders" in text.stdout
    js = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=20, check=False)
    assert js.returncode == 0, js.stderr
    doc = json.loads(js.stdout)
    rules = [(e["rule"], e.get("reason")) for e in doc["timeline"]]
    assert rules.index(("MarginUsageHigh", "firing")) < rules.index(
        ("MarginUsageCritical", "firing")
    )
    assert doc["accounts"] == ["desk-a"]
    assert doc["unknown_accounts"] == {}
