"""The direct text rendering of /metrics matches prometheus_client's, and is chunked."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from riskwatch import metrics as metrics_mod
from riskwatch.metrics import (
    CHUNK_LINES,
    AlertGauges,
    AlertStateCollector,
    Metrics,
    OwnedGauges,
    OwnedSeries,
    Registry,
    Scrape,
    ScrapedAccount,
    SnapshotCollector,
    escape_label_value,
    exposition_chunks,
    format_value,
)
from riskwatch.pipeline import AccountCore
from riskwatch.state.derived import Figures
from tests.support.factories import balance_update, position_update


def figures(equity: float, n_positions: int) -> Figures:
    positions = {
        f"S{i:02d}-USD": {
            "position": float(i),  # S00 is flat: no series
            "notional": 10.0 * i,
            "unrealised_pnl": -1.5 * i,
            "effective_leverage": None,
            "liquidation_distance": math.inf if i == 1 else 0.25,
        }
        for i in range(n_positions)
    }
    account = {"equity": equity, "margin_usage": math.inf, "pnl_today": None}
    return Figures(account, positions, True, 100.0)


def samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], str]]:
    out = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.add((s.name, tuple(sorted(s.labels.items())), repr(s.value)))
    return out


def build(accounts: int, positions: int) -> Registry:
    registry = Registry()
    m = Metrics(registry, version="9.9")
    views = [
        ScrapedAccount(f'acct-{a} "q"\\\n', a % 2 == 0, figures(1000.0 + a, positions))
        for a in range(accounts)
    ]
    views.append(ScrapedAccount("fresh", False, None))
    for v in views:
        m.init_account(v.account)
        m.messages.labels(v.account, "position").inc(3)
    m.rule_evaluation_seconds.observe(0.0001)
    registry.register(SnapshotCollector(lambda: Scrape(130.0, views)))
    rows = [("R", "", "critical", 2, None), ("L", "", "critical", 2, True)]
    registry.register(
        AlertStateCollector(lambda: [AlertGauges(v.account, 0, lambda: iter(rows)) for v in views])
    )
    return registry


def test_direct_rendering_has_the_same_series_as_the_library() -> None:
    """Every series and value of generate_latest is in the chunked body, and no other."""
    registry = build(accounts=3, positions=4)
    body = b"".join(exposition_chunks(registry)).decode()
    assert samples(body) == samples(generate_latest(registry).decode())
    assert "_created" not in body
    assert 'riskwatch_margin_usage_ratio{account="acct-0 \\"q\\"\\\\\\n"} +Inf' in body
    assert "riskwatch_connected" in body
    assert 'riskwatch_data_age_seconds{account="acct-1 \\"q\\"\\\\\\n"} 30.0' in body


def test_help_and_type_lines_are_kept() -> None:
    """Each family has its HELP and TYPE once, counters with the _total name."""
    body = b"".join(exposition_chunks(build(accounts=2, positions=3))).decode()
    assert body.count("# TYPE riskwatch_messages_total counter\n") == 1
    assert body.count("# TYPE riskwatch_position_size gauge\n") == 1
    assert "# HELP riskwatch_alert_state Alert state: 0 inactive, 1 pending, 2 firing.\n" in body


def test_large_bodies_come_in_bounded_pieces() -> None:
    """No piece holds much more than CHUNK_LINES sample lines."""
    pieces = list(exposition_chunks(build(accounts=300, positions=20)))
    assert len(pieces) > 20
    assert max(p.count(b"\n") for p in pieces) <= CHUNK_LINES + 30


def test_account_loops_end_a_piece_whenever_their_time_is_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loops over accounts (figures, alert states, owned gauges) end their piece
    once PIECE_SECONDS have passed, whether or not an account's lines were kept: with
    no time allowed, every account ends one, at the second scrape (all kept) as at the
    first; with an hour, none does. The body is the same either way."""
    accounts = 40
    registry = build(accounts=accounts, positions=5)
    gauges = OwnedGauges([("riskwatch_x", "X.", ("account",))])

    def series(i: int) -> Iterable[OwnedSeries]:
        return iter([(0, (f"a{i}",), float(i))])

    def owners() -> list[tuple[str, object, Callable[[], Iterable[OwnedSeries]]]]:
        return [(f"a{i}", i, partial(series, i)) for i in range(accounts)]

    def scrape() -> tuple[bytes, int, int]:
        pieces = list(exposition_chunks(registry))
        owned = list(gauges.render(owners()))
        return b"".join(pieces), pieces.count(b""), owned.count("")

    monkeypatch.setattr(metrics_mod, "PIECE_SECONDS", 0.0)
    first = scrape()
    second = scrape()
    monkeypatch.setattr(metrics_mod, "PIECE_SECONDS", 3600.0)
    relaxed = scrape()
    body, other_empty, owned_empty = relaxed
    assert owned_empty == 0
    for scraped in (first, second):
        assert scraped[0] == body
        # one more per view of each of the two loops ("fresh", with no figures, included)
        assert scraped[1] - other_empty >= 2 * accounts
        assert scraped[2] >= accounts


def test_values_and_label_escaping() -> None:
    """Non-finite values and special characters follow the text format's rules."""
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"
    assert format_value(2) == "2.0"
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert escape_label_value("plain") == "plain"


def test_labelled_counter_refuses_to_go_down() -> None:
    """A counter series refuses a negative increment, as the library's does."""
    m = Metrics(Registry())
    series = m.messages.labels("a", "position")
    series.inc(2)
    try:
        series.inc(-1)
    except ValueError as exc:
        assert "-1" in str(exc)
    else:
        raise AssertionError("negative inc accepted")
    assert series.value == 2.0


def _pulse(core: AccountCore, qtys: dict[str, float], at: float) -> None:
    for symbol, qty in qtys.items():
        event = position_update(
            symbol, qty, 100.0, at=at, leverage=10.0, initial_margin_rate=0.1,
            maintenance_margin_rate=0.05,
        )  # fmt: skip
        core.handle([event], at)
    core.handle([balance_update(10_000.0, position_margin=0.0, at=at)], at)


def test_lines_kept_between_scrapes_follow_the_figures() -> None:
    """An account's lines are reused while its figures stand still and rendered again
    as soon as one moves; every scrape has the library's series."""
    core = AccountCore("a", stale_after=60.0)
    registry = Registry()
    Metrics(registry)
    now = [10.0]
    registry.register(
        SnapshotCollector(
            lambda: Scrape(now[0], [ScrapedAccount("a", True, core.figures_at(now[0]))])
        )
    )

    def scrape() -> str:
        body = b"".join(exposition_chunks(registry)).decode()
        assert samples(body) == samples(generate_latest(registry).decode())
        return body

    _pulse(core, {"A-USD": 10.0, "B-USD": 0.0, "C-USD": -5.0}, 10.0)
    first = scrape()
    assert 'riskwatch_position_size{account="a",symbol="A-USD"} 10.0' in first
    assert 'symbol="B-USD"' not in first  # flat: no series
    now[0] = 11.0
    _pulse(core, {"A-USD": 10.0, "B-USD": 0.0, "C-USD": -5.0}, 11.0)
    second = scrape()  # equity drift is known from the second balance on
    assert second == first.replace(
        "# HELP riskwatch_data_age",
        ('riskwatch_equity_drift_usd{account="a"} 0.0\n# HELP riskwatch_data_age'),
    )
    now[0] = 12.0
    _pulse(core, {"A-USD": 12.0, "B-USD": 3.0, "C-USD": -5.0}, 12.0)
    moved = scrape()
    assert 'riskwatch_position_size{account="a",symbol="A-USD"} 12.0' in moved
    assert 'riskwatch_position_size{account="a",symbol="B-USD"} 3.0' in moved
    assert 'riskwatch_gross_notional_usd{account="a"} 2000.0' in moved


def _owned() -> OwnedGauges:
    return OwnedGauges(
        [("t_one", "One per owner.", ["account"]), ("t_two", "Two per owner.", ["account", "x"])]
    )


def _series(owner: str, value: float, calls: list[str]) -> list[OwnedSeries]:
    calls.append(owner)
    return [(0, (owner,), value), (1, (owner, "a"), value * 2), (1, (owner, 'b"'), -value)]


def test_owned_gauges_render_an_owner_again_only_when_its_key_moves() -> None:
    """Lines are kept per owner while its key stands still; the body has every family's
    header once, every owner's lines under it, and the same series as build()."""
    gauges = _owned()
    calls: list[str] = []
    for owner, value in (("p", 1.0), ("q", 2.0)):
        assert gauges.put(owner, value, partial(_series, owner, value, calls))
    first = "".join(gauges.chunks())
    assert calls == ["p", "q"]
    assert first.count("# HELP t_one ") == 1
    assert first.count("# TYPE t_two gauge") == 1
    assert 't_two{account="q",x="b\\""} -2.0' in first
    assert first.index("t_one{") < first.index("# HELP t_two")  # grouped by family
    built = generate_latest(_Families(gauges.build([_series("p", 1.0, []), _series("q", 2.0, [])])))
    assert samples(first) == samples(built.decode())
    # Same keys: nothing rendered, same body.
    assert not gauges.put("p", 1.0, lambda: _series("p", 1.0, calls))
    assert not gauges.put("q", 2.0, lambda: _series("q", 2.0, calls))
    assert "".join(gauges.chunks()) == first
    assert calls == ["p", "q"]
    # q moved: only q is rendered again.
    gauges.put("p", 1.0, lambda: _series("p", 1.0, calls))
    gauges.put("q", 3.0, lambda: _series("q", 3.0, calls))
    moved = "".join(gauges.chunks())
    assert calls == ["p", "q", "q"]
    assert 't_one{account="q"} 3.0' in moved
    assert 't_one{account="p"} 1.0' in moved


def test_owned_gauges_forget_owners_not_put_and_keep_pieces_bounded() -> None:
    """An owner left out of a scrape has no series in it (an account removed by a
    reload), and a large body comes in pieces of about CHUNK_LINES lines."""
    gauges = _owned()
    for i in range(3 * CHUNK_LINES):
        gauges.put(f"o{i}", i, partial(_series, f"o{i}", float(i), []))
    pieces = list(gauges.chunks())
    assert max(piece.count("\n") for piece in pieces) <= 2 * CHUNK_LINES + 2
    assert len(pieces) >= 6
    gauges.put("o1", 1, lambda: _series("o1", 1.0, []))
    body = "".join(gauges.chunks())
    assert 'account="o1"' in body
    assert 'account="o2"' not in body
    assert body.count("# HELP") == 2  # an empty family keeps its header, as the library's


class _Families:
    """Families seen as a registry, for ``generate_latest``."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self._families


def test_a_kept_counter_line_follows_its_value() -> None:
    """A labelled series' line is kept while its value stands and rendered again when it
    moves, labels with spaces and quotes included; always the library's series."""
    registry = Registry()
    m = Metrics(registry)
    m.messages.labels('a b "c"', "position").inc(2)

    def body() -> str:
        text = b"".join(exposition_chunks(registry)).decode()
        assert samples(text) == samples(generate_latest(registry).decode())
        return text

    first = body()
    assert 'riskwatch_messages_total{account="a b \\"c\\"",kind="position"} 2.0' in first
    assert body() == first
    m.messages.labels('a b "c"', "position").inc()
    assert 'riskwatch_messages_total{account="a b \\"c\\"",kind="position"} 3.0' in body()
