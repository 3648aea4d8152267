"""The JSON codec of the state database, and the stored form of a symbol.

The store knows nothing of the rule engine's types: callers pass plain JSON-able
dicts (their ``to_record()``) and get the same dicts back (:mod:`riskwatch.records`).
"""

from __future__ import annotations

import json
from typing import Any

from riskwatch.records import JSONDict


def dumps(value: Any, what: str) -> str:
    """Encode ``value`` as compact, key-sorted, strict JSON (no NaN or infinity).

    Raises ``ValueError`` naming ``what`` if the value is not JSON-able, so a bad
    record is refused before any write starts.
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        msg = f"{what} is not json-serialisable: {exc}"
        raise ValueError(msg) from exc


def loads_dict(text: str) -> JSONDict:
    """Decode a JSON object written by :func:`dumps`."""
    value = json.loads(text)
    if not isinstance(value, dict):
        msg = f"stored record is not a json object: {type(value).__name__}"
        raise ValueError(msg)
    return value


def loads_dict_list(text: str) -> list[JSONDict]:
    """Decode a JSON list of objects written by :func:`dumps`."""
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        msg = "stored value is not a json list of objects"
        raise ValueError(msg)
    return value


def symbol_key(symbol: str | None) -> str:
    """Map a symbol to its stored form: account scope (``None`` or ``""``) is ``""``."""
    return symbol or ""


def symbol_value(stored: str) -> str | None:
    """Inverse of :func:`symbol_key`: ``""`` comes back as ``None`` (account scope)."""
    return stored or None
