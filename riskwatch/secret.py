"""Secret values that cannot leak by accident.

A ``Secret`` prints as ``Secret('********')`` under ``repr``, ``str`` and f-strings;
only ``.reveal()`` returns the value, so every place that uses one is greppable.
Pickling is refused, ``json.dumps`` fails on it unless given ``default=json_default``
(which redacts), and equality is constant-time.

``redact(text, secrets)`` masks every known secret value in a string: log filters and
error paths that may echo third-party text (a URL in an apprise exception, say) pass
their text through it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any, NoReturn

__all__ = ["MASK", "Secret", "json_default", "redact"]

MASK = "********"


class Secret:
    """An immutable secret string.

    ``reveal()`` is the only way to read the value. ``repr``/``str`` never show it,
    ``==`` compares in constant time (against another ``Secret`` only), ``hash`` is
    derived from a digest, ``copy``/``deepcopy`` return the same object, and pickling
    raises ``TypeError``.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """Return the secret value; use it only where it goes on the wire."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __setattr__(self, name: str, value: object) -> NoReturn:
        msg = "secret is immutable"
        raise AttributeError(msg)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._value.encode()).digest())

    def __bool__(self) -> bool:
        return bool(self._value)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        msg = "refusing to serialise a secret"
        raise TypeError(msg)

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        msg = "refusing to serialise a secret"
        raise TypeError(msg)


def json_default(obj: object) -> object:
    """``json.dumps(..., default=json_default)``: a ``Secret`` becomes ``"********"``.

    Any other unknown type raises ``TypeError``, like json's own default.
    """
    if isinstance(obj, Secret):
        return MASK
    msg = f"object of type {type(obj).__name__} is not json serialisable"
    raise TypeError(msg)


def redact(text: str, secrets: Iterable[Secret | str]) -> str:
    """Return ``text`` with every occurrence of every non-empty secret replaced by ``MASK``.

    Longer secrets are replaced first, so a secret containing another is masked whole.
    """
    values = {s.reveal() if isinstance(s, Secret) else s for s in secrets}
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
