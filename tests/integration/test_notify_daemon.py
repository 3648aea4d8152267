"""The daemon serves /api/silences and marks muted alerts in /api/alerts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from riskwatch.notify.silences import parse_silence
from tests.support.daemon_harness import Harness, running, wait_for
from tests.support.notify_sinks import webhook

RULES = """\
rules:
  - name: HoldsPositions
    scope: account
    when: positions >= 1
    severity: warning
    summary: "{{ account }} holds {{ positions | num }} position(s)"
"""
"""A rule that fires in the calm scenario: both of its accounts hold positions."""

ACCOUNTS = {"desk-a", "desk-a-sub"}


async def alerts(h: Harness) -> list[dict[str, Any]]:
    """The ``alerts`` list of ``GET /api/alerts``."""
    status, text = await h.get("/api/alerts")
    assert status == 200
    doc: list[dict[str, Any]] = json.loads(text)["alerts"]
    return doc


async def test_daemon_serves_silences_and_keeps_mutations_disabled_without_token(
    tmp_path: Path,
) -> None:
    """GET /api/silences answers, POST is 403 without an admin token, firing alerts carry mutes."""
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    async with webhook() as hook:
        extra = f"rules: [rules.yaml]\nnotifications:\n  routes:\n    - urls: ['{hook.url()}']\n"
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

            async def both_firing() -> bool:
                return {a["account"] for a in await alerts(h) if a["state"] == "firing"} == ACCOUNTS

            await wait_for(both_firing)
            before = await alerts(h)
            assert [a.get("muted") for a in before] == [None, None]
            # Not yet silenced: the firing alerts reached the route's webhook.
            received = await hook.wait_for(1)
            assert any("HoldsPositions" in m["title"] for m in received)

            await h.daemon.notifier.add_silence(
                parse_silence(
                    {"matchers": ["rule=~.+"], "duration": 60, "created_by": "t"},
                    h.daemon.clock.now(),
                )
            )
            muted = await alerts(h)
            assert muted
            assert {(a["rule"], a["account"], a["state"]) for a in muted} == {
                ("HoldsPositions", account, "firing") for account in ACCOUNTS
            }
            for alert in muted:
                assert alert["muted"] == "silenced"
            assert h.daemon.notifier.store is h.daemon.store
