"""Queries of the state database that only tests ask: oracles over a :class:`Store`.

The daemon never reads these (the product's store keeps only what it uses); tests check
what was written through them. Each reads or writes through the store's own connection
and lock, as a method would.
"""

from __future__ import annotations

from collections.abc import Sequence

from riskwatch.records import ActionRecord, AlertRow, LatchReset, NotificationRecord, Silence
from riskwatch.store import Store
from riskwatch.store.codec import dumps, symbol_key, symbol_value
from riskwatch.store.db import (
    _NOTIFICATION_COLUMNS,
    _alert_row,
    _find_action,
    _get_action,
    _get_silence,
    _notification,
)

__all__ = [
    "actions_in_window",
    "delete_alert",
    "find_action",
    "get_action",
    "get_silence",
    "last_notification",
    "latch_resets",
    "latched",
]


def delete_alert(store: Store, rule: str, account: str, symbol: str | None) -> bool:
    """Delete one alert state; return whether it existed."""
    with store._tx() as conn:
        cur = conn.execute(
            "DELETE FROM alert_state WHERE rule = ? AND account = ? AND symbol = ?",
            (rule, account, symbol_key(symbol)),
        )
        return cur.rowcount > 0


def latched(store: Store, account: str | None = None) -> list[AlertRow]:
    """Return the latched alert states (of ``account``, or of all accounts)."""
    sql = "SELECT rule, account, symbol, record FROM alert_state WHERE latched = 1"
    args: tuple[str, ...] = ()
    if account is not None:
        sql += " AND account = ?"
        args = (account,)
    with store._read() as conn:
        rows = conn.execute(sql + " ORDER BY account, rule, symbol", args).fetchall()
    return [_alert_row(r) for r in rows]


def latch_resets(store: Store, limit: int = 100) -> list[LatchReset]:
    """Return the latest latch resets, newest first."""
    with store._read() as conn:
        rows = conn.execute(
            "SELECT rule, account, symbol, actor, at FROM latch_reset ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
    return [LatchReset(r[0], r[1], symbol_value(r[2]), r[3], float(r[4])) for r in rows]


def actions_in_window(
    store: Store, account: str, since: float, *, exclude: Sequence[str] = ("refused",)
) -> int:
    """Count ``account``'s actions whose intent was recorded at or after ``since``.

    For the circuit breaker: attempts of one action (same trip, action and symbol)
    count once, and actions whose status is in ``exclude`` (by default the ones
    the breaker itself refused) are not counted.
    """
    excluded = dumps(list(exclude), "excluded statuses")
    with store._read() as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT trip_key, action, symbol FROM action"
            " WHERE account = ? AND intent_at >= ?"
            " AND status NOT IN (SELECT value FROM json_each(?)))",
            (account, since, excluded),
        ).fetchone()
    return int(row[0])


def find_action(
    store: Store, trip_key: str, action: str, symbol: str | None, attempt: int = 1
) -> ActionRecord | None:
    """Return the action recorded for ``(trip_key, action, symbol, attempt)``, if any."""
    with store._read() as conn:
        return _find_action(conn, trip_key, action, symbol_key(symbol), attempt)


def get_action(store: Store, action_id: str) -> ActionRecord | None:
    """Return the action recorded under ``action_id``, if any."""
    with store._read() as conn:
        return _get_action(conn, action_id)


def last_notification(
    store: Store, route: str, group_key: str, *, result: str | None = "sent"
) -> NotificationRecord | None:
    """Return the latest entry of ``route`` for ``group_key`` (the ``alert_key``).

    By default only successful deliveries (``result="sent"``) count, which is what
    dedup and ``repeat_interval`` need after a restart; ``result=None`` matches any.
    """
    sql = f"SELECT {_NOTIFICATION_COLUMNS} FROM notification"  # noqa: S608
    sql += " WHERE route = ? AND alert_key = ?"
    args: list[str] = [route, group_key]
    if result is not None:
        sql += " AND result = ?"
        args.append(result)
    with store._read() as conn:
        row = conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
    return None if row is None else _notification(row)


def get_silence(store: Store, id: str) -> Silence | None:
    """Return the silence ``id``, if kept."""
    with store._read() as conn:
        return _get_silence(conn, id)
