"""Rule ``summary`` / ``description`` templates: ``{{ name }}`` and ``{{ name | filter }}``.

Deliberately tiny (no Jinja, no attribute access, no expressions, no statements), so
a template is checked completely at load and rendering cannot fail:

- a placeholder is ``{{ NAME }}`` or ``{{ NAME | FILTER }}`` (spaces optional);
- ``NAME`` is a metric name readable at the rule's scope (docs/rules.md), or one of
  ``account``, ``symbol`` (position rules only), ``rule``, ``severity`` (text), or
  ``value`` (the value of the left side of ``when``, when ``when`` is a comparison or
  an ``and`` starting with one);
- ``FILTER`` is ``pct`` (ratio as a percentage, ``0.853`` → ``85.3%``), ``money``
  (USD, ``-1234.5`` → ``-$1,234.50``), ``duration`` (seconds, ``95`` → ``1m35s``) or
  ``num`` (six significant digits, the default for numbers); text takes no filter;
- a value that is missing renders as ``n/a``.

:func:`parse_template` returns a :class:`Template` or the list of ``(offset, message)``
problems, offsets into the template text, for the rule loader to place at
``FILE:LINE:COL``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from riskwatch.rules.expr.names import is_position_only, names_in_scope, suggest

__all__ = [
    "CONTEXT_NAMES",
    "FILTERS",
    "Template",
    "format_duration",
    "format_money",
    "format_num",
    "format_pct",
    "parse_template",
]

MISSING: Final = "n/a"


def format_num(v: float) -> str:
    """Six significant digits, no exponent for everyday magnitudes (``12345.7``)."""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


def format_pct(v: float) -> str:
    """A ratio as a percentage with one decimal (``0.853`` → ``85.3%``)."""
    if math.isinf(v):
        return "inf%" if v > 0 else "-inf%"
    return f"{v * 100:.1f}%"


def format_money(v: float) -> str:
    """USD with thousands separators and cents (``-1234.5`` → ``-$1,234.50``)."""
    if math.isinf(v):
        return "$inf" if v > 0 else "-$inf"
    sign = "-" if v < 0 else ""
    return f"{sign}${abs(v):,.2f}"


def format_duration(v: float) -> str:
    """Seconds as ``1h2m3s``; under a minute with one decimal (``4.2s``)."""
    if math.isinf(v):
        return "forever"
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v < 60:
        text = f"{v:.1f}".removesuffix(".0")
        return f"{sign}{text}s"
    total = round(v)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return sign + "".join(parts)


FILTERS: Final[Mapping[str, Callable[[float], str]]] = {
    "pct": format_pct,
    "money": format_money,
    "duration": format_duration,
    "num": format_num,
}
"""Filter name → formatter of a finite-or-infinite float."""

CONTEXT_NAMES: Final = frozenset({"account", "symbol", "rule", "severity", "value"})
"""Names every template may use besides metric names (``symbol`` at position scope)."""

_TEXT_NAMES: Final = frozenset({"account", "symbol", "rule", "severity"})
_OPEN = "{{"
_CLOSE = "}}"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    fmt: Callable[[float], str] | None  # None: text


@dataclass(frozen=True, slots=True, eq=False)
class Template:
    """A checked template; ``names`` are the metric names it reads (for the engine)."""

    text: str
    parts: tuple[str | _Field, ...]
    names: frozenset[str]

    def render(self, values: Mapping[str, float | None], context: Mapping[str, str]) -> str:
        """Fill the placeholders: metric names (and ``value``) from ``values``, text from
        ``context`` (``account``, ``symbol``, ``rule``, ``severity``). Never raises."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part.fmt is None:
                out.append(context.get(part.name, "") or "")
            else:
                v = values.get(part.name)
                out.append(MISSING if v is None or v != v else part.fmt(float(v)))
        return "".join(out)


def parse_template(
    text: str, scope: str, *, has_value: bool = True
) -> Template | list[tuple[int, str]]:
    """Parse and check ``text`` for a rule of ``scope`` (``"account"``/``"position"``).

    ``has_value`` says whether the rule's ``when`` is simple enough for ``{{ value }}``.
    Returns every problem as ``(offset in text, message)``; never raises.
    """
    problems: list[tuple[int, str]] = []
    parts: list[str | _Field] = []
    names: set[str] = set()
    known = names_in_scope("position" if scope == "position" else "account")
    pos = 0
    while True:
        start = text.find(_OPEN, pos)
        stmt = text.find("{%", pos)
        if stmt >= 0 and (start < 0 or stmt < start):
            problems.append((stmt, "template statements '{%' are not supported"))
        if start < 0:
            parts.append(text[pos:])
            break
        parts.append(text[pos:start])
        end = text.find(_CLOSE, start + 2)
        if end < 0:
            problems.append((start, "unclosed '{{' in template"))
            break
        field = _placeholder(text, start + 2, end, scope, known, has_value, problems)
        if field is not None:
            parts.append(field)
            if field.fmt is not None and field.name != "value":
                names.add(field.name)
        pos = end + 2
    if problems:
        return problems
    merged: list[str | _Field] = [p for p in parts if p != ""]
    return Template(text, tuple(merged), frozenset(names))


def _placeholder(
    text: str,
    begin: int,
    end: int,
    scope: str,
    known: frozenset[str],
    has_value: bool,
    problems: list[tuple[int, str]],
) -> _Field | None:
    inner = text[begin:end]
    pieces = inner.split("|")
    if len(pieces) > 2:
        second = begin + len(pieces[0]) + 1 + len(pieces[1])
        problems.append((second, "only one filter per placeholder"))
        return None
    name_text = pieces[0]
    name = name_text.strip()
    name_at = begin + (len(name_text) - len(name_text.lstrip()))
    if not name:
        problems.append((begin - 2, "empty placeholder in template"))
        return None
    if not _IDENT.fullmatch(name):
        bad = re.search(r"[^A-Za-z0-9_]", name)
        offset = name_at + (bad.start() if bad else 0)
        if "." in name:
            problems.append((name_at + name.index("."), "attribute access is not supported"))
        elif "(" in name or "[" in name:
            problems.append((offset, "only plain names are allowed in templates"))
        else:
            problems.append((name_at, f"invalid name '{name}' in template"))
        return None
    is_text = name in _TEXT_NAMES
    ok = True
    if name == "symbol" and scope != "position":
        problems.append((name_at, "'symbol' is only defined in position rules"))
        ok = False
    elif name == "value" and not has_value:
        problems.append(
            (name_at, "'value' needs a when that is a comparison, e.g. 'margin_usage > 0.8'"),
        )
        ok = False
    elif name not in CONTEXT_NAMES and name not in known:
        if scope != "position" and is_position_only(name):
            message = f"'{name}' is a position name: use it only in a rule with scope: position"
        else:
            hint = suggest(name, known | CONTEXT_NAMES)
            message = f"unknown name '{name}' in template" + (
                f" (did you mean '{hint}'?)" if hint else ""
            )
        problems.append((name_at, message))
        ok = False
    fmt: Callable[[float], str] | None = None if is_text else FILTERS["num"]
    if len(pieces) == 2:
        filter_text = pieces[1]
        flt = filter_text.strip()
        flt_at = begin + len(name_text) + 1 + (len(filter_text) - len(filter_text.lstrip()))
        if flt not in FILTERS:
            hint = suggest(flt, FILTERS) if flt else None
            problems.append(
                (
                    flt_at,
                    f"unknown filter '{flt}' (filters: {', '.join(FILTERS)})"
                    + (f"; did you mean '{hint}'?" if hint else ""),
                )
            )
            ok = False
        elif is_text:
            problems.append((flt_at, f"filter '{flt}' needs a number; '{name}' is text"))
            ok = False
        else:
            fmt = FILTERS[flt]
    return _Field(name, fmt) if ok else None
