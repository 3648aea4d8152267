"""Decoding speed of QFEX frames: riskwatch.qfex.schemas on one core.

Run: `.venv/bin/python bench/bench_decode.py [--quick]`. Prints frames/s and µs per
frame for a position, balance, order and mark-price frame (the documented examples,
except a non-flat position; passed as ``str``, which is what websockets hands over for
text frames) and writes `build/bench/decode.json`.

What is measured: the whole `decode_trade` / `decode_mds` call — JSON parsing into
msgspec structs, validation, and building the frozen domain event — best of several
repeats of N calls, single thread. Also shown for reference: stdlib `json.loads` of
the same text (parsing only, no validation, no event).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from riskwatch.model import BalanceUpdate, MarkPrice, OrderUpdate, PositionUpdate
from riskwatch.qfex.schemas import decode_mds, decode_trade

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "fixtures" / "qfex" / "examples"
OUT = ROOT / "build" / "bench" / "decode.json"

# A non-flat position frame: what a live account with an open short pulses every second.
POSITION_FRAME = json.dumps(
    {
        "position_response": {
            "id": "c003ad60-ded4-401b-9b4c-e255a53d32ea",
            "symbol": "AAPL-USD",
            "position": -12.5,
            "margin_alloc": 0.0,
            "realised_pnl": 153.2841,
            "unrealised_pnl": -41.87125,
            "net_funding": -0.30117,
            "open_orders": 2.0,
            "open_quantity": 5.0,
            "leverage": 20.0,
            "initial_margin": 0.05,
            "maintenance_margin": 0.03333333333333333,
            "average_price": 201.3455,
        }
    },
    indent=2,
)


def cases() -> list[tuple[str, str, Callable[[str, float], list[Any]], type]]:
    def example(name: str) -> str:
        return (EXAMPLES / name).read_text(encoding="utf-8")

    return [
        ("position_response", POSITION_FRAME, decode_trade, PositionUpdate),
        ("balance_response", example("server.balance_response.json"), decode_trade, BalanceUpdate),
        ("order_response", example("server.order_response.ack.json"), decode_trade, OrderUpdate),
        ("mark_price", example("server.mds.mark_price.json"), decode_mds, MarkPrice),
    ]


def best_seconds_per_call(fn: Callable[[], object], number: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    args = parser.parse_args(argv)
    number, repeat = (2_000, 3) if args.quick else (50_000, 7)

    results: list[dict[str, Any]] = []
    print(f"{'frame':<20} {'bytes':>6} {'µs/frame':>9} {'frames/s':>11} {'json.loads µs':>14}")
    for name, text, decode, expected in cases():
        events = decode(text, 1.0)
        if len(events) != 1 or not isinstance(events[0], expected):
            print(f"{name}: decoded to {events!r}, expected one {expected.__name__}")
            return 1
        per_call = best_seconds_per_call(lambda: decode(text, 1.0), number, repeat)  # noqa: B023
        ref = best_seconds_per_call(lambda: json.loads(text), number, repeat)  # noqa: B023
        row = {
            "frame": name,
            "bytes": len(text.encode()),
            "us_per_frame": round(per_call * 1e6, 3),
            "frames_per_s": round(1.0 / per_call),
            "json_loads_us": round(ref * 1e6, 3),
        }
        results.append(row)
        print(
            f"{name:<20} {row['bytes']:>6} {row['us_per_frame']:>9.2f} "
            f"{row['frames_per_s']:>11,} {row['json_loads_us']:>14.2f}"
        )

    OUT.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "decode",
        "python": sys.version.split()[0],
        "msgspec": msgspec.__version__,
        "machine": platform.machine(),
        "iterations": {"number": number, "repeat": repeat, "statistic": "best of repeats"},
        "results": results,
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
