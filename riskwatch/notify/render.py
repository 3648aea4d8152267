"""Message texts (pure; docs/design.md#precise-points).

The title holds the severity, the rule and the account; a resolution says
``RESOLVED``; a dry-run action says ``would have …``; an escalation says ``FAILED`` and
what failed. The body gives each alert's summary and description (rendered by the
rule engine with the figures of the evaluation that changed it), what was done about
it, and a link to the status page when ``http.external_url`` is set. Times are shown
in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from riskwatch.notify.dedup import NotifyReason
from riskwatch.notify.notice import ActionNotice, AlertKey, AlertNotice

__all__ = ["MAX_ALERTS", "Message", "render_action", "render_group", "render_test"]

MAX_ALERTS: Final = 50
"""Alerts listed per section of one message; the rest are counted (chat limits)."""
_RANK: Final = {"critical": 0, "warning": 1, "info": 2}
_TYPES: Final = {"critical": "failure", "warning": "warning", "info": "info"}


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered notification; ``notify_type`` is an apprise type (info, success, …)."""

    title: str
    body: str
    notify_type: str
    status: str


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _where(n: AlertNotice | ActionNotice) -> str:
    return f"{n.account} {n.symbol}" if n.symbol else n.account


def _link(external_url: str | None, account: str | None = None) -> list[str]:
    if not external_url:
        return []
    base = external_url.rstrip("/")
    return [f"Status: {base}/" + (f"#account-{account}" if account else "")]


def _most_severe(notices: Sequence[AlertNotice]) -> str:
    return min((n.severity for n in notices), key=lambda s: _RANK.get(s, 3), default="info")


def _headline(notices: Sequence[AlertNotice]) -> str:
    rules = sorted({n.rule for n in notices})
    accounts = sorted({n.account for n in notices})
    symbols = sorted({n.symbol for n in notices if n.symbol})
    who = ", ".join(accounts)
    if len(rules) == 1:
        head = f"{rules[0]} on {who}"
        if len(symbols) == 1:
            head += f" {symbols[0]}"
        elif len(symbols) > 1:
            head += f" ({len(symbols)} symbols)"
        return head
    return f"{len(notices)} alerts on {who} ({', '.join(rules)})"


def _alert_lines(n: AlertNotice, actions: Sequence[ActionNotice], resolved: bool) -> list[str]:
    state = f"resolved at {_when(n.at)}" if resolved else f"firing since {_when(n.since or n.at)}"
    lines = [f"- [{n.severity}] {n.rule} on {_where(n)}: {state} (trip {n.trip_id})"]
    if n.summary:
        lines.append(f"  {n.summary}")
    if n.description and not resolved:
        lines.append(f"  {n.description}")
    if actions:
        lines.append("  Actions: " + "; ".join(a.text for a in actions))
    return lines


def render_group(
    reason: NotifyReason,
    firing: Sequence[AlertNotice],
    resolved: Sequence[AlertNotice],
    actions: Mapping[AlertKey, Sequence[ActionNotice]],
    external_url: str | None = None,
) -> Message:
    """One message for a group: its firing alerts, then those resolved since the last one."""
    if firing:
        severity = _most_severe(firing)
        title = f"[{severity.upper()}] {_headline(firing)}"
        if reason is NotifyReason.REPEAT:
            title += " (still firing)"
        kind, status = _TYPES.get(severity, "info"), "firing"
    else:
        severity = _most_severe(resolved)
        title = f"[RESOLVED] [{severity}] {_headline(resolved)}"
        kind, status = "success", "resolved"
    lines: list[str] = []
    for label, notices, done in (("Firing", firing, False), ("RESOLVED", resolved, True)):
        if not notices:
            continue
        lines.append(f"{label} ({len(notices)}):")
        ordered = sorted(notices, key=lambda n: (_RANK.get(n.severity, 3), n.key))
        for n in ordered[:MAX_ALERTS]:
            lines += _alert_lines(n, actions.get(n.key, ()), resolved=done)
        if len(ordered) > MAX_ALERTS:
            lines.append(f"- … and {len(ordered) - MAX_ALERTS} more")
    accounts = {n.account for n in (*firing, *resolved)}
    lines += _link(external_url, next(iter(accounts)) if len(accounts) == 1 else None)
    return Message(title=title, body="\n".join(lines), notify_type=kind, status=status)


def render_action(n: ActionNotice, external_url: str | None = None) -> Message:
    """A standalone message for one action outcome (dry run, done, FAILED, breaker)."""
    severity = "critical" if n.always else n.severity
    if n.kind == "failed":
        title = f"[CRITICAL] FAILED {n.action} on {_where(n)} ({n.rule})"
    elif n.kind == "breaker":
        title = f"[CRITICAL] circuit breaker open on {n.account} ({n.rule})"
    elif n.kind == "audit":
        title = f"[CRITICAL] action audit log unwritable on {_where(n)} ({n.rule})"
    else:
        title = f"[{severity.upper()}] {n.rule} on {_where(n)}: {n.text}"
    lines = [f"{n.text} (rule {n.rule}, trip {n.trip_id}, at {_when(n.at)})"]
    if n.kind == "failed":
        lines.append("The protective action did not complete: check the account now.")
    if n.kind == "breaker":
        lines.append("Further protective actions of this account are refused.")
    if n.kind == "audit":
        lines.append("The state database cannot be written: free its disk or release its lock.")
    lines += _link(external_url, n.account)
    kind = "failure" if n.always else _TYPES.get(severity, "info")
    return Message(title=title, body="\n".join(lines), notify_type=kind, status=n.kind)


def render_test(route: str, now: float) -> Message:
    """The ``notify-test`` message of one route."""
    return Message(
        title=f"[INFO] riskwatch test notification (route {route})",
        body=f"This is a test from riskwatch notify-test at {_when(now)}; no alert is firing.",
        notify_type="info",
        status="test",
    )
