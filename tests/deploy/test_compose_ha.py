"""deploy/docker-compose.ha.yml: two replicas, own state volumes, one shared lease volume."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from riskwatch.config import load_config
from tests.support.promql_sources import DEPLOY

pytestmark = pytest.mark.deploy

COMPOSE = DEPLOY / "docker-compose.ha.yml"
CONFIG = DEPLOY / "riskwatch" / "riskwatch.ha.yaml"


def _config_doc() -> dict[str, dict[str, object]]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not installed (bash scripts/ci-apt.sh)")
    proc = subprocess.run(
        [binary, "-f", str(COMPOSE), "--profile", "demo", "config"],
        cwd=DEPLOY,
        env={"PATH": os.environ.get("PATH", "/usr/bin")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, dict[str, object]] = yaml.safe_load(proc.stdout)
    return doc


def _mounts(svc: object) -> dict[str, str]:
    assert isinstance(svc, dict)
    out = {}
    for v in svc["volumes"]:
        if isinstance(v, dict):
            out[v["target"]] = v["source"]
        else:
            source, target = v.split(":")[:2]
            out[target] = source
    return out


def test_two_replicas_share_only_the_lease_volume() -> None:
    services = _config_doc()["services"]
    a, b = _mounts(services["riskwatch-a"]), _mounts(services["riskwatch-b"])
    assert a["/var/lib/riskwatch-lease"] == b["/var/lib/riskwatch-lease"]
    assert a["/var/lib/riskwatch"] != b["/var/lib/riskwatch"]  # own state database each
    assert a["/etc/riskwatch/riskwatch.yaml"].endswith("riskwatch.ha.yaml")
    assert b["/etc/riskwatch/riskwatch.yaml"] == a["/etc/riskwatch/riskwatch.yaml"]
    config = load_config(CONFIG, {"QFEX_PUBLIC_KEY": "pk", "QFEX_SECRET_KEY": "sk-0123456789",
                                  "RISKWATCH_REPLICA": "riskwatch-a"})  # fmt: skip
    assert config.ha.backend == "file"
    assert config.ha.lock_file is not None
    assert config.ha.lock_file.parent == Path("/var/lib/riskwatch-lease")
    assert config.ha.identity == "riskwatch-a"
    assert str(config.state.path).startswith("/var/lib/riskwatch/")
    for name in ("riskwatch-a", "riskwatch-b"):
        service = services[name]
        assert isinstance(service, dict)
        env = service["environment"]
        assert isinstance(env, dict)
        assert env["RISKWATCH_REPLICA"] == name


def test_the_image_owns_the_lease_folder() -> None:
    """An empty named volume takes the owner of the image's folder: the riskwatch user's,
    so the non-root daemon can create the lock file."""
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text(encoding="utf-8")
    assert "install -d -o riskwatch -g riskwatch -m 0750 /var/lib/riskwatch-lease" in dockerfile
