"""The exception tree of riskwatch/errors.py is true to the code.

Every exception class riskwatch defines belongs to the tree (derives from
``RiskwatchError``), every class of the tree is raised somewhere (itself or through a
subclass), and the picture in the module docstring is the real hierarchy.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re

import riskwatch
from riskwatch import errors
from riskwatch.errors import RiskwatchError
from tests.support.paths import REPO

PACKAGE = REPO / "riskwatch"


def _import_everything() -> None:
    for info in pkgutil.walk_packages(riskwatch.__path__, "riskwatch."):
        if info.name.endswith("__main__"):
            continue  # runs the command line on import
        importlib.import_module(info.name)


def _defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a riskwatch module, by qualified name."""
    _import_everything()
    found: dict[str, type[BaseException]] = {}
    stack: list[type[BaseException]] = [BaseException]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            stack.append(sub)
            if sub.__module__.split(".")[0] == "riskwatch":
                found[f"{sub.__module__}.{sub.__qualname__}"] = sub
    return found


def _raised_names() -> dict[str, list[str]]:
    """Class name → ``file:line`` of every ``raise Name(...)``/``raise Name`` in riskwatch/."""
    raised: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if name is not None:
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                raised.setdefault(name, []).append(where)
    return raised


def test_every_riskwatch_exception_is_in_the_tree() -> None:
    outside = [
        name for name, cls in _defined_exceptions().items() if not issubclass(cls, RiskwatchError)
    ]
    assert outside == [], "exception classes outside the riskwatch/errors.py tree"


def test_every_raise_of_a_riskwatch_exception_uses_the_tree() -> None:
    """A ``raise`` naming a riskwatch-defined class names a class of the tree."""
    defined = {cls.__name__: cls for cls in _defined_exceptions().values()}
    raised = _raised_names()
    for name, places in raised.items():
        cls = defined.get(name)
        if cls is not None:
            assert issubclass(cls, RiskwatchError), (name, places)


def test_every_class_of_the_tree_is_raised() -> None:
    """Each class is raised somewhere in riskwatch/, itself or through a subclass."""
    raised = set(_raised_names())
    tree = [c for c in _defined_exceptions().values() if issubclass(c, RiskwatchError)]

    def is_raised(cls: type[BaseException]) -> bool:
        return cls.__name__ in raised or any(is_raised(s) for s in cls.__subclasses__())

    never = sorted(c.__name__ for c in tree if not is_raised(c))
    assert never == [], "classes never raised: raise them or delete them"


def _docstring_tree() -> list[tuple[int, str]]:
    """(depth, name) of every entry drawn in riskwatch/errors.py's docstring."""
    doc = errors.__doc__ or ""
    block = doc.split("::", 1)[1].split("\n\n", 2)[1]
    entries = []
    for line in block.splitlines():
        m = re.match(r"^ {4}((?:[│ ] {3})*)(?:[├└]── )?(\w+)", line)
        assert m is not None, line
        prefix = m.group(1)
        depth = len(prefix) // 4 + (1 if "──" in line else 0)
        entries.append((depth, m.group(2)))
    return entries


def test_the_docstring_picture_is_the_real_hierarchy() -> None:
    drawn = _docstring_tree()
    assert drawn[0] == (0, "RiskwatchError")
    real: list[tuple[int, str]] = []

    def walk(cls: type[BaseException], depth: int) -> None:
        real.append((depth, cls.__name__))
        for sub in cls.__subclasses__():
            if sub.__module__.split(".")[0] == "riskwatch":
                walk(sub, depth + 1)

    _import_everything()
    walk(RiskwatchError, 0)
    assert sorted(drawn) == sorted(real)
    parents = {}
    for depth, name in drawn:
        parents[depth] = name
        if depth:
            cls = next(c for c in _defined_exceptions().values() if c.__name__ == name)
            assert parents[depth - 1] in {b.__name__ for b in cls.__mro__[1:]}, name


def test_store_errors_are_state_store_errors() -> None:
    from riskwatch.store import errors as store_errors

    for name in store_errors.__all__:
        assert issubclass(getattr(store_errors, name), errors.StateStoreError), name


def test_the_raise_scanner_sees_raises() -> None:
    """The scanner finds known raises, so an empty scan cannot pass the tests above."""
    names = _raised_names()
    assert "ConfigError" in names
    assert "StateStoreError" in names
    assert "DuplicateActionError" in names
