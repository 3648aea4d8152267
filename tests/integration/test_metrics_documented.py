"""Every metric family a running daemon exports is documented in docs/metrics.md."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.daemon_harness import running, wait_for
from tests.support.paths import REPO


def documented() -> set[str]:
    """The metric names of docs/metrics.md's table (first column, without the prefix)."""
    text = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([a-z_]+)` \| (?:gauge|counter|histogram) \|", text, flags=re.M))


async def test_every_exported_family_is_in_the_docs_table(tmp_path: Path) -> None:
    """A daemon watching the crash exports no metric family that docs/metrics.md leaves out."""
    async with running(tmp_path, "crash", sim_options={"speed": 4}) as h:

        async def pulsed() -> bool:
            status, text = await h.get("/metrics")
            return status == 200 and "riskwatch_equity_usd{" in text

        await wait_for(pulsed)
        _, text = await h.get("/metrics")
    exported = {
        m[1].removeprefix("riskwatch_")
        for m in re.finditer(r"^# TYPE (\S+) \S+$", text, flags=re.M)
    }
    assert exported, "the daemon exports metrics"
    assert all(
        name.startswith("riskwatch_") for name in re.findall(r"^# TYPE (\S+)", text, flags=re.M)
    )
    assert sorted(exported - documented()) == []
