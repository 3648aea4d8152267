"""Fixtures running the real simulator and the real daemon on loopback."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.scenario import Scenario, load_scenario
from riskwatch.sim.server import Simulator
from riskwatch.store import Store
from tests.support.scrape import Samples, parse_samples

MS = 0.001
"""The unit of every timeout in these tests."""


def daemon_config_text(
    sim: Simulator,
    scenario: Scenario,
    secret_file: Path,
    state_path: Path,
    *,
    stale_after: str = "3s",
    market_data: bool = True,
    extra: str = "",
) -> str:
    """A config for a daemon watching every account of ``scenario`` on ``sim``."""
    lines = ["exchange:", f"  url: {sim.trade_url}", f"  stale_after: {stale_after}"]
    lines.append(f"  rest_url: {sim.rest_url}")
    if market_data:
        lines.append(f"  market_data_url: {sim.mds_url}")
    lines.append("accounts:")
    for acc in scenario.accounts:
        lines += [
            f"  - name: {acc.name}",
            f"    public_key: {acc.public_key}",
            f"    secret_key_file: {secret_file}",
        ]
    lines += ["http:", "  listen: 127.0.0.1:0", "state:", f"  path: {state_path}"]
    return "\n".join(lines) + "\n" + extra


class Harness:
    """A running simulator and daemon, plus HTTP helpers."""

    def __init__(self, sim: Simulator, daemon: Daemon, secret: str, config_path: Path) -> None:
        self.sim = sim
        self.daemon = daemon
        self.secret = secret
        self.config_path = config_path
        self._http: aiohttp.ClientSession | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.daemon.http_port}"

    async def get(self, path: str) -> tuple[int, str]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        async with self._http.get(self.base + path) as resp:
            return resp.status, await resp.text()

    async def state(self) -> dict[str, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        async with self._http.get(self.base + "/api/state") as resp:
            assert resp.status == 200
            doc: dict[str, Any] = await resp.json()
            return doc

    async def metrics(self) -> Samples:
        status, text = await self.get("/metrics")
        assert status == 200
        return parse_samples(text)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5000 * MS
) -> None:
    """Poll ``predicate`` every 10 ms until it is true, or fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout:.1f} s")
        await asyncio.sleep(10 * MS)


@asynccontextmanager
async def running(
    tmp_path: Path,
    scenario: str | Scenario = "crash",
    *,
    secret: str | None = None,
    daemon_secret: str | None = None,
    sim_options: dict[str, Any] | None = None,
    config_options: dict[str, Any] | None = None,
) -> AsyncIterator[Harness]:
    """Start the simulator with ``scenario`` and a daemon against it."""
    sc = load_scenario(scenario) if isinstance(scenario, str) else scenario
    secret = secret or secrets.token_hex(16)
    sim_secrets = {acc.public_key: secret for acc in sc.accounts}
    secret_file = tmp_path / "qfex_secret"
    secret_file.write_text((daemon_secret or secret) + "\n", encoding="utf-8")
    async with Simulator(sc, sim_secrets, **(sim_options or {})) as sim:
        text = daemon_config_text(
            sim, sc, secret_file, tmp_path / "state.db", **(config_options or {})
        )
        config_path = tmp_path / "riskwatch.yaml"
        config_path.write_text(text, encoding="utf-8")
        config = load_config(config_path)
        # Built as `riskwatch run` builds it: the config's rules and its state database.
        store = Store.open(config.state.path)
        daemon = Daemon(config, rules=load_rule_files(list(config.rules.files)), store=store)
        await daemon.start()
        harness = Harness(sim, daemon, daemon_secret or secret, config_path)
        try:
            yield harness
        finally:
            await harness.close()
            await daemon.stop()
            store.close()
