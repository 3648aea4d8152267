"""Per-stage CPU of the daemon from a ``py-spy record --format raw`` profile.

Used by ``bench/bench_scale.py --profile``: py-spy samples the daemon's process,
stopping it for each sample (``--gil``: only samples holding the GIL, i.e. Python at
work, not a wait in ``epoll`` or an ``fsync``) during the measured window; each sample
is a stack (outermost frame first) and is charged to one stage:

- the innermost frame that belongs to a stage decides (a rule evaluated from the tick
  timer is ``evaluation``; the timer's own loop is ``timers``);
- except under a *sticky* stage, which takes everything beneath it: the ``/metrics``
  handler (``scrape``: the provider, the figures it reads and the rendering) and the
  benchmark's own probes (``bench``).

Stages, by the files and functions of their frames:

``receive``   the event loop (its socket reads and callbacks; uvloop's own work shows
              as time in ``Runner.run``), the WebSocket library (``websockets`` or
              ``aiohttp``), the connection's receive loop and command writes;
``decode``    the sans-I/O session and msgspec decoding (``qfex/session.py``,
              ``qfex/schemas.py``);
``reduce``    folding events into the snapshot (``state/account.py``,
              ``state/plausibility.py``, ``AccountCore.handle``);
``figures``   derived figures (``state/derived.py``, ``AccountCore.figures_at``);
``evaluation`` the rule engine (``rules/``, ``state/windows.py``, ``state/daily.py``);
``metrics``   per-frame metric updates (``metrics.py``, ``prometheus_client``) outside
              a scrape;
``dispatch``  the daemon's per-frame glue (``riskwatch/daemon/``: counting, the
              link's cadence, handing events on) and the action executor's
              per-frame bookkeeping;
``actions``   planning, auditing and confirming protective actions, notifications,
              the state database;
``scrape``    everything under the ``/metrics`` handler, and the HTTP server;
``timers``    the rule tick loop, the deferred-burst flush, timer handles;
``connect``   opening connections (TCP, proxy look-up, the WebSocket handshake):
              reconnections, none in a steady state;
``bench``     the benchmark's lag probe and stamps (not part of the product);
``other``     the rest (interpreter start-up frames, the loop's own bookkeeping).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

STAGES = (
    "receive",
    "decode",
    "reduce",
    "figures",
    "evaluation",
    "metrics",
    "dispatch",
    "actions",
    "scrape",
    "timers",
    "connect",
    "bench",
    "other",
)

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")

# (stage, sticky, file substring, function names or None for any)
_RULES: tuple[tuple[str, bool, str, frozenset[str] | None], ...] = (
    ("bench", True, "bench/bench_", None),
    ("scrape", True, "riskwatch/web/server.py", frozenset({"metrics"})),
    ("scrape", True, "riskwatch/metrics.py", frozenset({"exposition_chunks", "render_chunks"})),
    ("scrape", False, "aiohttp/web_", None),
    (
        "connect",
        True,
        "websockets/asyncio/client.py",
        frozenset({"__aenter__", "__await_impl__", "create_connection", "open_tcp_connection"}),
    ),
    ("connect", True, "aiohttp/client.py", frozenset({"_ws_connect", "__aenter__"})),
    ("scrape", False, "aiohttp/http_writer", None),
    ("scrape", False, "aiohttp/http_parser", None),
    ("timers", False, "riskwatch/daemon/ticks.py", None),
    ("timers", False, "riskwatch/daemon/frames.py", frozenset({"_flush_deferred"})),
    ("timers", False, "asyncio/tasks.py", frozenset({"wait_for"})),
    ("timers", False, "asyncio/events.py", frozenset({"cancel"})),
    # The loop's own work: uvloop's is C under riskwatch/daemon/eventloop.py's run().
    ("receive", False, "riskwatch/daemon/eventloop.py", None),
    ("dispatch", False, "riskwatch/daemon/", None),
    ("dispatch", False, "riskwatch/qfex/link.py", None),
    ("dispatch", False, "riskwatch/qfex/cadence.py", None),
    ("dispatch", False, "riskwatch/actions/executor.py", frozenset({"frame_started", "on_events"})),
    ("actions", False, "riskwatch/actions/", None),
    ("actions", False, "riskwatch/notify/", None),
    ("actions", False, "riskwatch/store/", None),
    ("actions", False, "sqlite3", None),
    ("metrics", False, "riskwatch/metrics.py", None),
    ("metrics", False, "prometheus_client/", None),
    ("evaluation", False, "riskwatch/rules/", None),
    ("evaluation", False, "riskwatch/state/windows.py", None),
    ("evaluation", False, "riskwatch/state/daily.py", None),
    ("evaluation", False, "riskwatch/pipeline.py", frozenset({"_evaluate", "tick", "flush"})),
    ("figures", False, "riskwatch/state/derived.py", None),
    ("figures", False, "riskwatch/pipeline.py", frozenset({"figures_at"})),
    ("reduce", False, "riskwatch/state/", None),
    ("reduce", False, "riskwatch/pipeline.py", None),
    ("decode", False, "riskwatch/qfex/session.py", None),
    ("decode", False, "riskwatch/qfex/schemas.py", None),
    ("decode", False, "msgspec", None),
    ("receive", False, "riskwatch/qfex/", None),
    ("receive", False, "websockets/", None),
    ("receive", False, "aiohttp/", None),
    ("receive", False, "asyncio/selector_events.py", None),
    ("receive", False, "asyncio/streams.py", None),
    ("receive", False, "uvloop/", None),
)


def _stage_of_frame(frame: str) -> tuple[str, bool] | None:
    m = _FRAME.match(frame.strip())
    func, file = (m.group("func"), m.group("file")) if m else (frame, "")
    func = func.rsplit(".", 1)[-1]  # py-spy gives qualified names: Class.method
    for stage, sticky, part, funcs in _RULES:
        if part in file and (funcs is None or func in funcs):
            return stage, sticky
    return None


def classify(stack: Iterable[str]) -> str:
    """The stage of one sampled stack (outermost frame first); see the module docstring."""
    stage = "other"
    for frame in stack:
        found = _stage_of_frame(frame)
        if found is None:
            continue
        stage, sticky = found
        if sticky:
            return stage
    return stage


def stage_samples(raw: Path) -> Counter[str]:
    """Samples per stage of a py-spy raw profile (``stack count`` per line)."""
    out: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # py-spy separates frames with ";" and starts with the thread's name.
        frames = [f for f in stack.split(";") if f]
        out[classify(frames)] += int(count)
    return out


def per_frame_us(samples: Counter[str], cpu_share: float, frames_per_s: float) -> dict[str, float]:
    """µs of CPU per received frame for each stage: its share of the samples times the
    process's CPU share (one core = 1.0), over the frames received per second."""
    total = sum(samples.values())
    if not total or frames_per_s <= 0:
        return {}
    return {s: samples[s] / total * cpu_share / frames_per_s * 1e6 for s in STAGES}
