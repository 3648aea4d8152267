"""How many exchange frames per second one core decodes and applies to account state.

Run: ``.venv/bin/python bench/bench_pipeline.py`` (``--quick`` for a short run).

It replays a realistic pulse stream of one 20-symbol account (one ``position_response``
per symbol, then one ``balance_response``, with the marks moving between pulses)
through the same path the daemon's receive loop takes: ``decode_trade`` then
``AccountCore.handle`` (reduce into the frozen snapshot), and, separately, the same
plus ``derived.compute`` of every figure. Prints frames/s and µs per frame (median of
runs) and writes ``build/bench/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from riskwatch.pipeline import AccountCore
from riskwatch.qfex.schemas import decode_trade
from riskwatch.state import derived

SYMBOLS = [f"SYM{i:02d}-USD" for i in range(20)]


def pulse_frames(step: int) -> list[str]:
    """One pulse: 20 position frames and a balance frame, marks moved by ``step``."""
    frames = []
    total_upnl = 0.0
    total_margin = 0.0
    for i, sym in enumerate(SYMBOLS):
        qty = (i + 1) * (1 if i % 2 else -1) * 1.5
        avg = 100.0 + i
        mark = avg * (1 + 0.001 * ((step + i) % 7 - 3))
        upnl = qty * (mark - avg)
        total_upnl += upnl
        total_margin += abs(qty) * mark * 0.1
        frames.append(
            json.dumps(
                {
                    "position_response": {
                        "id": f"00000000-0000-0000-0000-{i:012d}",
                        "symbol": sym,
                        "position": qty,
                        "margin_alloc": 0.0,
                        "realised_pnl": 12.5,
                        "unrealised_pnl": upnl,
                        "net_funding": -0.25,
                        "open_orders": 1.0,
                        "open_quantity": 2.0,
                        "leverage": 10.0,
                        "initial_margin": 0.1,
                        "maintenance_margin": 0.0666666,
                        "average_price": avg,
                    }
                }
            )
        )
    frames.append(
        json.dumps(
            {
                "balance_response": {
                    "id": "acc",
                    "user_id": "acc",
                    "deposit": 100000.0,
                    "realised_pnl": 250.0,
                    "order_margin": 500.0,
                    "position_margin": total_margin,
                    "unrealised_pnl": total_upnl,
                    "net_funding": -5.0,
                    "available_balance": 100000.0 - total_margin,
                }
            }
        )
    )
    return frames


def run(frames: list[str], with_figures: bool, repeat: int) -> list[float]:
    """Seconds per frame for each of ``repeat`` passes over ``frames``."""
    out = []
    for _ in range(repeat):
        core = AccountCore("bench", stale_after=5.0)
        now = 1_700_000_000.0
        start = time.perf_counter()
        for text in frames:
            now += 0.001
            core.handle(decode_trade(text, now), now)
            if with_figures:
                derived.compute(core.snapshot, now)
        out.append((time.perf_counter() - start) / len(frames))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pulses = 50 if args.quick else 500
    repeat = 3 if args.quick else 7
    frames = [f for step in range(pulses) for f in pulse_frames(step)]
    results = {}
    for label, with_figures in (("decode+apply", False), ("decode+apply+figures", True)):
        per_frame = statistics.median(run(frames, with_figures, repeat))
        results[label] = {"us_per_frame": per_frame * 1e6, "frames_per_second": 1 / per_frame}
        print(f"{label:24} {per_frame * 1e6:7.2f} µs/frame  {1 / per_frame:10,.0f} frames/s")
    doc = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "frames": len(frames),
        "results": results,
    }
    out = Path("build/bench/pipeline.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
