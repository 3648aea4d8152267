"""Stable hash assignment of accounts to shards (``--shard I/N``)."""

from __future__ import annotations

import pytest

from riskwatch.shard import ALL, Shard, parse_shard, shard_of

NAMES = [f"acct-{i:04d}" for i in range(1000)]


def test_hash_is_pinned_across_processes_and_versions() -> None:
    """The assignment is SHA-256 based, so these values never change."""
    assert [shard_of(n, 3) for n in ("desk-a", "desk-b", "desk-c", "acct-0001")] == [0, 2, 2, 2]
    assert shard_of("desk-a", 1000) == 65


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_every_account_is_owned_by_exactly_one_shard(count: int) -> None:
    """The shards of one N partition the accounts: each name is owned exactly once."""
    shards = [Shard(i, count) for i in range(count)]
    for name in NAMES:
        assert sum(s.owns(name) for s in shards) == 1
    sizes = [len(s.select(NAMES, str)) for s in shards]
    assert sum(sizes) == len(NAMES)
    assert min(sizes) > len(NAMES) / count * 0.8  # roughly even


def test_select_keeps_order_and_all_owns_everything() -> None:
    """select keeps the input order; the default shard owns every account."""
    picked = Shard(1, 3).select(NAMES, str)
    assert list(picked) == [n for n in NAMES if shard_of(n, 3) == 1]
    assert ALL.select(NAMES, str) == tuple(NAMES)


def test_parse_shard_forms_and_errors() -> None:
    """I/N parses with spaces; out-of-range and malformed texts are refused by name."""
    assert parse_shard("0/3") == Shard(0, 3)
    assert parse_shard(" 2 / 3 ") == Shard(2, 3)
    assert str(parse_shard("1/2")) == "1/2"
    with pytest.raises(ValueError, match="shard 3/3 is out of range"):
        parse_shard("3/3")
    with pytest.raises(ValueError, match="out of range"):
        parse_shard("0/0")
    with pytest.raises(ValueError, match="bad shard 'a/b'"):
        parse_shard("a/b")
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("x", 0)
