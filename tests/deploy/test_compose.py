"""deploy/: the compose files validate, and the riskwatch configs they mount load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from riskwatch.config import load_config
from tests.support.promql_sources import DASHBOARD, DEPLOY

pytestmark = pytest.mark.deploy

COMPOSE = DEPLOY / "docker-compose.yml"
LIVE = DEPLOY / "docker-compose.live.yml"
LIVE_ENV = {
    "QFEX_PUBLIC_KEY": "qfex_pub_example",
    "SLACK_URL": "json://127.0.0.1:9/warn",
    "SLACK_CRITICAL_URL": "json://127.0.0.1:9/crit",
}


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not installed (bash scripts/ci-apt.sh)")
    return subprocess.run(
        [binary, *args],
        cwd=DEPLOY,
        env={"PATH": os.environ.get("PATH", "/usr/bin"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_config_valid() -> None:
    """`docker-compose config -q` accepts the compose file, alone and with the live override."""
    proc = _compose("-f", str(COMPOSE), "config", "-q")
    assert proc.returncode == 0, proc.stderr
    proc = _compose("-f", str(COMPOSE), "-f", str(LIVE), "config", "-q", env=LIVE_ENV)
    assert proc.returncode == 0, proc.stderr


def test_demo_profile_adds_only_the_simulator() -> None:
    """Only the simulator is under the demo profile; the other three always run."""
    proc = _compose("-f", str(COMPOSE), "--profile", "demo", "config")
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    profiles = {name: svc.get("profiles", []) for name, svc in services.items()}
    assert profiles == {"riskwatch": [], "prometheus": [], "grafana": [], "sim": ["demo"]}
    sim = services["sim"]["command"]
    assert sim[0] == "sim"
    assert "--host=0.0.0.0" in sim


def test_live_override_reads_secrets_from_files() -> None:
    """With the live override riskwatch mounts riskwatch.yaml and gets Docker secrets."""
    proc = _compose("-f", str(COMPOSE), "-f", str(LIVE), "config", env=LIVE_ENV)
    assert proc.returncode == 0, proc.stderr
    svc = yaml.safe_load(proc.stdout)["services"]["riskwatch"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    assert mounts["/etc/riskwatch/riskwatch.yaml"].endswith("riskwatch/riskwatch.yaml")
    assert {s["source"] for s in svc["secrets"]} == {"qfex_secret", "riskwatch_admin_token"}
    assert svc["environment"]["RISKWATCH_ACTIONS_MODE"] == "dry-run"
    assert svc["environment"]["QFEX_SECRET_KEY"] == ""


def test_compose_wiring_matches_files() -> None:
    """Every file the compose file mounts exists; Prometheus scrapes the riskwatch service."""
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    for svc in doc["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "riskwatch"]
    assert job["static_configs"][0]["targets"] == ["riskwatch:9464"]
    assert 1 <= int(job["scrape_interval"].removesuffix("s")) <= 5
    assert "9464:9464" in doc["services"]["riskwatch"]["ports"][0]


def test_demo_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """riskwatch.demo.yaml loads with the environment the compose file gives it."""
    env = {"QFEX_PUBLIC_KEY": "qfex_pub_sim_desk_a", "QFEX_SECRET_KEY": "sim-secret"}
    config = load_config(DEPLOY / "riskwatch" / "riskwatch.demo.yaml", env)
    assert config.exchange.url == "ws://sim:8765"
    assert [a.name for a in config.accounts] == ["desk-a"]
    assert config.http.port == 9464


def test_live_config_is_dry_run_with_file_secrets(tmp_path: Path) -> None:
    """riskwatch.yaml defaults to dry-run on wss:// and takes its secrets from files."""
    secret = tmp_path / "s"
    secret.write_text("not-a-real-secret\n", encoding="utf-8")
    env = {**LIVE_ENV, "QFEX_SECRET_FILE": str(secret), "RISKWATCH_ADMIN_TOKEN_FILE": str(secret)}
    config = load_config(DEPLOY / "riskwatch" / "riskwatch.yaml", env)
    assert config.actions.mode == "dry-run"
    assert config.exchange.url.startswith("wss://")
    assert config.accounts[0].secret_key is not None
    assert config.accounts[0].secret_key.reveal() == "not-a-real-secret"
    assert len(config.notifications.routes) == 2


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    """The datasource uid is the one every panel uses, and the provider path holds the JSON."""
    prov = DEPLOY / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    uid = ds["datasources"][0]["uid"]
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uids = {p["datasource"]["uid"] for p in dash["panels"] if "datasource" in p}
    assert uids == {uid}
    provider = yaml.safe_load((prov / "dashboards" / "riskwatch.yml").read_text(encoding="utf-8"))
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
