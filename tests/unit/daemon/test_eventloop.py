"""The daemon's event loop choice (riskwatch/daemon/eventloop.py)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from riskwatch.daemon import eventloop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_default_is_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    assert eventloop.uvloop_available()  # a dependency on this platform (pyproject.toml)
    assert eventloop.resolve() == "uvloop"
    assert eventloop.run(_loop_module()).startswith("uvloop")


def test_environment_forces_the_standard_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV, "asyncio")
    assert eventloop.resolve() == "asyncio"
    assert eventloop.run(_loop_module()).startswith("asyncio")


def test_explicit_choice_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV, "asyncio")
    assert eventloop.resolve("uvloop") == "uvloop"
    monkeypatch.setenv(eventloop.ENV, "uvloop")
    assert eventloop.resolve("asyncio") == "asyncio"


def test_unknown_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV, "trio")
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        eventloop.resolve()


def test_uvloop_asked_for_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventloop, "uvloop_available", lambda: False)
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        eventloop.resolve("uvloop")
    assert eventloop.resolve("default") == "asyncio"


def test_run_returns_the_coroutine_result() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert eventloop.run(answer(), "uvloop") == 42
    assert eventloop.run(answer(), "asyncio") == 42


def test_the_loop_runs_with_the_short_switch_interval_and_restores_it() -> None:
    """The daemon's threads give the loop's thread the interpreter lock back within
    SWITCH_INTERVAL; the interpreter's setting comes back when the loop ends."""
    before = sys.getswitchinterval()

    async def interval() -> float:
        return sys.getswitchinterval()

    assert eventloop.run(interval(), "asyncio") == pytest.approx(eventloop.SWITCH_INTERVAL)
    assert sys.getswitchinterval() == before
