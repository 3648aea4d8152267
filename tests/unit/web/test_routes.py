"""The route table: one entry per method and path, documented in docs/http.md as declared."""

from __future__ import annotations

import re

from riskwatch.web.guard import Access
from riskwatch.web.routes import ROUTES
from tests.support.paths import REPO

ROW = re.compile(r"^\| (GET|POST|DELETE|PUT|PATCH) \| `([^`]+)` \| ([\w-]+) \|", re.M)


def test_each_method_and_path_is_declared_once() -> None:
    """No route is registered twice (aiohttp would take the first silently)."""
    keys = [(r.method, r.path) for r in ROUTES]
    assert len(keys) == len(set(keys))


def test_docs_table_lists_every_route_with_its_access() -> None:
    """docs/http.md's endpoint table and ROUTES say the same, in the same order."""
    text = (REPO / "docs" / "http.md").read_text(encoding="utf-8")
    documented = ROW.findall(text)
    assert documented == [(r.method, r.path, r.access.value) for r in ROUTES]


def test_every_mutation_needs_the_admin_token() -> None:
    """POST and DELETE routes need the admin token; GET routes never do; only the kill
    switch escapes the admin rate limit."""
    for route in ROUTES:
        admin = route.access in (Access.ADMIN, Access.KILL_SWITCH)
        assert admin == (route.method != "GET"), route
    assert [r.path for r in ROUTES if r.access is Access.KILL_SWITCH] == ["/api/disarm"]
