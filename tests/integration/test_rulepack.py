"""The shipped rule pack: it passes ``riskwatch check`` and its own ``riskwatch test`` files."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO as ROOT


def _riskwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riskwatch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rule_pack_tests_pass() -> None:
    """``riskwatch test rules/tests/*.yaml`` (the command in docs/rules.md) exits 0."""
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "rules" / "tests").glob("*.yaml"))
    result = _riskwatch("test", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests)


def test_every_rule_has_a_test_file() -> None:
    """Each rule of the pack is exercised by at least one file in rules/tests/."""
    from riskwatch.rules.load import load_rule_files

    rules = load_rule_files(sorted((ROOT / "rules").glob("*.yaml")))
    text = "".join(p.read_text() for p in (ROOT / "rules" / "tests").glob("*.yaml"))
    missing = [r.name for r in rules if f"alertname: {r.name}" not in text]
    assert missing == []
    readme = (ROOT / "rules" / "README.md").read_text()
    assert [r.name for r in rules if f"`{r.name}`" not in readme] == []


def test_example_config_checks() -> None:
    """``riskwatch check -c examples/riskwatch.yaml`` validates the config and the pack."""
    result = _riskwatch("check", "-c", "examples/riskwatch.yaml")
    assert result.returncode == 0, result.stderr
    assert "ok (1 account(s), 6 rule file(s), 12 rule(s))" in result.stdout
