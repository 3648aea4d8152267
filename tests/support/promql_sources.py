"""Every PromQL expression the deployment ships: dashboard panels, variables, alert rules."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from tests.support.paths import REPO

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "riskwatch.json"
RULES = DEPLOY / "prometheus" / "rules" / "riskwatch.rules.yml"

# What Grafana puts in place of its variables when it sends a query: every account, a
# rate window spanning a few 1 s scrapes (what $__rate_interval is for a dashboard range
# of about an hour), and a range of one minute.
GRAFANA_VARIABLES = {
    "$__rate_interval": "15s",
    "$__interval": "1s",
    "$__range": "1m",
    "$account": ".*",
}

_LABEL_VALUES = re.compile(r"label_values\((?P<metric>[^,]+),\s*(?P<label>\w+)\)")
_METRIC = re.compile(r"\b(riskwatch_[a-z_]+|up)\b(?!\s*\()")


@dataclass(frozen=True, slots=True)
class Query:
    """One expression and where it comes from (for failure messages and the report)."""

    where: str
    expr: str

    @property
    def metrics(self) -> set[str]:
        """Metric names the expression reads (histogram suffixes kept)."""
        return set(_METRIC.findall(self.expr))


def _substitute(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in panels:
        out.append(p)
        out += _panels(p.get("panels", []))
    return out


def dashboard_queries() -> list[Query]:
    """Every target of every panel, the variables' queries and the annotations' queries."""
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out: list[Query] = []
    for panel in _panels(doc["panels"]):
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} target {target['refId']}"
            out.append(Query(where, _substitute(target["expr"])))
    for var in doc.get("templating", {}).get("list", []):
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = _LABEL_VALUES.fullmatch(query)
        assert m is not None, f"variable {var['name']}: unsupported query {query!r}"
        # label_values(M, L) is what Grafana asks for as the series of M grouped by L.
        out.append(Query(f"variable ${var['name']}", f"group by ({m['label']}) ({m['metric']})"))
    for ann in doc.get("annotations", {}).get("list", []):
        if "expr" in ann:
            out.append(Query(f"annotation {ann['name']!r}", _substitute(ann["expr"])))
    return out


def rule_queries() -> list[Query]:
    """The expression of every alerting and recording rule."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [
        Query(f"rule {r.get('alert') or r.get('record')}", r["expr"])
        for group in doc["groups"]
        for r in group["rules"]
    ]
