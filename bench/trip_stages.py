"""Where the frame that trips a rule spends its time, inside the daemon.

Used by ``bench/bench_pulse_to_action.py --stages``. :class:`TripStages` wraps, for
the length of a run, :meth:`riskwatch.pipeline.AccountCore.handle`, the rule engine's
``evaluate`` (which ``pipeline.py`` calls through its module) and the intent callback
it is given, and the fold of held repeated positions
(``riskwatch.state.account.repeat_positions``, absent from trees before it, which the
benchmark also runs against). For every handled frame whose decision carries an
intent, it keeps, in seconds:

- ``fold``: folding the burst's held repeats into the snapshot;
- ``before_evaluation``: the handling up to the engine (the fold, the frame's reduce,
  the figures);
- ``evaluation_to_intent``: the engine, up to its first intent;
- ``intent``: the first intent's callback (the action executor: planning, the audit
  log, the command queued);
- ``evaluation_after_intent``: the rest of the handling, after that callback. The
  command is written when the frame's handling returns (``riskwatch/daemon/frames.py``),
  so this delays it;
- ``handle``: the whole of ``AccountCore.handle``.

The wrappers add about a microsecond per handled frame, for every account.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import riskwatch.pipeline as pipeline
import riskwatch.rules.engine as engine
import riskwatch.state.account as account_state
from riskwatch.model import Event

STAGES = (
    "fold",
    "before_evaluation",
    "evaluation_to_intent",
    "intent",
    "evaluation_after_intent",
    "handle",
)


class TripStages:
    """Stage times of every tripping frame handled between :meth:`install` and
    :meth:`uninstall` (module docstring); ``samples[stage]`` in seconds."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {s: [] for s in STAGES}
        self._restore: list[tuple[Any, str, Any]] = []
        self._fold = 0.0
        self._evaluation_at: float | None = None
        self._intent_at: float | None = None
        self._intent_end: float | None = None

    def install(self) -> None:
        """Wrap the daemon's code (module docstring) until :meth:`uninstall`."""
        handle: Callable[..., pipeline.HandleResult] = pipeline.AccountCore.handle
        evaluate: Callable[..., engine.Decision] = engine.evaluate
        clock = time.perf_counter
        me = self

        def timed_handle(
            core: pipeline.AccountCore, events: Sequence[Event], now: float
        ) -> pipeline.HandleResult:
            me._fold = 0.0
            me._evaluation_at = me._intent_at = me._intent_end = None
            started = clock()
            result = handle(core, events, now)
            ended = clock()
            decision = result.decision
            if decision is not None and decision.intents and me._intent_end is not None:
                me._keep(started, ended)
            return result

        def timed_evaluate(*args: Any, on_intent: Any = None, **kwargs: Any) -> engine.Decision:
            me._evaluation_at = clock()
            if on_intent is None:
                return evaluate(*args, **kwargs)
            inner = on_intent

            def timed_intent(intent: engine.ActionIntent) -> None:
                at = clock()
                inner(intent)
                if me._intent_at is None:
                    me._intent_at, me._intent_end = at, clock()

            return evaluate(*args, on_intent=timed_intent, **kwargs)

        self._patch(pipeline.AccountCore, "handle", timed_handle)
        self._patch(engine, "evaluate", timed_evaluate)
        fold = getattr(account_state, "repeat_positions", None)
        if fold is not None:

            def timed_fold(*args: Any, **kwargs: Any) -> Any:
                started = clock()
                try:
                    return fold(*args, **kwargs)
                finally:
                    me._fold += clock() - started

            self._patch(account_state, "repeat_positions", timed_fold)

    def uninstall(self) -> None:
        """Put the daemon's code back as it was."""
        while self._restore:
            owner, name, original = self._restore.pop()
            setattr(owner, name, original)

    def _patch(self, owner: Any, name: str, wrapper: Any) -> None:
        self._restore.append((owner, name, getattr(owner, name)))
        setattr(owner, name, wrapper)

    def _keep(self, started: float, ended: float) -> None:
        assert self._evaluation_at is not None
        assert self._intent_at is not None
        assert self._intent_end is not None
        s = self.samples
        s["fold"].append(self._fold)
        s["before_evaluation"].append(self._evaluation_at - started)
        s["evaluation_to_intent"].append(self._intent_at - self._evaluation_at)
        s["intent"].append(self._intent_end - self._intent_at)
        s["evaluation_after_intent"].append(ended - self._intent_end)
        s["handle"].append(ended - started)
