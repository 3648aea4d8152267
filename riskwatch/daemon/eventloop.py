"""The daemon's event loop: uvloop where it is installed, else asyncio's own.

uvloop runs the loop, its timers and its socket reads in C: the per-frame cost of the
loop itself drops (docs/performance.md has the measured split). :func:`run` also
shortens the interpreter's thread switch interval (:data:`SWITCH_INTERVAL`). It is a dependency on
CPython for Linux and macOS; elsewhere, or with ``RISKWATCH_EVENT_LOOP=asyncio`` in
the environment, the standard loop runs. Behaviour is the same on both: the test
suite runs on the standard loop, ``riskwatch run`` (and ``tests/system``) on uvloop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar, get_args

T = TypeVar("T")

LoopChoice = Literal["default", "uvloop", "asyncio"]
"""``default``: uvloop if installed (and not turned off by the environment), else asyncio."""

LOOP_CHOICES: tuple[str, ...] = get_args(LoopChoice)

ENV: str = "RISKWATCH_EVENT_LOOP"
"""Environment variable: ``asyncio`` forces the standard loop, ``uvloop`` requires uvloop."""


def uvloop_available() -> bool:
    """True when the uvloop package can be imported."""
    return importlib.util.find_spec("uvloop") is not None


def resolve(choice: str = "default") -> Literal["uvloop", "asyncio"]:
    """The loop that ``choice`` means here; ``default`` reads :data:`ENV` first.

    Raises ``ValueError`` for an unknown choice and ``RuntimeError`` when uvloop is
    asked for and not installed.
    """
    if choice == "default":
        choice = os.environ.get(ENV, "").strip().lower() or "default"
    if choice not in LOOP_CHOICES:
        msg = f"unknown event loop {choice!r}: expected one of {', '.join(LOOP_CHOICES)}"
        raise ValueError(msg)
    if choice == "asyncio":
        return "asyncio"
    if choice == "uvloop" and not uvloop_available():
        msg = "uvloop is not installed (pip install uvloop)"
        raise RuntimeError(msg)
    return "uvloop" if uvloop_available() else "asyncio"


def loop_factory(choice: str = "default") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory for :class:`asyncio.Runner` (None: asyncio's default loop)."""
    if resolve(choice) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


SWITCH_INTERVAL: float = 0.0005
"""Seconds a thread may hold the interpreter lock while another waits for it (the
interpreter's default: 0.005). The daemon's threads (the state writer, the recorder,
the status page) are background work: a frame that trips a rule waited behind their
slices, up to 5 ms; measured at 1000 accounts (bench/bench_scale.py, docs/performance.md),
trigger → command write p99 2.7 ms with the default, 1.9 ms with this."""


def run(main: Coroutine[Any, Any, T], choice: str = "default") -> T:
    """Run ``main`` to completion on a new loop of ``choice`` (like :func:`asyncio.run`),
    with the interpreter's thread switch interval at :data:`SWITCH_INTERVAL` (restored
    after)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
            return runner.run(main)
    finally:
        sys.setswitchinterval(interval)
