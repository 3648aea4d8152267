"""The rule language's names and the derived figures come from one catalogue."""

from __future__ import annotations

from riskwatch.rules.expr import names
from riskwatch.state import catalogue


def test_every_rule_name_is_a_computed_figure() -> None:
    """Each name a rule may read is produced by derived.compute at its scope."""
    account = {i.name for i in names.RULE_ACCOUNT_FIGURES}
    position = {i.name for i in names.RULE_POSITION_FIGURES}
    assert account <= set(catalogue.ACCOUNT_NAMES)
    assert position <= set(catalogue.POSITION_NAMES)


def test_every_computed_rule_figure_is_a_rule_name() -> None:
    """Derived figures are all readable by rules, but for the two diagnostics."""
    account = {i.name for i in names.RULE_ACCOUNT_FIGURES}
    extra = set(catalogue.ACCOUNT_NAMES) - account
    assert extra == {"equity_drift", "reported_equity"}
    assert set(catalogue.POSITION_NAMES) == {i.name for i in names.RULE_POSITION_FIGURES}


def test_rule_names_are_the_catalogue_entries_themselves() -> None:
    """The checker's entries are the catalogue's objects, not a copy kept in step by hand."""
    for info in names.RULE_ACCOUNT_FIGURES:
        assert names.lookup(info.name, "account") is info
        assert info in catalogue.ACCOUNT_FIGURES
    for info in names.RULE_POSITION_FIGURES:
        assert names.lookup(info.name, "position") is info
        assert info in catalogue.POSITION_FIGURES
