"""The Alertmanager book (what to post, when) and ``alertmanager://`` URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskwatch.alertmanager_target import is_alertmanager, parse_target
from riskwatch.config import load_config
from riskwatch.errors import ConfigError
from riskwatch.notify.alertmanager import AlertmanagerBook, rfc3339
from riskwatch.notify.notice import ActionNotice, AlertNotice

T0 = 1_700_000_000.0


def firing(rule: str = "LossFlatten", symbol: str | None = None, at: float = T0) -> AlertNotice:
    return AlertNotice(
        rule=rule,
        account="desk-a",
        symbol=symbol,
        status="firing",
        severity="critical",
        at=at,
        trip_id=3,
        summary="flatten desk-a",
        description="loss beyond limit",
        labels={"team": "risk"},
    )


def resolved(n: AlertNotice, at: float) -> AlertNotice:
    return AlertNotice(
        n.rule, n.account, n.symbol, "resolved", n.severity, at, n.trip_id, labels=n.labels
    )


def test_firing_alert_labels_annotations_and_ends_at() -> None:
    book = AlertmanagerBook(resend=60, external_url="https://risk.example/")
    book.alert(firing(symbol="AAPL-USD"))
    posting = book.due(T0)
    assert posting is not None
    (doc,) = posting.body
    assert doc["labels"] == {
        "alertname": "LossFlatten",
        "rule": "LossFlatten",
        "account": "desk-a",
        "symbol": "AAPL-USD",
        "severity": "critical",
        "team": "risk",
    }
    assert doc["annotations"]["summary"] == "flatten desk-a"
    assert doc["annotations"]["description"] == "loss beyond limit"
    assert doc["annotations"]["status_page"] == "https://risk.example/#account-desk-a"
    assert doc["generatorURL"] == doc["annotations"]["status_page"]
    assert doc["startsAt"] == rfc3339(T0)
    assert doc["endsAt"] == rfc3339(T0 + 240)
    assert posting.kinds == ("firing",)


def test_account_scope_has_no_empty_symbol_label() -> None:
    book = AlertmanagerBook(resend=60)
    book.alert(firing())
    posting = book.due(T0)
    assert posting is not None
    assert "symbol" not in posting.body[0]["labels"]
    assert "status_page" not in posting.body[0]["annotations"]


def test_resend_before_ends_at_then_resolve_once() -> None:
    book = AlertmanagerBook(resend=10)
    n = firing()
    book.alert(n)
    first = book.due(T0)
    assert first is not None
    book.posted(first, T0)
    assert book.due(T0 + 5) is None
    assert book.next_due() == T0 + 10
    again = book.due(T0 + 10)
    assert again is not None
    assert again.kinds == ("resend",)
    assert again.body[0]["endsAt"] == rfc3339(T0 + 50)  # before the previous endsAt passed
    book.posted(again, T0 + 10)
    book.alert(n)  # the same firing alert again: nothing new
    assert book.due(T0 + 11) is None
    book.alert(resolved(n, T0 + 12))
    gone = book.due(T0 + 12)
    assert gone is not None
    assert gone.kinds == ("resolved",)
    assert gone.body[0]["endsAt"] == rfc3339(T0 + 12)
    book.posted(gone, T0 + 12)
    assert book.held() == 0
    assert book.due(T0 + 100) is None


def test_failed_post_is_retried_and_resolution_during_a_post_is_kept() -> None:
    book = AlertmanagerBook(resend=10)
    n = firing()
    book.alert(n)
    in_flight = book.due(T0)
    assert in_flight is not None
    book.alert(resolved(n, T0 + 0.1))  # resolves while the firing post is in flight
    book.posted(in_flight, T0 + 0.2)
    left = book.due(T0 + 0.2)
    assert left is not None
    assert left.kinds == ("resolved",)
    # Not posted (Alertmanager down): still due next time.
    assert book.due(T0 + 1) is not None


def test_resolved_without_firing_post_and_shadow_are_ignored() -> None:
    book = AlertmanagerBook(resend=10)
    book.alert(resolved(firing(), T0))
    shadow = AlertNotice("Shadowed", "desk-a", None, "firing", "info", T0, shadow=True)
    book.alert(shadow)
    assert book.due(T0) is None


def test_sync_resolves_alerts_no_longer_firing() -> None:
    book = AlertmanagerBook(resend=10)
    a, b = firing("A"), firing("B")
    book.alert(a)
    book.alert(b)
    p = book.due(T0)
    assert p is not None
    book.posted(p, T0)
    book.sync("desk-a", [a], T0 + 1)
    p = book.due(T0 + 1)
    assert p is not None
    assert [d["labels"]["rule"] for d in p.body] == ["B"]
    assert p.kinds == ("resolved",)


def test_action_outcomes_and_escalations_are_one_shot_alerts() -> None:
    book = AlertmanagerBook(resend=10)
    book.action(ActionNotice("confirmed", "LossFlatten", "desk-a", "close_position all", T0))
    book.action(
        ActionNotice("failed", "LossFlatten", "desk-a", "close_position all", T0, detail="x")
    )
    p = book.due(T0)
    assert p is not None
    names = sorted(d["labels"]["alertname"] for d in p.body)
    assert names == ["RiskwatchAction", "RiskwatchActionFailed"]
    failed = next(d for d in p.body if d["labels"]["outcome"] == "failed")
    assert failed["labels"]["severity"] == "critical"
    assert failed["endsAt"] == rfc3339(T0 + 3600)
    assert "FAILED close_position all" in failed["annotations"]["summary"]
    book.posted(p, T0)
    assert book.held() == 0


def test_stale_action_outcome_is_dropped_unposted() -> None:
    book = AlertmanagerBook(resend=10)
    book.action(ActionNotice("confirmed", "R", "desk-a", "cancel_all_orders", T0))
    assert book.due(T0 + 301) is None
    assert book.held() == 0


def test_urls() -> None:
    t = parse_target("alertmanager://127.0.0.1:9093")
    assert t.alerts_url == "http://127.0.0.1:9093/api/v2/alerts"
    assert t.resend == 60
    t = parse_target("alertmanagers://am:s3cr3t-pw@am.example/prefix/?resend=15&timeout=3")
    assert t.alerts_url == "https://am.example/prefix/api/v2/alerts"
    assert t.username == "am"
    assert t.password is not None
    assert t.password.reveal() == "s3cr3t-pw"
    assert (t.resend, t.timeout) == (15, 3)
    assert "s3cr3t" not in t.display
    assert is_alertmanager("Alertmanager://x")
    assert not is_alertmanager("json://x")
    for bad in ("alertmanager://", "alertmanager://h?resend=x", "alertmanager://h?foo=1"):
        with pytest.raises(ValueError, match="alertmanager url"):
            parse_target(bad)


def test_bad_alertmanager_url_in_config_is_reported_at_its_place(tmp_path: Path) -> None:
    cfg = tmp_path / "riskwatch.yaml"
    cfg.write_text(
        "exchange: {url: 'ws://127.0.0.1:1'}\n"
        "accounts: []\n"
        "notifications:\n"
        "  routes:\n"
        "    - urls:\n"
        "        - alertmanager://am:pw-Zq81@127.0.0.1:9093?resend=often\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    text = "\n".join(str(p) for p in err.value.problems)
    assert f"{cfg}:6:11: alertmanager url: resend must be a number of seconds" in text
    assert "pw-Zq81" not in text
