"""Where the frame that trips a rule spends its time, inside the daemon.

Used by ``bench/bench_pulse_to_action.py --stages``. :class:`TripStages` wraps, for
the length of a run (:meth:`TripStages.installed`), :meth:`riskwatch.pipeline.AccountCore.handle`, the rule engine's
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    """Stage times of every tripping frame handled inside :meth:`installed` (module
    docstring); ``samples[stage]`` in seconds."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {s: [] for s in STAGES}
        self._fold = 0.0
        self._evaluation_at = 0.0
        self._intent: tuple[float, float] | None = None  # the first intent: called, returned

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap the daemon's code (module docstring) for the length of the block."""
        handle: Callable[..., pipeline.HandleResult] = pipeline.AccountCore.handle
        evaluate: Callable[..., engine.Decision] = engine.evaluate
        fold: Callable[..., Any] | None = getattr(account_state, "repeat_positions", None)
        clock = time.perf_counter

        def timed_handle(
            core: pipeline.AccountCore, events: Sequence[Event], now: float
        ) -> pipeline.HandleResult:
            self._fold = 0.0
            self._intent = None
            started = clock()
            result = handle(core, events, now)
            ended = clock()
            if result.decision is not None and result.decision.intents:
                self._keep(started, ended)
            return result

        def timed_evaluate(*args: Any, on_intent: Any = None, **kwargs: Any) -> engine.Decision:
            self._evaluation_at = clock()
            if on_intent is None:
                return evaluate(*args, **kwargs)
            inner = on_intent

            def timed_intent(intent: engine.ActionIntent) -> None:
                at = clock()
                inner(intent)
                if self._intent is None:
                    self._intent = (at, clock())

            return evaluate(*args, on_intent=timed_intent, **kwargs)

        def timed_fold(*args: Any, **kwargs: Any) -> Any:
            assert fold is not None
            started = clock()
            try:
                return fold(*args, **kwargs)
            finally:
                self._fold += clock() - started

        pipeline.AccountCore.handle = timed_handle  # type: ignore[method-assign, assignment]
        engine.evaluate = timed_evaluate
        if fold is not None:
            account_state.repeat_positions = timed_fold
        try:
            yield
        finally:
            pipeline.AccountCore.handle = handle  # type: ignore[method-assign]
            engine.evaluate = evaluate
            if fold is not None:
                account_state.repeat_positions = fold

    def _keep(self, started: float, ended: float) -> None:
        if self._intent is None:  # the intent came from a tick or flush, not this frame
            return
        intent_at, intent_end = self._intent
        s = self.samples
        s["fold"].append(self._fold)
        s["before_evaluation"].append(self._evaluation_at - started)
        s["evaluation_to_intent"].append(intent_at - self._evaluation_at)
        s["intent"].append(intent_end - intent_at)
        s["evaluation_after_intent"].append(ended - intent_end)
        s["handle"].append(ended - started)
