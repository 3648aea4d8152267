"""Every ``docs/protocol.md §N`` the code cites is a section of docs/protocol.md."""

from __future__ import annotations

import re
import subprocess

from tests.support.paths import REPO

CITATION = re.compile(r"docs/protocol\.md §(\d+(?:\.\d+)?)")
HEADING = re.compile(r"^#{2,3} §(\d+(?:\.\d+)?) ", re.MULTILINE)
CONFLICT = re.compile(r"^(\d+)\. \*\*", re.MULTILINE)


def _sections() -> set[str]:
    text = (REPO / "docs" / "protocol.md").read_text(encoding="utf-8")
    found = set(HEADING.findall(text))
    conflicts = text[text.index("## §16") :]
    found |= {f"16.{n}" for n in CONFLICT.findall(conflicts)}
    return found


def test_every_cited_section_exists() -> None:
    """Code, tests, docs and examples cite only sections that docs/protocol.md has."""
    files = subprocess.run(
        ["git", "ls-files", "riskwatch", "tests", "bench", "docs", "examples", "README.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    cited: dict[str, str] = {}
    for name in files:
        path = REPO / name
        if path.suffix not in (".py", ".md", ".yaml", ".yml") or not path.is_file():
            continue
        for match in CITATION.finditer(path.read_text(encoding="utf-8", errors="replace")):
            cited.setdefault(match.group(1), name)
    sections = _sections()
    missing = {sec: where for sec, where in cited.items() if sec not in sections}
    assert not missing, f"cited sections missing from docs/protocol.md: {missing}"
    assert {str(n) for n in range(1, 17)} <= sections
    assert {f"16.{n}" for n in range(1, 22)} <= sections
