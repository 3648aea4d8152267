"""A ``console://`` apprise target that prints notifications to the terminal.

Importing this module registers the scheme with apprise (its ``@notify`` decorator);
the demo routes notifications to ``console://``. Output goes to ``sys.stdout`` at call
time, so a caller may redirect it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from apprise.decorators import notify

__all__ = ["SCHEME", "console_notify", "set_sink"]

SCHEME = "console"

_sink: Callable[[str, str], None] | None = None


def set_sink(sink: Callable[[str, str], None] | None) -> None:
    """Send ``console://`` notifications to ``sink(title, body)`` instead of stdout
    (the demo's live view shows them in its own panel); None restores stdout."""
    global _sink
    _sink = sink


@notify(on=SCHEME, name="riskwatch console")  # type: ignore[untyped-decorator,no-untyped-call]
def console_notify(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
    """Print one notification as a framed block; always succeeds."""
    if _sink is not None:
        _sink(title, body)
        return True
    bar = "=" * min(78, max(20, len(title)))
    sys.stdout.write(f"\n{bar}\n{title}\n{bar}\n{body}\n\n")
    sys.stdout.flush()
    return True
