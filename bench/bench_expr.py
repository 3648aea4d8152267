"""Rule expressions: riskwatch's compiled closures against CEL (Rust bindings).

Run: `.venv/bin/python bench/bench_expr.py [--quick]`. Prints a table and writes
`build/bench/expr.json`. CEL is measured only if `common-expression-language` is
installed (`pip install common-expression-language`); it is not a product dependency.

What is measured:
* one expression, `margin_usage > 0.8 and leverage >= 10`, µs per evaluation;
* one pulse: 12 account rules once, 18 position rules for each of 20 symbols (372
  evaluations), including building each symbol's merged name mapping (riskwatch) or
  CEL `Context` (CEL), since an engine must do that on every pulse.

For CEL the same trees are printed as CEL text (`&&`, `||`, `!`, `?:` for abs/min/max,
which cel-rust lacks) and window values are bound as plain variables, which favours CEL.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from riskwatch.rules.expr import NO_WINDOWS, WindowSpec, compile_expression
from riskwatch.rules.expr.syntax import (
    Binary,
    BoolOp,
    Call,
    Compare,
    DurationLiteral,
    Expr,
    Name,
    Negate,
    Not,
    Number,
)

SIMPLE = "margin_usage > 0.8 and leverage >= 10"

ACCOUNT_RULES = [
    "margin_usage > 0.80",
    "margin_usage > 0.95",
    "maintenance_usage > 0.7",
    "maintenance_usage > 0.9",
    "pnl_today < -5000",
    "pnl_today < -2000 and positions > 0",
    "drawdown(equity, 24h) > 0.10",
    "drawdown(equity, 1h) > 0.05",
    "account_leverage > 20",
    "data_age > 5",
    "change(equity, 5m) < -1000",
    "available_balance < 0.05 * equity",
]
POSITION_RULES = [
    "effective_leverage > 10",
    "effective_leverage > 20",
    "leverage > 10 and position == 0 and open_orders == 0",
    "notional / gross_notional > 0.5",
    "notional / gross_notional > 0.8 and positions > 1",
    "liquidation_distance < 0.05",
    "liquidation_distance < 0.02",
    "unrealised_pnl < -1000",
    "unrealised_pnl < -0.02 * equity",
    "abs(position) * mark_price > 1000000",
    "maintenance_margin / equity > 0.3",
    "min(liquidation_distance, 1) < 0.1 and effective_leverage > 5",
    "max_over(mark_price, 5m) / mark_price - 1 > 0.05",
    "change(mark_price, 1m) / mark_price < -0.03",
    "abs(mark_price - average_price) / average_price > 0.1",
    "open_quantity > 2 * abs(position) and open_orders > 10",
    "initial_margin > 0.5 * equity",
    "margin_alloc < maintenance_margin * 1.2",
]
SYMBOLS = 20

ACCOUNT = {
    "equity": 1_000_000.0,
    "deposit": 950_000.0,
    "available_balance": 400_000.0,
    "realised_pnl": 20_000.0,
    "unrealised_pnl": 30_000.0,
    "net_funding": -1_000.0,
    "fees": 500.0,
    "order_margin": 50_000.0,
    "position_margin": 450_000.0,
    "margin_usage": 0.5,
    "maintenance_usage": 0.25,
    "gross_notional": 5_000_000.0,
    "net_notional": 1_000_000.0,
    "account_leverage": 5.0,
    "open_orders": 12.0,
    "positions": 20.0,
    "pnl_today": -1500.0,
    "data_age": 0.2,
}


def position(i: int) -> dict[str, float | None]:
    """Figures of the i-th symbol's position; varied so that some rules hold."""
    mark = 100.0 + i
    size = (i - 10) * 100.0
    return {
        "position": size,
        "average_price": mark * 0.97,
        "mark_price": mark,
        "notional": abs(size) * mark,
        "unrealised_pnl": size * mark * 0.03,
        "leverage": float(5 + i),
        "effective_leverage": abs(size) * mark / 1_000_000.0 * 20,
        "initial_margin": abs(size) * mark / 10,
        "maintenance_margin": abs(size) * mark / 20,
        "margin_alloc": abs(size) * mark / 15,
        "open_orders": float(i % 3),
        "open_quantity": 50.0 * (i % 4),
        "liquidation_distance": 0.01 * (i + 1),
    }


class DictWindows:
    """Window values looked up in a dict, so the bench measures expressions, not a store."""

    def __init__(self, values: dict[tuple[str, str, float], float | None]) -> None:
        self.values = values

    def window(self, func: str, name: str, seconds: float, now: float) -> float | None:
        return self.values.get((func, name, seconds))


def window_value(spec: WindowSpec, env: Mapping[str, float | None]) -> float:
    base = env[spec.name] or 0.0
    return {
        "max_over": base * 1.01,
        "min_over": base * 0.99,
        "avg_over": base,
        "change": -0.01 * base,
        "rate": -0.0001,
        "drawdown": 0.02,
    }[spec.func]


def to_cel(node: Expr) -> str:
    """Print a checked tree as CEL text; window calls become variables `w_func_name_secs`."""
    if isinstance(node, Number):
        return repr(node.value)
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Negate):
        return f"(-{to_cel(node.operand)})"
    if isinstance(node, Binary | Compare):
        return f"({to_cel(node.left)} {node.op} {to_cel(node.right)})"
    if isinstance(node, BoolOp):
        op = "&&" if node.op == "and" else "||"
        return f"({to_cel(node.left)} {op} {to_cel(node.right)})"
    if isinstance(node, Not):
        return f"(!{to_cel(node.operand)})"
    if isinstance(node, Call) and node.func in ("abs", "min", "max"):
        args = [to_cel(a) for a in node.args]
        if node.func == "abs":
            return f"({args[0]} < 0.0 ? -{args[0]} : {args[0]})"
        if node.func in ("min", "max"):
            out = args[0]
            for arg in args[1:]:
                sign = "<" if node.func == "min" else ">"
                out = f"({out} {sign} {arg} ? {out} : {arg})"
            return out
    if isinstance(node, Call):
        target, span = node.args
        assert isinstance(target, Name)
        assert isinstance(span, DurationLiteral)
        return cel_window_var(WindowSpec(node.func, target.name, span.seconds))
    raise TypeError(node)


def cel_window_var(spec: WindowSpec) -> str:
    return f"w_{spec.func}_{spec.name}_{int(spec.seconds)}"


def timed(fn: Callable[[], Any], rounds: int, inner: int) -> dict[str, float]:
    """Run `fn` `inner` times per round; return min and median µs per call."""
    fn()
    per_call = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(inner):
            fn()
        per_call.append((time.perf_counter_ns() - start) / inner / 1000)
    return {"min_us": min(per_call), "median_us": statistics.median(per_call)}


def loop_overhead(rounds: int, inner: int) -> float:
    def nothing() -> None:
        return None

    return timed(nothing, rounds, inner)["min_us"]


def bench_riskwatch(rounds: int, inner: int) -> tuple[dict[str, Any], list[Any]]:
    simple = compile_expression(SIMPLE, "position", expect="bool")
    env_simple = {"margin_usage": 0.9, "leverage": 12.0}
    ev = simple.evaluate

    account = [compile_expression(t, "account", expect="bool") for t in ACCOUNT_RULES]
    positions = [compile_expression(t, "position", expect="bool") for t in POSITION_RULES]
    acc_windows = DictWindows(
        {(s.func, s.name, s.seconds): window_value(s, ACCOUNT) for e in account for s in e.windows}
    )
    symbols = []
    for i in range(SYMBOLS):
        pos = position(i)
        merged = {**ACCOUNT, **pos}
        win = DictWindows(
            {
                (s.func, s.name, s.seconds): window_value(s, merged)
                for e in positions
                for s in e.windows
            }
        )
        symbols.append((pos, win))
    acc_fns = [e.evaluate for e in account]
    pos_fns = [e.evaluate for e in positions]

    def pulse() -> list[Any]:
        now = 1_700_000_000.0
        out = [f(ACCOUNT, acc_windows, now) for f in acc_fns]
        for pos, win in symbols:
            env = {**ACCOUNT, **pos}
            out.extend([f(env, win, now) for f in pos_fns])
        return out

    missing: dict[str, float | None] = {"margin_usage": None}
    return {
        "simple": timed(lambda: ev(env_simple, NO_WINDOWS, 0.0), rounds, inner),
        "simple_missing": timed(lambda: ev(missing, NO_WINDOWS, 0.0), rounds, inner),
        "pulse": timed(pulse, rounds, max(1, inner // 300)),
    }, pulse()


def bench_cel(rounds: int, inner: int) -> tuple[dict[str, Any], list[Any]] | None:
    try:
        cel: Any = importlib.import_module("cel")
    except ImportError:
        return None
    simple_tree = compile_expression(SIMPLE, "position").tree
    simple = cel.compile(to_cel(simple_tree))
    env_simple = {"margin_usage": 0.9, "leverage": 12.0}
    ctx_simple = cel.Context(env_simple)

    account = [compile_expression(t, "account") for t in ACCOUNT_RULES]
    positions = [compile_expression(t, "position") for t in POSITION_RULES]
    acc_prog = [cel.compile(to_cel(e.tree)) for e in account]
    pos_prog = [cel.compile(to_cel(e.tree)) for e in positions]
    acc_wins = {cel_window_var(s): window_value(s, ACCOUNT) for e in account for s in e.windows}
    symbols = []
    for i in range(SYMBOLS):
        pos = position(i)
        merged = {**ACCOUNT, **pos}
        wins = {cel_window_var(s): window_value(s, merged) for e in positions for s in e.windows}
        symbols.append((pos, wins))

    def pulse() -> list[Any]:
        # A Context per scope per pulse: CEL cannot read a Python mapping in place.
        ctx = cel.Context({**ACCOUNT, **acc_wins})
        out = [p.execute(ctx) for p in acc_prog]
        for pos, wins in symbols:
            ctx = cel.Context({**ACCOUNT, **pos, **wins})
            out.extend([p.execute(ctx) for p in pos_prog])
        return out

    return {
        "simple_dict": timed(lambda: simple.execute(env_simple), rounds, inner),
        "simple_prebuilt_context": timed(lambda: simple.execute(ctx_simple), rounds, inner),
        "context_build_per_scope": timed(
            lambda: cel.Context({**ACCOUNT, **position(0)}), rounds, max(1, inner // 10)
        ),
        "pulse": timed(pulse, rounds, max(1, inner // 300)),
    }, pulse()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    default_out = Path(__file__).resolve().parent.parent / "build" / "bench" / "expr.json"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    rounds, inner = (3, 3000) if args.quick else (7, 60000)

    overhead = loop_overhead(rounds, inner)
    ours, ours_out = bench_riskwatch(rounds, inner)
    cel_result = bench_cel(rounds, inner)
    evaluations = len(ACCOUNT_RULES) + SYMBOLS * len(POSITION_RULES)

    rows = [
        ("riskwatch", "simple expression (µs/eval)", ours["simple"]),
        ("riskwatch", "simple, margin_usage missing (µs/eval)", ours["simple_missing"]),
        ("riskwatch", f"pulse, {evaluations} evals (µs/pulse)", ours["pulse"]),
    ]
    result: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "loop_overhead_us": overhead,
        "expression": SIMPLE,
        "rules": {"account": ACCOUNT_RULES, "position": POSITION_RULES},
        "symbols": SYMBOLS,
        "evaluations_per_pulse": evaluations,
        "riskwatch": ours,
        "cel": None,
    }
    if cel_result is not None:
        cel_stats, cel_out = cel_result
        if cel_out != ours_out:
            print("warning: CEL and riskwatch disagree on the pulse results", file=sys.stderr)
        result["cel"] = cel_stats
        result["cel_agrees"] = cel_out == ours_out
        rows += [
            ("cel-rust", "simple, dict context (µs/eval)", cel_stats["simple_dict"]),
            (
                "cel-rust",
                "simple, prebuilt Context (µs/eval)",
                cel_stats["simple_prebuilt_context"],
            ),
            ("cel-rust", "Context build, one scope (µs)", cel_stats["context_build_per_scope"]),
            ("cel-rust", f"pulse, {evaluations} evals (µs/pulse)", cel_stats["pulse"]),
        ]
    width = max(len(r[1]) for r in rows)
    print(f"{'engine':<10} {'measure':<{width}} {'min':>9} {'median':>9}")
    for engine, what, stats in rows:
        print(f"{engine:<10} {what:<{width}} {stats['min_us']:9.3f} {stats['median_us']:9.3f}")
    print(f"(loop overhead per call, included above: {overhead:.3f} µs; target: pulse < 200 µs)")
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
