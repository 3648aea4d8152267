"""Two ``riskwatch run`` replicas on one account, the leader lease in a real etcd or a file lock.

The simulator plays the crash: a position-scope rule halves AAPL with a reduce-only TWAP
(leader only), an account-scope rule cancels every order and closes every position (any
replica). Each replica has its own state database and its own webhook path, so every
page and every command can be attributed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from riskwatch.sim.server import Simulator
from tests.support.etcd import running_etcd
from tests.support.rig import DaemonProcess, Setup, free_port, setup_for, simulator, wait_for

pytestmark = pytest.mark.timeout(180)

LEASE = 2.0
PULSE = 0.1

RULES = """
rules:
  - name: Derisk
    scope: position
    when: unrealised_pnl < -500
    severity: warning
    latch: true
    actions: [{reduce_position: {fraction: 0.5, over: 60s}}]
    summary: "halving {{ symbol }} on {{ account }}"
  - name: LossFlatten
    scope: account
    when: unrealised_pnl < -2500
    severity: critical
    latch: true
    actions: [cancel_all_orders, {close_position: all}]
    summary: "flatten {{ account }} at {{ unrealised_pnl | money }}"
"""


class Hooks:
    """A webhook receiver; each replica posts to its own path (``/hook/NAME``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.pages: list[tuple[str, float, dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.pages.append((request.match_info["who"], time.time(), body))
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook/{who}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def firing(self, rule: str, who: str | None = None) -> list[str]:
        """Replicas that sent a page of ``rule`` firing (one entry per page; action
        outcome messages, titled ``… on ACCOUNT: done …``, are not pages of the alert)."""
        page = re.compile(rf"^\[(CRITICAL|WARNING|INFO)\] {rule} on [^:]*$")
        return [
            w
            for w, _, b in self.pages
            if page.match(b.get("title", "")) and (who is None or w == who)
        ]

    def titles(self) -> list[tuple[str, str]]:
        return [(w, b.get("title", "")) for w, _, b in self.pages]


@dataclass
class Replica:
    name: str
    setup: Setup
    proc: DaemonProcess

    async def state(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.setup.port}/api/state"
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            doc: dict[str, Any] = await resp.json()
            return doc

    async def role(self) -> str | None:
        try:
            return str((await self.state())["ha"]["role"])
        except (aiohttp.ClientError, KeyError, OSError):
            return None

    async def metric(self, name: str) -> str:
        url = f"http://127.0.0.1:{self.setup.port}/metrics"
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            text = await resp.text()
        return "\n".join(line for line in text.splitlines() if line.startswith(name))


def commands(sim: Simulator, kind: str) -> list[float]:
    """Times the simulator received ``kind`` commands for desk-a."""
    return [
        f.time
        for f in sim.received_commands("desk-a")
        if isinstance(f.frame, dict) and f.frame.get("type") == kind
    ]


def position(sim: Simulator) -> float:
    return float(sim.exchange.ledgers["desk-a"].position("AAPL-USD").qty)


@asynccontextmanager
async def replicas(
    tmp_path: Path, sim: Simulator, secret: str, hooks: Hooks, ha: list[str], fault_a: str | None
) -> AsyncIterator[tuple[Replica, Replica]]:
    """Replica ``a`` started first (it takes the lease), then ``b``; the crash runs once
    both roles are settled; both replicas are stopped after."""
    out: list[Replica] = []
    sim.pause()
    try:
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            setup = setup_for(
                sim, folder, secret, mode="armed", rules=RULES, port=free_port(),
                notify_urls=[f"json://127.0.0.1:{hooks.port}/hook/{name}"],
            )  # fmt: skip
            config = setup.write()
            lines = [f"  {x}" for x in ha] + [f"  identity: replica-{name}"]
            with config.open("a", encoding="utf-8") as f:
                f.write("ha:\n" + "\n".join(lines) + "\n")
            proc = DaemonProcess(
                config, folder / "daemon.log", fault=fault_a if name == "a" else None,
                log_format="json",
            )  # fmt: skip
            proc.start()
            replica = Replica(name, setup, proc)
            out.append(replica)

            async def is_role(r: Replica = replica, want: str = "") -> bool:
                return await r.role() == want

            want = "leader" if name == "a" else "follower"
            await wait_for(partial(is_role, replica, want), timeout=30, what=want)
        sim.resume()
        yield out[0], out[1]
    finally:
        for r in out:
            await r.proc.terminate()


def lease_lines(backend: str, where: str) -> list[str]:
    if backend == "etcd":
        return ["backend: etcd", f"lease: {LEASE:g}s", f"etcd_endpoints: [{where}]"]
    return ["backend: file", f"lease: {LEASE:g}s", f"lock_file: {where}"]


async def test_two_replicas_etcd_one_twap_one_page_flat(tmp_path: Path) -> None:
    """No failure: the leader starts the TWAP once; both may close; one page per alert."""
    hooks = Hooks()
    await hooks.start()
    try:
        async with running_etcd(tmp_path) as etcd:
            async with simulator("crash", speed=1.0, pulse_interval=PULSE) as (sim, secret):
                async with replicas(
                    tmp_path, sim, secret, hooks, lease_lines("etcd", etcd.url), None
                ) as (a, b):
                    await wait_for(lambda: position(sim) == 0, timeout=60, what="flat")
                    await wait_for(
                        lambda: bool(hooks.firing("LossFlatten") and hooks.firing("Derisk")),
                        timeout=20,
                        what="both pages",
                    )
                    await asyncio.sleep(3)  # time for any duplicate to show up
                    assert len(commands(sim, "add_twap")) == 1
                    assert len(commands(sim, "close_position")) >= 1
                    assert len(commands(sim, "cancel_all_orders")) >= 1
                    assert hooks.firing("Derisk") == ["a"], hooks.titles()
                    assert hooks.firing("LossFlatten") == ["a"]
                    assert not [p for p in hooks.pages if p[0] == "b"]  # the follower is silent
                    # The follower set the TWAP aside and sent the safe protections itself.
                    b_log = b.proc.log_text()
                    assert "left to the leader" in b_log
                    b_sent = [
                        json.loads(line)["message"]
                        for line in b_log.splitlines()
                        if '"SENT ' in line
                    ]
                    assert any("close_position" in m for m in b_sent)
                    assert not any("reduce_position" in m for m in b_sent)
                    assert (await a.state())["ha"] == {
                        "role": "leader",
                        "backend": "etcd",
                        "identity": "replica-a",
                        "lease_seconds": LEASE,
                    }
                    assert 'riskwatch_ha_leader{backend="etcd",identity="replica-b"} 0.0' in (
                        await b.metric("riskwatch_ha_leader")
                    )
                    assert 'identity="replica-a"} 1.0' in await a.metric("riskwatch_ha_leader")
    finally:
        await hooks.stop()


async def _kill_leader_run(
    tmp_path: Path, backend: str, where: str, fault_a: str | None, kill_on_twap: bool
) -> dict[str, float]:
    hooks = Hooks()
    await hooks.start()
    try:
        async with simulator("crash", speed=1.0, pulse_interval=PULSE) as (sim, secret):
            async with replicas(
                tmp_path, sim, secret, hooks, lease_lines(backend, where), fault_a
            ) as (a, b):
                if kill_on_twap:
                    # SIGKILL the leader the moment its TWAP reached the exchange.
                    await wait_for(lambda: bool(commands(sim, "add_twap")), timeout=30, what="twap")
                    a.proc.kill()
                else:
                    # The leader kills itself after recording its TWAP, before sending it.
                    await wait_for(lambda: not a.proc.alive, timeout=30, what="leader death")
                died = time.time()
                if not kill_on_twap:
                    # The dead leader never wrote its TWAP. (Not "the exchange has no TWAP
                    # yet": the follower may take the lease over and send it before this
                    # poll sees the leader gone; that it went once is checked below.)
                    a_sent = [
                        json.loads(line)["message"]
                        for line in a.proc.log_text().splitlines()
                        if '"SENT ' in line
                    ]
                    assert not any("reduce_position" in m or "add_twap" in m for m in a_sent), (
                        a_sent
                    )
                # The follower takes the lease over.
                while await b.role() != "leader":
                    assert time.time() - died < LEASE * 3, "no take-over"
                    await asyncio.sleep(0.02)
                leader_at = time.time()
                await wait_for(lambda: bool(commands(sim, "add_twap")), timeout=10, what="twap")
                twap_at = commands(sim, "add_twap")[0]
                await wait_for(lambda: position(sim) == 0, timeout=60, what="flat")
                await wait_for(
                    lambda: bool(hooks.firing("LossFlatten", "b")), timeout=20, what="page"
                )
                await asyncio.sleep(2)
                assert len(commands(sim, "add_twap")) == 1  # started exactly once
                assert commands(sim, "close_position")
                assert commands(sim, "cancel_all_orders")
                assert hooks.firing("LossFlatten") == ["b"]  # fired after the take-over
                assert set(hooks.firing("Derisk")) <= {"a", "b"}
                assert "LEADER" in b.proc.log_text()
                return {
                    "takeover": leader_at - died,
                    "twap_after_death": twap_at - died,
                }
    finally:
        await hooks.stop()


async def test_sigkill_leader_after_its_twap_etcd(tmp_path: Path) -> None:
    """The new leader sees the dead leader's TWAP on the exchange and does not repeat it."""
    async with running_etcd(tmp_path) as etcd:
        times = await _kill_leader_run(tmp_path, "etcd", etcd.url, None, kill_on_twap=True)
    # etcd lets the lease go LEASE seconds after the last renewal; the follower's next
    # campaign (every LEASE/3) wins: at most a lease period plus a third, plus a pulse.
    print(f"etcd failover: follower leader {times['takeover']:.2f}s after SIGKILL")
    assert times["takeover"] <= LEASE + LEASE / 3 + PULSE + 0.5


async def test_leader_dies_before_its_twap_file_lock(tmp_path: Path) -> None:
    """The leader dies between recording and sending its TWAP: the new leader sends it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    times = await _kill_leader_run(
        tmp_path,
        "file",
        str(shared / "riskwatch.lock"),
        "after_intent",
        kill_on_twap=False,
    )
    print(
        f"file-lock failover: leader {times['takeover']:.2f}s, "
        f"TWAP sent {times['twap_after_death']:.2f}s after the old leader died"
    )
    # The kernel frees the lock at death; the next attempt (every LEASE/3) takes it, and
    # the take-over plans the TWAP on the next fresh pulse.
    assert times["takeover"] <= LEASE / 3 + 0.5
    assert times["twap_after_death"] <= LEASE + PULSE + 0.5
