"""The daemon serves /api/silences and marks muted alerts in /api/alerts."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from riskwatch.notify.silences import parse_silence
from tests.support.daemon_harness import running
from tests.support.notify_sinks import webhook


async def test_daemon_serves_silences_and_keeps_mutations_disabled_without_token(
    tmp_path: Path,
) -> None:
    """GET /api/silences answers, POST is 403 without an admin token, alerts carry mutes."""
    async with webhook() as hook:
        extra = f"notifications:\n  routes:\n    - urls: ['{hook.url()}']\n"
        async with running(tmp_path, "calm", config_options={"extra": extra}) as h:
            status, text = await h.get("/api/silences")
            assert status == 200
            assert json.loads(text) == {"silences": []}
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    h.base + "/api/silences",
                    json={"matchers": ["account=x"], "duration": 60, "created_by": "t"},
                ) as resp,
            ):
                assert resp.status == 403
            await h.daemon.notifier.add_silence(
                parse_silence(
                    {"matchers": ["rule=~.+"], "duration": 60, "created_by": "t"},
                    h.daemon.clock.now(),
                )
            )
            status, text = await h.get("/api/alerts")
            assert status == 200
            for alert in json.loads(text)["alerts"]:
                assert alert["muted"] == "silenced"
            assert h.daemon.notifier.store is h.daemon.store
