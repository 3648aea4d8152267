"""Where things are in the repository, for tests that read its files."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QFEX_SPEC = REPO / "tests" / "fixtures" / "qfex" / "spec"
QFEX_EXAMPLES = REPO / "tests" / "fixtures" / "qfex" / "examples"
