"""Ending asyncio tasks for sure.

Python 3.11's ``asyncio.wait_for`` loses a cancellation that arrives in the same turn of
the loop as the result it waits for: it returns the result, and the task that was
cancelled goes on running (3.12 fixed it). A worker looping on
``wait_for(queue.get(), t)`` could so survive its ``cancel()``, and a ``stop()`` that
awaited it waited for ever: a daemon that never exited on SIGTERM. riskwatch therefore
never calls ``asyncio.wait_for`` (pyproject.toml bans it): a time bound is
``async with asyncio.timeout(t)``, which awaits in the task itself and keeps a
cancellation, and a task is ended with :func:`cancel_and_wait`, which cancels again a
task that survived one cancellation (in code riskwatch does not own too).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

__all__ = ["RECANCEL_AFTER", "cancel_and_wait", "wait_until_set"]

log = logging.getLogger(__name__)

RECANCEL_AFTER: Final = 1.0
"""Seconds a cancelled task is given to end before it is cancelled again."""


async def cancel_and_wait(
    *tasks: asyncio.Task[Any] | None, recancel_after: float = RECANCEL_AFTER
) -> None:
    """Cancel ``tasks`` (``None`` is skipped) and return once every one has ended.

    A task still running ``recancel_after`` seconds after its cancellation has lost it
    (or caught it): it is logged and cancelled again, until it ends. The tasks' own
    outcomes are not raised (a cancellation, an exception: whoever watched a task has
    seen it end); the cancellation of the caller is, and leaves the tasks cancelled.
    """
    pending = {t for t in tasks if t is not None and not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=recancel_after)
        for task in pending:
            log.warning("task %s did not end on cancellation; cancelling it again", task.get_name())
    for ended in tasks:
        if ended is not None and not ended.cancelled():
            ended.exception()  # retrieved: asyncio would otherwise log it at collection


async def wait_until_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; return whether it is set.

    The waiting task's cancellation is raised, never lost (module docstring).
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
