"""Splitting the configured accounts between several daemons: ``--shard I/N`` (pure).

Every daemon of a deployment reads the same config; ``riskwatch run --shard I/N``
keeps only the accounts whose stable hash falls in shard ``I`` of ``N`` (``I`` counts
from 0, like a Kubernetes StatefulSet pod ordinal: ``--shard $(ORDINAL)/3``).

The hash is the first 8 bytes of SHA-256 of the account name (UTF-8), big-endian,
modulo ``N``: the same on every machine, Python version and process (unlike
``hash()``, which is salted per process), so N daemons started from one config
watch every account exactly once, and an account moves only when ``N`` changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["ALL", "Shard", "parse_shard", "shard_of"]

T = TypeVar("T")

_SHARD = re.compile(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*")


def shard_of(account: str, count: int) -> int:
    """The shard (0 ≤ result < ``count``) that watches ``account``.

    Raises ``ValueError`` when ``count`` < 1.
    """
    if count < 1:
        msg = f"shard count must be at least 1, got {count}"
        raise ValueError(msg)
    digest = hashlib.sha256(account.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (0 ≤ index < count)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            msg = f"shard {self.index}/{self.count} is out of range: want 0 <= I < N, N >= 1"
            raise ValueError(msg)

    def owns(self, account: str) -> bool:
        """True when this shard watches ``account``."""
        return self.count == 1 or shard_of(account, self.count) == self.index

    def select(self, items: Iterable[T], name: Callable[[T], str]) -> tuple[T, ...]:
        """The items (in their order) whose ``name(item)`` this shard owns."""
        return tuple(item for item in items if self.owns(name(item)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ALL = Shard(0, 1)
"""The single shard that owns every account (no ``--shard``)."""


def parse_shard(text: str) -> Shard:
    """Parse ``"I/N"`` (e.g. ``"0/3"``). Raises ``ValueError`` naming the text if bad."""
    m = _SHARD.fullmatch(text)
    if m is None:
        msg = f"bad shard {text!r}: want I/N, e.g. 0/3 (I counts from 0)"
        raise ValueError(msg)
    return Shard(int(m.group(1)), int(m.group(2)))
