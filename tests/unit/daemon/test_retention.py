"""Retention purge of the notification log and ended silences, on a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from riskwatch.clock import ManualClock
from riskwatch.config import Config, RetentionConfig, load_config_text
from riskwatch.daemon.app import Daemon
from riskwatch.daemon.retention import Purged, RetentionPurge, notification_log_cutoff
from riskwatch.durations import Duration
from riskwatch.errors import ConfigError, StateStoreError
from riskwatch.metrics import Metrics, Registry
from riskwatch.store import Store

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

BASE = "accounts:\n  - name: a\n    jwt: x\n"


def config(extra: str = "") -> Config:
    return load_config_text(BASE + extra, "/etc/riskwatch/riskwatch.yaml", {})


def log_entry(store: Store, at: float, key: str = "R/a") -> None:
    store.record_notification(
        route="default",
        url_id="u1",
        alert_key=key,
        status="firing",
        result="sent",
        detail="fp=abc",
        now=at,
    )


def silence(store: Store, sid: str, starts: float, ends: float) -> None:
    store.add_silence(
        id=sid,
        matchers=[{"name": "account", "value": "a", "op": "="}],
        starts_at=starts,
        ends_at=ends,
        created_by="me",
        comment="",
        now=starts,
    )


def purged_total(registry: Registry, kind: str) -> float:
    value = registry.get_sample_value("riskwatch_retention_purged_total", {"kind": kind})
    assert value is not None
    return value


# --- configuration ----------------------------------------------------------------------


def test_retention_defaults_to_thirty_days() -> None:
    assert config().state.retention == RetentionConfig(
        Duration(30 * 86_400_000), Duration(30 * 86_400_000)
    )


def test_retention_keys_are_read() -> None:
    c = config(
        "state:\n  path: ':memory:'\n  retention:\n    notification_log: 7d\n    silences: 36h\n"
    )
    assert c.state.retention == RetentionConfig(Duration(7 * 86_400_000), Duration(36 * 3_600_000))


def test_retention_below_an_hour_or_misspelt_is_a_positioned_problem() -> None:
    text = BASE + "state:\n  retention:\n    notification_log: 10m\n    silence: 1d\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml", {})
    messages = [str(p) for p in info.value.problems]
    assert messages[0] == "c.yaml:6:23: duration '10m' is below the minimum of 1h"
    assert messages[1].startswith("c.yaml:7:5: unknown key 'silence'")


# --- one purge --------------------------------------------------------------------------


def test_purge_deletes_only_what_is_past_retention(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    clock = ManualClock(T0 + 40 * DAY)
    registry = Registry()
    cfg = config("state:\n  retention:\n    notification_log: 30d\n    silences: 7d\n")
    with Store.open(path) as store:
        for age in (45, 31, 29, 1):
            log_entry(store, clock.now() - age * DAY, key=f"R/{age}")
        silence(store, "old", T0, clock.now() - 8 * DAY)  # ended 8 days ago: goes
        silence(store, "recent", T0, clock.now() - 6 * DAY)  # ended 6 days ago: stays
        silence(store, "active", clock.now() - DAY, clock.now() + DAY)
        silence(store, "future", clock.now() + DAY, clock.now() + 2 * DAY)
        silence(store, "expired", clock.now() - 20 * DAY, clock.now() + DAY)
        store.expire_silence("expired", clock.now() - 10 * DAY)  # expired 10 days ago: goes
        purge = RetentionPurge(store, lambda: cfg, Metrics(registry), clock)
        assert purge.purge(clock.now()) == Purged(notification_log=2, silences=2)
        assert purge.purge(clock.now()) == Purged(0, 0)  # nothing left to purge
    with Store.open(path) as store:  # the file itself no longer holds them
        assert sorted(n.alert_key for n in store.notifications()) == ["R/1", "R/29"]
        assert sorted(s.id for s in store.silences()) == ["active", "future", "recent"]
    assert purged_total(registry, "notification_log") == 2
    assert purged_total(registry, "silences") == 2


def test_the_log_is_kept_as_long_as_the_longest_repeat_interval(tmp_path: Path) -> None:
    """A restart needs the last message of a group within its repeat_interval."""
    cfg = config(
        "notifications:\n  routes:\n    - name: weekly\n      urls: ['json://127.0.0.1:9/x']\n"
        "      repeat_interval: 60d\n"
        "state:\n  retention:\n    notification_log: 30d\n"
    )
    now = T0 + 100 * DAY
    assert notification_log_cutoff(cfg, now) == now - 60 * DAY
    assert notification_log_cutoff(config(), now) == now - 30 * DAY
    with Store.open(tmp_path / "state.db") as store:
        log_entry(store, now - 45 * DAY)
        log_entry(store, now - 61 * DAY)
        purge = RetentionPurge(store, lambda: cfg, Metrics(Registry()), ManualClock(now))
        assert purge.purge(now).notification_log == 1
        assert [n.at for n in store.notifications()] == [now - 45 * DAY]


def test_a_large_purge_goes_in_short_transactions(tmp_path: Path) -> None:
    """Batches of ``batch`` entries, oldest first, until nothing past retention is left."""
    now = T0 + 100 * DAY
    with Store.open(tmp_path / "state.db") as store:
        for i in range(7):
            log_entry(store, now - (40 + i) * DAY, key=f"old/{i}")
        log_entry(store, now - DAY, key="young")
        calls: list[int] = []
        purge_notifications = store.purge_notifications

        def counted(before: float, limit: int | None = None) -> int:
            deleted = purge_notifications(before, limit)
            calls.append(deleted)
            return deleted

        store.purge_notifications = counted  # type: ignore[method-assign]
        purge = RetentionPurge(store, config, Metrics(Registry()), ManualClock(now), batch=3)
        assert purge.purge(now).notification_log == 7
        assert calls == [3, 3, 1]
        assert [n.alert_key for n in store.notifications()] == ["young"]


def test_a_refused_purge_raises_a_state_store_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    store.close()
    purge = RetentionPurge(store, config, Metrics(Registry()), ManualClock(T0))
    with pytest.raises(StateStoreError):
        purge.purge(T0)


# --- the schedule -----------------------------------------------------------------------


async def _until(predicate: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_purges_at_start_and_then_periodically(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    registry = Registry()
    cfg = config()
    with Store.open(tmp_path / "state.db") as store:
        log_entry(store, T0 - 31 * DAY)
        purge = RetentionPurge(store, lambda: cfg, Metrics(registry), clock, interval=0.02)
        stopped = asyncio.Event()
        task = asyncio.create_task(purge.run(stopped))
        await _until(lambda: purged_total(registry, "notification_log") == 1)
        # Time passes on the manual clock: an entry that was young is now past retention.
        log_entry(store, T0 - 29 * DAY)
        silence(store, "s", T0 - 2 * DAY, T0 - DAY)
        clock.advance(30 * DAY)
        await _until(lambda: purged_total(registry, "silences") == 1)
        await _until(lambda: purged_total(registry, "notification_log") == 2)
        stopped.set()
        await asyncio.wait_for(task, 1.0)
        assert store.notifications() == []


async def test_a_failing_purge_is_counted_and_retried(tmp_path: Path) -> None:
    registry = Registry()
    store = Store.open(tmp_path / "state.db")
    store.close()  # every purge now fails
    purge = RetentionPurge(store, config, Metrics(registry), ManualClock(T0), interval=0.01)
    stopped = asyncio.Event()
    task = asyncio.create_task(purge.run(stopped))

    def failures() -> float:
        return registry.get_sample_value("riskwatch_retention_purge_failures_total") or 0.0

    await _until(lambda: failures() >= 2)  # the loop survives the first failure
    assert not task.done()
    stopped.set()
    await asyncio.wait_for(task, 1.0)


async def test_the_daemon_runs_the_purge_on_its_state_database(tmp_path: Path) -> None:
    # Loopback only: the exchange address refuses connections, which this test ignores.
    cfg = config(
        "exchange:\n  url: ws://127.0.0.1:9\n  rest_url: http://127.0.0.1:9\n"
        "http:\n  listen: 127.0.0.1:0\n"
    )
    with Store.open(tmp_path / "state.db") as store:
        log_entry(store, T0 - 31 * DAY)
        clock = ManualClock(T0)
        registry = Registry()
        daemon = Daemon(cfg, clock=clock, registry=registry, store=store)
        assert daemon.retention is not None
        await daemon.start()
        try:
            await _until(lambda: purged_total(registry, "notification_log") == 1)
        finally:
            await daemon.stop()
        assert store.notifications() == []
    assert Daemon(cfg, registry=Registry()).retention is None  # no database, nothing to purge
