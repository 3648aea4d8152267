"""The circuit breaker's hour of actions per account, in memory (pure).

Counting the audit log in SQLite on every trip cost ~0.2 ms on the path from the
breaching frame to the command (docs/performance.md), so the action book keeps each
account's last hour here, seeded once from the audit log and then updated as it
records actions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Final, Literal

from riskwatch.records import ActionRecord

__all__ = ["HOUR", "BreakerWindow", "Counted", "lineage_of"]

HOUR: Final = 3600.0

Counted = Literal["acted", "refused", "dry_run"]
"""How an action row counts: taken (armed), refused (never counted), dry run."""


def lineage_of(trip_key: str, action: str, symbol: str | None) -> str:
    """One action of one trip, whatever its attempt: ``trip_key␟action␟symbol``."""
    return f"{trip_key}\x1f{action}\x1f{symbol or ''}"


class BreakerWindow:
    """One account's actions of the last hour for the circuit breaker.

    Per lineage (trip, action, symbol) the time of its latest counted row, one map for
    actions taken and one for dry runs (refusals never count); a queue in time order
    expires them. Counting is O(1) amortised (a trip's path), and gives what
    a count over the audit log gives for the same rows (the test oracle
    ``actions_in_window`` of tests/support/store_queries.py).
    """

    __slots__ = ("acted", "dry", "queue")

    def __init__(self) -> None:
        self.acted: dict[str, float] = {}
        self.dry: dict[str, float] = {}
        self.queue: deque[tuple[float, str, Counted]] = deque()

    @classmethod
    def seeded(cls, rows: Iterable[ActionRecord], now: float) -> BreakerWindow:
        """A window holding the audit rows of the hour before ``now`` (any order)."""
        window = cls()
        since = now - HOUR
        for r in sorted(rows, key=lambda r: r.intent_at):
            if r.intent_at >= since:
                kind: Counted = "acted"
                if r.status == "refused":
                    kind = "refused"
                elif r.status == "dry_run":
                    kind = "dry_run"
                window.add(lineage_of(r.trip_key, r.action, r.symbol), r.intent_at, kind)
        return window

    def add(self, lineage: str, at: float, kind: Counted) -> None:
        """Count one row of ``lineage`` recorded at ``at``."""
        if kind == "refused":
            return
        latest = self.acted if kind == "acted" else self.dry
        latest[lineage] = max(at, latest.get(lineage, at))
        self.queue.append((at, lineage, kind))

    def count(self, since: float, *, dry_runs: bool) -> int:
        """Lineages counted at or after ``since`` (dry runs too when ``dry_runs``)."""
        queue = self.queue
        while queue and queue[0][0] < since:
            _, lineage, kind = queue.popleft()
            latest = self.acted if kind == "acted" else self.dry
            if latest.get(lineage, since) < since:
                del latest[lineage]
        # A row added out of time order (the wall clock stepped back) expires only once
        # the queue reaches it: until then it is counted, i.e. the breaker errs on the
        # side of counting one action too many, never one too few.
        if not dry_runs:
            return len(self.acted)
        return len(self.acted.keys() | self.dry.keys())
