"""Lock files with hashes, dependency floors above known vulnerabilities, the pin audit."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.paths import REPO


def _load_script(path: Path) -> ModuleType:
    """Import a script of ``scripts/`` as a module, without touching ``sys.path``."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses of the script resolve their module
    spec.loader.exec_module(module)
    return module


audit_locks = _load_script(REPO / "scripts" / "audit_locks.py")

LOCKS = {
    "runtime": REPO / "requirements" / "runtime.lock",
    "dev": REPO / "requirements" / "dev.lock",
}

# Releases that fixed published advisories; the locks must sit at or above them
# (docs/supply-chain.md lists the advisories).
FLOORS = {
    "aiohttp": "3.12.14",
    "requests": "2.32.4",
    "urllib3": "2.5.0",
    "idna": "3.7",
    "certifi": "2024.7.4",
    "aiosmtpd": "1.4.6",
    "jinja2": "3.1.6",
    "setuptools": "78.1.1",
}


def pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """``name -> (version, hashes)`` of a uv/pip-tools lock file."""
    out: dict[str, tuple[str, list[str]]] = {}
    name = version = None
    for raw in lock.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)", line)
        if m:
            name, version = m.group(1).lower().replace("_", "-"), m.group(2)
            out[name] = (version, [])
        elif line.startswith("--hash=sha256:") and name is not None and version is not None:
            out[name][1].append(line.split(":", 1)[1].rstrip(" \\"))
    return out


def project() -> dict[str, list[str]]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {"runtime": data["dependencies"], "dev": data["optional-dependencies"]["dev"]}


@pytest.mark.parametrize("which", ["runtime", "dev"])
def test_every_pin_has_hashes_and_every_dependency_is_pinned(which: str) -> None:
    locked = pins(LOCKS[which])
    assert locked
    for name, (version, hashes) in locked.items():
        assert hashes, f"{name}=={version} has no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
    wanted = project()["runtime"] + (project()["dev"] if which == "dev" else [])
    wanted += ["hatchling>=1.25"]  # the build backend, for --no-build-isolation
    for text in wanted:
        req = Requirement(text)
        key = req.name.lower().replace("_", "-")
        assert key in locked, f"{req.name} is not in {LOCKS[which].name}: run make lock"
        assert req.specifier.contains(locked[key][0], prereleases=True), (
            f"{LOCKS[which].name} pins {key}=={locked[key][0]}, pyproject says {req}: make lock"
        )


def test_runtime_lock_is_the_dev_lock_subset() -> None:
    """The image runs what the tests ran: same versions in both locks."""
    dev = pins(LOCKS["dev"])
    for name, (version, _) in pins(LOCKS["runtime"]).items():
        assert dev[name][0] == version, name


@pytest.mark.parametrize("which", ["runtime", "dev"])
def test_pins_sit_above_known_vulnerabilities(which: str) -> None:
    locked = pins(LOCKS[which])
    for name, floor in FLOORS.items():
        if name in locked:
            assert Version(locked[name][0]) >= Version(floor), f"{name} below {floor}"
    floors = {Requirement(t).name: Requirement(t).specifier for t in project()["runtime"]}
    assert not floors["aiohttp"].contains("3.12.13")  # 3.9 admitted releases with open CVEs
    assert floors["aiohttp"].contains("3.12.14")


def test_installs_come_from_the_locks() -> None:
    """``make install`` and the image install with --require-hashes from the locks."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "pip install --quiet --require-hashes -r requirements/dev.lock" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes -r runtime.lock" in dockerfile
    assert "make audit" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_audit_report_lists_vulnerable_pins_and_fails() -> None:
    doc = {
        "dependencies": [
            {
                "name": "aiohttp",
                "version": "3.9.0",
                "vulns": [
                    {
                        "id": "GHSA-5m98-qgg9-wh84",
                        "fix_versions": ["3.9.4"],
                        "aliases": ["CVE-2024-30251"],
                    }
                ],
            },
            {"name": "pyyaml", "version": "6.0.2", "vulns": []},
        ],
        "fixes": [],
    }
    lines, status = audit_locks.render([audit_locks.parse("x.lock", doc)])
    assert status == 1
    assert lines[1] == (
        "  VULNERABLE aiohttp==3.9.0: GHSA-5m98-qgg9-wh84 (CVE-2024-30251), fixed in 3.9.4"
    )


def test_audit_report_says_not_audited_when_the_database_is_unreachable() -> None:
    doc = {
        "dependencies": [
            {
                "name": "aiohttp",
                "skip_reason": "Dependency not found on PyPI and could not be audited: aiohttp (3.14.5)",
            },
            {
                "name": "yarl",
                "skip_reason": "Dependency not found on PyPI and could not be audited: yarl (1.9)",
            },
        ]
    }
    lines, status = audit_locks.render([audit_locks.parse("x.lock", doc)])
    assert status == 0
    assert "NOT AUDITED" in lines[0]
    assert "2 pin(s) unchecked" in lines[0]
    clean = {"dependencies": [{"name": "pyyaml", "version": "6.0.2", "vulns": []}]}
    lines, status = audit_locks.render([audit_locks.parse("y.lock", clean)])
    assert (lines, status) == (["audit: y.lock: 1 pin(s) audited, none known vulnerable"], 0)
    down = audit_locks.Report("z.lock", network_error="ConnectionError: no route")
    lines, status = audit_locks.render([down])
    assert status == 0
    assert lines == [
        "audit: z.lock: NOT AUDITED: the vulnerability database could not be reached from "
        "here, every pin unchecked (ConnectionError: no route)"
    ]


@pytest.mark.parametrize("service", ["pypi", "osv"])
def test_audit_runs_on_the_real_locks(service: str) -> None:
    """pip-audit on the locks against each of its databases: a verdict line for each lock
    and no failure of the step itself, whether the database is reachable or not."""
    script = str(REPO / "scripts" / "audit_locks.py")
    proc = subprocess.run(
        [sys.executable, script, "--service", service, *map(str, LOCKS.values())],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    for lock in LOCKS.values():
        assert str(lock) in proc.stdout
    assert ("NOT AUDITED" in proc.stdout) or ("audited" in proc.stdout)
