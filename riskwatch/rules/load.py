"""Rule files (docs/rules.md) → one checked :class:`~riskwatch.rules.model.RuleSet`.

A rule file is ``rules: [ {...}, ... ]``. Every key, expression, template and action
is checked at load; :func:`load_rule_files` either returns the rule set or raises
:class:`~riskwatch.errors.ConfigError` listing *every* problem of every file as
``FILE:LINE:COL: message`` (expression and template errors at their exact column
inside the string). ``riskwatch check``, start-up and reload share it
(:func:`check_rule_files` returns the problems instead of raising).

Decisions worth knowing:

- rule names are identifiers (a letter, then letters, digits or ``_``; at most 64),
  unique across all files; ``DataStale`` is reserved for the built-in alert;
- label keys are identifiers; ``alertname``, ``rule``, ``account``, ``symbol`` and
  ``severity`` are set by riskwatch and cannot be labels;
- a ``clear_when`` that can hold together with ``when`` (as far as
  :func:`~riskwatch.rules.expr.when_clear_overlap` can tell) is refused: the alert
  would stay firing while its clear condition holds;
- ``set_leverage``, ``reduce_position`` and a bare ``close_position`` act on the
  rule's symbol, so they need ``scope: position``; ``set_leverage`` also needs a
  ``when`` that requires ``position == 0 and open_orders == 0``, because QFEX rejects
  ``set_user_leverage`` while the symbol has a position or open orders
  (docs/protocol.md §7, ``set_user_leverage``);
- ``reduce_position.over`` is at least 1m: the TWAP sends at least two slices, at
  least 30 s apart;
- an empty rule file (or one holding only comments) is valid and holds no rule.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Final, cast

from riskwatch.durations import Duration
from riskwatch.errors import ConfigError, Problem
from riskwatch.rules.expr import CheckedExpr, parse_and_check, when_clear_overlap
from riskwatch.rules.expr.compile import Evaluator, compile_node
from riskwatch.rules.expr.syntax import BoolOp, Compare, Expr, Name, Number
from riskwatch.rules.model import (
    CLOSE_TARGETS,
    DATA_STALE_RULE,
    Action,
    Confirm,
    Mode,
    Rule,
    RuleSet,
    Scope,
    Severity,
)
from riskwatch.rules.templates import Template, parse_template
from riskwatch.yamlsrc import (
    Map,
    Node,
    Problems,
    Reader,
    Scalar,
    did_you_mean,
    parse,
)

__all__ = ["check_rule_files", "check_rule_sources", "load_rule_files", "load_rules_text"]

_RULE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_LABEL_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYMBOL: Final = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}")
_RESERVED_LABELS: Final = frozenset({"alertname", "rule", "account", "symbol", "severity"})
_KEYS: Final = frozenset(
    {
        "scope",
        "clear_when",
        "for",
        "keep_firing_for",
        "severity",
        "labels",
        "summary",
        "description",
        "actions",
        "latch",
        "mode",
        "confirm",
    }
)
_ACTIONS: Final = ("cancel_all_orders", "close_position", "set_leverage", "reduce_position")
_MIN_TWAP: Final = Duration(60_000)
_MAX_LEVERAGE: Final = 100.0


def load_rule_files(paths: Sequence[str | os.PathLike[str]]) -> RuleSet:
    """Read, check and compile every rule file; raise ``ConfigError`` with every problem.

    Problems name each file as the caller wrote its path.
    """
    rules, problems = check_rule_files(paths)
    if rules is None:
        raise ConfigError(problems)
    return rules


def check_rule_files(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[RuleSet | None, list[Problem]]:
    """Like :func:`load_rule_files`, but return ``(rules or None, problems)``."""
    sources: list[tuple[str, str]] = []
    unreadable: list[Problem] = []
    for path in paths:
        name = os.fspath(path)
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            unreadable.append(Problem(name, 0, 0, f"cannot read rule file: {reason}"))
            continue
        try:
            sources.append((name, data.decode("utf-8")))
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            unreadable.append(Problem(name, line, col, "rule file is not valid utf-8"))
    rules, problems = check_rule_sources(sources)
    if unreadable:
        return None, unreadable + problems
    return rules, problems


def load_rules_text(text: str, file: str = "rules.yaml") -> RuleSet:
    """Check one rule file's ``text`` as if read from ``file``; raise ``ConfigError``."""
    rules, problems = check_rule_sources([(file, text)])
    if rules is None:
        raise ConfigError(problems)
    return rules


def check_rule_sources(
    sources: Sequence[tuple[str, str]],
) -> tuple[RuleSet | None, list[Problem]]:
    """Check ``(file name, text)`` pairs together (names are unique across all of them)."""
    problems = Problems()
    loader = _Loader(Reader(problems))
    rules: list[Rule] = []
    for file, text in sources:
        root = parse(text, file, problems)
        if root is None:
            continue
        f = loader.r.mapping(root, required={"rules"})
        for item in loader.r.as_list(f.get("rules")):
            rule = loader.rule(item)
            if rule is not None:
                rules.append(rule)
    if problems:
        return None, problems.sorted()
    return RuleSet(tuple(rules), tuple(file for file, _ in sources)), []


class _Loader:
    """Walks rule documents; every method reports problems and returns its best value."""

    def __init__(self, reader: Reader) -> None:
        self.r = reader
        self.seen: dict[str, Node] = {}

    def rule(self, node: Node) -> Rule | None:
        r = self.r
        f = r.mapping(node, required={"name", "when"}, optional=_KEYS)
        name = self._name(f.get("name"))
        raw_scope = r.as_enum(f.get("scope"), ("account", "position"))
        scope_ok = raw_scope is not None or "scope" not in f
        scope = cast(Scope, raw_scope or "account")
        # With an invalid scope, check as position (the wider one) to avoid noise.
        check_scope: Scope = scope if scope_ok else "position"
        when = self._expr(f.get("when"), check_scope)
        clear_node = f.get("clear_when")
        clear_when = self._expr(clear_node, check_scope)
        if when is not None and clear_when is not None and clear_node is not None:
            if when_clear_overlap(when, clear_when) is True:
                r.problem(
                    clear_node,
                    "clear_when can hold at the same time as when; make their ranges "
                    "disjoint (e.g. when: x > 0.8, clear_when: x < 0.7)",
                )
        for_ = r.as_duration(f.get("for"), Duration(0))
        keep = r.as_duration(f.get("keep_firing_for"), Duration(0))
        severity = r.as_enum(f.get("severity"), ("info", "warning", "critical"), "warning")
        mode = r.as_enum(f.get("mode"), ("enforce", "shadow"), "enforce")
        confirm = r.as_enum(f.get("confirm"), ("pulse", "mark"), "pulse")
        latch = r.as_bool(f.get("latch"), False)
        labels = self._labels(f.get("labels"))
        value = _value_of(when.tree) if when is not None else None
        summary = self._template(f.get("summary"), check_scope, value is not None)
        description = self._template(f.get("description"), check_scope, value is not None)
        actions = self._actions(f.get("actions"), scope if scope_ok else None, when)
        if name is None or when is None or not scope_ok:
            return None
        key = f.key("name")
        return Rule(
            name=name,
            scope=scope,
            when=when,
            clear_when=clear_when,
            for_seconds=for_.seconds,
            keep_firing_for=keep.seconds,
            severity=cast(Severity, severity),
            labels=MappingProxyType(labels),
            summary=summary,
            description=description,
            actions=actions,
            latch=latch,
            mode=cast(Mode, mode),
            confirm=cast(Confirm, confirm),
            value=value,
            file=key.start.file if key is not None else "",
            line=key.start.line if key is not None else 0,
        )

    def _name(self, node: Node | None) -> str | None:
        name = self.r.as_str(node)
        if name is None or node is None:
            return None
        if not _RULE_NAME.fullmatch(name):
            self.r.problem(
                node,
                f"invalid rule name '{name}': use a letter, then letters, digits or '_' "
                "(e.g. MarginUsageHigh)",
            )
            return None
        if name == DATA_STALE_RULE:
            self.r.problem(node, f"rule name '{name}' is reserved for the built-in alert")
            return None
        first = self.seen.get(name)
        if first is not None:
            at = first.start
            self.r.problem(
                node,
                f"duplicate rule name '{name}' (first defined at {at.file}:{at.line}:{at.col})",
            )
            return None
        self.seen[name] = node
        return name

    def _expr(self, node: Node | None, scope: Scope) -> CheckedExpr | None:
        if node is None:
            return None
        text = self.r.text(node)
        if text is None or not isinstance(node, Scalar):
            return None
        result = parse_and_check(text, scope, "bool")
        if isinstance(result, list):
            for err in result:
                self.r.problem_in(node, err.offset, err.message)
            return None
        return result

    def _template(self, node: Node | None, scope: Scope, has_value: bool) -> Template | None:
        if node is None:
            return None
        text = self.r.as_str(node, allow_empty=True)
        if text is None or not isinstance(node, Scalar):
            return None
        result = parse_template(text, scope, has_value=has_value)
        if isinstance(result, list):
            for offset, message in result:
                self.r.problem_in(node, offset, message)
            return None
        return result

    def _labels(self, node: Node | None) -> dict[str, str]:
        if node is None:
            return {}
        if not isinstance(node, Map):
            self.r.problem(node, f"expected a mapping of labels, found {node.kind}")
            return {}
        out: dict[str, str] = {}
        for key, value in node.pairs:
            if not _LABEL_NAME.fullmatch(key.value):
                self.r.problem(key, f"invalid label name '{key.value}'")
                continue
            if key.value in _RESERVED_LABELS:
                self.r.problem(key, f"label '{key.value}' is set by riskwatch")
                continue
            text = self.r.as_str(value, allow_empty=True)
            if text is not None:
                out[key.value] = text
        return out

    # -- actions

    def _actions(
        self, node: Node | None, scope: Scope | None, when: CheckedExpr | None
    ) -> tuple[Action, ...]:
        out: list[Action] = []
        for item in self.r.as_list(node):
            action = self._action(item, scope, when)
            if action is None:
                continue
            if action in out:
                self.r.problem(item, f"duplicate action '{action}'")
                continue
            out.append(action)
        return tuple(out)

    def _action(self, item: Node, scope: Scope | None, when: CheckedExpr | None) -> Action | None:
        r = self.r
        if isinstance(item, Scalar) and not item.is_null:
            kind, key, arg = item.value, item, None
        elif isinstance(item, Map) and len(item.pairs) == 1:
            key, arg = item.pairs[0]
            kind = key.value
            if isinstance(arg, Scalar) and arg.is_null:
                arg = None
        else:
            r.problem(item, "an action is a name or a mapping with exactly one key")
            return None
        if kind not in _ACTIONS:
            r.problem(key, f"unknown action '{kind}'{did_you_mean(kind, _ACTIONS)}")
            return None
        if kind == "cancel_all_orders":
            if arg is not None and not (isinstance(arg, Map) and not arg.pairs):
                r.problem(arg, "cancel_all_orders takes no argument")
                return None
            return Action("cancel_all_orders")
        if kind == "close_position":
            return self._close(key, arg, scope)
        if kind == "set_leverage":
            return self._set_leverage(key, arg, scope, when)
        return self._reduce(key, arg, scope)

    def _needs_position(self, key: Scalar, scope: Scope | None, what: str) -> bool:
        if scope == "account":
            self.r.problem(key, f"{what} acts on the rule's symbol: it needs scope: position")
            return False
        return scope is not None

    def _close(self, key: Scalar, arg: Node | None, scope: Scope | None) -> Action | None:
        if arg is None:
            if not self._needs_position(key, scope, "close_position without a target"):
                return None
            return Action("close_position", target=None)
        target = self.r.as_str(arg)
        if target is None:
            return None
        if target in CLOSE_TARGETS or _SYMBOL.fullmatch(target):
            return Action("close_position", target=target)
        self.r.problem(
            arg,
            f"invalid close_position target '{target}': use all, largest_loss, "
            "largest_notional or a symbol such as BTC-USD",
        )
        return None

    def _set_leverage(
        self, key: Scalar, arg: Node | None, scope: Scope | None, when: CheckedExpr | None
    ) -> Action | None:
        if arg is None:
            self.r.problem(key, "set_leverage needs a leverage, e.g. {set_leverage: 10}")
            return None
        leverage = self.r.as_float(arg, minimum=1.0, maximum=_MAX_LEVERAGE)
        ok = self._needs_position(key, scope, "set_leverage")
        if ok and when is not None and not _requires_flat(when.tree):
            self.r.problem(
                key,
                "set_leverage needs a when that requires position == 0 and open_orders == 0: "
                "QFEX rejects set_user_leverage while the symbol has a position or open orders",
            )
            ok = False
        if leverage is None or not ok:
            return None
        return Action("set_leverage", leverage=leverage)

    def _reduce(self, key: Scalar, arg: Node | None, scope: Scope | None) -> Action | None:
        r = self.r
        if arg is None:
            r.problem(key, "reduce_position needs {fraction: F, over: DURATION}")
            return None
        f = r.mapping(arg, required={"fraction", "over"})
        fraction = r.as_float(f.get("fraction"))
        frac_node = f.get("fraction")
        if fraction is not None and frac_node is not None and not 0.0 < fraction <= 1.0:
            r.problem(frac_node, f"fraction must be above 0 and at most 1, found {fraction:g}")
            fraction = None
        over = r.as_duration(f.get("over"))
        over_node = f.get("over")
        if over is not None and over_node is not None and over < _MIN_TWAP:
            r.problem(
                over_node,
                f"over must be at least 1m (two slices at least 30s apart), found {over}",
            )
            over = None
        ok = self._needs_position(key, scope, "reduce_position")
        if fraction is None or over is None or not ok:
            return None
        return Action("reduce_position", fraction=fraction, over=over.seconds)


def _conjuncts(node: Expr) -> list[Expr]:
    if isinstance(node, BoolOp) and node.op == "and":
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _is_zero_test(node: Expr, name: str) -> bool:
    if not isinstance(node, Compare) or node.op != "==":
        return False
    a, b = node.left, node.right
    if isinstance(a, Number):
        a, b = b, a
    return isinstance(a, Name) and a.name == name and isinstance(b, Number) and b.value == 0.0


def _requires_flat(tree: Expr) -> bool:
    """True when ``tree`` is a conjunction containing ``position == 0`` and
    ``open_orders == 0`` (either operand order)."""
    parts = _conjuncts(tree)
    return all(any(_is_zero_test(p, n) for p in parts) for n in ("position", "open_orders"))


def _value_of(tree: Expr) -> Evaluator | None:
    """The compiled left side of ``when`` (of its first conjunct, for an ``and``) when
    that is a comparison; the non-constant side if the left one is a number. None when
    ``when`` is not a comparison (``or``, ``not``)."""
    node = tree
    while isinstance(node, BoolOp) and node.op == "and":
        node = node.left
    if not isinstance(node, Compare):
        return None
    if isinstance(node.left, Number) and not isinstance(node.right, Number):
        return compile_node(node.right)
    return compile_node(node.left)
