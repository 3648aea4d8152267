"""One watched account inside the daemon: its pure core, its connection, its link status."""

from __future__ import annotations

from dataclasses import dataclass

from riskwatch.config import AccountConfig, Config
from riskwatch.pipeline import AccountCore
from riskwatch.qfex.client import ConnectionStatus, TradeConnection
from riskwatch.qfex.link import AccountLink
from riskwatch.qfex.session import TradeSession
from riskwatch.rules.model import RuleSet

__all__ = ["AccountRuntime", "build_accounts", "session_for"]


@dataclass(slots=True)
class AccountRuntime:
    """One account inside the daemon: its core, its connection and its link status."""

    config: AccountConfig
    core: AccountCore
    link: AccountLink
    connection: TradeConnection | None = None
    status: ConnectionStatus | None = None
    reconnects_seen: int = 0
    symbols_watched: int = 0

    @property
    def connected(self) -> bool:
        """Socket open and authenticated (what ``riskwatch_connected`` exports)."""
        return self.status is not None and self.status.connected and self.status.authenticated


def build_accounts(config: Config, rules: RuleSet) -> dict[str, AccountRuntime]:
    """One runtime per configured account, in config order, each with a fresh core whose
    ``stale_after`` starts at the link's (it then follows the measured pulse cadence)."""
    out: dict[str, AccountRuntime] = {}
    for acc in config.accounts:
        link = AccountLink(acc, config.exchange)
        core = AccountCore(
            acc.name, stale_after=link.cadence.stale_after, rules=rules, daily=config.daily
        )
        out[acc.name] = AccountRuntime(config=acc, core=core, link=link)
    return out


def session_for(rt: AccountRuntime) -> TradeSession:
    """A fresh sans-I/O trade session with the account's current credentials."""
    return rt.link.session()
