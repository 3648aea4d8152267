"""Position rules skip symbols whose inputs did not move (rules/engine.py, "Cost").

The skip must never change a decision: the same pulses through an account core (whose
figures know each row's inputs) and through the engine with the same figures as a
plain mapping (no inputs known: every row evaluated) give the same transitions.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.model import BalanceUpdate, PositionUpdate
from riskwatch.pipeline import AccountCore
from riskwatch.rules.engine import RulesState, evaluate
from riskwatch.rules.load import load_rules_text
from riskwatch.state.derived import Figures, PositionRows
from tests.support.factories import balance_update, position_update

RULES = load_rules_text(
    """
rules:
  - name: Big
    scope: position
    when: position > 15
    severity: critical
  - name: Heavy
    scope: position
    when: effective_leverage > 0.5 and maintenance_usage > 0.01
    for: 2s
    severity: warning
  - name: Share
    scope: position
    when: notional / gross_notional > 0.7
    severity: info
""",
    "rules.yaml",
)

SYMBOLS = ("A-USD", "B-USD", "C-USD")


def position(symbol: str, qty: float, at: float) -> PositionUpdate:
    """A 10× position of ``qty`` at 100."""
    return position_update(
        symbol, qty, 100.0, at=at, leverage=10.0, initial_margin_rate=0.1,
        maintenance_margin_rate=0.05,
    )  # fmt: skip


def balance(deposit: float, at: float) -> BalanceUpdate:
    """A balance with nothing held as margin."""
    return balance_update(deposit, position_margin=0.0, at=at)


pulses = st.lists(
    st.tuples(
        st.tuples(*[st.sampled_from([0.0, 5.0, 10.0, 20.0]) for _ in SYMBOLS]),
        st.sampled_from([1_000.0, 3_000.0, 100_000.0]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(pulses)
def test_skipping_unchanged_symbols_never_changes_a_decision(
    seq: list[tuple[tuple[float, ...], float]],
) -> None:
    core = AccountCore("acc", stale_after=60.0, rules=RULES)
    plain = RulesState("acc", RULES)
    now = 1_000.0
    for qtys, deposit in seq:
        now += 1.0
        for sym, qty in zip(SYMBOLS, qtys, strict=True):
            core.handle([position(sym, qty, now)], now)
        result = core.handle([balance(deposit, now)], now)
        assert result.decision is not None
        figures = core.figures_at(now)
        assert figures is not None
        as_dict = Figures(
            dict(figures.account),
            {sym: dict(row) for sym, row in figures.positions.items()},
            figures.exchange_confirmed,
            figures.last_pulse_at,
        )
        expected = evaluate(RULES, plain, as_dict, now, stale=False, trigger="pulse")
        got = [(t.rule, t.symbol, t.reason) for t in result.decision.transitions]
        assert got == [(t.rule, t.symbol, t.reason) for t in expected.transitions]
        assert [(a.rule, a.symbol, a.state) for a in result.decision.alerts] == [
            (a.rule, a.symbol, a.state) for a in expected.alerts
        ]


def _rows_built_per_pulse(core: AccountCore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The rows built at each of three identical pulses (1 s apart), sorted, joined."""
    built: list[str] = []
    build = PositionRows._build

    def counted(self: PositionRows, symbol: str) -> dict[str, float | None]:
        built.append(symbol)
        return build(self, symbol)

    monkeypatch.setattr(PositionRows, "_build", counted)
    calls: list[str] = []
    for now in (1.0, 2.0, 3.0):
        for sym in SYMBOLS:
            core.handle([position(sym, 10.0, now)], now)
        core.handle([balance(100_000.0, now)], now)
        calls.append(",".join(sorted(built)))
        built.clear()
    return calls


def test_an_unchanged_symbol_is_not_evaluated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    core = AccountCore("acc", stale_after=60.0, rules=RULES)
    calls = _rows_built_per_pulse(core, monkeypatch)
    # First pulse: every row evaluated; the second (same shared inputs) evaluates them
    # again and keeps their keys; from the third on, same inputs: no row built, no rule run.
    assert calls == ["A-USD,B-USD,C-USD", "A-USD,B-USD,C-USD", ""]

    # A moved symbol is evaluated again, and its rule fires.
    core.handle([position("B-USD", 20.0, 4.0)], 4.0)
    result = core.handle([balance(100_000.0, 4.0)], 4.0)
    assert result.decision is not None
    assert [(t.rule, t.symbol) for t in result.decision.transitions] == [("Big", "B-USD")]


def test_repeated_pulse_keeps_figures_and_moves_times() -> None:
    core = AccountCore("acc", stale_after=60.0, rules=RULES)
    core.handle([position("A-USD", 10.0, 1.0), balance(1_000.0, 1.0)], 1.0)
    before = core.snapshot
    core.handle([position("A-USD", 10.0, 2.0)], 2.0)
    after = core.snapshot
    assert after.positions["A-USD"].pulse.received_at == 2.0
    assert after.marks["A-USD"].at == 2.0
    assert after.last_pulse_at == 2.0
    assert after.totals == before.totals
    assert msgspec.structs.replace(after.positions["A-USD"].pulse, received_at=1.0) == (
        before.positions["A-USD"].pulse
    )
    assert after.positions["A-USD"][1:] == before.positions["A-USD"][1:]


def test_the_skip_holds_with_market_figures_of_markets_without_hours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows carry market figures (reference data): for symbols without market hours they
    never move, so an unchanged symbol is still skipped from one second to the next."""
    from riskwatch.refdata.figures import MarketFiguresOf
    from riskwatch.refdata.model import Refdata

    core = AccountCore("acc", stale_after=60.0, rules=RULES)
    data = Refdata()
    core.market = MarketFiguresOf(lambda: data)
    assert _rows_built_per_pulse(core, monkeypatch) == [
        "A-USD,B-USD,C-USD",
        "A-USD,B-USD,C-USD",
        "",
    ]


def test_a_pulse_that_moves_equity_builds_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared inputs moved (every pulse of a moving market, the pulse that trips a
    rule): no row can be skipped, so no key is built for the next pulse to compare."""
    core = AccountCore("acc", stale_after=60.0, rules=RULES)
    keyed: list[str] = []
    inputs = PositionRows.inputs

    def counted(self: PositionRows, symbol: str) -> tuple[object, ...]:
        keyed.append(symbol)
        return inputs(self, symbol)

    monkeypatch.setattr(PositionRows, "inputs", counted)
    per_pulse: list[int] = []
    for now, deposit in ((1.0, 100_000.0), (2.0, 100_000.0), (3.0, 90_000.0), (4.0, 80_000.0)):
        for sym in SYMBOLS:
            core.handle([position(sym, 10.0, now)], now)
        core.handle([balance(deposit, now)], now)
        per_pulse.append(len(keyed))
        keyed.clear()
    assert per_pulse == [0, len(SYMBOLS), 0, 0]
