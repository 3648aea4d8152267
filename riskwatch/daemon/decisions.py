"""Where the engine's decisions go: the action executor first, then everything else.

A decision with intents reaches the executor before anything else (a protective
action never waits behind notification work); the listeners (the notifier), the
alert metrics, the log lines and the state database follow, on the next loop turn
when the deciding frame's commands are still to be written (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from riskwatch.actions.executor import ActionExecutor
from riskwatch.daemon.rulestate import DailySaver
from riskwatch.logformat import log_context
from riskwatch.metrics import Metrics
from riskwatch.rules.engine import ActionIntent, Decision
from riskwatch.rules.lifecycle import TransitionReason
from riskwatch.store.writer import StateWriter

__all__ = ["DecisionListener", "Decisions"]

DecisionListener = Callable[[Decision], None]
"""Called with every decision that carries transitions or intents (notifications, actions)."""

log = logging.getLogger(__name__)


class Decisions:
    """Applies decisions: executor, listeners, alert metrics, log and store.

    Stored state is queued on ``writer`` (the writer thread: never a wait on the event
    loop); ``daily`` saves baselines and peaks as they change.
    """

    def __init__(
        self,
        executor: ActionExecutor,
        metrics: Metrics,
        writer: StateWriter | None,
        daily: DailySaver | None = None,
    ) -> None:
        self.executor = executor
        self.metrics = metrics
        self.writer = writer
        self.daily = daily
        self.listeners: list[DecisionListener] = []
        """Called after the executor, in order (the notifier is one)."""

    def apply(
        self, decision: Decision, seconds: float | None = None, *, defer: bool = False
    ) -> None:
        """Act on a decision: the action executor first, then the other listeners,
        metrics, log lines and the state database. With ``defer`` (a trade frame whose
        commands are written when its callback returns) everything after the executor
        runs on the next loop turn, i.e. after the commands are on the socket."""
        if seconds is not None:
            self.metrics.rule_evaluation_seconds.observe(seconds)
        if self.daily is not None:
            self.daily.changed(decision.account)
        if not decision.transitions and not decision.intents:
            return
        if decision.intents:
            try:
                self.executor.on_decision(decision)
            except Exception:  # a listener's bug must not stop evaluation
                log.exception("decision listener failed")
        if defer:
            asyncio.get_running_loop().call_soon(self.record, decision)
        else:
            self.record(decision)

    def on_intent(self, intent: ActionIntent) -> None:
        """An action intent, mid-evaluation: the executor plans and sends it at once."""
        try:
            with log_context(
                account=intent.account,
                rule=intent.rule,
                symbol=intent.symbol,
                trip_id=intent.trip_id,
            ):
                self.executor.on_intent(intent)
        except Exception:  # a bug here must not stop evaluation
            log.exception("action executor failed on an intent")
            self.metrics.task_errors.labels("actions").inc()

    def record(self, decision: Decision) -> None:
        """The non-urgent part of :meth:`apply`."""
        for listener in self.listeners:
            try:
                listener(decision)
            except Exception:  # a listener's bug must not stop evaluation
                log.exception("decision listener failed")
        m = self.metrics
        rows = []
        for t in decision.transitions:
            if t.reason is TransitionReason.FIRING:
                m.alerts_fired.labels(t.rule, t.account, t.severity).inc()
            rows.append((t.rule, t.account, t.symbol, dict(t.record)))
            log.log(
                logging.WARNING
                if t.reason in (TransitionReason.FIRING, TransitionReason.LATCHED)
                else logging.INFO,
                "alert %s %s account=%s%s%s: %s",
                t.rule,
                t.reason.value.upper(),
                t.account,
                f" symbol={t.symbol}" if t.symbol else "",
                " (shadow)" if t.shadow else "",
                t.summary,
                extra={"account": t.account, "rule": t.rule, "symbol": t.symbol},
            )
        if self.writer is not None and rows:
            self.writer.save_alerts(rows, decision.at)
