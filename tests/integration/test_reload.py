"""Configuration reload against the simulator: applied, refused, connections kept.

In-process: the file watcher (polling every 50 ms) picks up a changed rule file and a
changed config, and ``POST /api/reload`` sits behind the admin token. As a subprocess:
``riskwatch run`` reloads on SIGHUP. Both check that a valid change takes effect, that
an invalid one is refused with its ``FILE:LINE:COL`` in the log while the old rules
stay in force, the ``config_reload_total`` counters, and that no connection was
dropped (the simulator saw one ``auth`` only; ``reconnects_total`` stays 0).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon
from riskwatch.daemon.reload import FAILED_ALERT
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.scenario import load_scenario
from riskwatch.sim.server import Simulator
from tests.support.daemon_harness import MS, Harness, daemon_config_text, wait_for

ACCOUNT = "desk-a"
TOKEN = "reload-test-admin-token"

QUIET_RULES = """\
rules:
  - name: EquityTiny
    when: equity < 1
    severity: warning
    summary: "equity tiny"
"""

FIRING_RULES = """\
rules:
  - name: EquityTiny
    when: equity < 1
    severity: warning
    summary: "equity tiny"
  - name: EquityPositive
    when: equity > 1
    severity: info
    summary: "equity positive"
"""

BAD_RULES = """\
rules:
  - name: EquityTiny
    when: equity < 1
    severity: warning
  - name: Broken
    when: equity >>> 1
    severity: warning
"""

STATE_KEY = (
    "riskwatch_alert_state",
    (("account", ACCOUNT), ("rule", "EquityPositive"), ("severity", "info"), ("symbol", "")),
)

ROUTE = """\
notifications:
  group_wait: 0s
  routes:
    - urls: ["console://"]
"""


def _auths(sim: Simulator) -> int:
    return sum(
        1
        for f in sim.received_commands(ACCOUNT)
        if isinstance(f.frame, dict) and f.frame.get("type") == "auth"
    )


def _config_text(sim: Simulator, tmp_path: Path, *, routes: str = "") -> str:
    scenario = load_scenario("crash")
    extra = f"rules:\n  - {tmp_path / 'rules'}/*.yaml\n" + routes
    text = daemon_config_text(
        sim, scenario, tmp_path / "qfex_secret", tmp_path / "state.db", extra=extra
    )
    return text.replace("http:\n", f"http:\n  admin_token: {TOKEN}\n", 1)


@asynccontextmanager
async def _running(tmp_path: Path) -> AsyncIterator[Harness]:
    """A simulator (paused crash scenario) and an in-process daemon loading rules/*.yaml."""
    scenario = load_scenario("crash")
    secret = secrets.token_hex(16)
    (tmp_path / "qfex_secret").write_text(secret + "\n", encoding="utf-8")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "main.yaml").write_text(QUIET_RULES, encoding="utf-8")
    async with Simulator(
        scenario, {a.public_key: secret for a in scenario.accounts}, pulse_interval=0.2
    ) as sim:
        sim.pause()
        path = tmp_path / "riskwatch.yaml"
        path.write_text(_config_text(sim, tmp_path), encoding="utf-8")
        config = load_config(path)
        daemon = Daemon(config, rules=load_rule_files(list(config.rules.files)))
        daemon.reloader.interval = 50 * MS
        await daemon.start()
        h = Harness(sim, daemon, secret, path)
        try:
            await wait_for(lambda: daemon.readiness()[0], timeout=5000 * MS)
            yield h
        finally:
            await h.close()
            await daemon.stop()


def _reloads(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {
        result: metrics.get(("riskwatch_config_reload_total", (("result", result),)), 0.0)
        for result in ("success", "failure")
    }


def _alert(daemon: Daemon, rule: str) -> Any:
    return next((a for a in daemon.accounts[ACCOUNT].core.alerts() if a.rule == rule), None)


async def test_file_watcher_applies_valid_and_refuses_invalid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A changed rule file is applied, a broken one refused with old rules kept, links kept."""
    caplog.set_level(logging.INFO)
    async with _running(tmp_path) as h:
        d = h.daemon
        auths = _auths(h.sim)
        assert auths == 1
        rule_file = tmp_path / "rules" / "main.yaml"

        # Valid: a new rule appears and fires on the very next evaluation.
        rule_file.write_text(FIRING_RULES, encoding="utf-8")
        await wait_for(lambda: "EquityPositive" in d.rules.by_name, timeout=3000 * MS)
        await wait_for(lambda: _alert(d, "EquityPositive") is not None, timeout=3000 * MS)
        await wait_for(
            lambda: _alert(d, "EquityPositive").state.name == "FIRING", timeout=3000 * MS
        )
        metrics = await h.metrics()
        assert _reloads(metrics) == {"success": 1.0, "failure": 0.0}
        assert metrics[STATE_KEY] == 2  # firing

        # Invalid: refused, problem located, old rules (and the firing alert) kept.
        rule_file.write_text(BAD_RULES, encoding="utf-8")
        await wait_for(lambda: d.reloader.failures == 1, timeout=3000 * MS)
        assert set(d.rules.by_name) == {"EquityTiny", "EquityPositive"}
        assert _alert(d, "EquityPositive").state.name == "FIRING"
        located = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(m.startswith(f"{rule_file}:6:") for m in located), located
        assert any("REFUSED" in m for m in located)
        metrics = await h.metrics()
        assert _reloads(metrics) == {"success": 1.0, "failure": 1.0}
        assert d.reloader.last is not None
        assert d.reloader.last["ok"] is False
        page_status, page = await h.get("/")
        assert page_status == 200
        assert "configuration reload REFUSED" in page
        assert f"{rule_file}:6:" in page

        # A rule removed by a valid reload drops out of the alerts and its gauge to 0.
        rule_file.write_text(QUIET_RULES, encoding="utf-8")
        await wait_for(lambda: "EquityPositive" not in d.rules.by_name, timeout=3000 * MS)
        assert _alert(d, "EquityPositive") is None
        metrics = await h.metrics()
        assert _reloads(metrics) == {"success": 2.0, "failure": 1.0}
        assert metrics[STATE_KEY] == 0

        # Connections were never dropped.
        assert _auths(h.sim) == auths
        status = d.accounts[ACCOUNT].status
        assert status is not None
        assert status.reconnects == 0
        assert metrics.get(("riskwatch_reconnects_total", (("account", ACCOUNT),)), 0.0) == 0


async def test_config_change_reloads_routes_and_notifies_refusal(tmp_path: Path) -> None:
    """A new route in the config is applied; a refused version is notified on it."""
    async with _running(tmp_path) as h:
        d = h.daemon
        assert d.notifier.routes == ()
        h.config_path.write_text(_config_text(h.sim, tmp_path, routes=ROUTE), encoding="utf-8")
        await wait_for(lambda: len(d.notifier.routes) == 1, timeout=3000 * MS)
        assert len(d.config.notifications.routes) == 1

        # Break the config itself: refused, and the refusal is delivered on the new route.
        text = _config_text(h.sim, tmp_path, routes=ROUTE).replace(
            "group_wait: 0s", "group_wait: soon"
        )
        h.config_path.write_text(text, encoding="utf-8")
        await wait_for(lambda: d.reloader.failures == 1, timeout=3000 * MS)
        assert len(d.notifier.routes) == 1
        await wait_for(
            lambda: any(FAILED_ALERT in o.key and o.result == "sent" for o in d.notifier.outcomes),
            timeout=3000 * MS,
        )
        assert _auths(h.sim) == 1


async def test_api_reload_needs_the_admin_token(tmp_path: Path) -> None:
    """``POST /api/reload`` answers 401 without the token, and reloads with it."""
    async with _running(tmp_path) as h, aiohttp.ClientSession() as http:
        url = h.base + "/api/reload"
        async with http.post(url) as resp:
            assert resp.status == 401
        (tmp_path / "rules" / "main.yaml").write_text(BAD_RULES, encoding="utf-8")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(url, headers=headers) as resp:
            assert resp.status == 422
            body = await resp.json()
        assert body["ok"] is False
        assert any(
            p.startswith(str(tmp_path / "rules" / "main.yaml") + ":6:") for p in body["problems"]
        )
        (tmp_path / "rules" / "main.yaml").write_text(FIRING_RULES, encoding="utf-8")
        async with http.post(url, headers=headers) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["ok"] is True
        assert body["rules"] == 2
        assert "EquityPositive" in h.daemon.rules.by_name


async def _wait_log(path: Path, text: str, timeout: float = 5.0) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    log = ""
    while loop.time() < deadline:
        log = path.read_bytes().decode("utf-8", errors="replace")
        if text in log:
            return log
        await asyncio.sleep(20 * MS)
    pytest.fail(f"{text!r} not logged within {timeout} s:\n{log[-3000:]}")


async def test_sighup_reloads_a_running_daemon(tmp_path: Path) -> None:
    """``riskwatch run`` reloads on SIGHUP: valid applied, invalid refused, link kept."""
    scenario = load_scenario("crash")
    secret = secrets.token_hex(16)
    (tmp_path / "qfex_secret").write_text(secret + "\n", encoding="utf-8")
    (tmp_path / "rules").mkdir()
    rule_file = tmp_path / "rules" / "main.yaml"
    rule_file.write_text(QUIET_RULES, encoding="utf-8")
    async with Simulator(
        scenario, {a.public_key: secret for a in scenario.accounts}, pulse_interval=0.2
    ) as sim:
        sim.pause()
        path = tmp_path / "riskwatch.yaml"
        path.write_text(_config_text(sim, tmp_path), encoding="utf-8")
        log_path = tmp_path / "daemon.log"
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "riskwatch",
                "run",
                "--config",
                str(path),
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            log = await _wait_log(log_path, "serving /metrics and /api on", timeout=20)
            port = int(log.split("serving /metrics and /api on 127.0.0.1:", 1)[1].split()[0])
            base = f"http://127.0.0.1:{port}"
            await wait_for(lambda: _auths(sim) == 1, timeout=10_000 * MS)
            async with aiohttp.ClientSession() as http:

                async def reloads() -> dict[str, float]:
                    async with http.get(base + "/metrics") as resp:
                        body = await resp.text()
                    out = {}
                    for result in ("success", "failure"):
                        line = f'riskwatch_config_reload_total{{result="{result}"}} '
                        found = [ln for ln in body.splitlines() if ln.startswith(line)]
                        out[result] = float(found[0].split()[-1]) if found else 0.0
                    return out

                async def ready() -> bool:
                    async with http.get(base + "/readyz") as resp:
                        return resp.status == 200

                await wait_for(ready, timeout=10_000 * MS)
                rule_file.write_text(FIRING_RULES, encoding="utf-8")
                proc.send_signal(signal.SIGHUP)
                await _wait_log(log_path, "configuration reloaded (SIGHUP): 2 rule(s)")
                assert await reloads() == {"success": 1.0, "failure": 0.0}

                async def new_rule_fires() -> bool:
                    async with http.get(base + "/api/alerts") as resp:
                        alerts = (await resp.json())["alerts"]
                    return any(a["rule"] == "EquityPositive" for a in alerts)

                await wait_for(new_rule_fires, timeout=3000 * MS)

                rule_file.write_text(BAD_RULES, encoding="utf-8")
                proc.send_signal(signal.SIGHUP)
                log = await _wait_log(log_path, "configuration reload (SIGHUP) REFUSED")
                assert f"{rule_file}:6:" in log
                assert await reloads() == {"success": 1.0, "failure": 1.0}
                assert await new_rule_fires()  # the old rules stay in force
                async with http.get(base + "/metrics") as resp:
                    body = await resp.text()
                assert f'riskwatch_reconnects_total{{account="{ACCOUNT}"}} 0.0' in body
            assert _auths(sim) == 1
            assert proc.returncode is None  # still running after both reloads
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), timeout=10)
        assert proc.returncode == 0
