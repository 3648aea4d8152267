"""``alertmanager://`` routes against a real Alertmanager with a webhook receiver behind it.

Two notification services stand for two riskwatch replicas posting the same alerts:
Alertmanager deduplicates them into one webhook delivery per alert, a silence set in
Alertmanager (its v2 API) mutes an alert, and a resolution reaches the receiver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from riskwatch.config import NotificationsConfig, RouteConfig
from riskwatch.metrics import Metrics
from riskwatch.notify.notice import ActionNotice, AlertNotice
from riskwatch.notify.service import NotifyService
from riskwatch.secret import Secret
from tests.support.alertmanager import (
    Alertmanager,
    Webhook,
    alertmanager_binary,
    running_alertmanager,
)
from tests.support.rig import wait_for


@pytest.fixture
async def am(tmp_path: Path) -> AsyncIterator[tuple[Alertmanager, Webhook]]:
    alertmanager_binary()
    hook = Webhook()
    await hook.start()
    try:
        async with running_alertmanager(tmp_path, hook) as manager:
            yield manager, hook
    finally:
        await hook.stop()


def replica(am: Alertmanager, metrics: Metrics | None = None) -> NotifyService:
    url = am.url.replace("http://", "alertmanager://") + "?resend=1"
    config = NotificationsConfig(routes=(RouteConfig(urls=(Secret(url),)),))
    return NotifyService(
        config, metrics=metrics, external_url="http://riskwatch.test:9464", tick=0.05
    )


def alert(rule: str, status: str = "firing", **kw: object) -> AlertNotice:
    fields: dict[str, object] = {
        "rule": rule,
        "account": "desk-a",
        "symbol": None,
        "status": status,
        "severity": "critical",
        "at": time.time(),
        "trip_id": 1,
        "summary": f"{rule} on desk-a",
        "description": "loss beyond the limit",
    }
    fields.update(kw)
    return AlertNotice(**fields)  # type: ignore[arg-type]


async def test_two_replicas_page_once_silence_mutes_resolved_arrives(
    am: tuple[Alertmanager, Webhook],
) -> None:
    manager, hook = am
    metrics = Metrics(CollectorRegistry())
    a, b = replica(manager, metrics), replica(manager)
    await a.start()
    await b.start()
    try:
        # 1. Both replicas see the same alert: one webhook delivery.
        flat = alert("LossFlatten", symbol="AAPL-USD")
        a.enqueue_alert(flat)
        b.enqueue_alert(replace(flat, at=flat.at + 0.05))
        await wait_for(lambda: bool(hook.alerts(alertname="LossFlatten")), timeout=15, what="page")
        await asyncio.sleep(3.5)  # both replicas resent (resend=1s): still one delivery
        (paged,) = hook.alerts(alertname="LossFlatten")
        assert paged["status"] == "firing"
        assert paged["labels"] == {
            "alertname": "LossFlatten",
            "rule": "LossFlatten",
            "account": "desk-a",
            "symbol": "AAPL-USD",
            "severity": "critical",
        }
        assert paged["annotations"]["summary"] == "LossFlatten on desk-a"
        assert paged["annotations"]["status_page"] == "http://riskwatch.test:9464/#account-desk-a"
        assert paged["generatorURL"] == "http://riskwatch.test:9464/#account-desk-a"
        assert len(hook.notifications) == 1

        # 2. A silence set in Alertmanager mutes an alert from both replicas.
        silence_id = await manager.silence("maintenance", rule="MarginWarn")
        warn = alert("MarginWarn", severity="warning")
        a.enqueue_alert(warn)
        b.enqueue_alert(warn)

        async def suppressed() -> bool:
            for x in await manager.alerts():
                if x["labels"].get("alertname") == "MarginWarn":
                    return bool(x["status"]["state"] == "suppressed")
            return False

        deadline = time.monotonic() + 15
        while not await suppressed():
            assert time.monotonic() < deadline, "MarginWarn never reached Alertmanager"
            await asyncio.sleep(0.2)
        (shown,) = [x for x in await manager.alerts() if x["labels"]["alertname"] == "MarginWarn"]
        assert shown["status"]["silencedBy"] == [silence_id]
        await asyncio.sleep(3)  # group_wait and group_interval are 1 s
        assert not hook.alerts(alertname="MarginWarn")

        # 3. The resolution reaches the receiver (once, though both replicas post it).
        done = replace(flat, status="resolved", at=time.time())
        a.enqueue_alert(done)
        b.enqueue_alert(done)
        await wait_for(
            lambda: bool(hook.alerts("resolved", alertname="LossFlatten")),
            timeout=15,
            what="resolved",
        )
        await asyncio.sleep(2)
        assert len(hook.alerts("resolved", alertname="LossFlatten")) == 1
        assert len(hook.alerts("firing", alertname="LossFlatten")) == 1

        # 4. An escalation goes the same way.
        a.enqueue_action(
            ActionNotice(
                "failed", "LossFlatten", "desk-a", "close_position all", time.time(),
                detail="not confirmed",
            )
        )  # fmt: skip
        await wait_for(
            lambda: bool(hook.alerts(alertname="RiskwatchActionFailed")),
            timeout=15,
            what="escalation",
        )
        (esc,) = hook.alerts(alertname="RiskwatchActionFailed")
        assert esc["labels"]["severity"] == "critical"
        assert esc["labels"]["outcome"] == "failed"
        assert "FAILED close_position all" in esc["annotations"]["summary"]
        sent = metrics.notifications.labels("0", "sent")._value.get()
        assert sent >= 4
    finally:
        await a.stop()
        await b.stop()


async def test_alertmanager_down_then_up_nothing_lost(tmp_path: Path) -> None:
    """Posts to an unreachable Alertmanager fail loudly (metric) and are retried later."""
    alertmanager_binary()
    hook = Webhook()
    await hook.start()
    from tests.support.rig import free_port

    port = free_port()
    url = f"alertmanager://127.0.0.1:{port}?resend=1"
    metrics = Metrics(CollectorRegistry())
    svc = NotifyService(
        NotificationsConfig(routes=(RouteConfig(urls=(Secret(url),)),)), metrics=metrics, tick=0.05
    )
    await svc.start()
    try:
        svc.enqueue_alert(alert("LossFlatten"))
        await wait_for(
            lambda: metrics.notifications.labels("0", "failed")._value.get() >= 1,
            timeout=10,
            what="a failed post",
        )
        async with running_alertmanager(tmp_path, hook, port=port):
            await wait_for(
                lambda: bool(hook.alerts(alertname="LossFlatten")), timeout=20, what="page"
            )
    finally:
        await svc.stop()
        await hook.stop()


async def test_notify_test_posts_a_test_alert(am: tuple[Alertmanager, Webhook]) -> None:
    """``riskwatch notify-test`` posts RiskwatchTest to each Alertmanager target."""
    manager, hook = am
    svc = replica(manager)
    outcomes = await svc.send_test()
    (outcome,) = outcomes
    assert outcome.result == "sent"
    assert outcome.display.endswith("/api/v2/alerts")
    await wait_for(lambda: bool(hook.alerts(alertname="RiskwatchTest")), timeout=15, what="test")
    (test,) = hook.alerts(alertname="RiskwatchTest")
    assert test["labels"]["severity"] == "info"
    assert test["labels"]["route"] == "0"
