"""A test rig: the real simulator in-process and the real daemon, in-process or as `riskwatch run`.

The daemon can run as a child process (``DaemonProcess``) so that it can be killed
with SIGKILL at any moment and restarted on the same state database, while the
simulator, the exchange's side of the story, keeps its books in this process.
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon
from riskwatch.qfex.recorder import Recorder
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.scenario import Scenario, load_scenario
from riskwatch.sim.server import Simulator
from riskwatch.store import Store
from tests.support.paths import REPO
from tests.support.portutil import free_port as free_port
from tests.support.scrape import Samples, parse_samples
from tests.support.scrape import metric as metric

MS = 0.001

FLATTEN_RULES = """
rules:
  - name: LossFlatten
    scope: account
    when: unrealised_pnl < -1000
    severity: critical
    latch: true
    actions: [cancel_all_orders, {close_position: all}]
    summary: "flatten {{ account }} at {{ unrealised_pnl | money }}"
  - name: MarginWarn
    scope: account
    when: margin_usage > 0.5
    severity: warning
    summary: "margin {{ margin_usage | pct }} on {{ account }}"
"""
"""Trips on the crash scenario's loss: cancel every order, close every position, latch."""

ACTION_COMMANDS = ("close_position", "cancel_all_orders", "add_order", "twap")


@dataclass
class Setup:
    """What a daemon config is made of (rendered by :func:`config_text`)."""

    tmp: Path
    url: str
    accounts: list[tuple[str, str]]
    secret_file: Path
    rest_url: str = "http://127.0.0.1:9/"
    """The reference data: the simulator's; by default a loopback port where nothing
    listens (a test never reaches the real exchange)."""
    mds_url: str | None = None
    mode: str = "dry-run"
    rules: str | None = FLATTEN_RULES
    admin_token: str | None = None
    http_extra: list[str] = field(default_factory=list)
    """More ``http:`` settings, one ``key: value`` line each."""
    notify_urls: list[str] = field(default_factory=list)
    stale_after: str = "3s"
    port: int = 0
    actions_extra: list[str] = field(default_factory=list)
    state_extra: list[str] = field(default_factory=list)

    @property
    def state_path(self) -> Path:
        return self.tmp / "state.db"

    @property
    def config_path(self) -> Path:
        return self.tmp / "riskwatch.yaml"

    def write(self) -> Path:
        """Write the rules and the config; return the config's path."""
        lines = ["exchange:", f"  url: {self.url}", f"  rest_url: {self.rest_url}"]
        lines.append(f"  stale_after: {self.stale_after}")
        if self.mds_url:
            lines.append(f"  market_data_url: {self.mds_url}")
        lines.append("accounts:")
        for name, public_key in self.accounts:
            lines += [
                f"  - name: {name}",
                f"    public_key: {public_key}",
                f"    secret_key_file: {self.secret_file}",
            ]
        if self.rules is not None:
            (self.tmp / "rules.yaml").write_text(self.rules, encoding="utf-8")
            lines.append(f"rules: [{self.tmp / 'rules.yaml'}]")
        lines += ["actions:", f"  mode: {self.mode}", *(f"  {x}" for x in self.actions_extra)]
        if self.notify_urls:
            lines += ["notifications:", "  routes:", "    - urls:"]
            lines += [f"        - {u}" for u in self.notify_urls]
        lines += ["http:", f"  listen: 127.0.0.1:{self.port}"]
        if self.admin_token:
            lines.append(f"  admin_token: {self.admin_token}")
        lines += [f"  {x}" for x in self.http_extra]
        lines += ["state:", f"  path: {self.state_path}", *(f"  {x}" for x in self.state_extra)]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.config_path


def offline_setup(tmp: Path, **options: Any) -> Setup:
    """A setup of one account, desk-a, whose exchange never answers (a closed loopback
    port), no rule file; ``options`` as :class:`Setup`'s."""
    secret_file = tmp / "secret"
    secret_file.write_text("sk-offline\n", encoding="utf-8")
    return Setup(
        tmp=tmp,
        url=f"ws://127.0.0.1:{free_port()}/",
        accounts=[("desk-a", "pk")],
        secret_file=secret_file,
        rules=None,
        **options,
    )


def setup_for(sim: Simulator, tmp: Path, secret: str, **options: Any) -> Setup:
    """A setup watching every account of ``sim``'s scenario, secret written to a file."""
    secret_file = tmp / "qfex_secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    accounts = [(a.name, a.public_key) for a in sim.scenario.accounts]
    options.setdefault("rest_url", sim.rest_url)
    return Setup(tmp=tmp, url=sim.trade_url, accounts=accounts, secret_file=secret_file, **options)


@asynccontextmanager
async def simulator(
    scenario: str | Scenario = "crash", secret: str | None = None, **options: Any
) -> AsyncIterator[tuple[Simulator, str]]:
    """The simulator on loopback with every account's secret set to ``secret``."""
    sc = load_scenario(scenario) if isinstance(scenario, str) else scenario
    secret = secret or secrets.token_hex(16)
    async with Simulator(sc, {a.public_key: secret for a in sc.accounts}, **options) as sim:
        yield sim, secret


@asynccontextmanager
async def in_process(setup: Setup, *, record: Path | None = None) -> AsyncIterator[Daemon]:
    """The daemon as ``riskwatch run`` builds it (rules, state database, ``--record``
    to ``record`` when given), in this loop."""
    config = load_config(setup.write())
    store = Store.open(config.state.path)
    rules = load_rule_files(list(config.rules.files))
    recorder = Recorder(record) if record is not None else None
    daemon = Daemon(config, rules=rules, store=store, recorder=recorder)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()
        store.close()


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, what: str = ""
) -> None:
    """Poll ``predicate`` every 10 ms until true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout:.1f} s {what}")
        await asyncio.sleep(10 * MS)


class Http:
    """A small aiohttp client for one daemon's HTTP port."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        async with self._session.request(
            method, self.base + path, json=json_body, data=data, headers=hdrs
        ) as resp:
            return resp.status, await resp.text()

    async def get(self, path: str) -> tuple[int, str]:
        return await self.request("GET", path)

    async def metrics(self) -> Samples:
        status, text = await self.get("/metrics")
        assert status == 200
        return parse_samples(text)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class DaemonProcess:
    """``riskwatch run -c CONFIG`` as a child process, its stderr kept in a file."""

    def __init__(
        self,
        config: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        log_level: str = "info",
        log_format: str = "text",
        fault: str | None = None,
        record: Path | None = None,
        max_open_files: int | None = None,
    ) -> None:
        self.config = config
        self.log_level = log_level
        self.fault = fault
        """A fault point of tests/support/fault_points.py (the process kills itself there)."""
        self.record = record
        """``run --record`` to this file."""
        self.log_format = log_format
        self.max_open_files = max_open_files
        """A lower soft RLIMIT_NOFILE for the child (to show a file-descriptor limit holds)."""
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        entry = (
            ["-m", "tests.support.fault_points", self.fault] if self.fault else ["-m", "riskwatch"]
        )
        record = ["--record", str(self.record)] if self.record is not None else []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *entry,
                "--log-level",
                self.log_level,
                "--log-format",
                self.log_format,
                "run",
                "-c",
                str(self.config),
                *record,
            ],
            stdout=log,
            stderr=log,
            env=self.env,
            cwd=REPO,
            preexec_fn=self._limit_open_files if self.max_open_files is not None else None,
        )
        log.close()

    def _limit_open_files(self) -> None:
        assert self.max_open_files is not None
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_open_files, hard))

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait for the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(20 * MS)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        return int(self.proc.returncode)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


async def daemon_ready(http: Http, proc: DaemonProcess) -> bool:
    """True once ``/readyz`` answers 200; fails the test (with the log's tail) if the
    daemon died."""
    if not proc.alive:
        pytest.fail(f"the daemon died:\n{proc.log_text()[-3000:]}")
    try:
        return (await http.get("/readyz"))[0] == 200
    except aiohttp.ClientError:
        return False
