"""``riskwatch demo``: the simulator and the daemon against it, shown live.

The simulator runs a scenario (the crash by default) on loopback; the daemon is
started from a real config file written to a temporary folder (a fresh random
secret per run, given to both through a ``secret_key_file``), exactly as ``riskwatch
run`` would load it; the terminal shows each account's equity, margin and
maintenance usage and positions as the scenario unfolds, then the demo exits 0.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import secrets
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon, secrets_of
from riskwatch.logredact import install_redaction
from riskwatch.notify import console
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.scenario import Scenario, load_scenario
from riskwatch.sim.server import Simulator
from riskwatch.store import Store
from riskwatch.tasks import wait_until_set

log = logging.getLogger(__name__)


def bundled_rules_dir() -> Path | None:
    """The default rule pack: the copy packaged in the wheel (``riskwatch/rulepack``), or
    ``rules/`` of a source checkout (pyproject's ``force-include`` makes the first)."""
    package = Path(__file__).resolve().parents[1]  # riskwatch/
    for candidate in (package / "rulepack", package.parent / "rules"):
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    return None


def write_demo_config(
    folder: Path, scenario: Scenario, sim: Simulator, secret: str, port: int
) -> Path:
    """Write the daemon's config (and its secret file) for ``scenario`` into ``folder``.

    Raises :class:`FileNotFoundError` when the default rule pack is missing (a packaging
    fault): a demo without rules would show a crash that nothing reacts to.
    """
    rules_dir = bundled_rules_dir()
    if rules_dir is None:
        msg = "the default rule pack is missing: no *.yaml in riskwatch/rulepack or rules/"
        raise FileNotFoundError(msg)
    secret_file = folder / "qfex_secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    lines = [
        "exchange:",
        f"  url: {sim.trade_url}",
        f"  market_data_url: {sim.mds_url}",
        f"  rest_url: {sim.rest_url}",
        "  stale_after: 5s",
        "accounts:",
    ]
    for acc in scenario.accounts:
        lines += [
            f"  - name: {acc.name}",
            f"    public_key: {acc.public_key}",
            f"    secret_key_file: {secret_file}",
        ]
    lines += ["rules:", f"  - {rules_dir}/*.yaml"]
    lines += [
        "notifications:",
        "  group_interval: 1s",
        "  routes:",
        "    - name: console",
        "      urls: ['console://']",
        "      repeat_interval: 10m",
        "actions:",
        "  mode: armed",
        "http:",
        f"  listen: 127.0.0.1:{port}",
        "state:",
        f"  path: {folder / 'state.db'}",
    ]
    path = folder / "riskwatch.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _num(value: Any, kind: str = "num") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else "-∞"
    if kind == "pct":
        return f"{value * 100:6.1f}%"
    if kind == "usd":
        return f"{value:12,.2f}"
    return f"{value:,.4g}"


class EventLog(logging.Handler):
    """Keeps the last warnings of riskwatch (alerts firing, actions sent and confirmed)
    for the live view, each shortened to its message."""

    def __init__(self, size: int = 12) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: collections.deque[str] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        """Remember ``record`` as ``HH:MM:SS message``."""
        stamp = logging.Formatter("%(asctime)s", "%H:%M:%S").format(record)
        self.lines.append(f"{stamp} {record.getMessage()}")


def render(
    doc: dict[str, Any],
    scenario_time: float,
    scenario: Scenario,
    events: collections.deque[str] | None = None,
) -> str:
    """The live view: one block per account, from the daemon's ``/api/state`` document."""
    out = [
        f"riskwatch demo · scenario {scenario.name} · t={scenario_time:5.1f}s "
        f"of {scenario.duration:.0f}s · mode {doc.get('mode', '?').upper()}",
        "",
    ]
    for acc in doc.get("accounts", []):
        f = acc.get("figures", {})
        link = "connected" if acc.get("connected") else "DISCONNECTED"
        out.append(
            f"{acc['name']}  [{link}]  equity {_num(f.get('equity'), 'usd')}  "
            f"margin usage {_num(f.get('margin_usage'), 'pct')}  "
            f"maintenance {_num(f.get('maintenance_usage'), 'pct')}  "
            f"leverage {_num(f.get('account_leverage'))}x  "
            f"data age {_age(f.get('data_age'))}"
        )
        out.append(
            f"  {'symbol':<10} {'size':>10} {'mark':>10} {'notional':>14} "
            f"{'uPnL':>12} {'liq dist':>8}"
        )
        for sym, p in sorted(acc.get("positions", {}).items()):
            out.append(
                f"  {sym:<10} {_num(p.get('position')):>10} {_num(p.get('mark_price')):>10} "
                f"{_num(p.get('notional'), 'usd'):>14} {_num(p.get('unrealised_pnl'), 'usd'):>12} "
                f"{_num(p.get('liquidation_distance'), 'pct'):>8}"
            )
        for alert in acc.get("alerts", []):
            out.append(
                f"  ALERT {alert.get('state', '').upper():8} {alert.get('severity', ''):8} "
                f"{alert.get('rule', '')} {alert.get('symbol') or ''}"
            )
        out.append("")
    actions = doc.get("actions", {}).get("recent", [])
    if actions:
        out.append("actions (newest first):")
        for a in actions[:8]:
            detail = f"  {a['detail']}" if a.get("detail") else ""
            out.append(
                f"  {a.get('account', '')} {a.get('rule', '')}: {a.get('summary', '')} "
                f"attempt {a.get('attempt', 1)} → {str(a.get('outcome', '')).upper()}{detail}"
            )
        out.append("")
    if events:
        out.append("recent events:")
        out.extend(f"  {line}" for line in events)
        out.append("")
    return "\n".join(out)


def _age(value: Any) -> str:
    if not isinstance(value, int | float):
        return "–"
    return f"{value:.1f}s"


async def demo(
    *,
    scenario_name: str,
    speed: float,
    duration: float | None,
    port: int,
    live: bool,
    stream: TextIO,
    on_ready: Callable[[Daemon, Simulator], None] | None = None,
) -> int:
    """Run the demo until the scenario ends, ``duration`` passes or SIGINT/SIGTERM."""
    scenario = load_scenario(scenario_name)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Event loops without Unix signal support (Windows) raise here; the demo then
        # stops on its own at the end of the scenario or on KeyboardInterrupt.
        unsupported = (NotImplementedError, RuntimeError)
        with contextlib.suppress(*unsupported):
            loop.add_signal_handler(sig, stop.set)
    events = EventLog()
    root = logging.getLogger()
    root.addHandler(events)
    # A live view redraws the whole screen: log lines on the same terminal would tear
    # it, so they go to the view's "recent events" panel instead of stderr.
    muted = [h for h in root.handlers if live and h is not events]
    for handler in muted:
        root.removeHandler(handler)
    if live:
        console.set_sink(lambda title, _body: events.lines.append(f"NOTIFIED {title}"))
    try:
        return await _demo(
            scenario, speed, duration, port, live, stream, on_ready, events, stop, loop
        )
    finally:
        console.set_sink(None)
        root.removeHandler(events)
        for handler in muted:
            root.addHandler(handler)


async def _demo(
    scenario: Scenario,
    speed: float,
    duration: float | None,
    port: int,
    live: bool,
    stream: TextIO,
    on_ready: Callable[[Daemon, Simulator], None] | None,
    events: EventLog,
    stop: asyncio.Event,
    loop: asyncio.AbstractEventLoop,
) -> int:
    secret = secrets.token_hex(24)
    sim_secrets = {acc.public_key: secret for acc in scenario.accounts}
    with tempfile.TemporaryDirectory(prefix="riskwatch-demo-") as tmp:
        async with Simulator(scenario, sim_secrets, speed=speed) as sim:
            config = load_config(write_demo_config(Path(tmp), scenario, sim, secret, port))
            install_redaction(secrets_of(config))
            rules = load_rule_files(list(config.rules.files))
            store = Store.open(config.state.path)
            daemon = Daemon(config, rules=rules, store=store)
            await daemon.start()
            if on_ready is not None:
                on_ready(daemon, sim)
            started = loop.time()
            try:
                while not stop.is_set():
                    text = render(
                        daemon.state_document(),
                        sim.scenario_time(),
                        scenario,
                        events.lines if live else None,
                    )
                    if live:
                        stream.write("\x1b[H\x1b[2J" + text + "\n")
                    else:
                        stream.write(text + "\n")
                    stream.flush()
                    if sim.finished or (duration is not None and loop.time() - started >= duration):
                        break
                    await wait_until_set(stop, 0.5 if live else 2.0)
            finally:
                await daemon.stop()
                store.close()
    stream.write("demo finished\n")
    return 0


def run_demo(
    *,
    scenario: str = "crash",
    speed: float = 1.0,
    duration: float | None = None,
    port: int = 9464,
    live: bool | None = None,
) -> int:
    """``riskwatch demo``: returns 0 when the scenario has played out."""
    if live is None:
        live = sys.stdout.isatty()
    return asyncio.run(
        demo(
            scenario_name=scenario,
            speed=speed,
            duration=duration,
            port=port,
            live=live,
            stream=sys.stdout,
        )
    )
