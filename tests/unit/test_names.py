"""One name per concept: no two modules of riskwatch define the same top-level name.

A class, type alias or constant is defined once; other modules import it. Two different
things under one name (a mark price and a position in a file, say) get names that say
which they are.
"""

from __future__ import annotations

import ast
from collections import defaultdict

from tests.support.paths import REPO

PACKAGE = REPO / "riskwatch"


def _is_type_variable(value: ast.expr) -> bool:
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in {"TypeVar", "ParamSpec"}
    )


def _top_level_definitions() -> dict[str, list[str]]:
    """Public top-level class and assignment names → the files defining them."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                if _is_type_variable(node.value):
                    continue  # a generic's type parameter is local to its module
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                continue
            for name in names:
                if not name.startswith("_") and name not in {"log", "logger"}:
                    found[name].append(str(path.relative_to(REPO)))
    return found


def test_every_top_level_name_is_defined_once() -> None:
    twice = {name: files for name, files in _top_level_definitions().items() if len(files) > 1}
    assert twice == {}, "import the one definition, or rename what means something else"


def test_the_scan_sees_definitions() -> None:
    found = _top_level_definitions()
    assert found["Secret"] == ["riskwatch/secret.py"]
    assert found["DailyConfig"] == ["riskwatch/state/daily.py"]
    assert found["Duration"] == ["riskwatch/durations.py"]
