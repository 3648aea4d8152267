"""The memory upkeep of a started daemon (riskwatch/daemon/serve.py): the collector's
policy and the heap trimmer run inside it, and everything is put back on the way out,
an error included."""

from __future__ import annotations

import asyncio
import gc

import pytest

from riskwatch.daemon.gcpolicy import YOUNG_THRESHOLD
from riskwatch.daemon.heaptrim import find_malloc_trim
from riskwatch.daemon.serve import memory_upkeep


def _trim_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "heap-trim"]


async def test_the_upkeep_runs_inside_and_is_undone_on_the_way_out() -> None:
    before = gc.get_threshold()
    async with memory_upkeep():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
        assert len(_trim_tasks()) == (1 if find_malloc_trim() is not None else 0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert _trim_tasks() == []


async def _fail_inside_the_upkeep() -> None:
    async with memory_upkeep():
        msg = "daemon failed"
        raise RuntimeError(msg)


async def test_the_upkeep_is_undone_when_the_body_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError, match="daemon failed"):
        await _fail_inside_the_upkeep()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert _trim_tasks() == []


async def test_each_part_can_be_left_out() -> None:
    before = gc.get_threshold()
    async with memory_upkeep(gc_policy=False, heap_trim=False):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
        assert _trim_tasks() == []
