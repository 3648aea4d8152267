"""Notifications delivered through apprise to real loopback sinks, end to end."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from types import MappingProxyType

import pytest
from prometheus_client import CollectorRegistry

from riskwatch.clock import ManualClock
from riskwatch.config import NotificationsConfig, RouteConfig
from riskwatch.durations import Duration
from riskwatch.metrics import Metrics
from riskwatch.notify.deliver import DeliveryPolicy
from riskwatch.notify.notice import ActionNotice
from riskwatch.notify.service import NotifyService
from riskwatch.notify.silences import parse_silence
from riskwatch.store import Store
from tests.support.factories import T0, alert_notice, route_config
from tests.support.notify_sinks import (
    SMTP_PASSWORD,
    WEBHOOK_TOKEN,
    eventually,
    hanging_server,
    smtp_server,
    webhook,
)

MS = 0.001
FAST = DeliveryPolicy(timeout=300 * MS, attempts=2, backoff=20 * MS, queue_size=64)


def service(
    *routes: RouteConfig, clock: ManualClock, store: Store | None = None, **kw: object
) -> tuple[NotifyService, CollectorRegistry]:
    registry = CollectorRegistry()
    svc = NotifyService(
        NotificationsConfig(routes=routes),
        clock=clock,
        store=store,
        metrics=Metrics(registry),
        delivery=kw.pop("delivery", FAST),  # type: ignore[arg-type]
        tick=20 * MS,
        **kw,  # type: ignore[arg-type]
    )
    return svc, registry


def count(registry: CollectorRegistry, route: str, result: str) -> float:
    v = registry.get_sample_value(
        "riskwatch_notifications_total", {"route": route, "result": result}
    )
    return v or 0.0


async def settle(svc: NotifyService) -> None:
    """Let the worker take what is queued and the lanes start."""
    for _ in range(5):
        await asyncio.sleep(30 * MS)


async def test_firing_repeat_resolved_through_webhook_and_smtp(tmp_path: Path) -> None:
    """Firing arrives on both channels, repeats only after repeat_interval, then RESOLVED."""
    clock = ManualClock(T0)
    store = Store.open(tmp_path / "state.db")
    async with webhook() as hook, smtp_server() as (box, mail_url):
        svc, reg = service(
            route_config([hook.url(), mail_url], repeat_interval=Duration(60_000)),
            clock=clock,
            store=store,
            delivery=DeliveryPolicy(timeout=3.0, attempts=2, backoff=20 * MS),
        )
        await svc.start()
        try:
            svc.enqueue_alert(alert_notice())
            (msg,) = await hook.wait_for(1)
            assert msg["title"] == "[WARNING] MarginUsageHigh on desk-a"
            assert "MarginUsageHigh on desk-a at 91.0 %" in msg["message"]
            assert msg["type"] == "warning"
            await eventually(lambda: bool(box.messages))
            assert "Subject: [WARNING] MarginUsageHigh on desk-a" in box.messages[0]
            clock.advance(59)
            await settle(svc)
            assert len(hook.received) == 1
            clock.advance(1)
            await hook.wait_for(2)
            assert hook.received[1]["title"].endswith("(still firing)")
            clock.advance(5)
            svc.enqueue_alert(alert_notice(status="resolved", at=clock.now()))
            await hook.wait_for(3)
            assert hook.received[2]["title"] == "[RESOLVED] [warning] MarginUsageHigh on desk-a"
            assert hook.received[2]["type"] == "success"
            await eventually(lambda: len(svc.outcomes) == 6)
            assert "RESOLVED" in box.messages[-1]
        finally:
            await svc.stop()
        assert count(reg, "0", "sent") == 6  # 3 messages × 2 URLs
        rows = store.notifications()
        assert {r.result for r in rows} == {"sent"}
        assert len(rows) == 6
        assert all("://" not in r.url_id for r in rows)
    store.close()


async def test_grouped_routed_and_continue() -> None:
    """Ten symbols make one message; severity and label routing with and without continue."""
    clock = ManualClock(T0)
    async with webhook() as hook:
        svc, _ = service(
            route_config([hook.url("crit")], match={"severity": "critical"}, continue_=True),
            route_config([hook.url("desk")], match={"desk": "a"}),
            route_config([hook.url("rest")]),
            clock=clock,
        )
        await svc.start()
        try:
            for i in range(10):
                svc.enqueue_alert(alert_notice("LeverageCap", symbol=f"S{i}-USD"))
            svc.enqueue_alert(alert_notice("DailyLoss", severity="critical", labels={"desk": "a"}))
            await hook.wait_for(3)
            await settle(svc)
        finally:
            await svc.stop()
    by_path = sorted(
        (p.split("/")[1], m["title"]) for p, m in zip(hook.paths, hook.received, strict=True)
    )
    assert by_path == [
        ("crit", "[CRITICAL] DailyLoss on desk-a"),
        ("desk", "[CRITICAL] DailyLoss on desk-a"),
        ("rest", "[WARNING] LeverageCap on desk-a (10 symbols)"),
    ]


async def test_silenced_inhibited_and_escalation_bypass(tmp_path: Path) -> None:
    """Silenced and inhibited alerts send nothing and are counted; an escalation still goes."""
    clock = ManualClock(T0)
    store = Store.open(tmp_path / "state.db")
    async with webhook() as hook:
        svc, reg = service(route_config([hook.url()]), clock=clock, store=store)
        await svc.start()
        try:
            await svc.add_silence(
                parse_silence(
                    {"matchers": ["rule=~Daily.*"], "duration": 600, "created_by": "ops"}, T0
                )
            )
            svc.enqueue_alert(alert_notice("DailyLoss", severity="critical"))
            svc.enqueue_alert(alert_notice("MarginUsageCritical", severity="critical"))
            svc.enqueue_alert(alert_notice("MarginUsageHigh", severity="warning"))
            (first,) = await hook.wait_for(1)
            assert first["title"] == "[CRITICAL] MarginUsageCritical on desk-a"
            assert (
                svc.mute_of(alert_notice("DailyLoss", severity="critical").all_labels)["muted"]
                == "silenced"
            )
            assert svc.mute_of(alert_notice().all_labels) == {"muted": "inhibited"}
            svc.enqueue_action(
                ActionNotice(
                    "failed", "DailyLoss", "desk-a", "close_position all", T0, detail="err 1004"
                )
            )
            (_, esc) = await hook.wait_for(2)
            assert esc["title"] == "[CRITICAL] FAILED close_position all on desk-a (DailyLoss)"
            assert "err 1004" in esc["message"]
            await settle(svc)
            assert len(hook.received) == 2
        finally:
            await svc.stop()
    assert count(reg, "0", "silenced") == 1
    assert count(reg, "0", "inhibited") == 1
    assert count(reg, "0", "sent") == 2
    store.close()


async def test_hanging_channel_never_delays_enqueue_and_fails_counted() -> None:
    """While one channel hangs, enqueue stays fast, the other channel delivers, failures count."""
    clock = ManualClock(T0)
    async with hanging_server() as port, webhook() as hook:
        svc, reg = service(
            route_config([f"json://127.0.0.1:{port}/hook/{WEBHOOK_TOKEN}", hook.url()]),
            clock=clock,
        )
        await svc.start()
        try:
            costs = []
            for i in range(200):
                n = alert_notice("Lev", symbol=f"S{i}", trip_id=1)
                t = time.perf_counter()
                svc.enqueue_alert(n)
                costs.append(time.perf_counter() - t)
                if i % 50 == 0:
                    await asyncio.sleep(0)
            await hook.wait_for(1)
            costs.sort()
            assert costs[int(len(costs) * 0.99)] < 5 * MS
            await eventually(lambda: count(reg, "0", "failed") >= 1)
        finally:
            await svc.stop(drain=0)
    assert count(reg, "0", "sent") >= 1
    failed = [o for o in svc.outcomes if o.result == "failed"]
    assert failed[0].detail == "timed out after 0.3s"
    assert failed[0].attempts == 2
    # Each failed message was retried once (stamina's loop), and counted so.
    assert count(reg, "0", "retried") >= count(reg, "0", "failed") >= 1


async def test_no_secret_in_logs_outcomes_or_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Webhook tokens and SMTP passwords never reach logs, outcomes or the notification log."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger("apprise").setLevel(logging.DEBUG)
    clock = ManualClock(T0)
    store = Store.open(tmp_path / "state.db")
    bad_mail = (
        f"mailto://rw:{SMTP_PASSWORD}@127.0.0.1:1?smtp=127.0.0.1&from=a@b.c&to=d@e.f&mode=insecure"
    )
    dead_hook = f"json://127.0.0.1:1/hook/{WEBHOOK_TOKEN}"
    async with smtp_server() as (_box, mail_url):
        svc, _ = service(
            route_config(
                [mail_url.replace(SMTP_PASSWORD, SMTP_PASSWORD + "x"), bad_mail, dead_hook]
            ),
            clock=clock,
            store=store,
        )
        await svc.start()
        logging.getLogger("apprise").setLevel(logging.DEBUG)  # the worst case: apprise verbose
        logging.getLogger("urllib3").setLevel(logging.DEBUG)
        try:
            svc.enqueue_alert(alert_notice())
            await eventually(lambda: sum(o.result == "failed" for o in svc.outcomes) == 3)
            await settle(svc)
        finally:
            await svc.stop()
    text = caplog.text + repr(svc.outcomes) + repr(store.notifications())
    for o in svc.outcomes:
        text += o.display + (o.detail or "")
    assert "apprise" in caplog.text.lower() or caplog.records  # something was logged
    assert SMTP_PASSWORD not in text
    assert WEBHOOK_TOKEN not in text
    store.close()


async def test_engine_decision_and_restart_without_renotify(tmp_path: Path) -> None:
    """A Decision notifies once; after a restart its still-firing alert is not re-sent."""
    from riskwatch.rules.engine import Alert, Decision
    from riskwatch.rules.lifecycle import State

    alert = Alert(
        rule="DailyLoss",
        account="desk-a",
        symbol=None,
        state=State.FIRING,
        severity="critical",
        labels=MappingProxyType({}),
        summary="pnl today -6,000 USD",
        description="",
        active_since=T0,
        fired_at=T0,
        trip_id=4,
        latched=True,
        shadow=False,
    )
    decision = Decision(account="desk-a", at=T0, trigger="pulse", stale=False, alerts=(alert,))
    clock = ManualClock(T0)
    path = tmp_path / "state.db"
    async with webhook() as hook:
        for restart in range(2):
            store = Store.open(path)
            svc, _ = service(
                route_config([hook.url()], repeat_interval=Duration(3_600_000)),
                clock=clock,
                store=store,
            )
            await svc.start()
            try:
                assert svc.enqueue_decision(decision)
                if restart == 0:
                    (msg,) = await hook.wait_for(1)
                    assert msg["title"] == "[CRITICAL] DailyLoss on desk-a"
                    assert "pnl today -6,000 USD" in msg["message"]
                    await eventually(lambda s=svc: len(s.outcomes) == 1)  # type: ignore[misc]
                else:
                    await settle(svc)
                    assert len(hook.received) == 1
            finally:
                await svc.stop()
                store.close()
            clock.advance(30)
