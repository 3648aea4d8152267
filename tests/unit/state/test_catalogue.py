"""The figure catalogue: derived figures, rule names and the docs table agree with it."""

from __future__ import annotations

import subprocess
import sys

from riskwatch.state import catalogue
from tests.support.paths import REPO

HEADER = "| name | scope | unit | meaning |"


def _tables_in_docs() -> dict[str, str]:
    """Every names table in README.md and docs/*.md, keyed by file and line."""
    found: dict[str, str] = {}
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.strip() != HEADER:
                continue
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            found[f"{path.relative_to(REPO)}:{i + 1}"] = "\n".join(lines[i:end]) + "\n"
    return found


def test_the_docs_names_table_is_the_generated_one() -> None:
    """The rules documentation's names table equals ``markdown_table()`` (regenerate with
    ``python -m riskwatch.state.catalogue``)."""
    tables = _tables_in_docs()
    assert tables, f"no names table (a line {HEADER!r}) in README.md or docs/*.md"
    generated = catalogue.markdown_table()
    for where, table in tables.items():
        assert table == generated, f"{where}: names table differs from the catalogue"


def test_generator_command_prints_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "riskwatch.state.catalogue"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert out.stdout == catalogue.markdown_table()
    assert "| `margin_usage` | account, position | ratio |" in out.stdout
    assert "equity_drift" not in out.stdout  # diagnostics are not rule names


def test_names_are_unique_per_scope_and_documented() -> None:
    assert len(set(catalogue.ACCOUNT_NAMES)) == len(catalogue.ACCOUNT_NAMES)
    assert len(set(catalogue.POSITION_NAMES)) == len(catalogue.POSITION_NAMES)
    for info in (*catalogue.ACCOUNT_FIGURES, *catalogue.POSITION_FIGURES):
        assert info.unit, info.name
        assert info.doc, info.name
        assert "|" not in info.doc, info.name  # would break the table
    assert all(f.scope == "account" for f in catalogue.ACCOUNT_FIGURES)
    assert all(f.scope == "position" for f in catalogue.POSITION_FIGURES)
