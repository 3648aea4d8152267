"""What ``/metrics`` reads of the accounts (riskwatch/daemon/views.py): each account's
view is built as the scrape reaches it, of the accounts configured when it started."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from riskwatch.clock import ManualClock
from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.daemon.views import Views
from riskwatch.pipeline import AccountCore
from tests.support.factories import balance_update

T0 = 1_767_225_600.0


def runtime(name: str) -> AccountRuntime:
    core = AccountCore(name, stale_after=5.0)
    core.handle([balance_update(10_000.0, at=T0)], T0)
    return AccountRuntime(config=cast(Any, None), core=core, link=cast(Any, None))


def views(accounts: dict[str, AccountRuntime]) -> Views:
    none = cast(Any, None)
    return Views(none, accounts, none, none, ManualClock(T0 + 1), None, lambda: None, lambda: None)


def test_a_reload_during_a_scrape_neither_breaks_it_nor_changes_its_accounts() -> None:
    """Accounts added or removed between two pieces of a scrape (a reload) leave the
    scrape's list of accounts as it was when it started; each view is built when read,
    with the figures of that moment."""
    accounts = {name: runtime(name) for name in ("a", "b", "c")}
    v = views(accounts)
    scrape = iter(v.scrape().accounts)
    alerts = iter(v.alert_gauges())
    links = iter(v.link_views())
    assert next(scrape).account == "a"
    assert next(alerts).account == "a"
    assert next(links).account == "a"
    b = accounts.pop("b")
    accounts["d"] = runtime("d")
    b.core.handle([balance_update(12_000.0, at=T0 + 1)], T0 + 1)
    rest = list(scrape)
    assert [view.account for view in rest] == ["b", "c"]
    figures = rest[0].figures
    assert figures is not None
    assert figures.account["equity"] == 12_000.0
    assert [g.account for g in alerts] == ["b", "c"]
    rest_links = list(links)
    assert [view.account for view in rest_links] == ["b", "c"]
    balance = rest_links[0].balance
    assert balance is not None
    assert balance.received_at == T0 + 1


class Reasons:
    """A readiness source whose reasons the test sets."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def readiness_reasons(self) -> list[str]:
        return list(self.reasons)


def test_readiness_lists_the_reasons_of_every_source_after_the_accounts() -> None:
    """The state database, the event loop and the lease each make the daemon unready on
    their own, and ``/readyz`` lists every reason, the accounts' first."""
    health, loop_lag, leadership = Reasons(), Reasons(), Reasons()
    accounts = {"a": runtime("a")}
    accounts["a"].link = cast(Any, SimpleNamespace(expiry_state="valid"))
    none = cast(Any, None)
    v = Views(
        none, accounts, none, none, ManualClock(T0 + 1), None, lambda: None, lambda: None,
        health=cast(Any, health), loop_lag=cast(Any, loop_lag),
        leadership=cast(Any, leadership),
    )  # fmt: skip
    assert v.readiness() == (False, ["account a: not connected"])
    accounts.clear()
    assert v.readiness() == (True, [])
    loop_lag.reasons = ["event loop lagging"]
    assert v.readiness() == (False, ["event loop lagging"])
    health.reasons = ["state database cannot be written: disk full"]
    leadership.reasons = ["ha lease: lease service failing"]
    assert v.readiness() == (
        False,
        [
            "state database cannot be written: disk full",
            "event loop lagging",
            "ha lease: lease service failing",
        ],
    )
    health.reasons = loop_lag.reasons = leadership.reasons = []
    assert v.readiness() == (True, [])
