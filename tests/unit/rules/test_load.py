"""Rule files: good fixtures load, bad fixtures report every problem at FILE:LINE:COL."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskwatch.errors import ConfigError
from riskwatch.rules.expr import NO_WINDOWS
from riskwatch.rules.load import check_rule_files, load_rule_files, load_rules_text
from riskwatch.rules.model import Action
from riskwatch.rules.templates import (
    format_duration,
    format_money,
    format_num,
    format_pct,
    parse_template,
)
from tests.support.paths import REPO

TESTDATA = REPO / "tests" / "rules" / "testdata"


def _problems(*names: str) -> list[str]:
    _, problems = check_rule_files([TESTDATA / n for n in names])
    return [str(p).replace(f"{TESTDATA}/", "") for p in problems]


@pytest.mark.parametrize(
    "name", ["bad-keys", "bad-expr", "bad-durations", "bad-actions", "bad-templates"]
)
def test_bad_fixture_reports_every_problem(name: str) -> None:
    """Each bad fixture yields exactly the problems listed in its .errors file."""
    expected = (TESTDATA / f"{name}.errors").read_text().splitlines()
    assert _problems(f"{name}.yaml") == expected


def test_duplicate_names_across_files() -> None:
    """A name defined in two files is reported at the second, naming the first."""
    expected = (TESTDATA / "dup-b.errors").read_text().splitlines()
    assert _problems("dup-a.yaml", "dup-b.yaml") == expected
    assert "first defined at dup-a.yaml:2:11" in expected[0]


def test_load_raises_config_error_with_all_problems() -> None:
    """load_rule_files raises ConfigError carrying every problem."""
    with pytest.raises(ConfigError) as info:
        load_rule_files([TESTDATA / "bad-durations.yaml"])
    assert len(info.value.problems) == 4


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    """A missing file is reported as FILE: message without stopping the others."""
    _, problems = check_rule_files([tmp_path / "nope.yaml", TESTDATA / "bad-durations.yaml"])
    assert str(problems[0]).endswith("nope.yaml: cannot read rule file: no such file or directory")
    assert len(problems) == 5


def test_good_pack_loads_with_every_key() -> None:
    """The docs/rules.md example pack loads into typed rules."""
    rules = load_rule_files([TESTDATA / "good-pack.yaml", TESTDATA / "empty.yaml"])
    assert [r.name for r in rules] == [
        "MarginUsageHigh",
        "MarginUsageCritical",
        "LeverageCap",
        "LeverageSettingTooHigh",
        "DailyLoss",
        "TrailingDrawdown",
        "CloseOnLiquidationRisk",
    ]
    high = rules.by_name["MarginUsageHigh"]
    assert high.for_seconds == 10.0
    assert high.clear_when is not None
    assert dict(high.labels) == {"desk": "a"}
    assert high.line == 3
    crit = rules.by_name["MarginUsageCritical"]
    assert crit.actions == (Action("cancel_all_orders"), Action("close_position", "largest_loss"))
    assert crit.latch
    assert crit.severity == "critical"
    cap = rules.by_name["LeverageCap"]
    assert cap.actions == (Action("reduce_position", fraction=0.5, over=300.0),)
    assert rules.by_name["LeverageSettingTooHigh"].actions == (
        Action("set_leverage", leverage=10.0),
    )
    daily = rules.by_name["DailyLoss"]
    assert daily.confirm == "mark"
    assert daily.scope == "account"
    dd = rules.by_name["TrailingDrawdown"]
    assert dd.shadow
    assert dd.keep_firing_for == 300.0
    assert rules.window_specs == (("equity", 86400.0),)
    close = rules.by_name["CloseOnLiquidationRisk"].actions
    assert close == (Action("close_position", None), Action("close_position", "BTC-USD"))
    assert rules.uses_pnl_today


def test_value_is_left_side_of_when() -> None:
    """`value` evaluates the non-constant side of the first comparison of `when`."""
    rules = load_rules_text(
        "rules:\n  - name: A\n    when: 0.5 < margin_usage * 2 and equity > 0\n"
        '    summary: "{{ value | pct }}"\n'
    )
    rule = rules.rules[0]
    assert rule.value is not None
    assert rule.value({"margin_usage": 0.3}, NO_WINDOWS, 0.0) == pytest.approx(0.6)


def test_expression_error_column_inside_block_scalar() -> None:
    """An error inside a multi-line block `when` points at its own line and column."""
    text = "rules:\n  - name: A\n    when: >\n      equity > 0 and\n      bogus > 1\n"
    with pytest.raises(ConfigError) as info:
        load_rules_text(text, "r.yaml")
    assert [str(p) for p in info.value.problems] == ["r.yaml:5:7: unknown name 'bogus'"]


def test_empty_and_comment_only_files_hold_no_rule() -> None:
    """An empty rule file is valid and contributes nothing."""
    assert len(load_rules_text("")) == 0
    assert len(load_rules_text("rules: []\n")) == 0


def test_template_rendering_and_filters() -> None:
    """Filters format numbers; missing values render n/a; text comes from the context."""
    t = parse_template(
        "{{ rule }} {{ margin_usage | pct }} {{ equity | money }} {{ data_age | duration }} "
        "{{ positions }} {{ pnl_today }} {{ value|num }} {{ account }}",
        "account",
    )
    assert not isinstance(t, list)
    out = t.render(
        {"margin_usage": 0.8534, "equity": -1234.5, "data_age": 95.0, "positions": 3.0},
        {"rule": "R", "account": "desk-a"},
    )
    assert out == "R 85.3% -$1,234.50 1m35s 3 n/a n/a desk-a"
    assert t.names == frozenset({"margin_usage", "equity", "data_age", "positions", "pnl_today"})


def test_formatters_edge_values() -> None:
    """Formatters handle infinities, sub-minute durations and fractions."""
    assert format_pct(float("inf")) == "inf%"
    assert format_money(0.5) == "$0.50"
    assert format_duration(4.25) == "4.2s"
    assert format_duration(3600 * 25 + 1) == "1d1h1s"
    assert format_num(12345.678) == "12345.7"
    assert format_num(float("-inf")) == "-inf"


def test_template_statements_and_extra_pipes_are_problems() -> None:
    """Jinja statements and chained filters are refused with offsets."""
    assert parse_template("{% if x %}", "account") == [
        (0, "template statements '{%' are not supported")
    ]
    assert parse_template("{{ equity | pct | num }}", "account") == [
        (16, "only one filter per placeholder")
    ]
    assert parse_template("{{ }}", "account") == [(0, "empty placeholder in template")]
