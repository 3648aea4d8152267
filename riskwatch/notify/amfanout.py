"""Routes' ``alertmanager://`` targets: which alerts go to which Alertmanager.

The notification service hands every alert and action notice here as well as to its
own dispatcher. An alert goes to the Alertmanager targets of the routes it matches
(:func:`~riskwatch.notify.routes.match_routes`, the same first-match/``continue``
rules); an escalation or breaker notice that matches no route goes to every target,
as it does for the other channels. riskwatch's own grouping, ``group_wait``,
``repeat_interval``, silences and inhibition do not apply to these targets:
Alertmanager's do (docs/notifications-alertmanager.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from riskwatch.alertmanager_target import is_alertmanager, parse_target
from riskwatch.clock import Clock
from riskwatch.notify.alertmanager import AlertmanagerBook, Posting
from riskwatch.notify.amsender import AlertmanagerSender
from riskwatch.notify.notice import ActionNotice, AlertNotice
from riskwatch.notify.routes import NotifyRoute, match_routes
from riskwatch.secret import Secret

__all__ = ["AlertmanagerFanout", "split_targets"]

FanoutListener = Callable[[str, str, Posting, str, str | None], None]
"""``(route, target display, posting, "sent" | "failed", detail)``."""


def split_targets(routes: Sequence[NotifyRoute]) -> tuple[NotifyRoute, ...]:
    """``routes`` with their ``alertmanager(s)://`` targets removed (for the dispatcher)."""
    return tuple(
        replace(r, targets=tuple(t for t in r.targets if not is_alertmanager(t.reveal())))
        for r in routes
    )


@dataclass(slots=True)
class _Target:
    route: str  # the first route naming it: the metric label
    sender: AlertmanagerSender

    @property
    def book(self) -> AlertmanagerBook:
        return self.sender.book


class AlertmanagerFanout:
    """Books and senders of every Alertmanager target of the routes."""

    def __init__(
        self,
        routes: Sequence[NotifyRoute],
        *,
        clock: Clock,
        external_url: str | None = None,
        on_result: FanoutListener | None = None,
    ) -> None:
        self.clock = clock
        self.external_url = external_url
        self.on_result = on_result
        self.targets: dict[Secret, _Target] = {}
        self.routes: tuple[NotifyRoute, ...] = ()
        self._started = False
        self.set_routes(routes)

    def _new_target(self, route: str, url: Secret) -> _Target:
        target = parse_target(url.reveal())
        book = AlertmanagerBook(target.resend, self.external_url)

        def report(posting: Posting, result: str, detail: str | None) -> None:
            if self.on_result is not None:
                self.on_result(route, target.display, posting, result, detail)

        sender = AlertmanagerSender(target, book, self.clock, report)
        if self._started:
            sender.start()
        return _Target(route, sender)

    def set_routes(self, routes: Sequence[NotifyRoute]) -> list[AlertmanagerSender]:
        """Use these routes; targets no longer named are returned (to be closed)."""
        self.routes = tuple(routes)
        wanted: dict[Secret, str] = {}
        for r in self.routes:
            for t in r.targets:
                if is_alertmanager(t.reveal()):
                    wanted.setdefault(t, r.name)
        gone = [t.sender for url, t in self.targets.items() if url not in wanted]
        self.targets = {
            url: self.targets.get(url) or self._new_target(route, url)
            for url, route in wanted.items()
        }
        return gone

    def _for(self, labels: dict[str, str] | None, always: bool) -> list[_Target]:
        if not self.targets:
            return []
        chosen: dict[Secret, _Target] = {}
        matched = match_routes(self.routes, labels or {})
        if always and not matched:
            matched = list(self.routes)
        for r in matched:
            for t in r.targets:
                if t in self.targets:
                    chosen[t] = self.targets[t]
        return list(chosen.values())

    def alert(self, n: AlertNotice) -> None:
        """A riskwatch alert fired or resolved."""
        for t in self._for(dict(n.all_labels), False):
            t.book.alert(n)
            t.sender.wake()

    def sync(self, account: str, firing: Iterable[AlertNotice], now: float) -> None:
        """``account``'s firing alerts are exactly ``firing`` (per target's matching routes)."""
        if not self.targets:
            return
        mine: dict[int, list[AlertNotice]] = {id(t): [] for t in self.targets.values()}
        for n in firing:
            for t in self._for(dict(n.all_labels), False):
                mine[id(t)].append(n)
        for t in self.targets.values():
            t.book.sync(account, mine[id(t)], now)
            t.sender.wake()

    def action(self, n: ActionNotice) -> None:
        """An action outcome or escalation."""
        for t in self._for(dict(n.all_labels), n.always):
            t.book.action(n)
            t.sender.wake()

    async def send_test(self, route: NotifyRoute) -> list[tuple[str, str | None]]:
        """``notify-test``: one test alert to each Alertmanager of ``route``, now;
        ``(target display, None | what failed)`` each."""
        out = []
        for url in route.targets:
            t = self.targets.get(url)
            if t is not None:
                out.append((t.sender.target.display, await t.sender.post_test(route.name)))
        return out

    def start(self) -> None:
        """Start every target's sender."""
        self._started = True
        for t in self.targets.values():
            t.sender.start()

    async def close(self, drain: float = 1.0) -> None:
        """Post what is due (bounded), then stop every sender."""
        for t in self.targets.values():
            await t.sender.close(drain)
