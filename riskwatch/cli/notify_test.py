"""``riskwatch notify-test -c riskwatch.yaml``: one test message per route (README.md#commands).

Every URL of every route gets one test message through the same delivery path as the
daemon's (timeouts, retries). Each outcome is printed as one line naming the route and
the URL by scheme, host where it is not a token, and URL id — never the URL itself.
Exit status: 0 all delivered, 1 any failed (or no route configured), 2 bad config.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TextIO

from riskwatch.config import Config, load_config
from riskwatch.errors import ConfigError
from riskwatch.notify.deliver import DeliveryPolicy, Outcome
from riskwatch.notify.service import NotifyService

__all__ = ["format_outcome", "notify_test", "run_notify_test"]


def format_outcome(o: Outcome) -> str:
    """``route 0: json://127.0.0.1:8080/… (id 1a2b…) sent`` (or ``FAILED: detail``)."""
    tail = "sent" if o.result == "sent" else f"FAILED: {o.detail or 'unknown error'}"
    return f"route {o.route}: {o.display} {tail}"


async def notify_test(
    config: Config, out: TextIO | None = None, policy: DeliveryPolicy | None = None
) -> int:
    """Send the test messages of ``config``; print one line per URL (to ``out``, default
    stdout); return the exit status."""
    out = out if out is not None else sys.stdout
    from riskwatch.daemon.app import secrets_of

    service = NotifyService(
        config.notifications,
        external_url=config.http.external_url,
        delivery=policy or DeliveryPolicy(timeout=10.0, attempts=2, backoff=1.0),
        secrets=secrets_of(config),
    )
    if not any(r.targets for r in service.routes):
        print("no notification route with a url is configured", file=out)
        return 1
    try:
        outcomes = await service.send_test()
    finally:
        await service.deliverer.close()
    for o in outcomes:
        print(format_outcome(o), file=out)
    failed = sum(o.result != "sent" for o in outcomes)
    print(f"{len(outcomes) - failed} delivered, {failed} failed", file=out)
    return 1 if failed else 0


def run_notify_test(config_path: Path) -> int:
    """The command: load the config (exit 2 on problems), then :func:`notify_test`."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    return asyncio.run(notify_test(config))
