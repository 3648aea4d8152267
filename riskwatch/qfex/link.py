"""One account's link to the trade gateway, as the daemon configures it.

Gathers what is per account and survives reconnects: the URL and upgrade
credentials (docs/protocol.md §1), the JWT source and its expiry (§2.1), the measured
pulse cadence and the staleness threshold it implies (§4.2). The daemon hands
:meth:`AccountLink.session`, :meth:`AccountLink.handshake` and
:meth:`AccountLink.prepare` to its :class:`~riskwatch.qfex.client.TradeConnection`,
feeds :meth:`AccountLink.observe` with every frame's events, and exports
:class:`LinkCollector` on ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, Literal

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from riskwatch.config import AccountConfig, ExchangeConfig
from riskwatch.metrics import OwnedGauges, OwnedSeries
from riskwatch.model import BalanceUpdate, Event, OtherReply
from riskwatch.qfex import commands
from riskwatch.qfex.cadence import PulseCadence
from riskwatch.qfex.client import ConnectionStatus
from riskwatch.qfex.credentials import TokenSource
from riskwatch.qfex.session import DEFAULT_CHANNELS, DEFAULT_PENDING_TIMEOUT, TradeSession
from riskwatch.qfex.upgrade import Handshake, handshake
from riskwatch.refdata.model import LeverageLevel, parse_leverage_levels

__all__ = ["JWT_WARN_BEFORE", "AccountLink", "LinkCollector", "LinkView"]

JWT_WARN_BEFORE: Final = 600.0
"""Seconds before a JWT's ``exp`` at which riskwatch warns that it is about to expire."""

ExpiryState = Literal["ok", "expiring", "expired"]


class AccountLink:
    """The per-account connection settings and link figures (see the module docstring)."""

    def __init__(self, account: AccountConfig, exchange: ExchangeConfig) -> None:
        self.account = account
        self.url = account.url or exchange.url
        self.upgrade_auth = exchange.upgrade_auth
        self.tokens: TokenSource | None = None
        if account.jwt is not None or account.jwt_file is not None or account.jwt_command:
            self.tokens = TokenSource(
                token=account.jwt, path=account.jwt_file, command=account.jwt_command
            )
        pinned = exchange.stale_after.seconds if exchange.stale_after is not None else None
        self.cadence = PulseCadence(
            pulses=exchange.stale_after_pulses,
            initial=exchange.initial_stale_after(),
            pinned=pinned,
        )
        self.expiry_state: ExpiryState = "ok"
        self.subscribe_timeout = DEFAULT_PENDING_TIMEOUT
        self.on_levels: Callable[[dict[str, tuple[LeverageLevel, ...]]], None] | None = None
        """Called with the leverage levels each connection learns (docs/protocol.md §11)."""
        """Seconds a subscription may stay unconfirmed before it is sent again."""

    def _jwt(self) -> str | None:
        if self.tokens is None:
            return None
        token = self.tokens.token
        if token is None:
            msg = f"account {self.account.name!r}: no JWT obtained yet"
            raise ConnectionError(msg)
        return token.reveal()

    async def prepare(self) -> None:
        """Before each connection attempt: fetch the JWT again (file or command)."""
        if self.tokens is not None:
            await self.tokens.refresh()

    def session(self) -> TradeSession:
        """A fresh session with the current credentials."""
        acc = self.account
        jwt = self._jwt()
        return TradeSession(
            public_key=acc.public_key if jwt is None else None,
            secret_key=acc.secret_key.reveal() if acc.secret_key is not None else None,
            jwt=jwt,
            account_id=acc.account_id,
            subscribe_timeout=self.subscribe_timeout,
        )

    def handshake(self, now: float) -> Handshake:
        """The upgrade request of one connection attempt (fresh nonce each time)."""
        acc = self.account
        jwt = self._jwt()
        return handshake(
            self.url,
            mode=self.upgrade_auth,
            now=now,
            public_key=acc.public_key,
            secret_key=acc.secret_key.reveal() if acc.secret_key is not None else None,
            jwt=jwt,
        )

    def on_live(self) -> list[str]:
        """Frames to send once per connection when commands are allowed: ask for the
        symbols' leverage levels (``set_leverage`` snaps to one)."""
        return [commands.get_available_leverage_levels()]

    def observe(self, events: Sequence[Event], now: float) -> None:
        """Feed one frame's events: a balance pulse times the cadence; a leverage-levels
        reply goes to :attr:`on_levels`."""
        for ev in events:
            if isinstance(ev, BalanceUpdate):
                self.cadence.observe(now)
            elif (
                isinstance(ev, OtherReply)
                and ev.name == "available_leverage_levels_response"
                and self.on_levels is not None
            ):
                self.on_levels(parse_leverage_levels(ev.payload))

    @property
    def jwt_expires_at(self) -> float | None:
        """The current JWT's ``exp`` (Unix seconds), if any."""
        return self.tokens.expires_at if self.tokens is not None else None

    def check_expiry(self, now: float) -> ExpiryState | None:
        """Return the JWT's new expiry state when it changed since the last call."""
        exp = self.jwt_expires_at
        if exp is None:
            state: ExpiryState = "ok"
        elif now >= exp:
            state = "expired"
        elif now >= exp - JWT_WARN_BEFORE:
            state = "expiring"
        else:
            state = "ok"
        if state == self.expiry_state:
            return None
        self.expiry_state = state
        return state


@dataclass(frozen=True, slots=True)
class LinkView:
    """What :class:`LinkCollector` reads of one account at scrape time."""

    account: str
    link: AccountLink
    status: ConnectionStatus | None
    balance: BalanceUpdate | None = None


_LINK_FAMILIES: Final = (
    (
        "riskwatch_pulse_interval_seconds",
        "Measured interval between balance pulses (median of the last ones).",
        ("account",),
    ),
    (
        "riskwatch_stale_after_seconds",
        "Seconds without a pulse after which the account's data counts as stale.",
        ("account",),
    ),
    (
        "riskwatch_subscription_unconfirmed",
        "1 while a channel's subscription is neither confirmed nor seen in data.",
        ("account", "channel"),
    ),
    (
        "riskwatch_resubscribes",
        "Subscribe frames sent again on the current connection for want of a reply.",
        ("account",),
    ),
    (
        "riskwatch_jwt_expiry_timestamp_seconds",
        "Unix time at which the account's JWT expires (its exp claim).",
        ("account",),
    ),
    (
        "riskwatch_jwt_refresh_failures",
        "Failed attempts to read jwt_file or run jwt_command since start.",
        ("account",),
    ),
    (
        "riskwatch_available_balance_drift_usd",
        "At the last balance pulse: equity by riskwatch's formula (fees included) minus "
        "margins minus the exchange's available_balance; 0 when they agree.",
        ("account",),
    ),
)
_INTERVAL, _STALE, _UNCONFIRMED, _RESUBSCRIBES, _EXPIRY, _REFRESH_FAILED, _DRIFT = range(7)

_LinkValues = tuple[
    float | None, float, tuple[bool, ...], int, bool, float | None, int, float | None
]
"""What one account's link gauges show (the key of its cached lines)."""


def _link_values(view: LinkView) -> _LinkValues:
    link, st = view.link, view.status
    late = st.unconfirmed_channels if st is not None else ()
    tokens = link.tokens
    return (
        link.cadence.interval,
        link.cadence.stale_after,
        tuple(channel in late for channel in DEFAULT_CHANNELS),
        st.resubscribes if st is not None else 0,
        tokens is not None,
        link.jwt_expires_at if tokens is not None else None,
        tokens.failures if tokens is not None else 0,
        view.balance.available_drift if view.balance is not None else None,
    )


def _link_series(name: str, values: _LinkValues) -> Iterator[OwnedSeries]:
    interval, stale_after, late, resubscribes, has_tokens, exp, failures, drift = values
    if interval is not None:
        yield _INTERVAL, (name,), interval
    yield _STALE, (name,), stale_after
    for channel, unconfirmed in zip(DEFAULT_CHANNELS, late, strict=True):
        yield _UNCONFIRMED, (name, channel), 1.0 if unconfirmed else 0.0
    yield _RESUBSCRIBES, (name,), float(resubscribes)
    if has_tokens:
        if exp is not None:
            yield _EXPIRY, (name,), exp
        yield _REFRESH_FAILED, (name,), float(failures)
    if drift is not None:
        yield _DRIFT, (name,), drift


class LinkCollector(Collector):
    """Per-account link gauges, read at scrape time from ``provider``.

    An account's lines are rendered again only when one of its values moved
    (:class:`~riskwatch.metrics.OwnedGauges`)."""

    def __init__(self, provider: Callable[[], Iterable[LinkView]]) -> None:
        self._provider = provider
        self._gauges = OwnedGauges(_LINK_FAMILIES)

    def _owners(self) -> Iterator[tuple[str, object, Callable[[], Iterable[OwnedSeries]]]]:
        for view in self._provider():
            values = _link_values(view)
            yield view.account, values, partial(_link_series, view.account, values)

    def render_chunks(self) -> Iterator[str]:
        """The gauges as text-format lines, in pieces (``metrics.exposition_chunks``)."""
        return self._gauges.render(self._owners())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges of every account (see each family's help)."""
        yield from self._gauges.build(series() for _, _, series in self._owners())
