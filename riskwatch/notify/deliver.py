"""Delivery: one lane per target, each with its own bounded queue, retries and timeout.

A *target* is one apprise URL of a route (or ``tag://NAME``: the URLs of an
``apprise_config`` file with that tag). Each target has a :class:`Lane`: an asyncio
task draining its own bounded queue, so a channel that hangs or is down only delays
its own messages, never another channel's, never the engine (:meth:`Deliverer.submit`
is ``put_nowait``: O(1), never awaits).

Apprise's ``notify`` blocks; it runs in a small dedicated thread pool with a per-call
timeout, and the URL is given apprise's own connect/read timeouts (``cto``/``rto``) when
it sets none, so an abandoned call ends soon after its timeout. Each attempt that
fails is retried after an exponential backoff, up to ``attempts`` in all, by stamina's
retry loop (the one retry library of riskwatch); each retry is counted through
``on_retry``, and the final outcome of each (message, target) is reported once through
``on_outcome``.

Secrets: URLs carry tokens. A target is identified by :func:`riskwatch.records.url_id`
in outcomes, logs and the notification log, and by :func:`display` when a person must
see which one it is; apprise's logger gets a redacting filter (:func:`guard_apprise_logs`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlsplit

import stamina

from riskwatch.errors import RiskwatchError
from riskwatch.logredact import RedactingFilter
from riskwatch.notify.dispatch import Outgoing
from riskwatch.notify.plugins import load_plugins
from riskwatch.notify.render import Message
from riskwatch.notify.routes import TAG_SCHEME
from riskwatch.records import url_id
from riskwatch.secret import Secret, redact
from riskwatch.tasks import cancel_and_wait

if TYPE_CHECKING:
    import apprise

__all__ = [
    "Deliverer",
    "DeliveryPolicy",
    "Outcome",
    "display",
    "guard_apprise_logs",
    "url_secrets",
]

log = logging.getLogger(__name__)

_HOST_SHOWN: Final = frozenset(
    {"json", "jsons", "xml", "xmls", "form", "forms", "mailto", "mailtos", "console"}
)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Per-target bounds: ``timeout`` seconds per attempt, ``attempts`` in all, backoff
    ``backoff`` × 2^(n-1) seconds (capped at ``backoff_max``) plus a jitter of up to 40 %
    of ``backoff``, lane queue ``queue_size`` messages, ``threads`` concurrent apprise
    calls in all."""

    timeout: float = 10.0
    attempts: int = 3
    backoff: float = 1.0
    backoff_max: float = 30.0
    queue_size: int = 256
    threads: int = 8


class DeliveryAttemptFailed(RiskwatchError):
    """One delivery attempt failed (``detail`` says how, secrets redacted)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one message went to one target. ``result`` is ``sent`` or ``failed``."""

    route: str
    url_id: str
    key: str
    status: str
    result: str
    detail: str | None
    attempts: int
    fingerprint: str
    display: str


def url_secrets(url: str) -> list[str]:
    """Parts of ``url`` that may be secret: the URL itself, its user info, path segments,
    query values and (for schemes where it is a token) its host, for log redaction."""
    out = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    out += [p for p in (parts.username, parts.password) if p]
    out += [seg for seg in parts.path.split("/") if len(seg) >= 6]
    out += [v for _, v in parse_qsl(parts.query) if len(v) >= 6]
    if parts.scheme not in _HOST_SHOWN and parts.hostname and len(parts.hostname) >= 6:
        out.append(parts.hostname)
    return out


def display(target: Secret) -> str:
    """A safe name for a target: scheme, host where it is not a token, and the URL id."""
    url = target.reveal()
    ident = url_id(url)
    if url.startswith(TAG_SCHEME):
        return f"{url} (id {ident})"  # a tag name is not a secret
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"(unparsable url, id {ident})"
    shown = f"{host}{port}/…" if parts.scheme in _HOST_SHOWN and host else "…"
    return f"{parts.scheme}://{shown} (id {ident})"


_GUARDED: Final = ("apprise", "urllib3.connectionpool", "urllib3")
"""Loggers that may print a notification URL (apprise's, and urllib3's request lines)."""


def guard_apprise_logs(secrets: Iterable[str], level: int = logging.WARNING) -> RedactingFilter:
    """Mask ``secrets`` (and their :func:`url_secrets` parts) in the records of apprise's
    and urllib3's loggers, and set apprise's level to ``level``."""
    parts = [p for s in secrets for p in url_secrets(s)]
    flt = RedactingFilter(parts)
    for name in _GUARDED:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
            logger.removeFilter(old)
        logger.addFilter(flt)
    logging.getLogger("apprise").setLevel(level)
    return flt


def _with_timeouts(url: str, timeout: float) -> str:
    """Add apprise's connect/read timeouts (seconds) to ``url`` unless it sets them."""
    query = urlsplit(url).query
    keys = {k for k, _ in parse_qsl(query)}
    extra = [f"{k}={timeout:g}" for k in ("cto", "rto") if k not in keys]
    if not extra:
        return url
    return url + ("&" if "?" in url else "?") + "&".join(extra)


OWN_SCHEMES: Final = ("console",)
"""Schemes riskwatch registers with apprise itself (riskwatch/notify/console.py)."""


def _library(url: str | None = "") -> ModuleType:
    """apprise, imported on first use, with riskwatch's ``console://`` registered and
    the plugin of ``url``'s scheme loaded (``None``: every plugin, for the URLs of an
    ``apprise_config`` file; ``""``: whatever is loaded already).

    apprise imports every one of its plugins when the first URL is added, and itself
    weighs about 4 MB more (docs/performance.md). A daemon whose targets are all
    Alertmanager never imports it; one with an apprise target imports it at start-up,
    when its targets are checked, not at its first notification, and loads only the
    plugins its URLs name (riskwatch/notify/plugins.py).
    """
    import apprise as library  # deferred on purpose (docstring)
    from apprise.manager_plugins import NotificationManager

    manager = NotificationManager()  # type: ignore[no-untyped-call]  # apprise's one manager
    if url is None:
        manager.load_modules()  # type: ignore[no-untyped-call]
    else:
        scheme = url.partition("://")[0] if "://" in url else ""
        load_plugins(manager, [scheme] if scheme else [], own=OWN_SCHEMES)
    from riskwatch.notify import console  # noqa: F401 - registers console://

    return library


class _Target:
    """One URL, or one tag of the apprise config file, as apprise delivers it.

    A fresh :class:`apprise.Apprise` is built for every message: apprise throttles
    repeated sends through one plugin instance (5.5 s between e-mails), which an alert
    must not wait for; a lane already sends one message at a time.
    """

    def __init__(self, target: Secret, timeout: float, apprise_config: Path | None) -> None:
        self.secret = target
        url = target.reveal()
        self.id = url_id(url)
        self.display = display(target)
        self.tag: str | None = None
        self.apprise_config = apprise_config
        self.url = url
        self.error: str | None = None
        if url.startswith(TAG_SCHEME):
            self.tag = url[len(TAG_SCHEME) :]
            if apprise_config is None:
                self.error = "tag target but no apprise_config file"
        else:
            self.url = _with_timeouts(url, timeout)
            if not _library(self.url).Apprise().add(self.url):
                self.error = "url not understood by apprise"

    def _apprise(self) -> apprise.Apprise:
        library = _library(None if self.tag is not None else self.url)
        ap: apprise.Apprise = library.Apprise()
        if self.tag is not None and self.apprise_config is not None:
            cfg = library.AppriseConfig()
            cfg.add(str(self.apprise_config))
            ap.add(cfg)
        else:
            ap.add(self.url)
        return ap

    def notify(self, message: Message) -> bool:
        """Blocking delivery (run it in a thread)."""
        library = _library()
        result = self._apprise().notify(
            body=message.body,
            title=message.title,
            notify_type=library.NotifyType(message.notify_type),
            tag=self.tag if self.tag is not None else library.common.MATCH_ALL_TAG,
        )
        return bool(result)


@dataclass(frozen=True, slots=True)
class _Job:
    out: Outgoing


class Lane:
    """One target's queue and worker task."""

    def __init__(self, target: _Target, deliverer: Deliverer) -> None:
        self.target = target
        self._d = deliverer
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(deliverer.policy.queue_size)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the lane's task (idempotent)."""
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name=f"notify:{self.target.id}")

    async def _run(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                outcome = await self._d.deliver(self.target, job.out)
                self._d.report(outcome)
            finally:
                self.queue.task_done()


class Deliverer:
    """Owns the lanes; see the module docstring. Use from one event loop.

    ``on_outcome`` is called on the loop for every final outcome (it must not block);
    ``on_retry(route)`` for every retry of a failed attempt.
    """

    def __init__(
        self,
        *,
        policy: DeliveryPolicy | None = None,
        apprise_config: Path | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.policy = policy or DeliveryPolicy()
        self.apprise_config = apprise_config
        self.on_outcome = on_outcome
        self.on_retry = on_retry
        self._lanes: dict[Secret, Lane] = {}
        self._secrets = [p for s in secrets for p in url_secrets(s)]
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.policy.threads, thread_name_prefix="notify"
        )

    def _target(self, target: Secret) -> Lane:
        lane = self._lanes.get(target)
        if lane is None:
            self._secrets += url_secrets(target.reveal())
            lane = Lane(_Target(target, self.policy.timeout, self.apprise_config), self)
            self._lanes[target] = lane
            lane.start()
        return lane

    def submit(self, out: Outgoing) -> int:
        """Queue ``out`` on each of its targets' lanes; never waits. Return how many queued.

        A full lane drops the message for that target and reports it ``failed``.
        """
        queued = 0
        for target in out.targets:
            lane = self._target(target)
            try:
                lane.queue.put_nowait(_Job(out))
                queued += 1
            except asyncio.QueueFull:
                self.report(self._outcome(lane.target, out, "failed", "lane queue full", 0))
        return queued

    async def send_now(self, target: Secret, out: Outgoing) -> Outcome:
        """Deliver ``out`` to one target now (bypassing the lane), with retries: for tests
        and ``notify-test``."""
        t = _Target(target, self.policy.timeout, self.apprise_config)
        self._secrets += url_secrets(target.reveal())
        return await self.deliver(t, out)

    def _outcome(
        self, t: _Target, out: Outgoing, result: str, detail: str | None, attempts: int
    ) -> Outcome:
        status = out.message.status
        return Outcome(
            out.route, t.id, out.key, status, result, detail, attempts, out.fingerprint, t.display
        )

    def report(self, outcome: Outcome) -> None:
        """Log an outcome (by URL id) and pass it to ``on_outcome``."""
        if outcome.result == "sent":
            log.info(
                "notification %s sent on route %s to %s",
                outcome.status,
                outcome.route,
                outcome.url_id,
            )
        else:
            log.warning(
                "notification %s failed on route %s to %s after %d attempt(s): %s",
                outcome.status,
                outcome.route,
                outcome.url_id,
                outcome.attempts,
                outcome.detail,
            )
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    async def deliver(self, t: _Target, out: Outgoing) -> Outcome:
        """Try ``out`` on ``t`` up to ``policy.attempts`` times; return the final outcome."""
        if t.error is not None:
            return self._outcome(t, out, "failed", t.error, 0)
        p = self.policy
        tries = 0
        try:
            async for attempt in stamina.retry_context(
                on=DeliveryAttemptFailed,
                attempts=p.attempts,
                timeout=None,
                wait_initial=p.backoff,
                wait_max=p.backoff_max,
                wait_jitter=0.4 * p.backoff,
            ):
                with attempt:
                    if tries and self.on_retry is not None:
                        self.on_retry(out.route)
                    tries = attempt.num
                    await self._attempt(t, out)
                    return self._outcome(t, out, "sent", None, tries)
        except DeliveryAttemptFailed as exc:
            return self._outcome(t, out, "failed", exc.detail, tries)
        return self._outcome(t, out, "failed", "no attempt made", tries)  # attempts < 1

    async def _attempt(self, t: _Target, out: Outgoing) -> None:
        """One apprise call within the timeout; raises :class:`DeliveryAttemptFailed` with why."""
        call = asyncio.get_running_loop().run_in_executor(self._pool, t.notify, out.message)
        try:
            async with asyncio.timeout(self.policy.timeout):
                delivered = await call
            if delivered:
                return
            detail = "delivery failed"
        except TimeoutError:
            detail = f"timed out after {self.policy.timeout:g}s"
        except Exception as exc:
            detail = redact(f"{type(exc).__name__}: {exc}", self._secrets)[:200]
        raise DeliveryAttemptFailed(detail)

    @property
    def backlog(self) -> int:
        """Messages waiting in all lanes."""
        return sum(lane.queue.qsize() for lane in self._lanes.values())

    async def drain(self, seconds: float) -> None:
        """Wait up to ``seconds`` for every lane to empty."""
        joins = [lane.queue.join() for lane in self._lanes.values()]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.gather(*joins)

    async def close(self) -> None:
        """Stop every lane (queued messages are dropped) and the thread pool."""
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        await cancel_and_wait(*tasks)
        self._pool.shutdown(wait=False, cancel_futures=True)
