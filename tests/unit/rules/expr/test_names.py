"""The rule language's names and the derived figures are the same set."""

from __future__ import annotations

from riskwatch.rules.expr import names
from riskwatch.state import derived


def test_every_rule_name_is_a_computed_figure() -> None:
    """Each name a rule may read is produced by derived.compute at its scope."""
    account = {i.name for i in names.ACCOUNT_NAMES}
    position = {i.name for i in names.POSITION_NAMES}
    assert account <= set(derived.ACCOUNT_NAMES)
    assert position <= set(derived.POSITION_NAMES)


def test_every_computed_rule_figure_is_a_rule_name() -> None:
    """Derived figures are all readable by rules, but for the two diagnostics."""
    account = {i.name for i in names.ACCOUNT_NAMES}
    extra = set(derived.ACCOUNT_NAMES) - account
    assert extra == {"equity_drift", "reported_equity"}
    assert set(derived.POSITION_NAMES) == {i.name for i in names.POSITION_NAMES}
