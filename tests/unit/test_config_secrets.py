"""Secret values: never shown, never serialised, compared safely, redacted from text."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from riskwatch.secret import MASK, Secret, json_default, redact


def test_secret_repr_and_str_are_masked() -> None:
    """repr, str and f-strings show the mask, never the value."""
    s = Secret("hunter2")
    assert repr(s) == "Secret('********')"
    assert str(s) == "Secret('********')"
    assert f"{s}" == "Secret('********')"
    assert "hunter2" not in repr([s, {"k": s}])
    assert s.reveal() == "hunter2"


def test_secret_equality_and_hash() -> None:
    """Secrets compare by value with each other only, and hash consistently."""
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2


def test_secret_is_immutable_and_copies_to_itself() -> None:
    """A secret cannot be reassigned; copy and deepcopy return the same object."""
    s = Secret("x")
    with pytest.raises(AttributeError):
        s._value = "y"
    assert copy.copy(s) is s
    assert copy.deepcopy({"s": s})["s"] is s


def test_secret_refuses_pickle_and_plain_json() -> None:
    """Pickle and json.dumps without json_default refuse a secret."""
    with pytest.raises(TypeError, match="refusing to serialise a secret"):
        pickle.dumps(Secret("x"))
    with pytest.raises(TypeError):
        json.dumps({"k": Secret("x")})


def test_json_default_redacts() -> None:
    """json_default turns secrets into the mask and still refuses other unknown types."""
    assert json.dumps({"k": Secret("x")}, default=json_default) == '{"k": "********"}'
    with pytest.raises(TypeError, match="object of type object is not json serialisable"):
        json.dumps(object(), default=json_default)


def test_secret_truthiness() -> None:
    """An empty secret is falsy."""
    assert not Secret("")
    assert Secret("x")


def test_redact_replaces_every_occurrence_longest_first() -> None:
    """redact masks all occurrences, a longer secret before a shorter one inside it."""
    text = "token=abc123 again abc123 and abc"
    assert redact(text, [Secret("abc"), Secret("abc123")]) == (
        f"token={MASK} again {MASK} and {MASK}"
    )


def test_redact_ignores_empty_and_accepts_plain_strings() -> None:
    """Empty secrets are skipped; plain strings are accepted as secrets too."""
    assert redact("a b", [Secret(""), "b"]) == f"a {MASK}"
