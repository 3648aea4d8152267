"""The notification worker: it outlives a bad item, and stops when asked, whatever it
was waiting on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from riskwatch.config import NotificationsConfig
from riskwatch.metrics import Metrics, Registry
from riskwatch.notify.service import BATCH, NotifyService
from tests.support.factories import alert_notice


async def test_stop_is_not_lost_when_the_queue_wakes_the_worker_at_the_same_moment(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stop arriving while a queued item wakes the worker still stops it.

    The worker waits on its queue with a time bound. ``stop()`` takes up to ``BATCH``
    items and cancels the worker; when more were queued, the worker's wait has already
    finished with one of them in the same turn of the loop. Under
    ``asyncio.wait_for`` (Python 3.11) that result won over the cancellation, the worker
    ran on, and ``stop()`` waited for ever: a daemon that did not exit (seen at 1000
    accounts in bench/bench_scale.py). The worker must end on the first cancellation
    (``cancel_and_wait`` would cancel it again, a second later, with a warning), and
    every item queued before the stop is taken.
    """
    svc = NotifyService(NotificationsConfig(), tick=30.0)
    await svc.start()
    for _ in range(3):
        await asyncio.sleep(0)  # the worker is now waiting on its queue
    for i in range(BATCH + 5):
        svc.enqueue_alert(alert_notice(account=f"desk-{i}"))
    with caplog.at_level(logging.WARNING, logger="riskwatch.tasks"):
        stopping = asyncio.create_task(svc.stop(drain=0.1))
        done, _ = await asyncio.wait([stopping], timeout=5)
    assert stopping in done, "stop() did not return"
    stopping.result()
    assert "did not end on cancellation" not in caplog.text
    assert svc.pending() == 0


async def test_an_item_that_fails_is_logged_counted_and_the_worker_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug on one queued item (here: taking it raises) costs that item, not the worker."""
    registry = Registry()
    svc = NotifyService(NotificationsConfig(), metrics=Metrics(registry), tick=0.01)
    taken: list[str] = []
    take = svc._take

    def fails_once(item: tuple[str, object]) -> None:
        if not taken:
            taken.append("failed")
            raise RuntimeError("bad item")
        taken.append("taken")
        take(item)

    monkeypatch.setattr(svc, "_take", fails_once)
    await svc.start()
    try:
        with caplog.at_level(logging.ERROR, logger="riskwatch.notify.service"):
            svc.enqueue_alert(alert_notice(account="desk-a"))
            async with asyncio.timeout(5):
                while not taken:
                    await asyncio.sleep(0.01)
            svc.enqueue_alert(alert_notice(account="desk-b"))
            async with asyncio.timeout(5):
                while taken != ["failed", "taken"]:
                    await asyncio.sleep(0.01)
        assert svc.task is not None
        assert not svc.task.done()
        assert "notification dispatch failed; continuing" in caplog.text
        value = registry.get_sample_value("riskwatch_task_errors_total", {"task": "notifications"})
        assert value == 1
    finally:
        await svc.stop(drain=0.1)
