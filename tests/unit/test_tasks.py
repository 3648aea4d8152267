"""riskwatch.tasks: a cancellation is never lost, and a cancelled task always ends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from riskwatch.tasks import cancel_and_wait, wait_until_set


async def test_wait_until_set_answers_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_until_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_until_set(event, 5) is True


async def test_wait_until_set_keeps_a_cancellation_that_comes_with_the_event() -> None:
    """The event set and the waiter cancelled in the same turn of the loop: cancelled.

    ``asyncio.wait_for(event.wait(), t)`` on Python 3.11 returned True here instead, and
    a loop waiting so between its rounds ran on after its cancel().
    """
    event = asyncio.Event()
    waiter = asyncio.create_task(wait_until_set(event, 30))
    for _ in range(3):
        await asyncio.sleep(0)
    event.set()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_cancel_and_wait_cancels_again_a_task_that_survived_one_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[str] = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            rounds.append("swallowed")
        await asyncio.sleep(30)

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="riskwatch.tasks"):
        async with asyncio.timeout(5):
            await cancel_and_wait(task, None, recancel_after=0.05)
    assert task.cancelled()
    assert rounds == ["swallowed"]
    assert "task stubborn did not end on cancellation" in caplog.text


async def test_cancel_and_wait_retrieves_what_the_tasks_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fails())
    sleeping = asyncio.create_task(asyncio.sleep(30))
    await asyncio.sleep(0)
    await cancel_and_wait(failed, sleeping)
    assert sleeping.cancelled()
    assert isinstance(failed.exception(), RuntimeError)


async def test_the_caller_of_cancel_and_wait_can_still_be_cancelled() -> None:
    """Ending other tasks never swallows the cancellation of the task doing it."""
    ending = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await ending.wait()

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    ending.set()
    await asyncio.wait([task], timeout=5)
    assert task.cancelled()
