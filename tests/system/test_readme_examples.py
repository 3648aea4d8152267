"""The README's rule-life examples are the commands CI runs, exactly as written there."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO as ROOT


def readme_commands() -> list[str]:
    """The `riskwatch check|test|replay` lines of the README's first shell block that has them."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    for block in blocks:
        lines = [ln.strip() for ln in block.splitlines()]
        cmds = [ln for ln in lines if re.match(r"riskwatch (check|test|replay) ", ln)]
        if cmds:
            return cmds
    return []


def run(cmd: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(cmd)
    expanded: list[str] = []
    for arg in argv[1:]:
        matches = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(arg)) if "*" in arg else []
        expanded.extend(matches or [arg])
    env = dict(os.environ, RISKWATCH_STATE=str(tmp_path / "replay.db"))
    return subprocess.run(
        [sys.executable, "-m", "riskwatch", *expanded],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_readme_lists_check_test_and_replay() -> None:
    """The README shows a check, a test and a replay command."""
    kinds = [cmd.split()[1] for cmd in readme_commands()]
    assert kinds == ["check", "test", "replay"]


@pytest.mark.parametrize("cmd", readme_commands())
def test_readme_command_succeeds(cmd: str, tmp_path: Path) -> None:
    """Each README example exits 0 with the output it promises."""
    proc = run(cmd, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    if " replay " in f" {cmd} ":
        assert "MarginUsageHigh FIRING" in proc.stdout
        assert "MarginUsageCritical FIRING" in proc.stdout
        assert "MarginUsageCritical ACTION cancel_all_orders" in proc.stdout
    if cmd.startswith("riskwatch check"):
        assert ": ok (" in proc.stdout
    if cmd.startswith("riskwatch test"):
        assert "FAILED" not in proc.stdout
