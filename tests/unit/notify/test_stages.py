"""Pure notification stages: routes, silences, inhibition, dedup, render and the dispatcher."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from riskwatch.config import NotificationsConfig, RouteConfig
from riskwatch.durations import Duration
from riskwatch.notify.dedup import GroupView, LastSent, NotifyReason, needs_notify
from riskwatch.notify.dispatch import Dispatcher, fingerprint
from riskwatch.notify.inhibit import InhibitPolicy, family_of, inhibited
from riskwatch.notify.notice import ActionNotice, alert_labels
from riskwatch.notify.routes import build_routes, group_key, match_routes
from riskwatch.notify.silences import parse_matcher, parse_silence, silenced_by
from riskwatch.records import Silence
from tests.support.factories import T0, alert_notice, route_config


def silence(matchers: list[dict[str, str]], start: float, end: float, sid: str = "s1") -> Silence:
    return Silence(sid, tuple(matchers), start, end, "ops", "maintenance", start, None)


# ---------------------------------------------------------------- routes


def test_routes_first_match_wins_without_continue() -> None:
    """Only the first matching route is used when it does not continue."""
    routes = build_routes(
        NotificationsConfig(
            routes=(
                route_config(["json://a"], match={"severity": "critical"}),
                route_config(["json://b"], match_re={"rule": "Margin.*"}),
                route_config(["json://c"]),
            )
        )
    )
    crit = alert_labels("MarginUsageCritical", "desk-a", None, "critical")
    warn = alert_labels("MarginUsageHigh", "desk-a", None, "warning")
    other = alert_labels("DailyLoss", "desk-a", None, "warning")
    assert [r.name for r in match_routes(routes, crit)] == ["0"]
    assert [r.name for r in match_routes(routes, warn)] == ["1"]
    assert [r.name for r in match_routes(routes, other)] == ["2"]


def test_routes_continue_goes_on_to_later_routes() -> None:
    """A matching route with continue lets the next matching routes apply too."""
    routes = build_routes(
        NotificationsConfig(
            routes=(
                route_config(["json://a"], match={"severity": "critical"}, continue_=True),
                route_config(["json://b"], match={"desk": "a"}),
                route_config(["json://c"]),
            )
        )
    )
    crit = alert_labels("X", "desk-a", None, "critical", {"desk": "a"})
    assert [r.name for r in match_routes(routes, crit)] == ["0", "1"]
    crit_nodesk = alert_labels("X", "desk-a", None, "critical")
    assert [r.name for r in match_routes(routes, crit_nodesk)] == ["0", "2"]


def test_group_key_defaults_to_rule_and_account() -> None:
    """Without group_by, symbols of one rule on one account share a group."""
    (r,) = build_routes(NotificationsConfig(routes=(route_config(["json://a"]),)))
    a = alert_labels("Lev", "desk-a", "BTC-USD", "warning")
    b = alert_labels("Lev", "desk-a", "ETH-USD", "warning")
    assert group_key(r, a) == group_key(r, b) == "rule=Lev,account=desk-a"


# ---------------------------------------------------------------- silences


@pytest.mark.parametrize(
    ("text", "labels", "holds"),
    [
        ("severity=warning", {"severity": "warning"}, True),
        ("severity!=warning", {"severity": "warning"}, False),
        ("rule=~Margin.*", {"rule": "MarginUsageHigh"}, True),
        ("rule=~Margin", {"rule": "MarginUsageHigh"}, False),
        ("rule!~Margin.*", {"rule": "DailyLoss"}, True),
        ("symbol=", {}, True),
    ],
)
def test_matcher_ops(text: str, labels: dict[str, str], holds: bool) -> None:
    """Each operator matches whole label values, a missing label being empty."""
    assert parse_matcher(text).holds(labels) is holds


def test_silence_applies_only_while_active() -> None:
    """A silence mutes matching alerts between its start and end, then expires on its own."""
    s = silence([{"name": "account", "op": "=", "value": "desk-a"}], T0, T0 + 60)
    from riskwatch.notify.silences import matchers_of

    pairs = [(s, matchers_of(s.matchers))]
    labels = alert_labels("R", "desk-a", None, "warning")
    assert silenced_by(pairs, labels, T0 - 1) is None
    assert silenced_by(pairs, labels, T0 + 30) == "s1"
    assert silenced_by(pairs, labels, T0 + 60) is None
    assert silenced_by(pairs, alert_labels("R", "desk-b", None, "warning"), T0 + 30) is None


def test_parse_silence_validates() -> None:
    """Bad silences are refused with a message naming the field; good ones parse."""
    req = parse_silence(
        {
            "matchers": ["rule=~Margin.*", {"name": "account", "value": "desk-a"}],
            "duration": 3600,
            "created_by": "ops",
            "comment": "deploy",
        },
        T0,
    )
    assert [m.op for m in req.matchers] == ["=~", "="]
    assert req.ends_at == T0 + 3600
    with pytest.raises(ValueError, match="matchers"):
        parse_silence({"matchers": [], "duration": 60, "created_by": "x"}, T0)
    with pytest.raises(ValueError, match="invalid regex"):
        parse_silence({"matchers": ["rule=~("], "duration": 60, "created_by": "x"}, T0)
    with pytest.raises(ValueError, match="ends_at"):
        parse_silence({"matchers": ["a=b"], "ends_at": T0 - 1, "created_by": "x"}, T0)
    with pytest.raises(ValueError, match="author"):
        parse_silence({"matchers": ["a=b"], "duration": 60}, T0)


# ---------------------------------------------------------------- inhibition


def test_family_from_label_or_name_suffix() -> None:
    """A family label wins; otherwise a trailing severity word is stripped."""
    assert family_of({"rule": "MarginUsageHigh"}) == "MarginUsage"
    assert family_of({"rule": "MarginUsageCritical"}) == "MarginUsage"
    assert family_of({"rule": "margin_usage_warning"}) == "margin_usage"
    assert family_of({"rule": "DailyLoss"}) == "DailyLoss"
    assert family_of({"rule": "A", "family": "margin"}) == "margin"


def test_critical_inhibits_warning_of_same_account_and_family() -> None:
    """Only same-account, same-family warnings are inhibited, and only by criticals."""
    crit = alert_labels("MarginUsageCritical", "desk-a", None, "critical")
    warn = alert_labels("MarginUsageHigh", "desk-a", None, "warning")
    assert inhibited(warn, [crit])
    assert not inhibited(alert_labels("MarginUsageHigh", "desk-b", None, "warning"), [crit])
    assert not inhibited(alert_labels("DailyLoss", "desk-a", None, "warning"), [crit])
    assert not inhibited(crit, [crit])
    assert not inhibited(warn, [warn])
    assert not inhibited(warn, [crit], InhibitPolicy(enabled=False))


# ---------------------------------------------------------------- dedup


def test_needs_notify_reasons() -> None:
    """first, changed, repeat only after repeat_interval, resolved, none."""
    fp = GroupView("abc")
    assert needs_notify(None, fp, 300, True, T0) is NotifyReason.FIRST
    last = LastSent(T0, "firing", "abc")
    assert needs_notify(last, fp, 300, True, T0 + 299.9) is NotifyReason.NONE
    assert needs_notify(last, fp, 300, True, T0 + 300) is NotifyReason.REPEAT
    assert needs_notify(last, GroupView("def"), 300, True, T0 + 1) is NotifyReason.CHANGED
    assert (
        needs_notify(last, GroupView("", resolved=True), 300, True, T0 + 1) is NotifyReason.RESOLVED
    )
    assert needs_notify(last, GroupView("", resolved=True), 300, False, T0 + 1) is NotifyReason.NONE
    assert needs_notify(last, GroupView(""), 300, True, T0 + 1) is NotifyReason.NONE
    done = LastSent(T0, "resolved", "")
    assert needs_notify(done, fp, 300, True, T0 + 1) is NotifyReason.FIRST
    assert needs_notify(done, GroupView("", resolved=True), 300, True, T0 + 1) is NotifyReason.NONE


# ---------------------------------------------------------------- dispatcher


def dispatcher(*routes: RouteConfig, **kw: object) -> Dispatcher:
    return Dispatcher(build_routes(NotificationsConfig(routes=routes)), **kw)  # type: ignore[arg-type]


def test_grouped_symbols_make_one_message_then_repeat_then_resolve() -> None:
    """Ten symbols in one pulse make one message; repeat after the interval; one RESOLVED."""
    d = dispatcher(route_config(["json://a"], repeat_interval=Duration(60_000)))
    for i in range(10):
        d.alert(alert_notice("LeverageCap", symbol=f"S{i}-USD", severity="warning"), T0)
    out, muted = d.flush(T0)
    assert len(out) == 1
    assert not muted
    assert out[0].message.title == "[WARNING] LeverageCap on desk-a (10 symbols)"
    assert out[0].message.body.count("- [warning] LeverageCap") == 10
    assert d.flush(T0 + 59)[0] == []
    again = d.flush(T0 + 60)[0]
    assert [o.reason for o in again] == ["repeat"]
    for i in range(10):
        d.alert(
            alert_notice("LeverageCap", symbol=f"S{i}-USD", status="resolved", at=T0 + 70), T0 + 70
        )
    (res,) = d.flush(T0 + 70)[0]
    assert res.reason == "resolved"
    assert res.message.title.startswith("[RESOLVED]")
    assert d.flush(T0 + 500)[0] == []


def test_group_wait_delays_the_first_message() -> None:
    """A new group waits group_wait, collecting what arrives meanwhile."""
    d = dispatcher(route_config(["json://a"], group_wait=Duration(5_000)))
    d.alert(alert_notice("Lev", symbol="A"), T0)
    assert d.flush(T0 + 1)[0] == []
    assert d.next_due(T0 + 1) == T0 + 5
    d.alert(alert_notice("Lev", symbol="B"), T0 + 2)
    (out,) = d.flush(T0 + 5)[0]
    assert "(2 symbols)" in out.message.title


def test_new_trip_is_news_even_without_resolution() -> None:
    """A new trip of the same alert changes the fingerprint and is sent at once."""
    d = dispatcher(route_config(["json://a"], send_resolved=False))
    d.alert(alert_notice(), T0)
    assert len(d.flush(T0)[0]) == 1
    d.alert(alert_notice(status="resolved", at=T0 + 5), T0 + 5)
    assert d.flush(T0 + 5)[0] == []
    d.alert(alert_notice(trip_id=2, at=T0 + 6), T0 + 6)
    assert [o.reason for o in d.flush(T0 + 6)[0]] == ["first"]


def test_silenced_alert_is_counted_not_sent_and_unmuted_when_silence_ends() -> None:
    """A silenced alert yields a mute (once) and no message until the silence expires."""
    d = dispatcher(route_config(["json://a"]))
    d.set_silences([silence([{"name": "rule", "op": "=~", "value": "Margin.*"}], T0, T0 + 30)])
    d.alert(alert_notice(), T0)
    out, muted = d.flush(T0)
    assert out == []
    assert [(m.route, m.result, m.by) for m in muted] == [("0", "silenced", "s1")]
    assert d.flush(T0 + 1) == ([], [])
    assert d.mute_of(alert_notice().all_labels, T0 + 1) == ("silenced", "s1")
    out, _ = d.flush(T0 + 30)
    assert [o.reason for o in out] == ["first"]


def test_inhibited_warning_is_not_sent_while_critical_fires() -> None:
    """The warning of the same family is inhibited while the critical fires, then sent."""
    d = dispatcher(route_config(["json://a"]))
    d.alert(alert_notice("MarginUsageCritical", severity="critical"), T0)
    d.alert(alert_notice("MarginUsageHigh", severity="warning"), T0)
    out, muted = d.flush(T0)
    assert [o.message.title for o in out] == ["[CRITICAL] MarginUsageCritical on desk-a"]
    assert [m.result for m in muted] == ["inhibited"]
    d.alert(alert_notice("MarginUsageCritical", severity="critical", status="resolved"), T0 + 5)
    titles = sorted(o.message.title for o in d.flush(T0 + 5)[0])
    assert titles == [
        "[RESOLVED] [critical] MarginUsageCritical on desk-a",
        "[WARNING] MarginUsageHigh on desk-a",
    ]


def test_shadow_alerts_never_notify() -> None:
    """Shadow-mode alerts produce no message."""
    d = dispatcher(route_config(["json://a"]))
    d.alert(alert_notice(shadow=True), T0)
    assert d.flush(T0) == ([], [])


def test_dry_run_action_joins_the_alert_message() -> None:
    """An action outcome in the same batch is told in the alert's message as "would have"."""
    d = dispatcher(route_config(["json://a"]), external_url="https://rw.example/")
    d.alert(alert_notice("DailyLoss", severity="critical"), T0)
    d.action(ActionNotice("dry_run", "DailyLoss", "desk-a", "cancel_all_orders", T0, trip_id=1))
    (out,) = d.flush(T0)[0]
    assert "Actions: would have cancel_all_orders" in out.message.body
    assert "Status: https://rw.example/#account-desk-a" in out.message.body


def test_escalation_bypasses_silence_and_unmatched_routes() -> None:
    """A FAILED escalation is sent even when silenced and when no route matches it."""
    d = dispatcher(
        route_config(["json://a"], match={"severity": "info"}),
        route_config(["json://b"], match={"x": "y"}),
    )
    d.set_silences([silence([{"name": "account", "op": "=", "value": "desk-a"}], T0, T0 + 99)])
    d.action(
        ActionNotice("failed", "DailyLoss", "desk-a", "close_position all", T0, detail="rejected")
    )
    d.action(ActionNotice("dry_run", "DailyLoss", "desk-a", "cancel_all_orders", T0))
    out, muted = d.flush(T0)
    assert {o.route for o in out} == {"0", "1"}
    assert all("FAILED close_position all" in o.message.title for o in out)
    assert "rejected" in out[0].message.body
    assert muted == []  # the dry run matched no route: nothing to mute or send


def test_restored_state_prevents_a_storm_after_restart() -> None:
    """A group restored from the log with the same fingerprint is not re-sent early."""
    n = alert_notice()
    fp = fingerprint([n])
    d = dispatcher(
        route_config(["json://a"], repeat_interval=Duration(600_000)),
        restored={("0", "rule=MarginUsageHigh,account=desk-a"): LastSent(T0 - 10, "firing", fp)},
    )
    d.sync("desk-a", [n], T0)
    assert d.flush(T0)[0] == []
    assert [o.reason for o in d.flush(T0 + 590)[0]] == ["repeat"]
    d.sync("desk-a", [], T0 + 600)
    assert [o.reason for o in d.flush(T0 + 600)[0]] == ["resolved"]


# ---------------------------------------------------------------- engine adapter


def transition(reason: str, prev: int, state: int, **kw: object) -> object:
    from riskwatch.rules.engine import AlertTransition
    from riskwatch.rules.lifecycle import State, TransitionReason

    base: dict[str, object] = {
        "rule": "DailyLoss",
        "account": "desk-a",
        "symbol": None,
        "reason": TransitionReason(reason),
        "prev": State(prev),
        "state": State(state),
        "at": T0,
        "trip_id": 3,
        "severity": "critical",
        "labels": MappingProxyType({"desk": "a"}),
        "summary": "pnl today -6,000",
        "description": "",
        "values": MappingProxyType({}),
        "shadow": False,
        "latched": False,
        "record": MappingProxyType({}),
    }
    base.update(kw)
    return AlertTransition(**base)  # type: ignore[arg-type]


def test_engine_transitions_adapt_to_notices() -> None:
    """Firing and resolved transitions become notices; pending ones and latched do not."""
    from riskwatch.notify.notice import from_transition

    fired = from_transition(transition("firing", 1, 2))  # type: ignore[arg-type]
    assert fired is not None
    assert (fired.status, fired.trip_id, fired.all_labels["desk"]) == ("firing", 3, "a")
    assert fired.all_labels["symbol"] == ""
    resolved = from_transition(transition("resolved", 2, 0))  # type: ignore[arg-type]
    assert resolved is not None
    assert resolved.status == "resolved"
    reset = from_transition(transition("latch_reset", 2, 0))  # type: ignore[arg-type]
    assert reset is not None
    assert reset.status == "resolved"
    assert from_transition(transition("pending", 0, 1)) is None  # type: ignore[arg-type]
    assert from_transition(transition("latched", 2, 2)) is None  # type: ignore[arg-type]
    shadow = from_transition(transition("firing", 1, 2, shadow=True))  # type: ignore[arg-type]
    d = dispatcher(route_config(["json://a"]))
    assert shadow is not None
    d.alert(shadow, T0)
    assert d.flush(T0) == ([], [])


def test_changes_wait_for_group_interval_and_big_groups_are_capped() -> None:
    """After a group's first message, changes wait group_interval; long lists are cut."""
    d = dispatcher(route_config(["json://a"]), group_interval=30.0)
    for i in range(60):
        d.alert(alert_notice("Lev", symbol=f"S{i:02d}"), T0)
    (first,) = d.flush(T0)[0]
    assert "- … and 10 more" in first.message.body
    d.alert(alert_notice("Lev", symbol="S99"), T0 + 1)
    assert d.flush(T0 + 29)[0] == []
    (changed,) = d.flush(T0 + 30)[0]
    assert changed.reason == "changed"
    assert "(61 symbols)" in changed.message.title
