"""Window functions: the contract a window store must meet, and a reference implementation.

An expression such as `drawdown(equity, 24h) > 0.10` needs the recent history of one
metric. The checker lists what an expression needs as `WindowSpec(func, name, seconds)`;
at evaluation the compiled expression asks a `WindowSource` for each value.

Contract of `WindowSource.window(func, name, seconds, now)` — the store must:

* keep, per metric name, samples `(t, value)` in Unix seconds, oldest first, where `value`
  is a finite float; a missing, NaN or infinite value is not a sample (nothing is
  recorded);
* have recorded the current pulse's values at `now` *before* the expression is evaluated,
  so the window includes the present value;
* take the window as the samples with `now - seconds <= t <= now` (both ends included);
* return None (missing) when the window holds no sample, and otherwise:

  - ``max_over``: the largest sample value;
  - ``min_over``: the smallest sample value;
  - ``avg_over``: the arithmetic mean of the sample values (not time-weighted: pulses come
    at a fixed cadence);
  - ``change``: latest value − reference value, where the reference is the earliest sample
    in the window (the one exactly `seconds` ago when it exists); 0.0 with one sample;
  - ``rate``: change / (t_latest − t_reference), per second; None when they are the same
    sample (no elapsed time);
  - ``drawdown``: (peak − latest) / peak where peak is `max_over`; 0.0 at the peak; None
    when peak ≤ 0 (a ratio of a non-positive peak means nothing);

* never raise, never return NaN; it may return ±inf only if its samples hold it (they
  should not).

At position scope the engine passes a source in which position names (and the position's
own `unrealised_pnl`/`open_orders`) resolve to that (account, symbol) series and account
names to the account's series; `name` alone does not say which. The longest window a rule
set needs (max of `WindowSpec.seconds`) bounds how much history the store must keep.
`compute_window` implements the arithmetic above over a list of samples; a store may call
it or do the same incrementally, and `ReferenceWindows` is the executable specification
that tests compare a faster store against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from riskwatch.state.windows import WINDOW_FUNCTIONS, WindowSource

__all__ = [
    "MAX_WINDOW_SECONDS",
    "NO_WINDOWS",
    "WINDOW_FUNCTIONS",
    "ReferenceWindows",
    "WindowSource",
    "WindowSpec",
    "compute_window",
]


MAX_WINDOW_SECONDS: Final = 90 * 86400.0
"""Longest accepted window (90 days): keeps the history a store must hold bounded."""


@dataclass(frozen=True, slots=True, order=True)
class WindowSpec:
    """One window an expression needs: `func(name, seconds)`."""

    func: str
    name: str
    seconds: float


class _NoWindows:
    """A source with no history: every window is missing."""

    def window(self, func: str, name: str, seconds: float, now: float) -> float | None:
        return None


NO_WINDOWS: Final[WindowSource] = _NoWindows()
"""Pass this when evaluating expressions that need no window (their `.windows` is empty)."""


def compute_window(
    func: str, samples: Sequence[tuple[float, float]], seconds: float, now: float
) -> float | None:
    """Apply `func` to the `samples` (oldest first) with `now - seconds <= t <= now`.

    Implements the contract in the module docstring; unknown `func` gives None.
    """
    start = now - seconds
    inside = [(t, v) for t, v in samples if start <= t <= now]
    if not inside:
        return None
    if func == "max_over":
        return max(v for _, v in inside)
    if func == "min_over":
        return min(v for _, v in inside)
    if func == "avg_over":
        return sum(v for _, v in inside) / len(inside)
    t0, first = inside[0]
    t1, last = inside[-1]
    if func == "change":
        return last - first
    if func == "rate":
        return None if t1 == t0 else (last - first) / (t1 - t0)
    if func == "drawdown":
        peak = max(v for _, v in inside)
        return None if peak <= 0 else (peak - last) / peak
    return None


class ReferenceWindows:
    """Reference `WindowSource`: plain lists, no eviction, O(n) per query.

    The executable specification of the contract, for tests and for checking a faster
    store against; not meant for production (it never forgets a sample).
    """

    def __init__(self) -> None:
        self._samples: dict[str, list[tuple[float, float]]] = {}

    def push(self, name: str, value: float | None, t: float) -> None:
        """Record `value` of `name` at `t` (non-decreasing per name); skip None, NaN, ±inf."""
        if value is None or not math.isfinite(value):
            return
        self._samples.setdefault(name, []).append((t, float(value)))

    def push_all(self, values: dict[str, float | None], t: float) -> None:
        """Record every value of one pulse at `t`."""
        for name, value in values.items():
            self.push(name, value, t)

    def window(self, func: str, name: str, seconds: float, now: float) -> float | None:
        """See `WindowSource.window`."""
        return compute_window(func, self._samples.get(name, ()), seconds, now)
