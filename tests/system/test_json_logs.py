"""``riskwatch --log-format json run``: every stderr line is one JSON object with context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.rig import DaemonProcess, setup_for, simulator, wait_for


async def test_json_log_lines_parse_and_name_their_context(tmp_path: Path) -> None:
    """An armed crash: the alert and action lines carry their context fields."""
    async with simulator("crash", speed=10.0, pulse_interval=0.1) as (sim, secret):
        setup = setup_for(sim, tmp_path, secret, mode="armed")
        proc = DaemonProcess(setup.write(), tmp_path / "daemon.log", log_format="json")
        proc.start()
        try:
            await wait_for(
                lambda: any(
                    isinstance(f.frame, dict) and f.frame.get("type") == "close_position"
                    for f in sim.received_commands("desk-a")
                ),
                timeout=30,
                what="for the flatten action",
            )
            await wait_for(
                lambda: "LossFlatten FIRING" in proc.log_text(), timeout=10, what="alert line"
            )
        finally:
            status = await proc.terminate()
    assert status == 0
    lines = proc.log_text().splitlines()
    assert len(lines) > 5
    docs: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        doc = json.loads(line)  # one object per line, nothing else on stderr
        assert isinstance(doc, dict), f"line {number}"
        assert {"time", "level", "logger", "message"} <= set(doc), f"line {number}: {line}"
        assert doc["level"] in ("debug", "info", "warning", "error", "critical")
        docs.append(doc)
    firing = [d for d in docs if "LossFlatten FIRING" in d["message"]]
    assert firing
    assert firing[0]["account"] == "desk-a"
    assert firing[0]["rule"] == "LossFlatten"
    assert firing[0]["level"] == "warning"
    # Lines logged while the executor handles the trip name the trip.
    assert any(d.get("trip_id") is not None and d.get("account") == "desk-a" for d in docs)
    # Each command sent is logged with its action id and trip.
    sent = [d for d in docs if d["message"].startswith("SENT close_position")]
    assert sent
    assert sent[0]["action_id"]
    assert sent[0]["trip_id"] is not None
    assert sent[0]["rule"] == "LossFlatten"
    assert docs[-1]["message"] == "riskwatch stopped"
