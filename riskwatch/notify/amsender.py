"""Posts one :class:`~riskwatch.notify.alertmanager.AlertmanagerBook` to its Alertmanager.

One asyncio task per ``alertmanager://`` target: it wakes when the book has something
due (a new, resolved or one-shot alert: at once; a firing one: every ``resend``
seconds) and posts it as one JSON list to ``/api/v2/alerts``. A failed post (refused,
timed out, unreachable) is reported through ``on_result`` and retried with a backoff
(1 s doubling to the resend period); the book keeps everything until a post succeeds,
so nothing is lost while Alertmanager is down, and a resolution is never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import aiohttp

from riskwatch.alertmanager_target import AlertmanagerTarget
from riskwatch.clock import Clock
from riskwatch.notify.alertmanager import AlertmanagerBook, Posting
from riskwatch.tasks import cancel_and_wait, wait_until_set

__all__ = ["AlertmanagerSender"]

log = logging.getLogger(__name__)

_FIRST_BACKOFF: Final = 1.0

PostingListener = Callable[[Posting, str, str | None], None]
"""``(posting, "sent" | "failed", detail)``; called on the loop, must not block."""


class AlertmanagerSender:
    """The posting task of one target (every replica posts: Alertmanager deduplicates)."""

    def __init__(
        self,
        target: AlertmanagerTarget,
        book: AlertmanagerBook,
        clock: Clock,
        on_result: PostingListener | None = None,
    ) -> None:
        self.target = target
        self.book = book
        self.clock = clock
        self.on_result = on_result
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._backoff = 0.0

    def wake(self) -> None:
        """Something new is in the book: post it now."""
        self._wake.set()

    def start(self) -> None:
        """Start the posting task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alertmanager")

    async def close(self, drain: float = 1.0) -> None:
        """Post what is due one last time (bounded by ``drain`` seconds), then stop."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain):
                await self.post_due()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            try:
                await self.post_due()
            except Exception:  # a bug here must not end notifications to this target
                log.exception("alertmanager %s: posting failed; continuing", self.target.display)
            now = self.clock.now()
            due = self.book.next_due()
            wait = self.target.resend if due is None else max(0.0, due - now)
            if self._backoff:
                wait = max(wait, self._backoff)
            self._wake.clear()
            await wait_until_set(self._wake, max(wait, 0.05))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            auth = None
            if self.target.username is not None:
                password = self.target.password.reveal() if self.target.password else ""
                auth = aiohttp.BasicAuth(self.target.username, password)
            self._session = aiohttp.ClientSession(
                auth=auth, timeout=aiohttp.ClientTimeout(total=self.target.timeout)
            )
        return self._session

    async def post_due(self) -> bool:
        """Post what is due now; True when there was nothing to do or the post succeeded."""
        posting = self.book.due(self.clock.now())
        if posting is None:
            return True
        detail: str | None = None
        try:
            async with self._client().post(self.target.alerts_url, json=posting.body) as resp:
                if resp.status // 100 == 2:
                    self.book.posted(posting, self.clock.now())
                    self._backoff = 0.0
                    self._report(posting, "sent", None)
                    return True
                text = (await resp.text())[:200]
                detail = f"HTTP {resp.status}: {text.strip()}"
        except TimeoutError:
            detail = f"timed out after {self.target.timeout:g}s"
        except aiohttp.ClientError as exc:
            detail = f"{type(exc).__name__}: {exc}"[:200]
        self._backoff = min(self.target.resend, max(_FIRST_BACKOFF, self._backoff * 2))
        self._report(posting, "failed", detail)
        return False

    async def post_test(self, route: str) -> str | None:
        """Post ``notify-test``'s alert now; None when accepted, else what went wrong."""
        body = [self.book.test_alert(route, self.clock.now())]
        try:
            async with self._client().post(self.target.alerts_url, json=body) as resp:
                if resp.status // 100 == 2:
                    return None
                return f"HTTP {resp.status}: {(await resp.text())[:200].strip()}"
        except TimeoutError:
            return f"timed out after {self.target.timeout:g}s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:200]

    def _report(self, posting: Posting, result: str, detail: str | None) -> None:
        if result == "sent":
            if posting.news:
                log.info(
                    "alertmanager %s: posted %s",
                    self.target.display,
                    ", ".join(k for k in posting.kinds if k != "resend"),
                )
        else:
            log.warning(
                "alertmanager %s: post of %d alert(s) failed, retrying in %.0fs: %s",
                self.target.display,
                len(posting.body),
                self._backoff,
                detail,
            )
        if self.on_result is not None:
            self.on_result(posting, result, detail)
