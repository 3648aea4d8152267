"""Inhibition: a firing critical alert mutes the lesser alerts of its family (pure).

While a critical alert of an account fires, the warning and info alerts of the same
account and the same rule *family* are not notified (they stay visible, counted as
``inhibited``); alertmanager ``inhibit/`` with ``equal: [account, family]``.

A rule's family is its ``family`` label when it has one; otherwise its name with a
trailing severity word removed (``MarginUsageHigh`` and ``MarginUsageCritical`` are
both family ``MarginUsage``). Both the label name and the words are configurable
through :class:`InhibitPolicy`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_POLICY", "InhibitPolicy", "family_of", "inhibited"]

_WORDS: Final = (
    "Critical",
    "Crit",
    "Warning",
    "Warn",
    "Info",
    "High",
    "Higher",
    "Highest",
    "Low",
    "Medium",
    "Severe",
    "Extreme",
    "Hard",
    "Soft",
)


@dataclass(frozen=True, slots=True)
class InhibitPolicy:
    """Which alerts inhibit which, and how a rule's family is found.

    ``source``: the severity that inhibits; ``targets``: severities it inhibits;
    ``equal``: labels that must be equal between source and target (besides family);
    ``family_label``: the label naming a family; ``suffixes``: trailing name words
    stripped to derive a family when the label is absent. ``enabled=False`` turns
    inhibition off.
    """

    source: str = "critical"
    targets: tuple[str, ...] = ("warning", "info")
    equal: tuple[str, ...] = ("account",)
    family_label: str = "family"
    suffixes: tuple[str, ...] = _WORDS
    enabled: bool = True

    def suffix_pattern(self) -> re.Pattern[str]:
        """``(.+?)(?:_|-)?(?:Word1|Word2|…)$``, to strip one trailing severity word."""
        words = "|".join(re.escape(w) for w in sorted(self.suffixes, key=len, reverse=True))
        return re.compile(rf"(.+?)[_-]?(?:{words})", re.IGNORECASE)


DEFAULT_POLICY: Final = InhibitPolicy()
_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def family_of(labels: Mapping[str, str], policy: InhibitPolicy = DEFAULT_POLICY) -> str:
    """The family of an alert: its family label, or its rule name minus a severity word."""
    explicit = labels.get(policy.family_label, "")
    if explicit:
        return explicit
    rule = labels.get("rule", "")
    pattern = _PATTERNS.get(policy.suffixes)
    if pattern is None:
        pattern = _PATTERNS.setdefault(policy.suffixes, policy.suffix_pattern())
    m = pattern.fullmatch(rule)
    return m.group(1) if m else rule


def inhibited(
    labels: Mapping[str, str],
    firing: Iterable[Mapping[str, str]],
    policy: InhibitPolicy = DEFAULT_POLICY,
) -> bool:
    """Whether an alert with ``labels`` is inhibited by one of the ``firing`` alerts' labels.

    Only alerts whose severity is in ``policy.targets`` can be inhibited, only by a
    firing alert of severity ``policy.source`` with the same ``equal`` labels and family.
    """
    if not policy.enabled or labels.get("severity", "") not in policy.targets:
        return False
    family = family_of(labels, policy)
    for src in firing:
        if src.get("severity", "") != policy.source:
            continue
        if any(src.get(name, "") != labels.get(name, "") for name in policy.equal):
            continue
        if family_of(src, policy) == family:
            return True
    return False
