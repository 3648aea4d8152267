"""The garbage collector's policy: the live state frozen out of the collector's reach,
cycles reclaimed by the periodic full collection, the interpreter's settings restored."""

from __future__ import annotations

import asyncio
import gc
import weakref

from riskwatch.daemon.gcpolicy import YOUNG_THRESHOLD, GcPolicy


class Node:
    """An object that can take part in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def test_objects_are_frozen_and_frozen_cycles_reclaimed_by_the_full_collection() -> None:
    thresholds = gc.get_threshold()
    policy = GcPolicy(freeze_interval=0.02, full_interval=3600.0)
    policy.start()
    try:
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        kept = Node()
        await asyncio.sleep(0.1)  # a few freezes
        assert gc.get_freeze_count() > 0
        frozen_at = gc.get_freeze_count()
        garbage = _cycle()
        await asyncio.sleep(0.1)  # the cycle is frozen: an ordinary collection leaves it
        assert gc.get_freeze_count() >= frozen_at
        gc.collect()
        assert garbage() is not None
        assert policy.full_collection() >= 2  # the two nodes of the cycle
        assert garbage() is None
        assert gc.get_freeze_count() > 0  # frozen again after the full collection
        assert policy.full_collections == 1
        assert kept.other is None
    finally:
        await policy.stop()
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0


async def test_the_full_collection_comes_every_full_interval() -> None:
    policy = GcPolicy(freeze_interval=0.01, full_interval=0.03)
    policy.start()
    try:
        garbage = _cycle()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if policy.full_collections >= 2 and garbage() is None:
                break
        assert policy.full_collections >= 2
        assert garbage() is None
    finally:
        await policy.stop()
