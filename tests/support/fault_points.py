"""``riskwatch`` with a fault point: the process kills itself (SIGKILL) at a chosen moment.

Run as ``python -m tests.support.fault_points POINT <riskwatch arguments>``; the product
holds no such hook. The point is set by wrapping the executor's own steps before the
command line runs:

- ``after_intent``: right after the first armed command's intent is committed to the
  audit log, before its frame is written;
- ``after_send``: 50 ms after the first frames of an action were written (their
  bookkeeping done), i.e. while the command is in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from riskwatch.actions import audit, executor
from riskwatch.actions.model import PlannedCommand
from riskwatch.actions.outputs import IntentRecord, Output
from riskwatch.cli.main import main

POINTS = ("after_intent", "after_send")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    """Wrap the executor's step that ``point`` names with a SIGKILL."""
    if point == "after_intent":
        write = audit.StoreWriter.write

        def write_then_die(self: audit.StoreWriter, rec: Any) -> None:
            write(self, rec)
            if (
                isinstance(rec, IntentRecord)
                and isinstance(rec.cmd_or_refusal, PlannedCommand)
                and rec.mode == "armed"
            ):
                _die()

        audit.StoreWriter.write = write_then_die  # type: ignore[method-assign]
    elif point == "after_send":
        after_send = executor.ActionExecutor._after_send

        def after_send_then_die(self: executor.ActionExecutor, out: Output) -> None:
            after_send(self, out)
            if out.records:
                asyncio.get_running_loop().call_later(0.05, _die)

        executor.ActionExecutor._after_send = after_send_then_die  # type: ignore[method-assign]
    else:
        msg = f"unknown fault point {point!r}: one of {', '.join(POINTS)}"
        raise SystemExit(msg)


if __name__ == "__main__":
    install(sys.argv[1])
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    raise SystemExit(main())
