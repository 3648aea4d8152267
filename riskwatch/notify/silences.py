"""Silences: label matchers over a time span that mute notifications (pure).

A matcher is ``{"name": …, "op": "=" | "!=" | "=~" | "!~", "value": …}``; regexes
match the whole label value (as in alertmanager). A silence applies to an alert at
``t`` when it is active (``starts_at <= t < ends_at``) and every matcher holds for the
alert's labels (a missing label is ``""``). A silenced alert stays visible in
``/api/alerts``; it is only not notified. Silences never mute an escalation of a
failed action or the circuit breaker (docs/notifications.md, "Silences").

:func:`parse_silence` validates an API/CLI request; :func:`parse_matcher` reads the
``name=value`` / ``name=~regex`` text form the CLI takes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from riskwatch.records import Silence

__all__ = [
    "MAX_SILENCE_SECONDS",
    "Matcher",
    "SilenceRequest",
    "matchers_of",
    "parse_matcher",
    "parse_silence",
    "silenced_by",
]

Op = Literal["=", "!=", "=~", "!~"]
_OPS: Final[tuple[Op, ...]] = ("=~", "!~", "!=", "=")  # longest first, for the text form
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_SILENCE_SECONDS: Final = 366 * 86400.0
"""Longest silence accepted (a year): a forgotten "forever" silence is a hazard."""
_MAX_MATCHERS: Final = 32
_MAX_TEXT: Final = 1024


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; regex ops hold the compiled, fully anchored pattern."""

    name: str
    op: Op
    value: str
    pattern: re.Pattern[str] | None = None

    def holds(self, labels: Mapping[str, str]) -> bool:
        """Whether this matcher holds for ``labels`` (a missing label is ``""``)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None  # noqa: S101 - built by matcher(); regex ops only
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def to_dict(self) -> dict[str, str]:
        """The stored/JSON form."""
        return {"name": self.name, "op": self.op, "value": self.value}


def _matcher(name: str, op: str, value: str) -> Matcher:
    if not _NAME.fullmatch(name):
        msg = f"invalid label name {name[:64]!r} in silence matcher"
        raise ValueError(msg)
    if op not in _OPS:
        msg = f"invalid matcher operator {op[:8]!r} (expected =, !=, =~ or !~)"
        raise ValueError(msg)
    if len(value) > _MAX_TEXT:
        msg = f"matcher value of {name} is longer than {_MAX_TEXT} characters"
        raise ValueError(msg)
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            msg = f"invalid regex for {name}: {exc}"
            raise ValueError(msg) from None
    return Matcher(name, op, value, pattern)


def parse_matcher(text: str) -> Matcher:
    """Parse ``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex``."""
    for op in _OPS:
        name, sep, value = text.partition(op)
        if sep and _NAME.fullmatch(name.strip()):
            return _matcher(name.strip(), op, value.strip().strip('"'))
    msg = f"invalid matcher {text[:64]!r} (expected e.g. severity=warning or rule=~Margin.*)"
    raise ValueError(msg)


def matchers_of(raw: Iterable[Mapping[str, Any]]) -> tuple[Matcher, ...]:
    """Build matchers from their dict form (``name``, ``op`` default ``=``, ``value``)."""
    out = []
    for m in raw:
        name, op, value = m.get("name"), m.get("op", "="), m.get("value", "")
        if m.get("isRegex") is True and op == "=":  # alertmanager's API shape
            op = "=~"
        if not isinstance(name, str) or not isinstance(op, str) or not isinstance(value, str):
            msg = "a matcher needs string name, op and value"
            raise ValueError(msg)
        out.append(_matcher(name, op, value))
    return tuple(out)


def _matches(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.holds(labels) for m in matchers)


def silenced_by(
    silences: Iterable[tuple[Silence, tuple[Matcher, ...]]],
    labels: Mapping[str, str],
    now: float,
) -> str | None:
    """The id of the first active silence whose matchers all hold for ``labels``, or None."""
    for silence, matchers in silences:
        if silence.active_at(now) and _matches(matchers, labels):
            return silence.id
    return None


@dataclass(frozen=True, slots=True)
class SilenceRequest:
    """A validated request for a new silence (times Unix seconds)."""

    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str


def _time(doc: Mapping[str, Any], key: str, default: float) -> float:
    value = doc.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{key} must be a number (unix seconds)"
        raise ValueError(msg)
    return float(value)


def _text(doc: Mapping[str, Any], key: str, *, required: bool) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        msg = f"{key} must be a non-empty string"
        raise ValueError(msg)
    if len(value) > _MAX_TEXT:
        msg = f"{key} is longer than {_MAX_TEXT} characters"
        raise ValueError(msg)
    return value


def parse_silence(doc: Any, now: float) -> SilenceRequest:
    """Validate a ``POST /api/silences`` body.

    Keys: ``matchers`` (non-empty list of matcher dicts, or of ``name=value`` strings),
    ``starts_at`` (default ``now``), ``ends_at`` or ``duration`` (seconds), ``created_by``
    (or ``author``), ``comment``. Raises ``ValueError`` naming the bad field.
    """
    if not isinstance(doc, Mapping):
        msg = "silence must be a json object"
        raise ValueError(msg)
    raw = doc.get("matchers")
    if not isinstance(raw, list) or not raw or len(raw) > _MAX_MATCHERS:
        msg = f"matchers must be a list of 1 to {_MAX_MATCHERS} matchers"
        raise ValueError(msg)
    final: list[Matcher] = []
    for m in raw:
        if isinstance(m, str):
            final.append(parse_matcher(m))
        elif isinstance(m, Mapping):
            final.extend(matchers_of([m]))
        else:
            msg = "each matcher must be an object or a name=value string"
            raise ValueError(msg)
    starts_at = _time(doc, "starts_at", now)
    if "duration" in doc and "ends_at" not in doc:
        ends_at = starts_at + _time(doc, "duration", 0.0)
    else:
        ends_at = _time(doc, "ends_at", starts_at)
    if ends_at <= starts_at or ends_at <= now:
        msg = "ends_at must be after starts_at and in the future"
        raise ValueError(msg)
    if ends_at - starts_at > MAX_SILENCE_SECONDS:
        msg = f"silence longer than {MAX_SILENCE_SECONDS:.0f} s"
        raise ValueError(msg)
    author_key = "created_by" if "created_by" in doc else "author"
    return SilenceRequest(
        matchers=tuple(final),
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=_text(doc, author_key, required=True),
        comment=_text(doc, "comment", required=False),
    )
