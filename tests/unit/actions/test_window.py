"""The action book's in-memory circuit-breaker window counts as the audit log does."""

from __future__ import annotations

import random
from pathlib import Path

from riskwatch.actions.window import BreakerWindow, Counted, lineage_of
from riskwatch.store import Store
from tests.support.store_queries import actions_in_window


def test_window_matches_actions_in_window(tmp_path: Path) -> None:
    """Random attempts, refusals and dry runs give the store's count at every step."""
    rng = random.Random(1)
    store = Store.open(tmp_path / "state.db")
    window = BreakerWindow()
    t = 1000.0
    for i in range(300):
        t += rng.uniform(0, 30)
        trip = f"k{rng.randrange(50)}"
        action = rng.choice(["close_position", "cancel_all_orders"])
        symbol = rng.choice([None, "S00-USD"])
        kind: Counted = rng.choice(["acted", "acted", "refused", "dry_run"])
        store.record_intent(
            action_id=f"a{i}",
            trip_key=trip,
            rule="R",
            account="acc",
            symbol=symbol,
            action=action,
            attempt=i + 1,
            params={},
            client_order_id=None,
            reason="r",
            mode="armed",
            now=t,
        )
        if kind != "acted":
            store.record_outcome(f"a{i}", kind, "x", t)
        window.add(lineage_of(trip, action, symbol), t, kind)
        for dry_runs in (False, True):
            exclude = ("refused",) if dry_runs else ("refused", "dry_run")
            expected = actions_in_window(store, "acc", t - 3600, exclude=exclude)
            assert window.count(t - 3600, dry_runs=dry_runs) == expected
    assert len(window.queue) < 300  # rows older than the hour were dropped
    store.close()
