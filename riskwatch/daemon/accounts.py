"""One watched account inside the daemon: its pure core, its connection, its link status."""

from __future__ import annotations

from dataclasses import dataclass

from riskwatch.config import AccountConfig, Config
from riskwatch.pipeline import AccountCore
from riskwatch.qfex.client import ConnectionStatus, TradeConnection
from riskwatch.qfex.session import TradeSession
from riskwatch.rules.model import RuleSet

__all__ = ["AccountRuntime", "build_accounts", "session_for"]


@dataclass(slots=True)
class AccountRuntime:
    """One account inside the daemon: its core, its connection and its link status."""

    config: AccountConfig
    core: AccountCore
    connection: TradeConnection | None = None
    status: ConnectionStatus | None = None
    reconnects_seen: int = 0
    symbols_watched: int = 0

    @property
    def connected(self) -> bool:
        """Socket open and authenticated (what ``riskwatch_connected`` exports)."""
        return self.status is not None and self.status.connected and self.status.authenticated


def build_accounts(config: Config, rules: RuleSet) -> dict[str, AccountRuntime]:
    """One runtime per configured account, in config order, each with a fresh core."""
    stale_after = config.exchange.stale_after.seconds
    return {
        acc.name: AccountRuntime(
            config=acc,
            core=AccountCore(acc.name, stale_after=stale_after, rules=rules, daily=config.daily),
        )
        for acc in config.accounts
    }


def session_for(acc: AccountConfig) -> TradeSession:
    """A fresh sans-I/O trade session with ``acc``'s credentials (one per connection)."""
    return TradeSession(
        public_key=acc.public_key if acc.jwt is None else None,
        secret_key=acc.secret_key.reveal() if acc.secret_key is not None else None,
        jwt=acc.jwt.reveal() if acc.jwt is not None else None,
        account_id=acc.account_id,
    )
