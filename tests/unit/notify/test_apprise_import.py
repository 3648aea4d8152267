"""apprise is imported only when a target needs it (riskwatch/notify/deliver.py): the
daemon, the command line and the notification service load without it, and the first
apprise target loads it with riskwatch's ``console://`` registered."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_the_daemon_loads_without_apprise() -> None:
    out = _run(
        """
        import sys
        import riskwatch.cli.main, riskwatch.daemon.app, riskwatch.daemon.serve
        import riskwatch.notify.service
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("apprise", "requests")))
        """
    )
    assert out == "[]"


def test_the_first_apprise_target_loads_it_with_console_registered() -> None:
    out = _run(
        """
        import sys
        from riskwatch.notify.deliver import _Target
        from riskwatch.secret import Secret
        console = _Target(Secret("console://"), 5.0, None)
        webhook = _Target(Secret("json://127.0.0.1:9/hook"), 5.0, None)
        bogus = _Target(Secret("nosuchscheme://x"), 5.0, None)
        print("apprise" in sys.modules, console.error, webhook.error, bogus.error)
        """
    )
    assert out == "True None None url not understood by apprise"
