"""Give the C allocator's free pages back to the system, now and then (``riskwatch run``).

Objects over 512 bytes (a 20-symbol account's dicts and frame buffers, the scrape's
kept lines…) come from the C library's ``malloc``, not from the interpreter's own
allocator. Every pulse replaces them, so the heap fills with holes that ``malloc``
keeps for later: measured at 1000 accounts × 20 symbols (docs/performance.md), about
12 MB of the resident memory were free heap pages. glibc returns only the heap's top
by itself; ``malloc_trim(0)`` also releases every whole free page inside it
(``madvise``), in about 1 ms the first time and 0.1 ms after. The pages come back on
demand, so a trim never costs more than the work it saves.

Where the C library has no ``malloc_trim`` (musl, macOS), :class:`HeapTrimmer` does
nothing and says so once at start.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from typing import Final

from riskwatch.tasks import cancel_and_wait

__all__ = ["TRIM_INTERVAL", "HeapTrimmer", "find_malloc_trim"]

log = logging.getLogger(__name__)

TRIM_INTERVAL: Final = 10.0
"""Seconds between two trims (a trim after the first costs about 0.1 ms)."""


def find_malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim(pad) -> released`` (1 when memory went back to the
    system), or None where it has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` every ``interval`` seconds from :meth:`start` until
    :meth:`stop`; :attr:`trims` counts the calls, :attr:`released` those that gave
    memory back."""

    def __init__(
        self,
        interval: float = TRIM_INTERVAL,
        malloc_trim: Callable[[int], int] | None = None,
    ) -> None:
        self.interval = interval
        self._malloc_trim = malloc_trim if malloc_trim is not None else find_malloc_trim()
        self.trims = 0
        self.released = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        """True when the C library can trim."""
        return self._malloc_trim is not None

    def trim(self) -> bool:
        """Trim once now; True when memory went back to the system."""
        if self._malloc_trim is None:
            return False
        started = time.perf_counter()
        gave_back = bool(self._malloc_trim(0))
        self.trims += 1
        self.released += gave_back
        log.debug("heap trimmed in %.2f ms", (time.perf_counter() - started) * 1e3)
        return gave_back

    def start(self) -> None:
        """Trim every ``interval`` seconds on the running loop."""
        if self._malloc_trim is None:
            log.info("the C library has no malloc_trim: free heap pages stay with the process")
            return
        self._task = asyncio.create_task(self._run(), name="heap-trim")

    async def stop(self) -> None:
        """Stop trimming."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.trim()
