"""The status page in headless Chromium against the running demo during the crash.

Chromium loads ``GET /`` of ``riskwatch demo`` (simulator + daemon, actions armed) once
the crash has made alerts fire, dumps the rendered DOM and saves a screenshot to
``build/status-page.png`` (kept by CI as an artifact). The checks read the page's text
as a person would. Skipped when Debian's ``chromium`` is not installed
(``scripts/ci-apt.sh`` installs it).
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from riskwatch.cli.demo import demo
from riskwatch.daemon.app import Daemon
from riskwatch.sim.server import Simulator
from tests.support.daemon_harness import MS, wait_for
from tests.support.paths import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACT = REPO / "build" / "status-page.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/ci-apt.sh installs it)"
)


class _Text(HTMLParser):
    """The text a person sees: everything outside <head>, <style> and <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.scripts = 0
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        if tag in ("head", "style", "script"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.parts).replace("\xa0", " "))


async def _chromium(url: str, profile: Path, screenshot: Path) -> str:
    """Load ``url`` once: save a screenshot and return the rendered DOM."""
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={screenshot}",
        "--window-size=1280,1600",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def _firing(daemon: Daemon) -> list[Any]:
    return [
        a
        for rt in daemon.accounts.values()
        for a in rt.core.alerts()
        if a.state.name == "FIRING" and a.severity == "critical"
    ]


async def test_status_page_in_chromium_during_the_crash(tmp_path: Path) -> None:
    """A person sees the mode, the account, its figures, positions and the firing alerts."""
    started: dict[str, Any] = {}

    def on_ready(daemon: Daemon, sim: Simulator) -> None:
        started.update(daemon=daemon, sim=sim)

    task = asyncio.create_task(
        demo(
            scenario_name="crash",
            speed=10.0,
            duration=60.0,
            port=0,
            live=False,
            stream=io.StringIO(),
            on_ready=on_ready,
        )
    )
    try:
        await wait_for(lambda: "daemon" in started, timeout=10_000 * MS)
        daemon: Daemon = started["daemon"]
        sim: Simulator = started["sim"]
        await wait_for(lambda: len(_firing(daemon)) >= 2, timeout=20_000 * MS)
        sim.pause()  # freeze marks so that the page and the documents below agree
        await asyncio.sleep(200 * MS)
        before = (daemon.state_document(), daemon.alerts_document()["alerts"])
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        dom = await _chromium(
            f"http://127.0.0.1:{daemon.http_port}/", tmp_path / "profile", ARTIFACT
        )
        after = (daemon.state_document(), daemon.alerts_document()["alerts"])
        secret = daemon.config.accounts[0].secret_key
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert ARTIFACT.stat().st_size > 10_000
    assert ARTIFACT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"<meta http-equiv=\"refresh\" content=\"\d+\"", dom)
    page = _Text()
    page.feed(dom)
    text = page.text
    assert page.scripts == 0
    assert "mode: ARMED" in text
    assert secret is not None
    assert secret.reveal() not in dom

    # Time passes for the rules while Chromium loads the page: check what held throughout.
    accounts = [doc["accounts"] for doc, _ in (before, after)]
    assert [a["name"] for a in accounts[0]] == ["desk-a"]
    assert "desk-a CONNECTED" in text
    figures = [acc[0]["figures"] for acc in accounts]
    for name, label in (
        ("margin_usage", "margin usage"),
        ("maintenance_usage", "maintenance usage"),
    ):
        assert any(f"{label} {f[name] * 100:.1f} %" in text for f in figures), name
    assert any(f"equity {f['equity']:,.2f}" in text for f in figures)
    stable = [
        (sym, row)
        for sym, row in accounts[0][0]["positions"].items()
        if accounts[1][0]["positions"].get(sym) == row
    ]
    for symbol, row in stable:
        assert re.search(rf"{re.escape(symbol)} {row['position']:,.6g} ", text), symbol

    def shown(a: dict[str, Any]) -> str:
        return f"{a['severity']} {a['state'].upper()} {a['rule']}"

    held = [a for a in before[1] if shown(a) in {shown(b) for b in after[1]}]
    assert sum(1 for a in held if a["state"] == "firing" and a["severity"] == "critical") >= 2
    for a in held:
        assert shown(a) in text, shown(a)
        if a["latched"]:
            assert a["rule"] in text.split("latched:", 1)[1]
    for row in before[0]["actions"]["recent"]:
        assert row["summary"] in text
