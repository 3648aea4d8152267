"""A daemon task that ends before the daemon stops is told loudly (daemon/taskwatch.py):
its gauge drops to 0, ``/readyz`` names it, a person is notified; a stop is not such an end."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from riskwatch.daemon.app import Daemon
from riskwatch.daemon.jwtwatch import JwtWatch
from riskwatch.daemon.taskwatch import TASK_ENDED
from riskwatch.metrics import TASKS
from riskwatch.notify.dispatch import Dispatcher
from tests.support.notify_sinks import webhook
from tests.support.rig import Http, in_process, metric, offline_setup, wait_for
from tests.support.scrape import Samples


async def _told_ended(daemon: Daemon, http: Http, name: str, kind: str) -> Samples:
    """Wait for the task ``name`` (metric label ``kind``) to end with a RuntimeError; check
    that the watch holds it alone, its gauge reads 0 and ``/readyz`` names it. Returns the
    ``/metrics`` samples."""
    await wait_for(lambda: bool(daemon.task_watch.ended), 5, "(task ended)")
    assert daemon.task_watch.ended == {name: "RuntimeError"}
    m = await http.metrics()
    assert metric(m, "riskwatch_task_running", task=kind) == 0
    status, body = await http.get("/readyz")
    assert status == 503
    assert f"task {name} ended: RuntimeError" in body
    return m


@pytest.mark.timeout(60)
async def test_a_task_that_ends_is_counted_fails_readyz_and_is_notified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: JwtWatch, now: float) -> None:
        raise RuntimeError("token=sk-not-for-notifications")

    monkeypatch.setattr(JwtWatch, "check", broken)
    async with webhook() as hook:
        setup = offline_setup(tmp_path, notify_urls=[hook.url()])
        with caplog.at_level(logging.CRITICAL, logger="riskwatch.daemon.taskwatch"):
            async with in_process(setup) as daemon:
                assert daemon.http_port is not None
                http = Http(daemon.http_port)
                try:
                    m = await _told_ended(daemon, http, "jwt-watch", "jwt_watch")
                    for kind in TASKS:
                        if kind != "jwt_watch":
                            assert metric(m, "riskwatch_task_running", task=kind) == 1
                    docs = await hook.wait_for(1, timeout=10)
                    text = str([d for d in docs if TASK_ENDED in str(d)])
                    assert "riskwatch task jwt-watch ended (RuntimeError)" in text
                    assert "sk-not-for-notifications" not in text
                finally:
                    await http.close()
        assert "DAEMON TASK jwt-watch ENDED (RuntimeError)" in caplog.text
        # The stop ended every other task: none of them counts as an end.
        assert daemon.task_watch.ended == {"jwt-watch": "RuntimeError"}
        assert daemon.unclean_stop == []


@pytest.mark.timeout(60)
async def test_the_notification_worker_is_watched_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker cannot notify its own end: the gauge and ``/readyz`` still say it."""

    def broken(self: Dispatcher, now: float) -> float | None:
        raise RuntimeError("dispatcher bug")

    monkeypatch.setattr(Dispatcher, "next_due", broken)
    async with in_process(offline_setup(tmp_path)) as daemon:
        assert daemon.http_port is not None
        http = Http(daemon.http_port)
        try:
            await _told_ended(daemon, http, "notify", "notifications")
        finally:
            await http.close()
