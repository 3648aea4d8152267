"""Rule engine: µs per full pulse evaluation of one account.

Run: `.venv/bin/python bench/bench_rules.py [--quick]`. Prints a table and writes
`build/bench/rules.json`.

The account is built from real domain events (a balance and one position pulse per
symbol, folded by `state/account.py`), and each measured pulse is a fresh
`derived.compute()` of a snapshot whose marks and balance moved, so position rows are
built lazily inside the evaluation as they are in the daemon. Two figures per case:

* `engine`: `engine.evaluate(...)` alone (includes building the position rows it reads,
  recording window samples, the daily tracker, lifecycle steps);
* `compute+engine`: `derived.compute()` plus the evaluation, i.e. what the core pays
  per pulse after the reducer.

The 30-rule pack mixes what a default pack holds: margin usage warning/critical with
hysteresis, a maintenance ladder, account leverage, daily loss, trailing and intraday
drawdown, data age, available balance, equity drop, per-position effective leverage,
concentration (notional / gross_notional), liquidation distance, position loss, the
set_leverage rule, notional spikes and PnL swings over windows. A few rules are firing
throughout (as on a loaded account), most are quiet. Scaling: rules 10/30/100 at 20
symbols; symbols 5/20/50 at 30 rules (100 rules repeat the pack with other thresholds).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from riskwatch.model import BalanceUpdate, MarkPrice, PositionUpdate
from riskwatch.rules import engine
from riskwatch.rules.load import load_rules_text
from riskwatch.rules.model import RuleSet
from riskwatch.state import account as account_state
from riskwatch.state import derived
from riskwatch.state.account import AccountSnapshot

T0 = 1_767_225_600.0

ACCOUNT_RULES = [
    ("MarginUsageWarning", "margin_usage > {a}0.80", "margin_usage < {a}0.70", "10s", ""),
    ("MarginUsageCritical", "margin_usage > {a}0.95", None, "2s", "[cancel_all_orders]"),
    ("MaintenanceWatch", "maintenance_usage > {a}0.5", None, "0s", ""),
    ("MaintenanceWarning", "maintenance_usage > {a}0.7", None, "5s", ""),
    ("MaintenanceHigh", "maintenance_usage > {a}0.85", None, "0s", ""),
    ("MaintenanceCritical", "maintenance_usage > {a}0.95", None, "0s", "[cancel_all_orders]"),
    ("AccountLeverage", "account_leverage > {a}10", "account_leverage < {a}8", "0s", ""),
    ("AccountLeverageCritical", "account_leverage > {a}20", None, "0s", ""),
    ("DailyLoss", "pnl_today < {a}-5000", None, "0s", "[cancel_all_orders]"),
    ("DailyLossWarning", "pnl_today < {a}-2000", None, "0s", ""),
    ("TrailingDrawdown", "drawdown(equity, 24h) > {a}0.10", None, "0s", ""),
    ("IntradayDrawdown", "drawdown(equity, 1h) > {a}0.05", None, "0s", ""),
    ("DataAge", "data_age > {a}3", None, "0s", ""),
    ("LowAvailable", "available_balance < {a}0.05 * equity", None, "0s", ""),
    ("EquityDrop", "change(equity, 5m) < {a}-1000", None, "0s", ""),
    ("TooManyOrders", "open_orders > {a}50", None, "0s", ""),
]
POSITION_RULES = [
    ("LeverageCap", "effective_leverage > {a}10", None, "0s", "[close_position]"),
    ("LeverageWarning", "effective_leverage > {a}0.3", "effective_leverage < {a}0.25", "5s", ""),
    ("Concentration", "notional / gross_notional > {a}0.5 and positions > 3", None, "0s", ""),
    ("LiquidationNear", "liquidation_distance < {a}0.05", None, "0s", ""),
    ("LiquidationWarning", "liquidation_distance < {a}0.15", None, "0s", ""),
    ("PositionLoss", "unrealised_pnl < {a}-2000", None, "0s", ""),
    ("PositionLossShare", "unrealised_pnl < {a}-0.02 * equity", None, "0s", ""),
    (
        "LeverageSettingTooHigh",
        "leverage > {a}25 and position == 0 and open_orders == 0",
        None,
        "0s",
        "[{{set_leverage: 10}}]",
    ),
    ("BigNotional", "notional > {a}200000", None, "0s", ""),
    ("OpenQuantity", "open_quantity > {a}100", None, "0s", ""),
    ("ManyOrders", "open_orders > {a}10", None, "0s", ""),
    ("ConcentrationWarning", "notional > {a}0.25 * gross_notional", None, "0s", ""),
    ("LossVsMargin", "unrealised_pnl < {a}-0.5 * initial_margin", None, "0s", ""),
    ("MaintenanceHeavy", "maintenance_margin > {a}0.2 * equity", None, "0s", ""),
]
# Per-position window rules: measured as a separate case (their cost is the window
# store's: every symbol's series is queried at every pulse).
POSITION_WINDOW_RULES = [
    ("NotionalSpike", "change(notional, 5m) > {a}50000", None, "0s", ""),
    ("PnlSwing", "min_over(unrealised_pnl, 1h) < {a}-5000", None, "0s", ""),
]


def pack(n: int, position_windows: bool = False) -> RuleSet:
    """`n` rules: the 30-rule mix in order, repeated with shifted thresholds past 30.

    With `position_windows`, the last two position rules are replaced by two rules
    reading per-position windows (`change(notional, 5m)`, `min_over(unrealised_pnl, 1h)`).
    """
    position = list(POSITION_RULES)
    if position_windows:
        position[-3:-1] = POSITION_WINDOW_RULES
    mixed: list[tuple[str, tuple[str, str, str | None, str, str]]] = []
    a, p = 0, 0
    while len(mixed) < 30:
        if a < len(ACCOUNT_RULES) and (p >= len(position) or a <= p):
            mixed.append(("account", ACCOUNT_RULES[a]))
            a += 1
        else:
            mixed.append(("position", position[p]))
            p += 1
    lines = ["rules:"]
    for i in range(n):
        scope, (name, when, clear, for_, actions) = mixed[i % 30]
        rep = i // 30
        # Repeats are the same shapes with other constants (a multiplier is enough).
        shift = "" if rep == 0 else f"{1 + rep / 10} * 0 + "
        lines.append(f"  - name: {name}{rep or ''}")
        lines.append(f"    scope: {scope}")
        lines.append(f'    when: "{when.format(a=shift)}"')
        if clear:
            lines.append(f'    clear_when: "{clear.format(a=shift)}"')
        lines.append(f"    for: {for_}")
        if actions:
            lines.append(f"    actions: {actions.format()}")
        lines.append(f'    summary: "{name} {{{{ value | num }}}} on {{{{ account }}}}"')
    return load_rules_text("\n".join(lines) + "\n", "bench.yaml")


def symbols(n: int) -> list[str]:
    return [f"SYM{i:02d}-USD" for i in range(n)]


def account(n_symbols: int) -> AccountSnapshot:
    snap = account_state.initial("bench")
    bal = BalanceUpdate(
        deposit=1_000_000.0,
        realised_pnl=0.0,
        unrealised_pnl=0.0,
        net_funding=0.0,
        order_margin=1_000.0,
        position_margin=50_000.0,
        available_balance=900_000.0,
        fees=None,
        referral_rewards=None,
        received_at=T0,
    )
    snap = account_state.reduce(snap, bal).snapshot
    for i, sym in enumerate(symbols(n_symbols)):
        qty = (1.0 + i) * (1 if i % 3 else -1)
        ev = PositionUpdate(
            symbol=sym,
            position=qty,
            average_price=1000.0 + 50 * i,
            unrealised_pnl=10.0 * i,
            realised_pnl=0.0,
            net_funding=0.0,
            margin_alloc=100.0,
            open_orders=i % 4,
            open_quantity=float(i % 5),
            leverage=20.0,
            initial_margin_rate=0.05,
            maintenance_margin_rate=0.0333,
            received_at=T0,
        )
        snap = account_state.reduce(snap, ev).snapshot
    return snap


def variants(base: AccountSnapshot, n_symbols: int, count: int) -> list[AccountSnapshot]:
    """Snapshots whose marks moved (some symbols per step), as a stream of pulses gives."""
    out = []
    snap = base
    syms = symbols(n_symbols)
    for k in range(count):
        for j in range(3):
            sym = syms[(k * 3 + j) % n_symbols]
            i = syms.index(sym)
            price = (1000.0 + 50 * i) * (1 + 0.002 * ((k % 7) - 3))
            snap = account_state.reduce(snap, MarkPrice(sym, price, None, T0 + k)).snapshot
        out.append(snap)
    return out


def measure(
    n_rules: int, n_symbols: int, runs: int, position_windows: bool = False
) -> dict[str, Any]:
    rules = pack(n_rules, position_windows)
    state = engine.RulesState("bench", rules)
    snaps = variants(account(n_symbols), n_symbols, 64)
    engine_ns: list[int] = []
    total_ns: list[int] = []
    transitions = 0
    firing = 0
    perf = time.perf_counter_ns
    warm = runs // 10
    for k in range(runs + warm):
        now = T0 + k
        snap = snaps[k % len(snaps)]
        t0 = perf()
        figures = derived.compute(snap, now, None)
        t1 = perf()
        d = engine.evaluate(rules, state, figures, now, stale=False, trigger="pulse")
        t2 = perf()
        if k >= warm:
            engine_ns.append(t2 - t1)
            total_ns.append(t2 - t0)
            transitions += len(d.transitions)
            firing = len(d.alerts)

    # What the window store's queries cost at the end of the run (steady state): every
    # windowed rule asks one query per series per evaluation.
    now = T0 + runs + warm - 1
    specs = [(w, r.scope) for r in rules for w in r.windows]
    keys = list(state.windows.keys())
    q0 = perf()
    reps = 200
    for _ in range(reps):
        for w, scope in specs:
            for key in keys if scope == "position" else [""]:
                state.windows.query(key, w.func, w.name, w.seconds, now)
    window_us = (perf() - q0) / reps / 1000

    def pct(xs: list[int], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] / 1000

    return {
        "rules": n_rules,
        "symbols": n_symbols,
        "position_windows": position_windows,
        "runs": runs,
        "engine_p50_us": round(statistics.median(engine_ns) / 1000, 1),
        "engine_p99_us": round(pct(engine_ns, 0.99), 1),
        "total_p50_us": round(statistics.median(total_ns) / 1000, 1),
        "total_p99_us": round(pct(total_ns, 0.99), 1),
        "window_queries_us": round(window_us, 1),
        "alerts_active": firing,
        "transitions_per_run": round(transitions / runs, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--out", default="build/bench/rules.json")
    args = parser.parse_args()
    runs = 500 if args.quick else 5000
    cases = [(30, 20, False), (10, 20, False), (100, 20, False), (30, 5, False)]
    cases += [(30, 50, False), (30, 20, True)]
    results = [measure(r, s, runs, w) for r, s, w in cases]
    print(
        f"{'rules':>5} {'symbols':>7} {'pos.win':>7} {'engine p50':>11} {'p99':>8}"
        f" {'+compute p50':>13} {'p99':>8} {'of which windows':>17}"
    )
    for r in results:
        win = "yes" if r["position_windows"] else "no"
        print(
            f"{r['rules']:>5} {r['symbols']:>7} {win:>7} {r['engine_p50_us']:>9.1f}µs"
            f" {r['engine_p99_us']:>6.1f}µs {r['total_p50_us']:>11.1f}µs"
            f" {r['total_p99_us']:>6.1f}µs {r['window_queries_us']:>15.1f}µs"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "machine": platform.machine(),
                "unit": "microseconds per full pulse evaluation of one account",
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
