"""``riskwatch run``: load the config, open the store, serve until a signal says stop.

Shutdown: SIGTERM or SIGINT stop the connections and the HTTP server within a few
seconds, and :func:`run_daemon` returns 0, or 1 when a step of the shutdown overran or
failed (logged, daemon/app.py ``Daemon.stop``); SIGHUP reloads rules and routes. A bad
config at start prints ``FILE:LINE:COL: message`` lines to stderr and returns 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from riskwatch.config import Config, load_config
from riskwatch.daemon import eventloop
from riskwatch.daemon.app import Daemon, secrets_of
from riskwatch.daemon.gcpolicy import GcPolicy
from riskwatch.daemon.heaptrim import HeapTrimmer
from riskwatch.daemon.storage import check_free_space
from riskwatch.errors import ConfigError, StateStoreError
from riskwatch.logredact import install_redaction
from riskwatch.qfex.recorder import Recorder
from riskwatch.rules.load import load_rule_files
from riskwatch.rules.model import RuleSet
from riskwatch.shard import ALL, Shard
from riskwatch.store import Store

__all__ = ["memory_upkeep", "run_daemon", "serve"]

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def memory_upkeep(*, gc_policy: bool = True, heap_trim: bool = True) -> AsyncIterator[None]:
    """The process-wide memory upkeep of a started daemon, stopped on exit: the live
    state kept out of the cyclic collector's reach (daemon/gcpolicy.py) and heap pages
    given back to the system now and then (daemon/heaptrim.py).

    Enter it once the daemon has started (what start-up built is frozen then). The
    benchmarks enter it as :func:`serve` does; ``gc_policy``/``heap_trim`` False leave
    the interpreter's collector or the heap as they are.
    """
    policy = GcPolicy() if gc_policy else None
    trimmer = HeapTrimmer() if heap_trim else None
    if policy is not None:
        policy.start()
    if trimmer is not None:
        trimmer.start()
    try:
        yield
    finally:
        if policy is not None:
            await policy.stop()
        if trimmer is not None:
            await trimmer.stop()


async def serve(
    config: Config,
    rules: RuleSet,
    store: Store,
    *,
    record: Path | None = None,
    shard: Shard = ALL,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (SIGHUP reloads); return the exit status."""
    try:
        recorder = Recorder(record) if record is not None else None
    except OSError as exc:
        print(f"{record}: cannot record: {exc.strerror or exc}", file=sys.stderr)
        return 2
    daemon = Daemon(config, recorder=recorder, rules=rules, store=store)
    if shard != ALL:
        daemon.reloader.select = lambda accounts: shard.select(accounts, lambda a: a.name)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    await daemon.start()
    async with memory_upkeep():
        loop.add_signal_handler(signal.SIGHUP, daemon.reloader.request, "SIGHUP")
        await stop_requested.wait()
        log.info("shutdown requested")
        await daemon.stop()
    return 1 if daemon.unclean_stop else 0


def run_daemon(config_path: Path, *, record: Path | None = None, shard: Shard = ALL) -> int:
    """``riskwatch run``: load the config (exit 2 on problems) and serve.

    With ``shard`` (``--shard I/N``) only the accounts that shard owns are watched
    (:mod:`riskwatch.shard`; docs/performance.md).
    """
    try:
        config = load_config(config_path)
        if shard != ALL:
            config = replace(config, accounts=shard.select(config.accounts, lambda a: a.name))
            log.info("shard %s: watching %d account(s)", shard, len(config.accounts))
        rules = load_rule_files(list(config.rules.files))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    install_redaction(secrets_of(config))
    try:
        check_free_space(config.state.path, config.state.min_free_mb)
        store = Store.open(config.state.path)
    except StateStoreError as exc:
        print(f"{config.state.path}: {exc}", file=sys.stderr)
        return 2
    try:
        return eventloop.run(serve(config, rules, store, record=record, shard=shard))
    finally:
        store.close()
