"""The one duration grammar, and every place that reads a duration through it."""

from __future__ import annotations

import pytest

from riskwatch.cli.main import main
from riskwatch.config import load_config_text
from riskwatch.durations import Duration, parse_duration
from riskwatch.errors import ConfigError
from riskwatch.rules.expr import parse_and_check
from riskwatch.rules.load import load_rules_text
from riskwatch.sim.scenario import ScenarioError
from riskwatch.sim.scenario import parse_duration as scenario_duration

GENERAL = (
    "is not a duration: use numbers with units w, d, h, m, s, ms, largest first,"
    " e.g. 30s, 1.5s or 1m30s"
)


@pytest.mark.parametrize(
    ("value", "millis"),
    [
        ("500ms", 500),
        ("5s", 5000),
        ("1.5s", 1500),
        ("0.25s", 250),
        ("1m30s", 90_000),
        ("1.5m", 90_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("1w2d", 9 * 86_400_000),
        ("1h30m15s250ms", 5_415_250),
        ("0s", 0),
        (" 5s ", 5000),
    ],
)
def test_accepted_durations(value: str, millis: int) -> None:
    """Amounts with units, largest first; decimals allowed down to the millisecond."""
    assert parse_duration(value) == Duration(millis)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1:30", "'1:30' is not a duration: write 90s or 1m30s"),
        ("0:45", "'0:45' is not a duration: write 45s"),
        ("1:30:00", "'1:30:00' is not a duration: write 5400s or 1h30m"),
        ("90", "'90' is not a duration: add a unit, e.g. 90s"),
        ("1.5", "'1.5' is not a duration: add a unit, e.g. 1.5s"),
        ("30s1m", "'30s1m' is not a duration: write units largest first, each once, e.g. 1m30s"),
        ("5s5s", "'5s5s' is not a duration: write units largest first, each once"),
        ("0.5ms", "'0.5ms' is not a duration: the smallest step is 1ms"),
        ("1.0005s", "'1.0005s' is not a duration: the smallest step is 1ms"),
        ("-5s", f"'-5s' {GENERAL}"),
        ("5 s", f"'5 s' {GENERAL}"),
        ("5S", f"'5S' {GENERAL}"),
        (".5s", f"'.5s' {GENERAL}"),
        ("", f"'' {GENERAL}"),
    ],
)
def test_refused_durations_say_what_to_write(value: str, message: str) -> None:
    """Every refusal reads ``'TEXT' is not a duration: HINT``."""
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("millis", "text"),
    [(0, "0s"), (500, "500ms"), (1500, "1s500ms"), (90_000, "1m30s"), (90_061_001, "1d1h1m1s1ms")],
)
def test_duration_str_round_trips(millis: int, text: str) -> None:
    """str(Duration) is canonical and parses back to the same value."""
    assert str(Duration(millis)) == text
    assert parse_duration(text) == Duration(millis)
    assert Duration(millis).seconds == millis / 1000


# --- each reader uses the grammar -----------------------------------------------------

CONFIG = "exchange:\n  ping_timeout: {value}\naccounts:\n  - name: a\n    jwt: x\n"


def test_config_reads_the_grammar() -> None:
    config = load_config_text(CONFIG.format(value="1.5s"), "c.yaml", {})
    assert config.exchange.ping_timeout == Duration(1500)


def test_config_refusal_is_file_line_col_and_the_grammar_message() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(CONFIG.format(value="30s1m"), "c.yaml", {})
    assert [str(p) for p in info.value.problems] == [
        "c.yaml:2:17: '30s1m' is not a duration: write units largest first, each once, e.g. 1m30s"
    ]


RULES = "rules:\n  - name: R\n    when: equity < 100\n    for: {value}\n"


def test_rule_for_reads_the_grammar() -> None:
    """``for: 1.5s`` is read like ``max_over(x, 1.5s)``."""
    (rule,) = load_rules_text(RULES.format(value="1.5s")).rules
    assert rule.for_seconds == 1.5


def test_rule_for_refusal_is_file_line_col_and_the_grammar_message() -> None:
    with pytest.raises(ConfigError) as info:
        load_rules_text(RULES.format(value="1:30"), "r.yaml")
    assert [str(p) for p in info.value.problems] == [
        "r.yaml:4:10: '1:30' is not a duration: write 90s or 1m30s"
    ]


def test_expression_duration_reads_the_grammar() -> None:
    checked = parse_and_check("max_over(equity, 1.5s) > 0", "account")
    assert not isinstance(checked, list)
    assert {w.seconds for w in checked.windows} == {1.5}


def test_expression_refusal_has_the_grammar_message() -> None:
    errs = parse_and_check("max_over(equity, 30s1m) > 0", "account")
    assert isinstance(errs, list)
    assert [(e.col, e.message) for e in errs] == [
        (18, "'30s1m' is not a duration: write units largest first, each once, e.g. 1m30s")
    ]


def test_scenario_reads_the_grammar() -> None:
    assert scenario_duration("1.5s", "at") == 1.5
    with pytest.raises(ScenarioError, match=r"^at: '1:30' is not a duration: write 90s or 1m30s"):
        scenario_duration("1:30", "at")


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "rec.jsonl", "-c", "c.yaml", "--tick", "10"],
        ["demo", "--duration", "10"],
        ["sim", "--pulse-interval", "10"],
        ["silence", "add", "--duration", "10", "rule=R"],
    ],
)
def test_cli_duration_options_refuse_with_the_grammar_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed duration option is a usage error (status 2) with the grammar's hint."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "'10' is not a duration: add a unit, e.g. 10s" in capsys.readouterr().err


def test_cli_duration_options_read_the_grammar() -> None:
    from riskwatch.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo", "--duration", "1m30s"]).duration == 90.0
    assert parser.parse_args(["replay", "r", "-c", "c", "--tick", "100ms"]).tick == 0.1
    assert parser.parse_args(["sim", "--pulse-interval", "1.5s"]).pulse_interval == 1.5
    silence = parser.parse_args(["silence", "add", "--duration", "1.5h", "rule=R"])
    assert silence.duration == Duration(5_400_000)
    assert parser.parse_args(["silence", "add", "rule=R"]).duration == Duration(3_600_000)
