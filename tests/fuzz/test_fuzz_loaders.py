"""Fuzzing the config loader, the rule loader, rule templates and the expression language."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from riskwatch.config import Config, load_config_text
from riskwatch.errors import ConfigError
from riskwatch.rules.expr import CheckedExpr, ReferenceWindows, parse_and_check
from riskwatch.rules.load import load_rules_text
from riskwatch.rules.model import RuleSet
from riskwatch.rules.templates import Template, parse_template
from tests.support.strategies import examples

SECRET = "Zq9-fuzz-secret-7c1e"
"""Planted as every secret of a fuzzed config: no problem message may quote it."""

VALUES: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**20), max_value=10**20),
        st.floats(allow_nan=True),
        st.sampled_from(["5s", "500ms", "1:30", "-1s", "armed", "dry-run", "ws://10.0.0.1/",
                         "wss://x", "${NOPE}", "${X:-1s}", "", "0.0.0.0:9464", "[::1]:80",
                         "rules/*.yaml", "/etc/passwd", "../../x", "~"]),
        st.text(max_size=10),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)  # fmt: skip

SECTIONS: dict[str, tuple[str, ...]] = {
    "exchange": ("url", "market_data_url", "stale_after", "ping_interval", "ping_timeout",
                 "allow_insecure"),
    "actions": ("mode", "max_per_account_per_hour", "kill_switch"),
    "http": ("listen", "admin_token", "external_url"),
    "state": ("path",),
    "daily": ("reset", "tz", "baseline"),
    "notifications": ("routes", "send_resolved", "repeat_interval"),
}  # fmt: skip


def _section(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), VALUES, max_size=len(keys))


account = st.fixed_dictionaries(
    {"name": st.one_of(st.just("desk-a"), VALUES), "public_key": st.just("pk")},
    optional={
        "secret_key": st.just(SECRET),
        "jwt": st.just(SECRET),
        "account_id": VALUES,
        "bogus": VALUES,
    },
)

configs = st.fixed_dictionaries(
    {"accounts": st.one_of(st.lists(account, max_size=3), VALUES)},
    optional={name: st.one_of(_section(keys), VALUES) for name, keys in SECTIONS.items()},
).map(lambda d: _plant(d))


def _plant(doc: dict[str, Any]) -> dict[str, Any]:
    """Put the secret where secrets live: admin token and notification URLs too."""
    http = doc.get("http")
    if isinstance(http, dict):
        http["admin_token"] = SECRET
    notes = doc.get("notifications")
    if isinstance(notes, dict):
        notes["routes"] = [{"urls": [f"json://{SECRET}@127.0.0.1/"], "bogus": 1}]
    return doc


def _assert_clean(exc: ConfigError, secret: str = SECRET) -> None:
    assert exc.problems
    for problem in exc.problems:
        assert secret not in str(problem), problem
        assert problem.line >= 0
        assert problem.col >= 0


@examples(150)
@given(configs)
def test_config_loader_returns_config_or_positioned_problems(doc: dict[str, Any]) -> None:
    """Any config document loads or raises ConfigError whose problems never quote a secret."""
    text = yaml.safe_dump(doc, allow_unicode=True)
    try:
        config = load_config_text(text, Path("/nonexistent/riskwatch.yaml"), environ={})
    except ConfigError as exc:
        _assert_clean(exc)
        return
    assert isinstance(config, Config)
    assert SECRET not in repr(config)


@examples(150)
@given(st.text(max_size=200))
def test_config_loader_survives_arbitrary_text(text: str) -> None:
    """Arbitrary text as a config raises ConfigError or loads, never anything else."""
    try:
        load_config_text(text, Path("/nonexistent/riskwatch.yaml"), environ={})
    except ConfigError as exc:
        assert exc.problems


@examples(60)
@given(st.text(alphabet=st.sampled_from("abc${}:-_ \\"), max_size=30))
def test_env_expansion_never_leaks_the_environment(value: str) -> None:
    """A secret-bearing environment variable never appears in a problem message."""
    text = f"accounts:\n  - name: a\n    public_key: pk\n    secret_key: ${{S}}\n    x: '{value}'\n"
    try:
        load_config_text(text, Path("/nonexistent/riskwatch.yaml"), environ={"S": SECRET})
    except ConfigError as exc:
        _assert_clean(exc)


RULE_KEYS = ("name", "scope", "when", "clear_when", "for", "keep_firing_for", "severity",
             "actions", "latch", "summary", "description", "labels", "confirm", "symbols",
             "shadow")  # fmt: skip

EXPRESSIONS = st.sampled_from([
    "margin_usage > 0.8", "maintenance_usage >= 0.9 and unrealised_pnl < 0", "equity",
    "drawdown(equity, 1h) > 0.1", "max_over(equity, 5m) - equity > 100", "not", "((",
    "__import__('os')", "open('/etc/passwd')", "equity.__class__", "eval('1')",
    "equity[0]", "lambda: 1", "1 if 1 else 2", "margin_usage > 0.8 or", "data_age > 5",
])  # fmt: skip

rule_values = st.one_of(EXPRESSIONS, VALUES)
rule_docs = st.lists(
    st.dictionaries(st.sampled_from(RULE_KEYS), rule_values, max_size=len(RULE_KEYS)),
    max_size=3,
)


@examples(150)
@given(rule_docs)
def test_rule_loader_returns_rules_or_problems(rules: list[dict[str, Any]]) -> None:
    """Any rule document yields a RuleSet or a ConfigError with positioned problems."""
    text = yaml.safe_dump({"rules": rules}, allow_unicode=True)
    try:
        result = load_rules_text(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems
        assert all(p.file == "fuzz.yaml" for p in exc.problems)
        return
    assert isinstance(result, RuleSet)


@examples(100)
@given(st.text(max_size=200))
def test_rule_loader_survives_arbitrary_text(text: str) -> None:
    """Arbitrary text as a rule file raises ConfigError or loads, never anything else."""
    try:
        load_rules_text(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems


TOKENS = st.sampled_from([
    "equity", "margin_usage", "position", "data_age", "pnl_today", "0", "1.5", "1e309", "-",
    "+", "*", "/", "%", "**", "(", ")", ">", "<=", "==", "!=", "and", "or", "not", "abs(",
    "min(", "max(", "drawdown(", "max_over(", "change(", ",", "5m", "1h", "0s", "__import__",
    "open", "os", ".", "[", "]", "'x'", "lambda", ":", "if", "else", "system", "__class__",
])  # fmt: skip

FIGURES = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]),
)


@examples(300)
@given(
    st.lists(TOKENS, max_size=14).map(" ".join), FIGURES, st.sampled_from(["account", "position"])
)
def test_expressions_evaluate_without_raising(text: str, figure: float | None, scope: str) -> None:
    """Any token soup parses to errors or to a closure that never raises on any figures."""
    result = parse_and_check(text, scope)  # type: ignore[arg-type]
    if isinstance(result, list):
        assert result
        return
    assert isinstance(result, CheckedExpr)
    assert not any(n.startswith("_") or n in ("open", "os", "system") for n in result.names)
    env = dict.fromkeys(result.names, figure)
    windows = ReferenceWindows()
    value = result.evaluate(env, windows, 1_750_000_000.0)
    if result.result_type == "bool":
        assert value is None or isinstance(value, bool)
    else:
        assert value is None or isinstance(value, float | int)


@examples(200)
@given(
    st.lists(st.sampled_from([*"{}| abcmoneypctduration_", "equity", "{{", "}}"]), max_size=20)
    .map("".join),
    FIGURES,
)  # fmt: skip
def test_templates_render_without_raising(text: str, figure: float | None) -> None:
    """Any template text is refused at load or renders any figure without raising."""
    result = parse_template(text, "account")
    if isinstance(result, list):
        return
    assert isinstance(result, Template)
    rendered = result.render(dict.fromkeys(result.names | {"value"}, figure), {"account": "a"})
    assert isinstance(rendered, str)
    if figure is not None and not math.isnan(figure) and result.names:
        assert "n/a" not in rendered or "n/a" in text
