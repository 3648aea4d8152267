"""The notification worker stops when asked, whatever it was waiting on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from riskwatch.config import NotificationsConfig
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
