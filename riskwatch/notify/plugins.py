"""Load only the apprise plugins that the notification targets name.

apprise imports all of its ~200 plugin modules the first time a URL is added (with
``requests``, ``oauthlib`` and the rest): about 17 MB of a daemon's memory, for the one
or two services a config names (docs/performance.md, "Memory at a day of uptime").
apprise's plugin manager loads the folder it is given (``load_modules(path=...,
name=...)``) and imports each entry of that folder by name from its own package. So a
folder holding one empty entry per module wanted loads those modules only, and the
manager, loaded, does not scan its whole folder later.

Which module holds a scheme is read from the plugins' sources (their ``protocol`` and
``secure_protocol`` class attributes). A scheme no source names this way (a plugin
that works out its schemes in code) loads every plugin, as apprise would: never a
target that does not work, only one that costs the 17 MB.

Two attributes of the manager that apprise does not document are read (``_loaded``,
``_schema_map``); apprise is pinned by the lock files, and
tests/unit/notify/test_apprise_import.py fails if a new version changes them.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Final

__all__ = ["load_plugins"]

_DECLARED: Final = re.compile(
    r"^\s+(?:secure_)?protocol\s*=\s*(\([^)]*\)|\"[^\"]*\"|'[^']*')", re.MULTILINE
)
"""A plugin class's ``protocol = "x"`` or ``secure_protocol = ("x", "y")`` line."""

_QUOTED: Final = re.compile(r"[\"']([^\"']+)[\"']")


@cache
def _modules_by_scheme(plugin_folder: str) -> dict[str, str]:
    """Scheme → the entry of ``plugin_folder`` (a module or a package) that declares it."""
    found: dict[str, str] = {}
    root = Path(plugin_folder)
    for source in sorted(root.rglob("*.py")):
        entry = source.relative_to(root).parts[0].removesuffix(".py")
        if entry.startswith("_"):
            continue
        for declared in _DECLARED.finditer(source.read_text(encoding="utf-8")):
            for scheme in _QUOTED.findall(declared.group(1)):
                found.setdefault(scheme.lower(), entry)
    return found


def load_plugins(manager: Any, schemes: Iterable[str], own: Iterable[str] = ()) -> None:
    """Have apprise's plugin ``manager`` know every scheme of ``schemes``, loading no
    more of its plugins than it must.

    ``own``: schemes registered by riskwatch itself (``console://``), which need no
    apprise plugin. Once the manager has loaded all of its plugins (a scheme not found
    in the sources, or apprise's own lazy load), this does nothing more.
    """
    skip = {s.lower() for s in own}
    wanted = {s.lower() for s in schemes} - skip
    if manager and manager.module_path in manager._loaded:  # every plugin already loaded
        return
    known = manager._schema_map if manager else {}
    missing = {s for s in wanted if s not in known}
    if manager and not missing:
        return
    entries: set[str] = set()
    if missing:
        by_scheme = _modules_by_scheme(str(manager.module_path))
        if any(s not in by_scheme for s in missing):
            manager.load_modules()  # apprise's default: every plugin
            return
        entries = {by_scheme[s] for s in missing}
    with tempfile.TemporaryDirectory(prefix="riskwatch-apprise-") as folder:
        for entry in entries:
            (Path(folder) / entry).mkdir()  # a name for the manager to import: no content
        # Even with no entry, the manager is then loaded: registering riskwatch's own
        # schemes (``own``) does not make it load every plugin.
        manager.load_modules(path=folder, name=manager.module_name_prefix)
    if any(s not in manager._schema_map for s in missing):
        manager.load_modules()  # the sources misled: every plugin, as apprise would
