"""The operator's commands on the running daemon: arm, disarm, reload, latch reset, silences.

:class:`Commands` implements :class:`riskwatch.web.view.DaemonCommands`; the HTTP
layer calls it after the admin-token check. A command that cannot apply raises
:class:`~riskwatch.web.view.CommandRefused` with the HTTP status to answer.

Arming from the API only undoes a remote disarm: a configuration that says
``actions.mode: dry-run`` or ``actions.kill_switch: true`` is the operator's standing
decision, and only an edit of the file and a restart change it (``POST /api/arm`` is
refused with 409; disarming is always possible).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from riskwatch.actions.executor import ActionExecutor
from riskwatch.clock import Clock
from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.daemon.decisions import Decisions
from riskwatch.daemon.live import LiveConfig
from riskwatch.daemon.reload import Reloader
from riskwatch.notify.service import NotifyService
from riskwatch.notify.silences import parse_silence
from riskwatch.rules.model import DATA_STALE_RULE
from riskwatch.store import DuplicateRecordError, StateStoreError
from riskwatch.store.writer import StateWriter
from riskwatch.web.view import CommandRefused

__all__ = ["Commands"]

log = logging.getLogger(__name__)


class Commands:
    """Carries out operator commands on the daemon's parts."""

    def __init__(
        self,
        live: LiveConfig,
        accounts: dict[str, AccountRuntime],
        executor: ActionExecutor,
        decisions: Decisions,
        notifier: NotifyService,
        reloader: Reloader,
        clock: Clock,
        writer: StateWriter | None,
        on_store_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self._live = live
        self._accounts = accounts
        self._executor = executor
        self._decisions = decisions
        self._notifier = notifier
        self._reloader = reloader
        self._clock = clock
        self._writer = writer
        self._on_store_error = on_store_error
        """Hears of a silence the state database refused (daemon/storage.py counts it)."""

    def arm(self, actor: str) -> dict[str, Any]:
        """Mode armed, kill switch off: only where the config itself says ``armed``."""
        actions = self._live.config.actions
        if actions.kill_switch:
            msg = (
                "refused: the configuration sets actions.kill_switch: true; only an edit of"
                " the configuration and a restart can arm this daemon"
            )
            log.warning("arm by %s %s", actor, msg)
            raise CommandRefused(409, msg)
        if actions.mode != "armed":
            msg = (
                f"refused: the configuration sets actions.mode: {actions.mode}; only an edit"
                " of the configuration and a restart can arm this daemon"
            )
            log.warning("arm by %s %s", actor, msg)
            raise CommandRefused(409, msg)
        return self._executor.arm(actor=actor)

    def disarm(self, actor: str) -> dict[str, Any]:
        """The kill switch: nothing more is sent."""
        return self._executor.disarm(actor=actor)

    async def reload(self, trigger: str) -> tuple[bool, dict[str, Any]]:
        """Reload rules and routes now (serialised with the other triggers)."""
        outcome = await self._reloader.reload(trigger)
        return outcome.ok, outcome.to_dict()

    def reset_latches(
        self, account: str, rule: str | None, symbol: str | None, actor: str
    ) -> list[dict[str, Any]]:
        """Reset latches (docs/design.md#precise-points); returns the alerts that were reset."""
        rt = self._accounts.get(account)
        if rt is None:
            raise CommandRefused(400, f"unknown account {account!r}")
        if rule is not None and rule not in self._live.rules.by_name and rule != DATA_STALE_RULE:
            raise CommandRefused(400, f"unknown rule {rule!r}")
        now = self._clock.now()
        if self._writer is not None:
            self._writer.reset_latch(account, rule=rule, symbol=symbol, now=now, actor=actor)
        decision = rt.core.reset_latch(now=now, rule=rule, symbol=symbol)
        self._decisions.apply(decision)
        log.warning(
            "latch reset by %s: account=%s rule=%s symbol=%s (%d alert(s))",
            actor,
            account,
            rule or "*",
            symbol or "*",
            len(decision.transitions),
        )
        return [
            {"rule": t.rule, "account": t.account, "symbol": t.symbol, "reason": t.reason.value}
            for t in decision.transitions
        ]

    async def add_silence(self, doc: Any) -> dict[str, Any]:
        """Validate and keep a new silence."""
        try:
            req = parse_silence(doc, self._clock.now())
        except ValueError as exc:
            raise CommandRefused(400, str(exc)) from None
        try:
            silence = await self._notifier.add_silence(req)
        except StateStoreError as exc:
            raise self._store_refused(exc) from None
        return silence.to_dict()

    async def expire_silence(self, silence_id: str) -> dict[str, Any] | None:
        """Expire a silence now (None when unknown)."""
        try:
            silence = await self._notifier.expire_silence(silence_id)
        except StateStoreError as exc:
            raise self._store_refused(exc) from None
        return silence.to_dict() if silence is not None else None

    def _store_refused(self, exc: StateStoreError) -> CommandRefused:
        """A silence is kept only in the state database: when it cannot be written, the
        request fails (503), and the fault is counted like any other store fault."""
        if isinstance(exc, DuplicateRecordError):
            return CommandRefused(409, str(exc))
        if self._on_store_error is not None:
            self._on_store_error("silence", str(exc))
        return CommandRefused(503, f"the state database cannot be written: {exc}")
