"""A real Prometheus scrapes the real daemon; every shipped PromQL expression is run on it.

Needs the ``prometheus`` and ``promtool`` binaries (Debian package ``prometheus``,
installed by scripts/ci-apt.sh); skips when they are absent.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client import Counter

from tests.support.daemon_harness import Harness, running
from tests.support.paths import REPO
from tests.support.portutil import free_port
from tests.support.promql_sources import DEPLOY, RULES, Query, dashboard_queries, rule_queries

pytestmark = pytest.mark.deploy

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="prometheus/promtool not installed (bash scripts/ci-apt.sh)",
)

PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))

EVENT_DRIVEN = frozenset(
    {
        "riskwatch_alert_state",
        "riskwatch_alerts_fired_total",
        "riskwatch_latched",
        "riskwatch_actions_total",
        "riskwatch_action_retries_total",
        "riskwatch_notifications_total",
        "riskwatch_config_reload_total",
        "riskwatch_rule_evaluation_seconds_bucket",
        "riskwatch_rule_evaluation_seconds_sum",
        "riskwatch_rule_evaluation_seconds_count",
        "riskwatch_pulse_to_action_seconds_bucket",
        "riskwatch_pulse_to_action_seconds_sum",
        "riskwatch_pulse_to_action_seconds_count",
    }
)
"""Series that exist (or move) only once a rule, action, notification or reload happens."""


def _promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


@needs_prometheus
def test_promtool_check_config_and_rules() -> None:
    """The shipped prometheus.yml and rule file pass promtool's checks."""
    proc = _promtool("check", "config", str(PROMETHEUS_YML))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@needs_prometheus
def test_promtool_test_rules() -> None:
    """Every alert rule's unit tests pass (`promtool test rules`)."""
    assert RULE_TESTS
    proc = _promtool("test", "rules", *map(str, RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_rule_is_unit_tested() -> None:
    """Each alert of the rule file appears in at least one promtool test."""
    names = {q.where.removeprefix("rule ") for q in rule_queries()}
    tested: set[str] = set()
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in doc["tests"]:
            tested |= {t["alertname"] for t in case.get("alert_rule_test", [])}
    assert names - tested == set()


def _scrape_config(tmp_path: Path, target: str, prom_port: int) -> Path:
    """deploy/prometheus/prometheus.yml with the test's targets and 1 s intervals."""
    doc = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    doc["global"]["scrape_interval"] = "1s"
    doc["global"]["evaluation_interval"] = "1s"
    doc["rule_files"] = [str(PROMETHEUS_YML.parent / f) for f in doc["rule_files"]]
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    jobs["riskwatch"]["scrape_interval"] = "1s"
    jobs["riskwatch"]["static_configs"] = [{"targets": [target]}]
    jobs["prometheus"]["static_configs"] = [{"targets": [f"127.0.0.1:{prom_port}"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


class Prom:
    """The HTTP API of a running Prometheus."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http

    async def api(self, path: str, **params: str) -> Any:
        async with self.http.get(self.base + path, params=params) as resp:
            doc = await resp.json()
        return doc

    async def query(self, expr: str) -> dict[str, Any]:
        doc: dict[str, Any] = await self.api("/api/v1/query", query=expr)
        return doc


@asynccontextmanager
async def prometheus(tmp_path: Path, target: str) -> AsyncIterator[Prom]:
    """Run the real binary on a free loopback port with a throwaway TSDB."""
    assert PROMETHEUS is not None
    port = free_port()
    config = _scrape_config(tmp_path, target, port)
    proc = _promtool("check", "config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (tmp_path / "prometheus.log").open("w")
    server = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=log,
        stderr=log,
    )
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    prom = Prom(f"http://127.0.0.1:{port}", http)
    try:
        for _ in range(200):
            try:
                async with http.get(prom.base + "/-/ready") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        else:
            pytest.fail("prometheus not ready: " + (tmp_path / "prometheus.log").read_text())
        yield prom
    finally:
        await http.close()
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
        log.close()


async def _wait_for_scrapes(prom: Prom, count: int, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        doc = await prom.query('count_over_time(up{job="riskwatch"}[1m])')
        result = doc["data"]["result"]
        if result and float(result[0]["value"][1]) >= count:
            up = await prom.query('up{job="riskwatch"}')
            assert up["data"]["result"][0]["value"][1] == "1"
            return
        await asyncio.sleep(0.25)
    pytest.fail(f"prometheus did not scrape riskwatch {count} times within {timeout} s")


def _has_data(doc: dict[str, Any]) -> bool:
    """A successful answer with at least one sample that is a number."""
    result = doc["data"]["result"]
    if doc["data"]["resultType"] == "scalar":
        return not math.isnan(float(result[1]))
    return any(not math.isnan(float(s["value"][1])) for s in result)


async def _run_all(prom: Prom, queries: list[Query]) -> dict[Query, dict[str, Any]]:
    out = {}
    for q in queries:
        doc = await prom.query(q.expr)
        assert doc["status"] == "success", f"{q.where}: {q.expr!r}: {doc.get('error')}"
        out[q] = doc
    return out


RULES_GLOB = REPO / "rules" / "*.yaml"

EVENTS_CONFIG = f"""\
rules: ['{RULES_GLOB}']
actions:
  mode: armed
notifications:
  group_interval: 1s
  routes:
    - name: console
      urls: ['console://']
"""
"""The default rule pack, armed against the simulator, and a console notification route:
the crash then produces alerts, latches, actions, retries and notifications for real."""


async def _real_events(h: Harness) -> None:
    """Play the crash until its critical rules fired and acted, then reload the rules once."""
    metrics = h.daemon.metrics

    def count(counter: Counter, **labels: str) -> float:
        return sum(
            s.value
            for m in counter.collect()
            for s in m.samples
            if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items())
        )

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        if (
            count(metrics.actions, result="sent") >= 2
            and count(metrics.actions, result="confirmed") >= 1
            and count(metrics.action_retries) >= 1
            and count(metrics.notifications, result="sent") >= 1
        ):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the crash did not trip, act, retry and notify within 30 s")
    outcome = await h.daemon.reloader.reload("test")
    assert outcome.ok


@needs_prometheus
@pytest.mark.timeout(90)
async def test_every_panel_and_rule_query_returns_data(tmp_path: Path) -> None:
    """Each dashboard and rule expression parses; each panel returns data from a real scrape."""
    dashboard = dashboard_queries()
    rules = rule_queries()
    assert len(dashboard) > 30
    # A half fill of each close_position makes the executor retry the remainder.
    sim_options = {"speed": 8.0, "pulse_interval": 0.2, "fill_fraction": 0.5}
    config_options = {"extra": EVENTS_CONFIG}
    async with running(
        tmp_path, "crash", sim_options=sim_options, config_options=config_options
    ) as h:
        # The crash waits until Prometheus scrapes, so that its events land in the TSDB.
        h.sim.pause()
        status, text = await h.get("/metrics")
        assert status == 200
        lint = _promtool("check", "metrics", stdin=text)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        async with prometheus(tmp_path, f"127.0.0.1:{h.daemon.http_port}") as prom:
            await _wait_for_scrapes(prom, 6)
            # Phase 1: only what the daemon really does against the simulator.
            first = await _run_all(prom, dashboard + rules)
            empty = [q for q in dashboard if not _has_data(first[q])]
            not_wired = [q for q in empty if q.metrics & EVENT_DRIVEN]
            assert [q for q in empty if q not in not_wired] == [], "broken panels"
            scraped = await prom.query('group by (__name__) ({__name__=~"riskwatch_.+"})')
            present = {s["metric"]["__name__"] for s in scraped["data"]["result"]}

            # Phase 2: the crash trips the rules, the actions go out (and are retried after
            # half fills), notifications are delivered and the rules are reloaded once:
            # every panel now returns data from what the daemon really did.
            h.sim.resume()
            await _real_events(h)
            await asyncio.sleep(2.5)
            second = await _run_all(prom, dashboard + rules)
            still = [f"{q.where}: {q.expr}" for q in dashboard if not _has_data(second[q])]
            assert still == []
            scraped = await prom.query('group by (__name__) ({__name__=~"riskwatch_.+"})')
            present |= {s["metric"]["__name__"] for s in scraped["data"]["result"]}
            for q in rules:
                missing = q.metrics - present - {"up"}
                assert missing == set(), f"{q.where} reads metrics riskwatch never exports"

            # Prometheus evaluated every rule of the file without error.
            doc = await prom.api("/api/v1/rules")
            loaded = [r for g in doc["data"]["groups"] for r in g["rules"]]
            assert len(loaded) == len(rules)
            assert {r["health"] for r in loaded} <= {"ok", "unknown"}
            assert [r["name"] for r in loaded if r.get("lastError")] == []

    print(f"\n{len(dashboard)} dashboard queries, {len(rules)} rule queries")
    print(f"without data before any rule/action/notification event ({len(not_wired)}):")
    for q in not_wired:
        print(f"  {q.where}: {q.expr}")
