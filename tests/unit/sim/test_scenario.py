"""Unit tests of scenario loading, price paths, the rate limiter and auth decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from riskwatch.qfex.auth import sign
from riskwatch.sim.authcheck import NonceCache, check_auth
from riskwatch.sim.ratelimit import RateLimiter, bucket, weight
from riskwatch.sim.scenario import (
    PricePath,
    ScenarioError,
    list_scenarios,
    load_scenario,
    parse_duration,
    parse_scenario,
)

MINIMAL = {
    "name": "t",
    "symbols": [{"symbol": "AAPL-USD", "mark": 100, "path": [{"at": "10s", "price": 120}]}],
    "accounts": [{"name": "a", "public_key": "pk", "deposit": 1000}],
}


def test_shipped_scenarios_load() -> None:
    """Every shipped scenario loads and the required four are present."""
    names = list_scenarios()
    assert {"crash", "squeeze", "slow_bleed", "calm"} <= set(names)
    for name in names:
        assert load_scenario(name).name == name


def test_crash_reaches_the_documented_usages() -> None:
    """The crash scenario passes 80 % and 95 % margin usage and nears MM 1.0 by 40 s."""
    from riskwatch.sim.exchange import Exchange

    ex = Exchange(load_scenario("crash"))
    usage = {}
    for t in (0, 20, 28, 35, 40, 45):
        ex.set_mark("AAPL-USD", ex.path_price("AAPL-USD", t), 0.0)
        usage[t] = ex.ledgers["desk-a"].figures()
    assert usage[0].margin_usage < 0.6
    assert usage[28].margin_usage > 0.8
    assert usage[35].margin_usage > 0.95
    assert 0.9 < usage[40].maintenance_usage
    assert usage[45].maintenance_usage > 1.0


def test_keyframes_interpolate_linearly_and_hold() -> None:
    """Marks move linearly between keyframes and hold after the last one."""
    path = PricePath(parse_scenario(MINIMAL).symbols[0])
    assert path.price(0) == 100
    assert path.price(5) == pytest.approx(110)
    assert path.price(10) == 120
    assert path.price(99) == 120


def test_generators_are_deterministic() -> None:
    """A seeded random walk repeats exactly; a crash ends at 1 − drop."""
    raw = {
        **MINIMAL,
        "symbols": [
            {
                "symbol": "AAPL-USD",
                "mark": 100,
                "generators": [
                    {"kind": "random_walk", "sigma": 0.01, "step": "1s", "seed": 3},
                ],
            },
            {
                "symbol": "B-USD",
                "mark": 100,
                "generators": [{"kind": "crash", "at": "5s", "duration": "10s", "drop": 0.3}],
            },
        ],
    }
    s = parse_scenario(raw)
    a, b = PricePath(s.symbols[0]), PricePath(s.symbols[0])
    series = [a.price(t / 2) for t in range(40)]
    assert series == [b.price(t / 2) for t in range(40)]
    assert len(set(series)) > 5
    crash = PricePath(s.symbols[1])
    assert crash.price(5) == 100
    assert 70 < crash.price(12) < 100
    assert crash.price(20) == pytest.approx(70)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r.update(bogus=1), "unknown key 'bogus'"),
        (lambda r: r["accounts"][0].update(secret_key="x"), "unknown key 'secret_key'"),
        (lambda r: r["symbols"][0].update(mark=-1), "mark: must be positive"),
        (lambda r: r.update(faults=[{"at": "1s", "kind": "explode"}]), "unknown fault"),
        (
            lambda r: r["symbols"][0]["path"][0].update(at="soon"),
            r"symbols\[0\]\.path\[0\]\.at: 'soon' is not a duration: use numbers with units",
        ),
    ],
)
def test_invalid_scenarios_name_the_problem(mutate: object, needle: str) -> None:
    """Invalid scenario content is refused with the offending key or value."""
    raw = yaml.safe_load(yaml.safe_dump(MINIMAL))
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(ScenarioError, match=needle):
        parse_scenario(raw, "x.yaml")


def test_load_by_path_and_unknown_name(tmp_path: Path) -> None:
    """A file path loads; an unknown name lists the shipped scenarios."""
    file = tmp_path / "mine.yaml"
    file.write_text(yaml.safe_dump(MINIMAL))
    assert load_scenario(str(file)).name == "t"
    with pytest.raises(ScenarioError, match="crash"):
        load_scenario("no-such-scenario")


def test_durations() -> None:
    """Durations are the one grammar's texts, or YAML numbers of seconds."""
    assert parse_duration("250ms", "x") == 0.25
    assert parse_duration("1.5m", "x") == 90
    assert parse_duration("1m30s", "x") == 90
    assert parse_duration("2d", "x") == 172_800
    assert parse_duration(3, "x") == 3
    assert parse_duration(0.5, "x") == 0.5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10", "x.at: '10' is not a duration: add a unit, e.g. 10s"),
        (
            "30s1m",
            "x.at: '30s1m' is not a duration: write units largest first, each once, e.g. 1m30s",
        ),
        ("1:30", "x.at: '1:30' is not a duration: write 90s or 1m30s"),
        (True, "x.at: True is not a duration: use numbers with units"),
        (None, "x.at: None is not a duration: use numbers with units"),
    ],
)
def test_duration_refusals_use_the_grammar_messages(value: object, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_duration(value, "x.at")
    assert str(info.value).startswith(message)


def test_rate_limiter_refuses_over_limit_and_recovers() -> None:
    """The EMA load refuses beyond the limit, per bucket, and decays with time."""
    limiter = RateLimiter(limit=3.0, window=1.0)
    assert [limiter.allow("u", "add_order", 0.0) for _ in range(4)] == [True] * 3 + [False]
    assert limiter.allow("u", "cancel_order", 0.0)
    assert limiter.allow("other", "add_order", 0.0)
    assert limiter.allow("u", "add_order", 5.0)
    assert weight("get_user_orders") == 5.0
    assert bucket("cancel_all_orders") == "cancel"


def _hmac(nonce: str, ts: int, secret: str = "sim-secret") -> dict[str, object]:  # noqa: S107
    return {
        "hmac": {
            "public_key": "pk",
            "nonce": nonce,
            "unix_ts": ts,
            "signature": sign(secret, nonce, ts),
        }
    }


def test_auth_decisions() -> None:
    """HMAC auth accepts good signatures and rejects bad, stale and replayed ones."""
    scenario = parse_scenario(
        {
            **MINIMAL,
            "accounts": [
                {"name": "a", "public_key": "pk", "deposit": 1, "jwt": "tok"},
                {"name": "sub", "public_key": "pk", "deposit": 1, "account_id": "s-1"},
            ],
        }
    )
    accs, nonces, now = scenario.accounts, NonceCache(), 1_000_000.0
    assert check_auth(_hmac("n1", 1_000_000), accs, {}, nonces, now).account == "a"
    assert check_auth(_hmac("n1", 1_000_000), accs, {}, nonces, now).reason == "nonce reused"
    bad = check_auth(_hmac("n2", 1_000_000, "wrong"), accs, {}, nonces, now)
    assert bad.reason == "bad signature"
    assert check_auth(_hmac("n3", 999_000), accs, {}, nonces, now).reason == "stale timestamp"
    sub = {**_hmac("n4", 1_000_000), "account_id": "s-1"}
    assert check_auth(sub, accs, {}, nonces, now).account == "sub"
    assert check_auth({"jwt": "tok"}, accs, {}, nonces, now).account == "a"
    assert check_auth({"jwt": "nope"}, accs, {}, nonces, now).account is None
    assert check_auth(_hmac("n5", 1_000_000, "k"), accs, {"pk": "k"}, nonces, now).account == "a"
    later = check_auth(_hmac("n1", 1_000_000), accs, {}, nonces, now + 901, tolerance=1000)
    assert later.account == "a"
