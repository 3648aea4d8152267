"""The wheel, installed on its own, is the whole product: no working tree can hide a packaging gap.

The module builds the wheel of this source tree (``pip wheel . --no-deps``), installs it
into a fresh virtual environment (its dependencies from the package index, as a user's
``pip install`` would get them), and runs the installed ``riskwatch`` from a folder
outside the repository with no ``PYTHONPATH``: ``check`` of the example config and of the
packaged rule pack, the packaged pack's own rule tests, and ``demo --speed 8``.

Measured on the 2-core build machine: building ~5 s, the environment ~9 s, installing
~15 s, the demo ~13 s; about 30 s in all once pip's cache holds the dependencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO


@dataclass(frozen=True)
class Installed:
    """A virtual environment holding only the installed wheel and its dependencies."""

    root: Path
    workdir: Path

    @property
    def bin(self) -> Path:
        """The environment's ``bin/``."""
        return self.root / "bin"

    def env(self) -> dict[str, str]:
        """An environment that can only find the installed riskwatch."""
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``riskwatch ARGS`` from the environment, in a folder outside the repository."""
        return subprocess.run(
            [str(self.bin / "riskwatch"), *args],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def python(self, code: str) -> str:
        """The output of ``python -c CODE`` in the environment."""
        return subprocess.run(
            [str(self.bin / "python"), "-c", code],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()


def pip(*args: str, cwd: Path, python: str = sys.executable) -> None:
    """Run pip quietly; fail with its output."""
    proc = subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, (
        f"pip {' '.join(args)}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel of this tree, installed in a fresh virtual environment."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    pip("wheel", ".", "--no-deps", "--quiet", "-w", str(dist), cwd=REPO)
    wheels = sorted(dist.glob("riskwatch-*.whl"))
    assert len(wheels) == 1, wheels
    root = base / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    pip("install", "--quiet", str(wheels[0]), cwd=base, python=str(root / "bin" / "python"))
    workdir = base / "work"
    workdir.mkdir()
    return Installed(root, workdir)


@pytest.mark.timeout(300)
def test_the_installed_package_is_the_wheel(installed: Installed) -> None:
    """riskwatch is imported from the environment, never from the repository."""
    where = Path(installed.python("import riskwatch; print(riskwatch.__file__)"))
    assert where.is_relative_to(installed.root), where
    assert not where.is_relative_to(REPO), where
    assert installed.run("--version").stdout.startswith("riskwatch ")


@pytest.mark.timeout(300)
def test_check_from_the_wheel(installed: Installed) -> None:
    """`riskwatch check` validates the example config and a config using the packaged rule pack."""
    proc = installed.run("check", "-c", str(REPO / "examples" / "riskwatch.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ": ok (1 account(s), 6 rule file(s), 12 rule(s))" in proc.stdout

    pack = Path(
        installed.python(
            "import riskwatch, pathlib; print(pathlib.Path(riskwatch.__file__).parent / 'rulepack')"
        )
    )
    config = installed.workdir / "riskwatch.yaml"
    config.write_text(
        "accounts:\n  - name: desk-a\n    public_key: k\n    secret_key: s\n"
        f"rules: ['{pack}/*.yaml']\nstate:\n  path: state.db\n",
        encoding="utf-8",
    )
    proc = installed.run("check", "-c", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok (1 account(s), 6 rule file(s), 12 rule(s))" in proc.stdout

    tests = sorted(str(p) for p in (pack / "tests").glob("*.yaml"))
    assert tests
    proc = installed.run("test", *tests, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.timeout(300)
def test_demo_from_the_wheel(installed: Installed) -> None:
    """`riskwatch demo --speed 8` from the wheel plays the crash: the packaged rules trip and act."""
    proc = installed.run("demo", "--speed", "8", "--port", "0", "--live", "no", timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "scenario crash" in out
    assert "mode ARMED" in out
    assert "ALERT FIRING   critical MarginUsageCritical" in out
    assert "cancel_all_orders attempt 1 → CONFIRMED" in out
    assert "[CRITICAL] MarginUsageCritical on desk-a" in out
    assert out.rstrip().endswith("demo finished")
