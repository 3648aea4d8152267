"""The pure layers do no I/O and read no clock (docs/design.md items 1-3).

``lint-imports`` checks what the pure layers import (pyproject.toml, contract "the pure
layers do no I/O"). This test checks, in the pure modules and every riskwatch module
they import, what an import graph cannot show: a clock read through a module they may
import (``datetime.now()``), as well as the contract's forbidden standard-library and
third-party imports, each named by file and line.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.paths import REPO

PURE_CONTRACT = "the pure layers do no I/O"
LAYER_CONTRACT = "the pure layers never import the daemon"

#: Clock reads, by the module that owns them: ``time.monotonic()``, ``datetime.now()``...
CLOCK_READS = {
    "time": {
        "time",
        "time_ns",
        "monotonic",
        "monotonic_ns",
        "perf_counter",
        "perf_counter_ns",
        "process_time",
        "process_time_ns",
        "thread_time",
        "thread_time_ns",
        "clock_gettime",
        "clock_gettime_ns",
    },
    "datetime.datetime": {"now", "utcnow", "today"},
    "datetime.date": {"today"},
}


def _contract(prefix: str) -> dict[str, Any]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    (found,) = [c for c in contracts if c["name"].startswith(prefix)]
    return found


def _forbidden_outside_riskwatch() -> set[str]:
    names: list[str] = _contract(PURE_CONTRACT)["forbidden_modules"]
    return {n for n in names if n.split(".")[0] != "riskwatch"}


def _file_of(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(tree: ast.Module) -> Iterator[str]:
    """Absolute module names a file imports (``from a import b`` yields ``a`` and ``a.b``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def pure_files() -> list[Path]:
    """The files of the contract's source modules and of every riskwatch module they
    import, directly or not (parent packages' ``__init__`` included: they run too)."""
    roots: list[str] = _contract(PURE_CONTRACT)["source_modules"]
    todo: list[Path] = []
    for module in roots:
        path = _file_of(module)
        assert path is not None, f"{module} in pyproject.toml names no module"
        todo.extend(sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path])
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        module = _module_of(path)
        parents = [".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 1)]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for name in [*parents, *_imported_modules(tree)]:
            if name.split(".")[0] == "riskwatch" and (found := _file_of(name)) is not None:
                todo.append(found)
    return sorted(seen)


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name → what it is: ``import time as t`` maps ``t`` to ``time``, ``from
    datetime import datetime as dt`` maps ``dt`` to ``datetime.datetime``."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    out[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return out


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return None if base is None else f"{base}.{node.attr}"
    return None


def impurities(source: str, filename: str) -> list[str]:
    """``FILE:LINE: what`` for each forbidden import and each clock read in ``source``."""
    tree = ast.parse(source, filename)
    forbidden = _forbidden_outside_riskwatch()
    aliases = _aliases(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            found.extend(
                (node.lineno, f"imports {name}")
                for name in names
                if name.split(".")[0] in forbidden
            )
        elif isinstance(node, ast.Call):
            called = _dotted(node.func, aliases)
            if called is None or "." not in called:
                continue
            owner, _, attr = called.rpartition(".")
            if attr in CLOCK_READS.get(owner, ()):
                found.append((node.lineno, f"reads the clock: {called}()"))
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


def test_the_two_pure_layer_contracts_name_the_same_modules() -> None:
    """One list of pure modules: the no-I/O contract covers every module the layer
    contract does, and no other."""
    assert _contract(PURE_CONTRACT)["source_modules"] == _contract(LAYER_CONTRACT)["source_modules"]


def test_the_pure_layers_do_no_io_and_read_no_clock() -> None:
    """No pure module (nor a riskwatch module it imports) imports an I/O module or reads
    a clock: time is the ``now`` argument."""
    found = [
        line
        for path in pure_files()
        for line in impurities(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    ]
    assert found == []


def test_the_walk_follows_imports_into_every_layer() -> None:
    """The walk reaches the listed modules, their packages and what they import, so an
    empty result above is not an empty scan."""
    names = {_module_of(p) for p in pure_files()}
    assert {
        "riskwatch.actions.book",
        "riskwatch.notify.dispatch",
        "riskwatch.qfex.backoff",
        "riskwatch.state.account",
        "riskwatch.rules.expr.parser",
        "riskwatch.records",
        "riskwatch.config",
        "riskwatch.actions",
    } <= names
    assert not {"riskwatch.store.db", "riskwatch.clock", "riskwatch.qfex.client"} & names


def test_the_scanner_names_file_and_line() -> None:
    """Each kind of impurity is found, with its line; pure time arithmetic is not."""
    source = "\n".join(
        [
            "import sqlite3",
            "import time as t",
            "from asyncio import sleep",
            "from datetime import UTC, datetime as dt",
            "import datetime",
            "a = t.monotonic()",
            "b = dt.now(UTC)",
            "c = datetime.date.today()",
            "d = dt.fromtimestamp(0.0, UTC)",
            "from threading import Lock",
        ]
    )
    assert impurities(source, "x.py") == [
        "x.py:1: imports sqlite3",
        "x.py:2: imports time",
        "x.py:3: imports asyncio",
        "x.py:6: reads the clock: time.monotonic()",
        "x.py:7: reads the clock: datetime.datetime.now()",
        "x.py:8: reads the clock: datetime.date.today()",
        "x.py:10: imports threading",
    ]
    clock = REPO / "riskwatch" / "clock.py"
    assert any(
        "reads the clock: time.time()" in line
        for line in impurities(clock.read_text(encoding="utf-8"), "riskwatch/clock.py")
    )
