"""Keeps reference data fresh: ``GET {rest_url}/refdata`` at start and periodically.

docs/protocol.md §11, §13: the endpoint is public (no credentials). A failed fetch is
never fatal: the last good data stays in use (or none: callers fall back to their
defaults), the failure is logged and counted, and the next attempt follows a capped
backoff (2 s doubling to the refresh interval). Leverage levels arrive over each
account's trade connection and are merged in by :meth:`RefdataSource.set_levels`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final

import aiohttp

from riskwatch import USER_AGENT
from riskwatch.clock import Clock
from riskwatch.refdata.model import LeverageLevel, Refdata, parse_refdata
from riskwatch.tasks import wait_until_set

__all__ = ["DEFAULT_INTERVAL", "RefdataSource"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL: Final = 300.0
"""Seconds between two successful fetches."""
FIRST_RETRY: Final = 2.0
TIMEOUT: Final = 10.0


class RefdataSource:
    """The daemon's reference data and the loop that refreshes it."""

    def __init__(self, rest_url: str, clock: Clock, interval: float = DEFAULT_INTERVAL) -> None:
        self.url = rest_url.rstrip("/") + "/refdata"
        self.clock = clock
        self.interval = interval
        self.refdata = Refdata()
        self.fetched_at: float | None = None
        self.failures = 0
        self.last_error = ""

    def set_levels(self, levels: Mapping[str, tuple[LeverageLevel, ...]]) -> None:
        """Merge leverage levels learned from a trade connection."""
        merged = {**self.refdata.levels, **levels}
        self.refdata = Refdata(symbols=self.refdata.symbols, levels=merged)

    async def fetch_once(self, session: aiohttp.ClientSession) -> bool:
        """One attempt; True when the data was replaced."""
        try:
            async with session.get(self.url) as resp:
                if resp.status != 200:
                    msg = f"HTTP {resp.status}"
                    raise ValueError(msg)
                symbols = parse_refdata(await resp.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("refdata fetch from %s failed: %s", self.url, self.last_error)
            return False
        self.refdata = Refdata(symbols=symbols, levels=self.refdata.levels)
        self.fetched_at = self.clock.now()
        self.last_error = ""
        return True

    async def run(self, stopped: asyncio.Event) -> None:
        """Fetch now, then every ``interval``; retry failures sooner, until ``stopped``."""
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        headers = {"User-Agent": USER_AGENT}
        async with aiohttp.ClientSession(
            timeout=timeout, headers=headers, trust_env=True
        ) as session:
            retry = FIRST_RETRY
            while not stopped.is_set():
                if await self.fetch_once(session):
                    delay, retry = self.interval, FIRST_RETRY
                else:
                    delay, retry = retry, min(self.interval, retry * 2)
                await wait_until_set(stopped, delay)
