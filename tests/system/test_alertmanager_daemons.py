"""Two ``riskwatch run`` replicas post to one real Alertmanager: one page per alert.

Both replicas (leader and follower of a file lock) post every alert to
``alertmanager://``; Alertmanager merges them by their labels, pages its webhook once,
and once more when the alert resolves.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.support.alertmanager import Webhook, alertmanager_binary, running_alertmanager
from tests.support.rig import DaemonProcess, free_port, setup_for, simulator, wait_for

pytestmark = pytest.mark.timeout(180)


async def _role(port: int) -> str | None:
    try:
        url = f"http://127.0.0.1:{port}/api/state"
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            return str((await resp.json())["ha"]["role"])
    except (aiohttp.ClientError, OSError, KeyError):
        return None


async def test_two_daemons_one_alertmanager_page_per_alert(tmp_path: Path) -> None:
    alertmanager_binary()
    hook = Webhook()
    await hook.start()
    procs: list[DaemonProcess] = []
    try:
        async with running_alertmanager(tmp_path, hook) as am:
            target = am.url.replace("http://", "alertmanager://") + "?resend=1"
            async with simulator("crash", speed=4.0, pulse_interval=0.1) as (sim, secret):
                sim.pause()
                for name in ("a", "b"):
                    folder = tmp_path / name
                    folder.mkdir()
                    setup = setup_for(
                        sim, folder, secret, mode="armed", port=free_port(), notify_urls=[target]
                    )
                    config = setup.write()
                    with config.open("a", encoding="utf-8") as f:
                        f.write(
                            "ha:\n  backend: file\n  lease: 2s\n"
                            f"  lock_file: {tmp_path / 'leader.lock'}\n"
                            f"  identity: replica-{name}\n"
                        )
                    proc = DaemonProcess(config, folder / "daemon.log")
                    proc.start()
                    procs.append(proc)
                    want = "leader" if name == "a" else "follower"

                    async def has_role(port: int = setup.port, want: str = want) -> bool:
                        return await _role(port) == want

                    await wait_for(has_role, timeout=30, what=want)
                sim.resume()
                await wait_for(
                    lambda: bool(hook.alerts("firing", alertname="LossFlatten")),
                    timeout=60,
                    what="the LossFlatten page",
                )
                # The flatten ends the margin warning: its resolution reaches the webhook.
                await wait_for(
                    lambda: bool(hook.alerts("resolved", alertname="MarginWarn")),
                    timeout=60,
                    what="MarginWarn resolved",
                )
                await asyncio.sleep(3)  # both replicas resend every second meanwhile
                assert len(hook.alerts("firing", alertname="LossFlatten")) == 1
                assert len(hook.alerts("firing", alertname="MarginWarn")) == 1
                assert len(hook.alerts("resolved", alertname="MarginWarn")) == 1
                # Alertmanager holds one LossFlatten alert, though two replicas post it.
                held = [a for a in await am.alerts() if a["labels"]["alertname"] == "LossFlatten"]
                assert len(held) == 1
                assert held[0]["labels"]["account"] == "desk-a"
                for proc in procs:
                    assert "alertmanager" in proc.log_text()
                    assert "posted firing" in proc.log_text()
    finally:
        for proc in procs:
            await proc.terminate()
        await hook.stop()
