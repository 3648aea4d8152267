"""What the HTTP layer may ask of the running daemon: one read view, one command interface.

The web package never imports the daemon: the daemon implements these protocols
(``riskwatch/daemon/views.py``, ``riskwatch/daemon/commands.py``) and hands them to
:func:`riskwatch.web.routes.build_app`. Reads return JSON-able documents built from
the daemon's published state; every mutation is one explicit command. Neither ever
returns a secret.
"""

from __future__ import annotations

from typing import Any, Protocol

from riskwatch.errors import RiskwatchError
from riskwatch.rules.model import RuleSet

__all__ = ["CommandRefused", "DaemonCommands", "DaemonView"]


class CommandRefused(RiskwatchError):
    """A command the daemon will not carry out; ``status`` is the HTTP answer (400, 409…)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DaemonView(Protocol):
    """Read-only view of the running daemon."""

    def now(self) -> float:
        """The daemon's clock (Unix seconds)."""
        ...

    def state_document(self) -> dict[str, Any]:
        """``/api/state``: accounts, positions, derived figures; never a secret."""
        ...

    def alerts_document(self) -> dict[str, Any]:
        """``/api/alerts``: every pending and firing alert (and latched ones)."""
        ...

    def readiness(self) -> tuple[bool, list[str]]:
        """Whether every account is connected, authenticated and fresh, and why not."""
        ...

    def actions_document(self, limit: int, account: str | None) -> dict[str, Any]:
        """``/api/actions``: the executor's status and the audit log, newest first."""
        ...

    def recent_notifications(self, limit: int) -> list[dict[str, Any]]:
        """The notification log's latest rows, newest first (empty without a store)."""
        ...

    def rules(self) -> RuleSet:
        """The rules in force (the status page draws their thresholds)."""
        ...

    def last_reload(self) -> dict[str, Any] | None:
        """The latest configuration reload's outcome, or None before the first."""
        ...

    async def silences(self, *, active_only: bool) -> list[dict[str, Any]]:
        """Every kept silence (or only those active now), as JSON-able dicts."""
        ...


class DaemonCommands(Protocol):
    """The operator's commands. Each raises :class:`CommandRefused` when it cannot apply."""

    def arm(self, actor: str) -> dict[str, Any]:
        """Arm protective actions and clear a remote disarm; returns the actions status."""
        ...

    def disarm(self, actor: str) -> dict[str, Any]:
        """Engage the kill switch; returns the actions status."""
        ...

    async def reload(self, trigger: str) -> tuple[bool, dict[str, Any]]:
        """Reload rules and routes now; ``(applied, outcome document)``."""
        ...

    def reset_latches(
        self, account: str, rule: str | None, symbol: str | None, actor: str
    ) -> list[dict[str, Any]]:
        """Reset latched alerts of ``account`` (all, one rule, one symbol); the reset ones."""
        ...

    async def add_silence(self, doc: Any) -> dict[str, Any]:
        """Create a silence from a ``POST /api/silences`` body; returns it."""
        ...

    async def expire_silence(self, silence_id: str) -> dict[str, Any] | None:
        """Expire a silence now; returns it, or None when there is no such silence."""
        ...
