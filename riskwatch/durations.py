"""The one duration grammar: config files, rule files, rule expressions, scenarios, CLI.

A duration is one or more ``AMOUNT UNIT`` parts with no spaces, units largest first and
each at most once::

    duration := part+
    part     := digits ["." digits] unit
    unit     := "w" | "d" | "h" | "m" | "s" | "ms"      (week, day, hour, minute, second, ms)

``500ms``, ``5s``, ``1.5s``, ``1m30s``, ``2h``, ``1w2d``. The value is kept in whole
milliseconds: an amount that does not come to a whole number of milliseconds
(``0.5ms``) is refused. Blanks around the text are ignored. A bare number, a
sexagesimal time (``1:30``), a negative amount, a space inside or an unknown unit is
refused. Every refusal is a ``ValueError`` whose message reads
``'TEXT' is not a duration: HINT``, the hint saying what to write instead; each reader
puts its own place in front (``FILE:LINE:COL:``, an expression column, a scenario key,
a command-line option).

Scenario files also accept a YAML number (``at: 30``) as seconds: it is a number, not
a duration text (:func:`riskwatch.sim.scenario.parse_duration`).
"""

from __future__ import annotations

import argparse
import itertools
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

__all__ = [
    "GENERAL_HINT",
    "UNITS",
    "Duration",
    "duration_argument",
    "parse_duration",
    "seconds_argument",
]

UNITS: Final[tuple[tuple[str, int], ...]] = (
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
)
"""Each unit and its length in milliseconds, largest first (the order a duration uses)."""

_MILLIS: Final = dict(UNITS)
_RANK: Final = {unit: i for i, (unit, _) in enumerate(UNITS)}
_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|[wdhms])")
_SEXAGESIMAL: Final = re.compile(r"[0-9]+(?::[0-5]?[0-9])+")
_NUMBER: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
GENERAL_HINT: Final = (
    "use numbers with units w, d, h, m, s, ms, largest first, e.g. 30s, 1.5s or 1m30s"
)
"""The hint of a refusal that no more specific hint fits."""


@dataclass(frozen=True, slots=True, order=True)
class Duration:
    """A non-negative span of time in whole milliseconds.

    ``str()`` gives the canonical spelling (whole amounts, largest unit first: ``1m30s``,
    ``1s500ms``), which :func:`parse_duration` reads back to the same value.
    """

    millis: int

    @property
    def seconds(self) -> float:
        """The duration in seconds (float), the unit pure code works in."""
        return self.millis / 1000

    def __str__(self) -> str:
        if self.millis == 0:
            return "0s"
        rest, parts = self.millis, []
        for unit, size in UNITS:
            amount, rest = divmod(rest, size)
            if amount:
                parts.append(f"{amount}{unit}")
        return "".join(parts)


def parse_duration(text: str) -> Duration:
    """Read ``text`` in the duration grammar (module docstring).

    Raises ``ValueError`` with a message ``'TEXT' is not a duration: HINT``.
    """
    t = text.strip()  # a quoted YAML value may carry blanks around it
    parts: list[tuple[str, str]] = []
    at = 0
    while at < len(t):
        m = _PART.match(t, at)
        if m is None:
            break
        parts.append((m[1], m[2]))
        at = m.end()
    if not parts or at != len(t):
        raise ValueError(_refusal(text))
    ranks = [_RANK[unit] for _, unit in parts]
    if any(a >= b for a, b in itertools.pairwise(ranks)):
        canonical = _canonical_hint(parts)
        hint = f"write units largest first, each once{canonical}"
        msg = f"'{text}' is not a duration: {hint}"
        raise ValueError(msg)
    total = sum((Decimal(amount) * _MILLIS[unit] for amount, unit in parts), Decimal(0))
    if total != total.to_integral_value():
        msg = f"'{text}' is not a duration: the smallest step is 1ms"
        raise ValueError(msg)
    return Duration(int(total))


def duration_argument(text: str) -> Duration:
    """An ``argparse`` ``type=``: a duration option's value.

    A malformed value becomes argparse's usage error (exit status 2), with the grammar's
    message.
    """
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds_argument(text: str) -> float:
    """An ``argparse`` ``type=``: a duration option's value, in seconds (see
    :func:`duration_argument`)."""
    return duration_argument(text).seconds


def _refusal(text: str) -> str:
    t = text.strip()
    if _NUMBER.fullmatch(t):
        return f"'{text}' is not a duration: add a unit, e.g. {t}s"
    if _SEXAGESIMAL.fullmatch(t):
        total = 0
        for part in t.split(":"):
            total = total * 60 + int(part)
        canonical = str(Duration(total * 1000))
        alternative = f"{total}s" if canonical == f"{total}s" else f"{total}s or {canonical}"
        return f"'{text}' is not a duration: write {alternative}"
    return f"'{text}' is not a duration: {GENERAL_HINT}"


def _canonical_hint(parts: list[tuple[str, str]]) -> str:
    if len({unit for _, unit in parts}) != len(parts):
        return ""
    ordered = sorted(parts, key=lambda p: _RANK[p[1]])
    return ", e.g. " + "".join(amount + unit for amount, unit in ordered)
