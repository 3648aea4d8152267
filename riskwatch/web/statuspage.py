"""The status page at ``GET /``: one server-rendered HTML page a person reads at a glance.

What it shows, top to bottom: the actions mode (DRY-RUN, ARMED, or disarmed by the kill
switch) as a coloured banner with the count of firing, pending and latched alerts; the
last configuration reload; one card per account (connection, data age, equity, margin
and maintenance usage as bars marked with the rules' thresholds, firing and pending
alerts coloured by severity, latches, positions); then the recent protective actions
(the audit log) and the recent notifications (the notification log).

Contract:

- plain HTML and CSS, no JavaScript, no build step; ``<meta http-equiv="refresh">``
  reloads it every :data:`REFRESH_SECONDS` seconds;
- the markup is the jinja2 template ``templates/status.html.j2`` (and its style sheet
  ``templates/status.css``), rendered with autoescaping: every value printed is escaped
  unless this module marked it safe (a formatted number with its unit, a time span).
  The inputs are the documents of ``/api/state`` and ``/api/alerts`` and the
  logs' records, which hold figures, names and reason codes only: never a secret
  (notification URLs appear as their ``url_id``);
- :func:`render` is pure: it reads no clock (times are relative to ``state["time"]``,
  Unix seconds) and does no I/O beyond reading the packaged template once.
  :func:`page_data` gathers the inputs from the daemon's read view; the handler then
  renders them in a worker thread (a page of hundreds of accounts takes tens of
  milliseconds to render, which the event loop must not wait for).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, NamedTuple

import jinja2
from markupsafe import Markup

from riskwatch import __version__
from riskwatch.rules.expr.syntax import BoolOp, Compare, Expr, Name, Number
from riskwatch.rules.model import RuleSet
from riskwatch.web.view import DaemonView

__all__ = ["REFRESH_SECONDS", "PageData", "Threshold", "page_data", "render", "thresholds_of"]

REFRESH_SECONDS: Final = 3
"""Seconds between two automatic reloads of the page by the browser."""

RECENT_ROWS: Final = 10
"""How many actions and notifications the page lists (newest first)."""

USAGE_NAMES: Final = ("margin_usage", "maintenance_usage")
"""The ratios drawn as bars; their thresholds are read from the rules."""

_DEFAULT_THRESHOLDS: Final = {"margin_usage": 0.8, "maintenance_usage": 0.6}
"""Where a bar turns amber when no rule states a threshold for its ratio."""

_SEVERITY_RANK: Final = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True, slots=True)
class Threshold:
    """One rule's trigger level on a usage ratio (``0.8`` = 80 %)."""

    value: float
    severity: str
    rule: str


@dataclass(frozen=True, slots=True)
class PageData:
    """Everything the page shows; ``state`` and ``alerts`` as ``/api/state`` and
    ``/api/alerts`` serve them, the logs' rows newest first as JSON-able dicts."""

    state: Mapping[str, Any]
    alerts: Sequence[Mapping[str, Any]] = ()
    notifications: Sequence[Mapping[str, Any]] = ()
    thresholds: Mapping[str, Sequence[Threshold]] = field(default_factory=dict)
    reload: Mapping[str, Any] | None = None
    refresh: int = REFRESH_SECONDS


# --------------------------------------------------------------------------- thresholds


def _walk(node: Expr, rule: str, severity: str, out: dict[str, list[Threshold]]) -> None:
    if isinstance(node, BoolOp):
        _walk(node.left, rule, severity, out)
        _walk(node.right, rule, severity, out)
    elif isinstance(node, Compare):
        left, right = node.left, node.right
        if node.op in (">", ">=") and isinstance(left, Name) and isinstance(right, Number):
            name, value = left.name, right.value
        elif node.op in ("<", "<=") and isinstance(left, Number) and isinstance(right, Name):
            name, value = right.name, left.value
        else:
            return
        if name in USAGE_NAMES:
            out.setdefault(name, []).append(Threshold(value, severity, rule))


def thresholds_of(rules: RuleSet) -> dict[str, list[Threshold]]:
    """The levels at which rules trigger on ``margin_usage`` / ``maintenance_usage``.

    Read from each non-shadow rule's ``when``: a comparison ``usage > X`` (or
    ``usage >= X``, ``X < usage``), also inside ``and``/``or``. Sorted by value.
    """
    out: dict[str, list[Threshold]] = {}
    for rule in rules.rules:
        if not rule.shadow:
            _walk(rule.when.tree, rule.name, rule.severity, out)
    for levels in out.values():
        levels.sort(key=lambda t: (t.value, t.rule))
    return out


# --------------------------------------------------------------------------- formatting


def _num(value: Any, kind: str = "num") -> str:
    """A figure for a person: ``–`` when unknown, ``∞`` for infinities.

    Plain text (the template escapes it) except for percentages and multiples, whose
    units are markup (``&nbsp;%``, ``&times;``) after the number. Called for every cell
    of every position: the common case (a finite number) is tested first.
    """
    if type(value) is float or type(value) is int:
        if not math.isfinite(value):
            return "∞" if value > 0 else ("-∞" if value < 0 else "NaN")
        if kind == "pct":
            # Digits, sign and separators only: nothing to escape.
            return Markup(f"{value * 100:.1f}&nbsp;%")  # noqa: S704
        if kind == "usd":
            return f"{value:,.2f}"
        if kind == "int":
            return f"{value:,.0f}"
        if kind == "s":
            return f"{value:,.1f}"
        if kind == "x":
            return Markup(f"{value:,.2f}&times;")  # noqa: S704
        return f"{value:,.6g}"
    if value is None or isinstance(value, bool | jinja2.Undefined):
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):  # an int or float subclass
        return _num(float(value), kind)
    return str(value)


def _negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0


def _clock(t: Any) -> str:
    """``HH:MM:SS`` UTC of a Unix time (``–`` when unknown)."""
    if not isinstance(t, int | float) or not math.isfinite(t):
        return "–"
    return time.strftime("%H:%M:%S", time.gmtime(t))


def _ago(t: Any, now: float) -> Markup:
    if not isinstance(t, int | float) or not math.isfinite(t):
        return Markup("–")
    age = max(0.0, now - t)
    if age < 120:
        return Markup("{}&nbsp;s ago").format(f"{age:.0f}")
    if age < 7200:
        return Markup("{}&nbsp;min ago").format(f"{age / 60:.0f}")
    return Markup("{}&nbsp;h ago").format(f"{age / 3600:.1f}")


def _sev(severity: Any) -> str:
    s = str(severity)
    return s if s in _SEVERITY_RANK else "info"


# --------------------------------------------------------------------------- what is shown


def _banner(state: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    mode = str(state.get("mode", "dry-run"))
    if state.get("kill_switch"):
        cls, head, text = "kill", "DISARMED", "kill switch on: no protective action is sent"
    elif mode == "armed":
        cls, head, text = "armed", "ARMED", "protective actions are sent to the exchange"
    else:
        cls, head, text = "dry", "DRY-RUN", "actions are logged and notified, never sent"
    ha = state.get("ha") or {}
    role = str(ha.get("role", "standalone"))
    if role == "leader":
        text += f"; replica LEADER ({ha.get('backend')} lease)"
    elif role == "follower":
        text += (
            f"; replica FOLLOWER ({ha.get('backend')} lease): sends close_position and "
            "cancel_all_orders only, the leader sends the rest and notifies"
        )
    live = [a for a in alerts if not a.get("shadow")]
    return {
        "role": role,
        "cls": cls,
        "head": head,
        "text": text,
        "firing": sum(1 for a in live if a.get("state") == "firing"),
        "pending": sum(1 for a in live if a.get("state") == "pending"),
        "latched": sum(1 for a in live if a.get("latched")),
    }


def _reload(reload: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not reload or reload.get("at") is None:
        return None
    return {
        "ok": bool(reload.get("ok")),
        "at": reload.get("at"),
        "rules": reload.get("rules", 0),
        "problems": [str(p) for p in reload.get("problems", ())],
    }


def _bar(name: str, label: str, value: Any, thresholds: Sequence[Threshold]) -> dict[str, Any]:
    levels = list(thresholds) or [Threshold(_DEFAULT_THRESHOLDS[name], "warning", "")]
    level = "ok"
    if isinstance(value, int | float) and not isinstance(value, bool):
        crossed = [t for t in levels if value >= t.value]
        if crossed:
            level = min((_sev(t.severity) for t in crossed), key=_SEVERITY_RANK.__getitem__)
        width = 100.0 if not math.isfinite(value) else min(max(value, 0.0), 1.0) * 100
    else:
        width = 0.0
    return {
        "name": name,
        "label": label,
        "value": value,
        "level": level,
        "width": width,
        "ticks": [
            {
                "severity": _sev(t.severity),
                "left": min(t.value, 1.0) * 100,
                "rule": t.rule,
                "value": t.value,
            }
            for t in levels
            if t.value > 0
        ],
        "levels": [
            {"severity": _sev(t.severity), "value": t.value, "rule": t.rule} for t in levels
        ],
    }


def _connection(acc: Mapping[str, Any]) -> tuple[str, str]:
    """``(css class, text)`` of an account's link to the exchange."""
    conn = acc.get("connection") or {}
    if acc.get("connected"):
        return "ok", "CONNECTED"
    if conn.get("auth_rejected"):
        return "critical", "AUTH REJECTED"
    if conn.get("socket_open"):
        return "warning", "NOT AUTHENTICATED"
    return "critical", "DISCONNECTED"


def _alert_rows(alerts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    ordered = sorted(
        alerts,
        key=lambda a: (
            a.get("state") != "firing",
            _SEVERITY_RANK.get(str(a.get("severity")), 3),
            str(a.get("rule")),
            str(a.get("symbol") or ""),
        ),
    )
    rows = []
    for a in ordered:
        state = str(a.get("state", ""))
        rows.append(
            {
                "severity": _sev(a.get("severity")),
                "state": state,
                "rule": str(a.get("rule")),
                "symbol": a.get("symbol") or "",
                "latched": bool(a.get("latched")),
                "muted": a.get("muted") or "",
                "shadow": bool(a.get("shadow")),
                "summary": a.get("summary") or "",
                "since": a.get("fired_at") if state == "firing" else a.get("active_since"),
            }
        )
    return rows


_FIGURES: Final = (
    ("equity", "equity", "usd"),
    ("available", "available_balance", "usd"),
    ("unrealised PnL", "unrealised_pnl", "usd"),
    ("PnL today", "pnl_today", "usd"),
    ("gross notional", "gross_notional", "usd"),
    ("leverage", "account_leverage", "x"),
)


def _account(
    acc: Mapping[str, Any],
    alerts: Sequence[Mapping[str, Any]],
    thresholds: Mapping[str, Sequence[Threshold]],
) -> dict[str, Any]:
    f = acc.get("figures") or {}
    link_cls, link = _connection(acc)
    conn = acc.get("connection") or {}
    detail: list[Markup | str] = []
    if conn.get("reconnects"):
        detail.append(_num(conn.get("reconnects"), "int") + " reconnect(s)")
    if conn.get("last_error") and not acc.get("connected"):
        detail.append(f"last error: {conn.get('last_error')}")
    worst = "ok"
    for a in alerts:
        if a.get("state") == "firing" and not a.get("shadow"):
            sev = _sev(a.get("severity"))
            if _SEVERITY_RANK[sev] < _SEVERITY_RANK.get(worst, 3):
                worst = sev
    positions = acc.get("positions") or {}
    return {
        "name": str(acc.get("name", "")),
        "worst": worst,
        "link_cls": link_cls,
        "link": link,
        "detail": detail,
        "age": f.get("data_age"),
        "stale": bool(acc.get("stale")),
        "figures": [(label, f.get(key), kind) for label, key, kind in _FIGURES],
        "bars": [
            _bar(
                "margin_usage",
                "margin usage",
                f.get("margin_usage"),
                thresholds.get("margin_usage", ()),
            ),
            _bar(
                "maintenance_usage",
                "maintenance usage",
                f.get("maintenance_usage"),
                thresholds.get("maintenance_usage", ()),
            ),
        ],
        "alerts": _alert_rows(alerts),
        "latched": [
            str(a.get("rule")) + (f" {a.get('symbol')}" if a.get("symbol") else "")
            for a in alerts
            if a.get("latched")
        ],
        "positions": [_position_row(sym, p) for sym, p in sorted(positions.items())],
    }


class PositionRow(NamedTuple):
    """One row of an account's positions table, every cell formatted (:func:`_num`)."""

    symbol: str
    size: str
    entry: str
    mark: str
    notional: str
    pnl: str
    pnl_negative: bool
    leverage: str
    liquidation: str
    orders: str


def _position_row(symbol: str, p: Mapping[str, Any]) -> PositionRow:
    """Cells formatted here, not in the template: a page lists thousands of them."""
    pnl = p.get("unrealised_pnl")
    return PositionRow(
        symbol=symbol,
        size=_num(p.get("position")),
        entry=_num(p.get("average_price")),
        mark=_num(p.get("mark_price")),
        notional=_num(p.get("notional"), "usd"),
        pnl=_num(pnl, "usd"),
        pnl_negative=_negative(pnl),
        leverage=_num(p.get("effective_leverage"), "x"),
        liquidation=_num(p.get("liquidation_distance"), "pct"),
        orders=_num(p.get("open_orders"), "int"),
    )


@cache
def _template() -> jinja2.Template:
    """The page template, read once from the package (autoescaping on)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("riskwatch.web", "templates"),
        autoescape=True,
        undefined=jinja2.Undefined,
    )
    env.filters.update(num=_num, ago=_ago, clock=_clock, negative=_negative)
    return env.get_template("status.html.j2")


def render(data: PageData) -> str:
    """The whole page (a complete HTML document), from ``data`` only."""
    state = data.state
    now = float(state.get("time") or 0.0)
    by_account: dict[str, list[Mapping[str, Any]]] = {}
    for a in data.alerts:
        by_account.setdefault(str(a.get("account", "")), []).append(a)
    actions = state.get("actions")
    recent = actions.get("recent", []) if isinstance(actions, Mapping) else []
    return _template().render(
        refresh=int(data.refresh),
        version=state.get("version", __version__),
        when=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now)),
        now=now,
        banner=_banner(state, data.alerts),
        reload=_reload(data.reload),
        accounts=[
            _account(acc, by_account.get(str(acc.get("name", "")), []), data.thresholds)
            for acc in state.get("accounts", [])
        ],
        actions=list(recent[:RECENT_ROWS]),
        notifications=list(data.notifications[:RECENT_ROWS]),
    )


def page_data(view: DaemonView) -> PageData:
    """Gather what the page shows from the daemon's read view (on the event loop).

    Every document is built fresh for this call, so :func:`render` may then run in
    another thread.
    """
    return PageData(
        state=view.state_document(),
        alerts=view.alerts_document().get("alerts", []),
        notifications=view.recent_notifications(RECENT_ROWS),
        thresholds=thresholds_of(view.rules()),
        reload=view.last_reload(),
    )
