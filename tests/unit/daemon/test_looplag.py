"""The event loop's lateness (riskwatch/daemon/looplag.py): one late wake-up is counted
but starts no episode; lateness over a whole window fires once, with a reason on
``/readyz`` and a notice; a whole window on time resolves it."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from riskwatch.daemon.looplag import FIRE_LAG, LOOP_LAGGING, PERIOD, LagWatch, LoopLagProbe
from riskwatch.metrics import Metrics
from riskwatch.notify.notice import AlertNotice


def feed(watch: LagWatch, lag: float, start: float, seconds: float) -> list[tuple[float, str]]:
    """Measures every PERIOD (+ lag) from ``start`` for ``seconds``: the changes, timed."""
    changes: list[tuple[float, str]] = []
    now = start
    while now < start + seconds:
        now += PERIOD + lag
        change = watch.observe(lag, now)
        if change is not None:
            changes.append((now, change))
    return changes


def test_one_late_wake_up_is_no_episode() -> None:
    watch = LagWatch()
    assert feed(watch, 0.0005, 0.0, 15.0) == []
    assert watch.observe(3.0, 15.5) is None  # one stall of 3 s among 150 wake-ups
    assert feed(watch, 0.0005, 15.5, 15.0) == []
    assert not watch.lagging


def test_lateness_over_a_window_fires_once_then_resolves_after_a_window_on_time() -> None:
    watch = LagWatch(window=10.0)
    changes = feed(watch, 0.15, 0.0, 30.0)
    assert [c for _, c in changes] == ["firing"]
    fired_at = changes[0][0]
    assert 10.0 <= fired_at <= 10.5  # the first verdict: a whole window after the first measure
    assert watch.lagging
    assert watch.p90() >= FIRE_LAG
    # On time again: the percentile falls once late wake-ups are under a tenth of
    # the window's (late ones are 0.25 s apart, on-time ones 0.1 s).
    on_time = feed(watch, 0.001, 30.0, 30.0)
    assert [c for _, c in on_time] == ["resolved"]
    assert 37.0 <= on_time[0][0] <= 39.0
    assert not watch.lagging


def test_a_loop_held_longer_than_a_window_is_an_episode() -> None:
    watch = LagWatch(window=10.0)
    assert feed(watch, 0.0005, 0.0, 15.0) == []
    assert watch.observe(30.0, 45.1) == "firing"  # nothing else measured in 30 s
    assert watch.worst() == 30.0
    assert [c for _, c in feed(watch, 0.0005, 45.1, 12.0)] == ["resolved"]


def test_lateness_just_under_the_threshold_never_fires() -> None:
    watch = LagWatch()
    assert feed(watch, FIRE_LAG * 0.9, 0.0, 60.0) == []


def test_the_start_up_is_not_judged_on_a_few_measures() -> None:
    watch = LagWatch(window=10.0)
    # Slow first seconds (the daemon's start-up), then on time: no episode.
    assert feed(watch, 0.5, 0.0, 3.0) == []
    assert feed(watch, 0.001, 3.0, 20.0) == []


def test_an_episode_between_resolve_and_fire_thresholds_stays_firing() -> None:
    watch = LagWatch(window=10.0, fire_lag=0.1, resolve_lag=0.025)
    feed(watch, 0.2, 0.0, 12.0)
    assert watch.lagging
    assert feed(watch, 0.05, 12.0, 30.0) == []  # better, not on time: still an episode
    assert watch.lagging


async def test_the_probe_counts_every_wake_up_and_escalates_an_episode() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    notices: list[AlertNotice] = []
    stopped = asyncio.Event()
    probe = LoopLagProbe(
        metrics,
        notify=notices.append,
        now=lambda: 1_767_225_600.0,
        stopped=stopped,
        watch=LagWatch(window=0.3, fire_lag=0.02, resolve_lag=0.01),
        period=0.01,
    )
    task = asyncio.create_task(probe.run())
    try:

        async def hog() -> None:
            # A task that keeps the loop 40 ms at a time: every wake-up ~40 ms late.
            while not stopped.is_set():
                time.sleep(0.04)  # noqa: ASYNC251 - the point: a loop held by blocking work
                await asyncio.sleep(0)

        hogging = asyncio.create_task(hog())
        deadline = time.monotonic() + 10
        while not notices and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        hogging.cancel()
        assert [n.status for n in notices] == ["firing"]
        firing = notices[0]
        assert (firing.rule, firing.account, firing.severity) == (LOOP_LAGGING, "", "critical")
        assert "late" in firing.summary
        assert "shards" in firing.description
        (reason,) = probe.readiness_reasons()
        assert reason.startswith("event loop lagging: ")
        assert registry.get_sample_value("riskwatch_event_loop_lagging") == 1
        late = registry.get_sample_value("riskwatch_event_loop_lag_seconds_bucket", {"le": "0.025"})
        count = registry.get_sample_value("riskwatch_event_loop_lag_seconds_count")
        assert count is not None
        assert late is not None
        assert count - late >= 5

        deadline = time.monotonic() + 10
        while len(notices) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [n.status for n in notices] == ["firing", "resolved"]
        assert notices[1].trip_id == firing.trip_id
        assert probe.readiness_reasons() == []
        assert registry.get_sample_value("riskwatch_event_loop_lagging") == 0
    finally:
        stopped.set()
        await asyncio.wait_for(task, 1)


async def test_a_fault_in_the_probe_is_counted_and_the_probe_goes_on() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    stopped = asyncio.Event()

    def failing(_: AlertNotice) -> None:
        raise RuntimeError("notifier down")

    probe = LoopLagProbe(
        metrics,
        notify=failing,
        now=time.time,
        stopped=stopped,
        watch=LagWatch(window=0.05, fire_lag=0.0, resolve_lag=-1.0),
        period=0.005,
    )
    task = asyncio.create_task(probe.run())
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            count = registry.get_sample_value("riskwatch_event_loop_lag_seconds_count") or 0
            if count >= 30:
                break
        assert not task.done()
        errors = registry.get_sample_value("riskwatch_task_errors_total", {"task": "loop_lag"})
        assert errors == 1  # the firing notice failed once; the episode goes on, measured
        assert count >= 30
    finally:
        stopped.set()
        await asyncio.wait_for(task, 1)
