"""Warns before an account's JWT expires (docs/protocol.md §2.1).

Once a second, each account's :class:`~riskwatch.qfex.link.AccountLink` says whether
its token's ``exp`` is near (``JWT_WARN_BEFORE``), past, or fine again after a
refresh; each change is logged and notified (firing ``JwtExpiring`` warning, critical
once expired, resolved when a fresh token was read). The expiry itself is the gauge
``riskwatch_jwt_expiry_timestamp_seconds``; an expired token fails ``/readyz``.
"""

from __future__ import annotations

import asyncio
import logging

from riskwatch.clock import Clock
from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.notify.notice import AlertNotice
from riskwatch.notify.service import NotifyService
from riskwatch.tasks import wait_until_set

__all__ = ["JwtWatch"]

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
"""Seconds between two looks at the tokens' expiry."""


class JwtWatch:
    """Checks every account's JWT expiry until ``stopped`` is set."""

    def __init__(
        self,
        accounts: dict[str, AccountRuntime],
        notifier: NotifyService,
        clock: Clock,
        stopped: asyncio.Event,
    ) -> None:
        self.accounts = accounts
        self.notifier = notifier
        self.clock = clock
        self.stopped = stopped

    async def run(self) -> None:
        """Check once a second."""
        while not self.stopped.is_set():
            self.check(self.clock.now())
            await wait_until_set(self.stopped, CHECK_INTERVAL)

    def check(self, now: float) -> None:
        """Log and notify every change of an account's JWT expiry state."""
        for name, rt in self.accounts.items():
            state = rt.link.check_expiry(now)
            if state is None:
                continue
            exp = rt.link.jwt_expires_at or now
            if state == "ok":
                log.info("account %s: JWT renewed, expires in %.0f s", name, exp - now)
            else:
                log.warning("account %s: JWT %s (exp %.0f, in %.0f s)", name, state, exp, exp - now)
            self.notifier.enqueue_alert(
                AlertNotice(
                    rule="JwtExpiring",
                    account=name,
                    symbol=None,
                    status="resolved" if state == "ok" else "firing",
                    severity="critical" if state == "expired" else "warning",
                    at=now,
                    summary=f"JWT of account {name} {'renewed' if state == 'ok' else state}",
                    description=(
                        f"The JWT expires at Unix time {exp:.0f} ({exp - now:+.0f} s). "
                        "riskwatch reads jwt_file (or runs jwt_command) again before each "
                        "reconnect: refresh the token there."
                    ),
                )
            )
