"""Checked rule types: what :mod:`riskwatch.rules.load` builds and the engine runs.

A :class:`Rule` is immutable and fully validated: its expressions are parsed, checked
and compiled, its templates parsed, its actions typed. A :class:`RuleSet` is the whole
loaded rule pack, with what the engine precomputes once per load (the window specs to
track, the account names position rules read) so that an evaluation allocates little.

Durations are seconds (float); money in actions is never given (actions take sizes as
fractions of a position, or a leverage ratio).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from riskwatch.rules.expr import CheckedExpr, WindowSpec
from riskwatch.rules.expr.compile import Evaluator
from riskwatch.rules.lifecycle import LifecycleParams
from riskwatch.rules.templates import Template
from riskwatch.state.catalogue import POSITION_NAMES, Scope

__all__ = [
    "CLOSE_TARGETS",
    "DATA_STALE_RULE",
    "Action",
    "ActionKind",
    "Confirm",
    "Mode",
    "Rule",
    "RuleSet",
    "Scope",
    "Severity",
]

Severity = Literal["info", "warning", "critical"]
Mode = Literal["enforce", "shadow"]
Confirm = Literal["pulse", "mark"]
ActionKind = Literal["cancel_all_orders", "close_position", "set_leverage", "reduce_position"]

CLOSE_TARGETS: Final = ("all", "largest_loss", "largest_notional")
"""``close_position`` targets other than a symbol (docs/rules.md)."""

DATA_STALE_RULE: Final = "DataStale"
"""Name of the built-in stale-data alert; no rule file may use it."""

_POSITION_ONLY: Final = frozenset(POSITION_NAMES)


@dataclass(frozen=True, slots=True)
class Action:
    """One protective action of a rule, validated but not planned.

    ``kind`` selects the fields that matter:

    - ``cancel_all_orders``: none;
    - ``close_position``: ``target`` is a symbol, ``"all"``, ``"largest_loss"``,
      ``"largest_notional"``, or None for "this rule's symbol" (position scope only);
    - ``set_leverage``: ``leverage`` (ratio, e.g. 10.0) for this rule's symbol;
    - ``reduce_position``: ``fraction`` (0 < f <= 1) of this rule's symbol's position,
      spread over ``over`` seconds (reduce-only TWAP, at least 60 s).
    """

    kind: ActionKind
    target: str | None = None
    leverage: float | None = None
    fraction: float | None = None
    over: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, e.g. ``{"close_position": "all"}`` or ``{"cancel_all_orders": {}}``."""
        if self.kind == "close_position":
            return {"close_position": self.target}
        if self.kind == "set_leverage":
            return {"set_leverage": self.leverage}
        if self.kind == "reduce_position":
            return {"reduce_position": {"fraction": self.fraction, "over": self.over}}
        return {"cancel_all_orders": {}}

    def __str__(self) -> str:
        if self.kind == "close_position":
            return f"close_position {self.target or '(this symbol)'}"
        if self.kind == "set_leverage":
            return f"set_leverage {self.leverage:g}"
        if self.kind == "reduce_position":
            return f"reduce_position {self.fraction:g} over {self.over:g}s"
        return "cancel_all_orders"


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One checked rule (docs/rules.md); ``file``/``line`` locate its ``name``.

    ``value`` is the compiled left side of ``when`` when ``when`` is a comparison (or
    an ``and`` whose first conjunct is; the non-constant side of ``0.8 < x``), for
    ``{{ value }}``.
    ``names`` is every name ``when``/``clear_when`` read; ``windows`` their window specs.
    """

    name: str
    when: CheckedExpr
    scope: Scope = "account"
    clear_when: CheckedExpr | None = None
    for_seconds: float = 0.0
    keep_firing_for: float = 0.0
    severity: Severity = "warning"
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    summary: Template | None = None
    description: Template | None = None
    actions: tuple[Action, ...] = ()
    latch: bool = False
    mode: Mode = "enforce"
    confirm: Confirm = "pulse"
    value: Evaluator | None = None
    file: str = ""
    line: int = 0

    @property
    def params(self) -> LifecycleParams:
        """The lifecycle parameters (built once per call; the engine caches them)."""
        return LifecycleParams(
            for_seconds=self.for_seconds,
            keep_firing_for=self.keep_firing_for,
            latch=self.latch,
            has_clear_when=self.clear_when is not None,
        )

    @property
    def shadow(self) -> bool:
        """True for ``mode: shadow``: evaluated and recorded, never notifies or acts."""
        return self.mode == "shadow"

    @property
    def names(self) -> frozenset[str]:
        """Names read by ``when`` and ``clear_when``."""
        names = self.when.names
        return names | self.clear_when.names if self.clear_when is not None else names

    @property
    def windows(self) -> frozenset[WindowSpec]:
        """Windows read by ``when`` and ``clear_when``."""
        w = self.when.windows
        return w | self.clear_when.windows if self.clear_when is not None else w


class RuleSet:
    """The loaded rules, in file order, and what the engine precomputes from them.

    ``window_specs``: ``(name, seconds)`` pairs for :class:`riskwatch.state.windows.Windows`,
    and ``window_functions``: name → the window functions read on it (the columns its
    history keeps);
    ``position_account_names``: account-level names read by position rules (merged into
    each symbol's row); ``position_windows``: whether any position rule reads a window.
    """

    __slots__ = (
        "account_rules",
        "by_name",
        "files",
        "position_account_names",
        "position_rules",
        "position_windows",
        "rules",
        "uses_pnl_today",
        "window_functions",
        "window_specs",
    )

    def __init__(self, rules: tuple[Rule, ...] = (), files: tuple[str, ...] = ()) -> None:
        self.rules = rules
        self.files = files
        self.by_name: Mapping[str, Rule] = MappingProxyType({r.name: r for r in rules})
        self.account_rules = tuple(r for r in rules if r.scope == "account")
        self.position_rules = tuple(r for r in rules if r.scope == "position")
        specs: set[tuple[str, float]] = set()
        functions: dict[str, set[str]] = {}
        for r in rules:
            specs.update((w.name, w.seconds) for w in r.windows)
            for w in r.windows:
                functions.setdefault(w.name, set()).add(w.func)
        self.window_specs: tuple[tuple[str, float], ...] = tuple(sorted(specs))
        self.window_functions: Mapping[str, frozenset[str]] = MappingProxyType(
            {name: frozenset(funcs) for name, funcs in sorted(functions.items())}
        )
        read: set[str] = set()
        for r in self.position_rules:
            read |= r.names
            for t in (r.summary, r.description):
                if t is not None:
                    read |= t.names
            read.update(w.name for w in r.windows)
        self.position_account_names: tuple[str, ...] = tuple(sorted(read - _POSITION_ONLY))
        self.position_windows = any(r.windows for r in self.position_rules)
        self.uses_pnl_today = any("pnl_today" in r.names for r in rules) or any(
            "pnl_today" in t.names for r in rules for t in (r.summary, r.description) if t
        )

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self.rules)} rules from {len(self.files)} files)"


EMPTY_RULES: Final = RuleSet()
"""No rules at all (the engine still runs the built-in ``DataStale``)."""
