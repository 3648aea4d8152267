"""A step of the shutdown that hangs does not hang the daemon: the steps after it run
(the last save of the rule state among them), the step is named, and the stop is unclean."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from riskwatch.config import load_config
from riskwatch.daemon import app
from riskwatch.daemon.serve import serve
from riskwatch.notify.service import NotifyService
from riskwatch.rules.load import load_rule_files
from riskwatch.store import Store
from tests.support.rig import Http, free_port, in_process, setup_for, simulator, wait_for

ACCOUNT = "desk-a"

ALWAYS = """
rules:
  - name: EquityPositive
    scope: account
    when: max_over(equity, 1m) > 0
    severity: info
"""


@pytest.mark.timeout(60)
async def test_a_hung_shutdown_step_is_named_and_the_rest_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(app, "STOP_STEP_SECONDS", 0.3)
    async with simulator("crash", pulse_interval=0.1) as (sim, secret):
        setup = setup_for(sim, tmp_path, secret, rules=ALWAYS)
        async with in_process(setup) as daemon:
            assert daemon.store is not None
            store = daemon.store
            core = daemon.accounts[ACCOUNT].core
            await wait_for(lambda: any(a.rule == "EquityPositive" for a in core.alerts()),
                           10, "(alert firing)")  # fmt: skip
            await asyncio.sleep(0.5)  # window samples since the first periodic save

            async def hangs(drain: float = 1.0) -> None:
                await asyncio.Event().wait()

            monkeypatch.setattr(daemon.notifier, "stop", hangs)
            started = time.monotonic()
            with caplog.at_level(logging.ERROR, logger="riskwatch.daemon.app"):
                async with asyncio.timeout(10):
                    await daemon.stop()
            assert time.monotonic() - started < 5
            assert daemon.unclean_stop == ["notifications"]
            assert "shutdown: notifications did not finish within" in caplog.text
            assert "riskwatch stopped uncleanly: notifications" in caplog.text
            # The window history is written every minute and by the last save only
            # (daemon/ticks.py): the stored one is the one in memory at the end.
            windows = core.records().windows
            assert windows is not None
            assert store.load_windows()[ACCOUNT] == json.loads(json.dumps(windows))


async def test_a_clean_stop_lists_nothing(tmp_path: Path) -> None:
    async with simulator("crash", pulse_interval=0.1) as (sim, secret):
        setup = setup_for(sim, tmp_path, secret, rules=ALWAYS)
        async with in_process(setup) as daemon:
            await wait_for(lambda: daemon.accounts[ACCOUNT].core.snapshot.balance is not None,
                           10, "(live)")  # fmt: skip
            await daemon.stop()
            assert daemon.unclean_stop == []


@pytest.mark.timeout(60)
async def test_riskwatch_run_exits_1_after_an_unclean_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM, a step of the shutdown hangs: ``serve`` (``riskwatch run``) returns 1."""
    monkeypatch.setattr(app, "STOP_STEP_SECONDS", 0.3)

    async def hangs(self: NotifyService, drain: float = 1.0) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(NotifyService, "stop", hangs)
    async with simulator("crash", pulse_interval=0.1) as (sim, secret):
        setup = setup_for(sim, tmp_path, secret, rules=ALWAYS, port=free_port())
        config = load_config(setup.write())
        store = Store.open(config.state.path)
        http = Http(setup.port)
        try:
            running = asyncio.create_task(
                serve(config, load_rule_files(list(config.rules.files)), store)
            )

            async def serving() -> bool:
                try:
                    return (await http.get("/healthz"))[0] == 200
                except OSError:
                    return False

            await wait_for(serving, 10, "(serving)")
            os.kill(os.getpid(), signal.SIGTERM)
            async with asyncio.timeout(10):
                assert await running == 1
        finally:
            await http.close()
            store.close()
