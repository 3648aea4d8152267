"""Unit tests of ``riskwatch test``: notation, file checking, series and frame cases."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from riskwatch.offline.ruletest import load_test_file, parse_values, run_tests

RULES = """\
rules:
  - name: High
    when: margin_usage > 0.8
    clear_when: margin_usage < 0.7
    for: 2s
    severity: warning
  - name: Crit
    when: margin_usage > 0.95
    severity: critical
    actions: [cancel_all_orders]
    latch: true
  - name: Lev
    scope: position
    when: effective_leverage > 10
    actions: [{close_position: }]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5 0.6 0.9x3", [0.5, 0.6, 0.9, 0.9, 0.9, 0.9]),
        ("1+0.1x5", [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]),
        ("-2+4x3", [-2.0, 2.0, 6.0, 10.0]),
        ("1-2x4", [1.0, -1.0, -3.0, -5.0, -7.0]),
        ("1 _ _x3 2", [1.0, None, None, None, None, 2.0]),
        ("1e3 inf", [1000.0, float("inf")]),
    ],
)
def test_parse_values_expands_notation(text: str, expected: list[float | None]) -> None:
    """The promtool notation expands to the documented samples."""
    values, problems = parse_values(text)
    assert problems == []
    assert values == expected


def test_parse_values_reports_bad_terms_with_offsets() -> None:
    """A bad term is reported at its offset in the string."""
    _, problems = parse_values("0.5 abc 1x")
    assert [offset for offset, _ in problems] == [4, 8]
    assert "invalid sample 'abc'" in problems[0][1]


def _write(tmp_path: Path, test_text: str) -> Path:
    (tmp_path / "r.yaml").write_text(RULES, encoding="utf-8")
    path = tmp_path / "t.yaml"
    path.write_text(test_text, encoding="utf-8")
    return path


def _run(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_tests([str(path)], out, err)
    return status, out.getvalue(), err.getvalue()


def test_passing_series_case(tmp_path: Path) -> None:
    """A series case whose expectations hold passes with exit status 0."""
    path = _write(
        tmp_path,
        """\
rule_files: [r.yaml]
tests:
  - name: ok
    input_series:
      - {series: margin_usage, values: 0.5 0.9x2 0.97 0.5}
      - {series: 'effective_leverage{symbol="BTC-USD"}', values: 5 12}
    alert_rule_test:
      - {eval_time: 2s, alertname: High, exp_alerts: [{state: pending}]}
      - {eval_time: 3s, alertname: High, exp_alerts: [{state: firing}]}
      - {eval_time: 1s, alertname: Lev, exp_alerts: [{state: firing, symbol: BTC-USD}]}
      - {eval_time: 3s, alertname: Lev, exp_alerts: []}
    action_test:
      - eval_time: 5s
        rule: Crit
        exp_actions: [{action: cancel_all_orders, at: 4s}]
      - eval_time: 5s
        rule: Lev
        exp_actions: [{action: close_position, symbol: BTC-USD, at: 1s}]
""",
    )
    status, out, err = _run(path)
    assert (status, err) == (0, "")
    assert "SUCCESS (1 test(s), 6 check(s))" in out


def test_failure_prints_expected_and_got(tmp_path: Path) -> None:
    """A failing check prints its location, what was expected, what happened, and exits 1."""
    path = _write(
        tmp_path,
        """\
rule_files: [r.yaml]
tests:
  - name: wrong
    input_series:
      - {series: margin_usage, values: 0.5 0.9x3}
    alert_rule_test:
      - {eval_time: 2s, alertname: High, exp_alerts: [{state: firing}]}
    action_test:
      - {eval_time: 3s, rule: Crit, exp_actions: [{action: cancel_all_orders}]}
""",
    )
    status, out, _ = _run(path)
    assert status == 1
    assert f'{path}:7:9: FAILED test "wrong": alert High at +2.000s' in out
    assert "    expected: [firing]\n    got:      [pending]" in out
    assert "+1.000s  High PENDING" in out
    assert f'{path}:9:9: FAILED test "wrong": actions of Crit up to +3.000s' in out
    assert "    expected: [cancel_all_orders]\n    got:      []" in out
    assert "FAILED: 1 of 1 test(s)" in out


def test_problems_in_test_file_are_located(tmp_path: Path) -> None:
    """Mistakes in a test file are reported as FILE:LINE:COL and the file is not run."""
    path = _write(
        tmp_path,
        """\
rule_files: [r.yaml, missing.yaml]
tests:
  - name: bad
    input_series:
      - {series: margin_usag, values: 0.5 zz}
      - {series: 'notional', values: '1'}
    alert_rule_test:
      - {eval_time: 1s, alertname: Hihg, exp_alerts: [{state: fired}]}
""",
    )
    status, out, err = _run(path)
    assert status == 1
    assert "INVALID" in out
    lines = err.splitlines()
    assert f"{path}:1:22: rule file 'missing.yaml' does not exist" in lines
    assert any(
        line.startswith(f"{path}:5:18: unknown account name 'margin_usag'") for line in lines
    )
    assert f"{path}:5:43: invalid sample 'zz'" in err
    assert any(
        line.startswith(f"{path}:6:18: unknown account name 'notional' (a position")
        for line in lines
    )
    assert any(line.startswith(f"{path}:8:36: unknown rule 'Hihg'") for line in lines)
    assert any(
        line.startswith(f"{path}:8:63: 'fired' is not one of pending, firing") for line in lines
    )


def test_rule_file_problems_are_reported(tmp_path: Path) -> None:
    """A broken rule file named by a test file is reported with its own location."""
    (tmp_path / "r.yaml").write_text("rules:\n  - name: X\n    when: margn > 1\n", encoding="utf-8")
    path = tmp_path / "t.yaml"
    path.write_text("rule_files: [r.yaml]\ntests: []\n", encoding="utf-8")
    tf, problems = load_test_file(str(path))
    assert tf is None
    assert [str(p).split(": ")[0] for p in problems] == [f"{tmp_path / 'r.yaml'}:3:11"]


def _frame(kind: str, body: dict[str, object]) -> str:
    return json.dumps({kind: body})


def test_frames_case_drives_the_real_core(tmp_path: Path) -> None:
    """Raw position and balance frames go through the decoders into the core, with ticks."""
    position = _frame(
        "position_response",
        {
            "id": "p1",
            "symbol": "AAPL-USD",
            "position": 10.0,
            "margin_alloc": 0.0,
            "realised_pnl": 0.0,
            "unrealised_pnl": 0.0,
            "net_funding": 0.0,
            "open_orders": 0.0,
            "open_quantity": 0.0,
            "leverage": 10.0,
            "initial_margin": 0.1,
            "maintenance_margin": 0.05,
            "average_price": 200.0,
        },
    )

    def balance(position_margin: float) -> str:
        return _frame(
            "balance_response",
            {
                "id": "b1",
                "user_id": "u1",
                "deposit": 1000.0,
                "realised_pnl": 0.0,
                "order_margin": 0.0,
                "position_margin": position_margin,
                "unrealised_pnl": 0.0,
                "net_funding": 0.0,
                "available_balance": 1000.0 - position_margin,
            },
        )

    frames = [(0, position), (0, balance(200.0)), (1, position), (1, balance(900.0))]
    frames += [(t, balance(900.0)) for t in (2, 3, 4)]
    lines = ["rule_files: [r.yaml]", "stale_after: 5s", "tests:", "  - name: frames"]
    lines.append("    input_frames:")
    for at, text in frames:
        lines.append(f"      - at: {at}s")
        lines.append(f"        frame: '{text}'")
    lines += [
        "    alert_rule_test:",
        "      - {eval_time: 0s, alertname: High, exp_alerts: []}",
        "      - {eval_time: 2s, alertname: High, exp_alerts: [{state: pending}]}",
        "      - {eval_time: 3s, alertname: High, exp_alerts: [{state: firing}]}",
        # No frame after 4s: the ticks make the data stale after stale_after.
        "      - {eval_time: 10s, alertname: DataStale, exp_alerts: [{state: firing}]}",
    ]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    status, out, err = _run(path)
    assert (status, err) == (0, ""), out
    assert "SUCCESS (1 test(s), 4 check(s))" in out


CLOSE_RULES = """\
rules:
  - name: Big
    scope: position
    when: position > 15
    severity: critical
    latch: true
    actions: [{close_position: }]
  - name: Bigger
    scope: position
    when: position > 25
    severity: critical
    latch: true
    actions: [cancel_all_orders]
"""


def _position(size: float, at_price: float = 200.0) -> str:
    return _frame(
        "position_response",
        {
            "id": "p1", "symbol": "AAPL-USD", "position": size, "margin_alloc": 0.0,
            "realised_pnl": 0.0, "unrealised_pnl": 0.0, "net_funding": 0.0,
            "open_orders": 0.0, "open_quantity": 0.0, "leverage": 10.0,
            "initial_margin": 0.1, "maintenance_margin": 0.05, "average_price": at_price,
        },
    )  # fmt: skip


def _balance() -> str:
    return _frame(
        "balance_response",
        {
            "id": "b1", "user_id": "u1", "deposit": 100_000.0, "realised_pnl": 0.0,
            "order_margin": 0.0, "position_margin": 100.0, "unrealised_pnl": 0.0,
            "net_funding": 0.0, "available_balance": 99_900.0,
        },
    )  # fmt: skip


def _frames_test(tmp_path: Path, checks: list[str], actions: str) -> Path:
    (tmp_path / "r.yaml").write_text(CLOSE_RULES, encoding="utf-8")
    # The exchange's side, as the test expects it: the pulse trips Big then Bigger, the
    # IOC close fills (its reply echoes no client_order_id, as the docs' example), the
    # next pulse is flat.
    reply = _frame(
        "order_response",
        {
            "order_id": "o1", "client_order_id": "", "symbol": "AAPL-USD",
            "status": "FILLED", "side": "SELL", "order_type": "MARKET",
            "time_in_force": "IOC", "quantity": 30.0, "quantity_remaining": 0.0,
            "price": 200.0,
        },
    )  # fmt: skip
    frames = [
        (0.0, '{"authenticated": true}'),
        (0.0, _position(10.0)),
        (0.0, _balance()),
        (1.0, _position(30.0)),
        (1.0, _balance()),
        (1.2, reply),
        (2.0, _position(0.0)),
        (2.0, _balance()),
    ]
    lines = ["rule_files: [r.yaml]", "stale_after: 5s", actions, "tests:", "  - name: acts"]
    lines.append("    input_frames:")
    for at, text in frames:
        lines.append(f"      - at: {at}s")
        lines.append(f"        frame: '{text}'")
    lines.append("    action_test:")
    lines += [f"      - {c}" for c in checks]
    path = tmp_path / "t.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_frames_case_runs_the_action_book(tmp_path: Path) -> None:
    """Armed, one action an hour: the close is sent and confirmed by the test's replies,
    the second rule's cancel is refused by the circuit breaker — what the daemon does."""
    checks = [
        "{eval_time: 3s, rule: Big, exp_actions: [{action: close_position, symbol: AAPL-USD},"
        " {action: close_position, outcome: sent, symbol: AAPL-USD},"
        " {action: close_position, outcome: confirmed, symbol: AAPL-USD}]}",
        "{eval_time: 3s, rule: Bigger, exp_actions: [{action: cancel_all_orders, symbol: AAPL-USD},"
        " {action: cancel_all_orders, outcome: refused, code: CIRCUIT_BREAKER_OPEN}]}",
    ]
    actions = "actions: {mode: armed, max_per_account_per_hour: 1}"
    status, out, err = _run(_frames_test(tmp_path, checks, actions))
    assert (status, err) == (0, ""), out
    assert "SUCCESS (1 test(s), 2 check(s))" in out


def test_frames_case_reports_a_missing_outcome_with_the_timeline(tmp_path: Path) -> None:
    """In dry-run the close is not sent: a check expecting it sent fails and says so."""
    checks = [
        "{eval_time: 3s, rule: Big, exp_actions: [{action: close_position, symbol: AAPL-USD},"
        " {action: close_position, outcome: sent}]}",
    ]
    status, out, _ = _run(_frames_test(tmp_path, checks, "actions: {mode: dry-run}"))
    assert status == 1
    assert "outcomes missing: [close_position sent]" in out
    assert "Big DRY_RUN close_position AAPL-USD" in out
