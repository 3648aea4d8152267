"""Heap trimming: free C heap pages go back to the system, on schedule, and a C library
without ``malloc_trim`` is survived (riskwatch/daemon/heaptrim.py)."""

from __future__ import annotations

import asyncio
import ctypes

import pytest

from riskwatch.daemon.heaptrim import HeapTrimmer, find_malloc_trim

libc_trim = find_malloc_trim()
glibc = pytest.mark.skipif(libc_trim is None, reason="this C library has no malloc_trim")


def _resident_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


@glibc
def test_a_trim_gives_free_heap_pages_back() -> None:
    trimmer = HeapTrimmer()
    trimmer.trim()  # start from a trimmed heap
    # 40 MB of 64 kB blocks from malloc's heap (over the interpreter's 512-byte limit,
    # under malloc's 128 kB mmap threshold), every other one freed: holes of whole
    # pages inside the heap that malloc keeps, held in place by the blocks between.
    size = 64 * 1024
    blocks = [ctypes.create_string_buffer(size) for _ in range(600)]
    for block in blocks:
        ctypes.memset(block, 1, size)  # touched: resident
    kept = blocks[::2]
    del blocks
    before = _resident_kb()
    assert trimmer.trim() is True
    after = _resident_kb()
    assert before - after > 10_000  # kB: most of the 20 MB of holes went back
    assert trimmer.trims == 2
    assert trimmer.released >= 1
    assert all(block.raw[:1] == b"\x01" for block in kept)  # what is live is untouched


@glibc
async def test_trims_come_every_interval_until_stopped() -> None:
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    trimmer = HeapTrimmer(interval=0.01, malloc_trim=trim)
    trimmer.start()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(calls) >= 3:
            break
    await trimmer.stop()
    assert len(calls) >= 3
    assert set(calls) == {0}
    stopped_at = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == stopped_at
    assert trimmer.trims == stopped_at


async def test_without_malloc_trim_nothing_is_trimmed_and_it_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("riskwatch.daemon.heaptrim.find_malloc_trim", lambda: None)
    trimmer = HeapTrimmer(interval=0.01)
    assert not trimmer.available
    with caplog.at_level("INFO", logger="riskwatch.daemon.heaptrim"):
        trimmer.start()
    assert "no malloc_trim" in caplog.text
    await asyncio.sleep(0.03)
    assert trimmer.trim() is False
    assert trimmer.trims == 0
    await trimmer.stop()
