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
- every value printed goes through :func:`html.escape`; the inputs are the documents of
  ``/api/state`` and ``/api/alerts`` and the logs' records, which hold figures, names
  and reason codes only: never a secret (notification URLs appear as their ``url_id``);
- :func:`render` is pure: it reads no clock (times are relative to ``state["time"]``,
  Unix seconds) and does no I/O. :func:`page_of` gathers the inputs from the daemon.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from riskwatch import __version__
from riskwatch.rules.expr.syntax import BoolOp, Compare, Expr, Name, Number
from riskwatch.rules.model import RuleSet
from riskwatch.web.view import DaemonView

__all__ = ["REFRESH_SECONDS", "PageData", "Threshold", "page_of", "render", "thresholds_of"]

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


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, kind: str = "num") -> str:
    """A figure for a person: ``–`` when unknown, ``∞`` for infinities (escaped)."""
    if value is None or isinstance(value, bool):
        return "–"
    if isinstance(value, str):
        return _e(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else ("-∞" if value < 0 else "NaN")
    if kind == "pct":
        return f"{value * 100:.1f}&nbsp;%"
    if kind == "usd":
        return f"{value:,.2f}"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "s":
        return f"{value:,.1f}"
    if kind == "x":
        return f"{value:,.2f}&times;"
    return f"{value:,.6g}"


def _negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0


def _clock(t: Any) -> str:
    """``HH:MM:SS`` UTC of a Unix time (``–`` when unknown)."""
    if not isinstance(t, int | float) or not math.isfinite(t):
        return "–"
    return time.strftime("%H:%M:%S", time.gmtime(t))


def _ago(t: Any, now: float) -> str:
    if not isinstance(t, int | float) or not math.isfinite(t):
        return "–"
    age = max(0.0, now - t)
    if age < 120:
        return f"{age:.0f}&nbsp;s ago"
    if age < 7200:
        return f"{age / 60:.0f}&nbsp;min ago"
    return f"{age / 3600:.1f}&nbsp;h ago"


def _sev(severity: Any) -> str:
    s = str(severity)
    return s if s in _SEVERITY_RANK else "info"


# --------------------------------------------------------------------------- sections


def _banner(state: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]]) -> str:
    mode = str(state.get("mode", "dry-run"))
    kill = bool(state.get("kill_switch"))
    if kill:
        cls, head, text = "kill", "DISARMED", "kill switch on: no protective action is sent"
    elif mode == "armed":
        cls, head, text = "armed", "ARMED", "protective actions are sent to the exchange"
    else:
        cls, head, text = "dry", "DRY-RUN", "actions are logged and notified, never sent"
    live = [a for a in alerts if not a.get("shadow")]
    firing = sum(1 for a in live if a.get("state") == "firing")
    pending = sum(1 for a in live if a.get("state") == "pending")
    latched = sum(1 for a in live if a.get("latched"))
    counts = (
        f"<span class='count {'hot' if firing else ''}'>{firing} firing</span>"
        f"<span class='count'>{pending} pending</span>"
        f"<span class='count {'hot' if latched else ''}'>{latched} latched</span>"
    )
    return (
        f"<div id='mode' class='banner {cls}'><span class='mode'>mode: {_e(head)}</span>"
        f"<span class='why'>{_e(text)}</span><span class='counts'>{counts}</span></div>"
    )


def _reload_line(reload: Mapping[str, Any] | None, now: float) -> str:
    if not reload or reload.get("at") is None:
        return ""
    at = reload.get("at")
    if reload.get("ok"):
        text = f"configuration reloaded {_ago(at, now)} ({_e(reload.get('rules', 0))} rules)"
        return f"<p id='reload' class='reload ok'>{text}</p>"
    problems = [str(p) for p in reload.get("problems", ())]
    items = "".join(f"<li><code>{_e(p)}</code></li>" for p in problems[:5])
    more = f"<li>… and {len(problems) - 5} more</li>" if len(problems) > 5 else ""
    return (
        f"<div id='reload' class='reload bad'>configuration reload REFUSED {_ago(at, now)}: "
        f"old rules kept<ul>{items}{more}</ul></div>"
    )


def _bar(name: str, label: str, value: Any, thresholds: Sequence[Threshold]) -> str:
    levels = list(thresholds) or [Threshold(_DEFAULT_THRESHOLDS[name], "warning", "")]
    level = "ok"
    if isinstance(value, int | float) and not isinstance(value, bool):
        crossed = [t for t in levels if value >= t.value]
        if crossed:
            level = min((_sev(t.severity) for t in crossed), key=_SEVERITY_RANK.__getitem__)
        width = 100.0 if not math.isfinite(value) else min(max(value, 0.0), 1.0) * 100
    else:
        width = 0.0
    ticks = "".join(
        f"<span class='tick {_sev(t.severity)}' style='left:{min(t.value, 1.0) * 100:.1f}%'"
        f" title='{_e(t.rule)} at {t.value * 100:.0f} %'></span>"
        for t in levels
        if t.value > 0
    )
    legend = " · ".join(
        f"<span class='{_sev(t.severity)}'>{t.value * 100:.0f}&nbsp;%"
        f"{' ' + _e(t.rule) if t.rule else ''}</span>"
        for t in levels
    )
    return (
        f"<div class='usage' data-name='{_e(name)}'><div class='ulabel'>{_e(label)}"
        f"<b class='uval {level}'>{_num(value, 'pct')}</b></div>"
        f"<div class='bar'><span class='fill {level}' style='width:{width:.1f}%'></span>{ticks}"
        f"</div><div class='legend'>{legend}</div></div>"
    )


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


def _alert_rows(alerts: Sequence[Mapping[str, Any]], now: float) -> str:
    if not alerts:
        return "<p class='quiet'>no alert pending or firing</p>"
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
        sev, state = _sev(a.get("severity")), str(a.get("state", ""))
        since = a.get("fired_at") if state == "firing" else a.get("active_since")
        marks = []
        if a.get("latched"):
            marks.append("<span class='tag latched'>LATCHED</span>")
        if a.get("muted"):
            marks.append(f"<span class='tag muted'>{_e(a.get('muted'))}</span>")
        if a.get("shadow"):
            marks.append("<span class='tag muted'>shadow</span>")
        rows.append(
            f"<tr class='alert {state} {sev}'><td><span class='sev {sev}'>{_e(sev)}</span></td>"
            f"<td class='state'>{_e(state.upper())}</td><td class='rule'>{_e(a.get('rule'))}"
            f"{' ' + _e(a.get('symbol')) if a.get('symbol') else ''} {''.join(marks)}</td>"
            f"<td class='summary'>{_e(a.get('summary') or '')}</td>"
            f"<td class='when'>{_ago(since, now)}</td></tr>"
        )
    return f"<table class='alerts'>{''.join(rows)}</table>"


def _positions(acc: Mapping[str, Any]) -> str:
    positions = acc.get("positions") or {}
    if not positions:
        return "<p class='quiet'>no open position</p>"
    rows = "".join(
        f"<tr><td class='sym'>{_e(sym)}</td><td>{_num(p.get('position'))}</td>"
        f"<td>{_num(p.get('average_price'))}</td><td>{_num(p.get('mark_price'))}</td>"
        f"<td>{_num(p.get('notional'), 'usd')}</td>"
        f"<td class='{'neg' if _negative(p.get('unrealised_pnl')) else ''}'>"
        f"{_num(p.get('unrealised_pnl'), 'usd')}</td>"
        f"<td>{_num(p.get('effective_leverage'), 'x')}</td>"
        f"<td>{_num(p.get('liquidation_distance'), 'pct')}</td>"
        f"<td>{_num(p.get('open_orders'), 'int')}</td></tr>"
        for sym, p in sorted(positions.items())
    )
    return (
        "<table class='positions'><tr><th>symbol</th><th>size</th><th>entry</th><th>mark</th>"
        "<th>notional</th><th>uPnL</th><th>eff. lev.</th><th>liq. distance</th>"
        f"<th>orders</th></tr>{rows}</table>"
    )


def _account(
    acc: Mapping[str, Any],
    alerts: Sequence[Mapping[str, Any]],
    thresholds: Mapping[str, Sequence[Threshold]],
    now: float,
) -> str:
    name = str(acc.get("name", ""))
    f = acc.get("figures") or {}
    link_cls, link = _connection(acc)
    conn = acc.get("connection") or {}
    detail = []
    if conn.get("reconnects"):
        detail.append(f"{_num(conn.get('reconnects'), 'int')} reconnect(s)")
    if conn.get("last_error") and not acc.get("connected"):
        detail.append(f"last error: {_e(conn.get('last_error'))}")
    age = f.get("data_age")
    stale = bool(acc.get("stale"))
    age_text = "no data yet" if age is None else f"{_num(age, 's')}&nbsp;s"
    worst = "ok"
    for a in alerts:
        if a.get("state") == "firing" and not a.get("shadow"):
            sev = _sev(a.get("severity"))
            if _SEVERITY_RANK[sev] < _SEVERITY_RANK.get(worst, 3):
                worst = sev
    figures = "".join(
        f"<div class='fig'><span>{label}</span>"
        f"<b class='{'neg' if _negative(f.get(key)) else ''}'>{_num(f.get(key), kind)}</b></div>"
        for label, key, kind in (
            ("equity", "equity", "usd"),
            ("available", "available_balance", "usd"),
            ("unrealised PnL", "unrealised_pnl", "usd"),
            ("PnL today", "pnl_today", "usd"),
            ("gross notional", "gross_notional", "usd"),
            ("leverage", "account_leverage", "x"),
        )
    )
    bars = _bar(
        "margin_usage", "margin usage", f.get("margin_usage"), thresholds.get("margin_usage", ())
    ) + _bar(
        "maintenance_usage",
        "maintenance usage",
        f.get("maintenance_usage"),
        thresholds.get("maintenance_usage", ()),
    )
    latched = [a for a in alerts if a.get("latched")]
    latch_html = ""
    if latched:
        names = ", ".join(
            _e(a.get("rule")) + (f" {_e(a.get('symbol'))}" if a.get("symbol") else "")
            for a in latched
        )
        latch_html = f"<p class='latches'>latched: {names} (reset: POST /api/latches/reset)</p>"
    return (
        f"<section class='card {worst}' id='account-{_e(name)}'>"
        f"<header><h2>{_e(name)}</h2><span class='link {link_cls}'>{link}</span>"
        f"<span class='age {'critical' if stale else ''}'>data age {age_text}"
        f"{' STALE' if stale else ''}</span>"
        f"<span class='detail'>{' · '.join(detail)}</span></header>"
        f"<div class='figs'>{figures}</div><div class='bars'>{bars}</div>"
        f"<h3>alerts</h3>{_alert_rows(alerts, now)}{latch_html}"
        f"<h3>positions</h3>{_positions(acc)}</section>"
    )


def _actions(state: Mapping[str, Any], now: float) -> str:
    actions = state.get("actions")
    recent = actions.get("recent", []) if isinstance(actions, Mapping) else []
    if not recent:
        return "<h2>recent actions</h2><p class='quiet'>no protective action yet</p>"
    rows = "".join(
        f"<tr class='{_e(r.get('outcome', ''))}'><td>{_clock(r.get('intent_at'))}</td>"
        f"<td>{_e(r.get('account', ''))}</td><td>{_e(r.get('rule', ''))}</td>"
        f"<td>{_e(r.get('summary') or r.get('action', ''))}</td><td>{_e(r.get('mode', ''))}</td>"
        f"<td class='outcome'>{_e(r.get('outcome') or r.get('status', ''))}</td>"
        f"<td>{_e(r.get('detail') or '')}</td></tr>"
        for r in recent[:RECENT_ROWS]
    )
    return (
        "<h2>recent actions</h2><table class='log' id='actions'><tr><th>time (UTC)</th>"
        "<th>account</th><th>rule</th><th>action</th><th>mode</th><th>outcome</th>"
        f"<th>detail</th></tr>{rows}</table>"
    )


def _notifications(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<h2>recent notifications</h2><p class='quiet'>nothing notified yet</p>"
    body = "".join(
        f"<tr class='{_e(r.get('result', ''))}'><td>{_clock(r.get('at'))}</td>"
        f"<td>{_e(r.get('route', ''))}</td><td>{_e(r.get('alert_key', ''))}</td>"
        f"<td>{_e(r.get('status', ''))}</td><td class='outcome'>{_e(r.get('result', ''))}</td>"
        f"<td>{_e(r.get('detail') or '')}</td></tr>"
        for r in rows[:RECENT_ROWS]
    )
    return (
        "<h2>recent notifications</h2><table class='log' id='notifications'><tr>"
        "<th>time (UTC)</th><th>route</th><th>group</th><th>status</th><th>result</th>"
        f"<th>detail</th></tr>{body}</table>"
    )


_CSS: Final = """
body{font-family:"DejaVu Sans",sans-serif;margin:0;padding:12px 20px;background:#f4f5f7;
color:#1d2330;font-size:14px}
h1{font-size:20px;margin:0 0 8px}h1 small{font-weight:normal;color:#5a6272;font-size:13px}
h2{font-size:17px;margin:18px 0 6px}h3{font-size:13px;margin:10px 0 4px;color:#5a6272;
text-transform:uppercase;letter-spacing:.05em}
.banner{display:flex;gap:18px;align-items:center;padding:10px 14px;border-radius:6px;
color:#fff;font-size:15px}
.banner .mode{font-weight:bold;font-size:20px}.banner .counts{margin-left:auto}
.banner.dry{background:#2f5f9e}.banner.armed{background:#b3261e}.banner.kill{background:#8a5a00}
.count{background:rgba(255,255,255,.2);padding:2px 8px;border-radius:10px;margin-left:6px}
.count.hot{background:#fff;color:#b3261e;font-weight:bold}
.reload{margin:8px 0;padding:6px 10px;border-radius:4px}.reload.ok{color:#2d6a2d}
.reload.bad{background:#fde8e7;border:1px solid #b3261e;color:#7d1a14}
.reload ul{margin:4px 0 0 18px;padding:0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:14px;
margin-top:12px}
.card{background:#fff;border-radius:6px;padding:10px 14px;border-left:8px solid #3c8d3c;
box-shadow:0 1px 2px rgba(0,0,0,.15)}
.card.warning{border-left-color:#d98b00}.card.critical{border-left-color:#b3261e}
.card header{display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
.card h2{margin:0}.link{font-weight:bold;padding:1px 8px;border-radius:4px;color:#fff}
.link.ok{background:#3c8d3c}.link.warning{background:#d98b00}.link.critical{background:#b3261e}
.age.critical{color:#b3261e;font-weight:bold}.detail{color:#5a6272}
.figs{display:grid;grid-template-columns:repeat(6,1fr);gap:6px;margin:8px 0}
.fig span{display:block;color:#5a6272;font-size:12px}.fig b{font-size:16px}
.bars{display:grid;grid-template-columns:1fr 1fr;gap:14px}
.ulabel{display:flex;justify-content:space-between}
.bar{position:relative;height:14px;background:#e3e6eb;border-radius:3px;margin:3px 0}
.fill{position:absolute;left:0;top:0;bottom:0;border-radius:3px;background:#3c8d3c}
.fill.warning{background:#d98b00}.fill.critical{background:#b3261e}
.tick{position:absolute;top:-3px;bottom:-3px;width:2px;background:#1d2330}
.tick.critical{background:#b3261e}.legend{font-size:11px;color:#5a6272}
.uval.warning,.legend .warning{color:#a86c00}.uval.critical,.legend .critical{color:#b3261e}
table{border-collapse:collapse;width:100%}td,th{padding:3px 6px;border-bottom:1px solid #e3e6eb;
text-align:right}th{color:#5a6272;font-weight:normal;font-size:12px}
td.sym,td.rule,td.summary,td.state,.log td,.log th{text-align:left}.neg{color:#b3261e}
.alerts td{text-align:left}.alert.firing.critical{background:#fde8e7}
.alert.firing.warning{background:#fff4de}.alert.pending{color:#5a6272}
.sev{display:inline-block;min-width:56px;text-align:center;border-radius:3px;color:#fff;
padding:0 4px;background:#6b7385}.sev.critical{background:#b3261e;color:#fff}
.sev.warning{background:#d98b00;color:#fff}
.tag{font-size:11px;padding:0 5px;border-radius:3px;margin-left:4px}
.tag.latched{background:#1d2330;color:#fff}.tag.muted{background:#e3e6eb}
.latches{color:#1d2330;font-weight:bold}.quiet{color:#8a90a0;margin:2px 0}
.log{background:#fff}.log tr.failed td.outcome,.log tr.refused td.outcome{color:#b3261e;
font-weight:bold}
"""


def render(data: PageData) -> str:
    """The whole page (a complete HTML document), from ``data`` only."""
    state = data.state
    now = float(state.get("time") or 0.0)
    by_account: dict[str, list[Mapping[str, Any]]] = {}
    for a in data.alerts:
        by_account.setdefault(str(a.get("account", "")), []).append(a)
    cards = "".join(
        _account(acc, by_account.get(str(acc.get("name", "")), []), data.thresholds, now)
        for acc in state.get("accounts", [])
    )
    version = state.get("version", __version__)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{int(data.refresh)}'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>riskwatch status</title><style>{_CSS}</style></head><body>"
        f"<h1>riskwatch <small>{_e(version)} · {when} · refreshes every "
        f"{int(data.refresh)}&nbsp;s</small></h1>"
        f"{_banner(state, data.alerts)}{_reload_line(data.reload, now)}"
        f"<div class='grid'>{cards}</div>"
        f"{_actions(state, now)}{_notifications(data.notifications)}</body></html>"
    )


def page_of(view: DaemonView) -> str:
    """Gather the daemon's views and render the page (reads the notification log)."""
    return render(
        PageData(
            state=view.state_document(),
            alerts=view.alerts_document().get("alerts", []),
            notifications=view.recent_notifications(RECENT_ROWS),
            thresholds=thresholds_of(view.rules()),
            reload=view.last_reload(),
        )
    )
