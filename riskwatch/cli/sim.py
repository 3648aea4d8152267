"""``riskwatch sim``: run the exchange simulator until SIGTERM/SIGINT.

``configure_parser`` adds the options to a sub-parser; ``run`` serves and returns the
exit status (0 on a signal). Secrets: every public key of the scenario verifies with
``$RISKWATCH_SIM_SECRET`` or, when unset, the documented simulator credential
``sim-secret``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from riskwatch.durations import seconds_argument
from riskwatch.sim.authcheck import UPGRADE_MODES
from riskwatch.sim.scenario import ScenarioError, list_scenarios, load_scenario
from riskwatch.sim.server import CHANNELS, Simulator

__all__ = ["configure_parser", "list_scenarios", "load_scenario", "run"]

log = logging.getLogger("riskwatch.sim")


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``sim`` options to ``p``."""
    p.add_argument(
        "--scenario",
        default="crash",
        help=f"shipped scenario name ({', '.join(list_scenarios())}) or a YAML file path",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--trade-port", type=int, default=8765, help="trade gateway port (0 = any)")
    p.add_argument("--mds-port", type=int, default=8766, help="market-data port (0 = any)")
    p.add_argument("--speed", type=float, default=1.0, help="scenario seconds per wall second")
    p.add_argument(
        "--pulse-interval",
        type=seconds_argument,
        default=1.0,
        metavar="DURATION",
        help="time between position pulses (default 1s)",
    )
    p.add_argument("--legacy", action="store_true", help="speak the older docs' message forms")
    p.add_argument(
        "--fill-fraction",
        type=float,
        default=1.0,
        help="share of a close_position that fills (the rest cancels, like IOC)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for order ids")
    p.add_argument(
        "--rest-port", type=int, default=8767, help="REST port for GET /refdata (0 = any)"
    )
    p.add_argument(
        "--upgrade-auth",
        choices=UPGRADE_MODES,
        default=None,
        help="refuse the WebSocket upgrade (HTTP 401) without this credential",
    )
    p.add_argument(
        "--sparse-orders",
        action="store_true",
        help="order responses without quantity_remaining and with price null",
    )
    p.add_argument(
        "--unconfirmed-channel",
        action="append",
        choices=CHANNELS,
        default=[],
        metavar="CHANNEL",
        help="never confirm a subscription to CHANNEL (repeatable)",
    )
    p.add_argument(
        "--fees-apart",
        action="store_true",
        help="report fees in the balance instead of netting them into realised PnL",
    )
    p.add_argument(
        "--twap-status",
        default=None,
        metavar="STATUS",
        help="status of every twap_response (e.g. ENGINE_STATUS, the docs' placeholder)",
    )
    p.add_argument(
        "--signed-jwt",
        action="store_true",
        help="JWTs are HS256 tokens with an enforced exp (connections close at expiry)",
    )


async def _serve(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        log.error("%s", exc)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulator(
        scenario,
        host=args.host,
        trade_port=args.trade_port,
        mds_port=args.mds_port,
        speed=args.speed,
        pulse_interval=args.pulse_interval,
        legacy=args.legacy,
        fill_fraction=args.fill_fraction,
        seed=args.seed,
        rest_port=args.rest_port,
        upgrade_auth=args.upgrade_auth,
        sparse_orders=args.sparse_orders,
        unconfirmed_channels=frozenset(args.unconfirmed_channel),
        fees_apart=args.fees_apart,
        signed_jwt=args.signed_jwt,
        twap_status=args.twap_status,
    )
    async with sim:  # Simulator.start logs the scenario and both URLs
        await stop.wait()
    return 0


def run(args: argparse.Namespace) -> int:
    """Serve the simulator until SIGTERM/SIGINT; return 0 then, 2 on a bad scenario."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(_serve(args))
