"""Notification settings of the config: route names, grouping, inhibition, delivery."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskwatch.config import load_config_text
from riskwatch.errors import ConfigError
from riskwatch.notify.routes import build_routes

BASE = """\
accounts:
  - name: a
    public_key: k
    secret_key: s
notifications:
"""


def test_notification_settings_are_typed(tmp_path: Path) -> None:
    """Every notification setting is read with its type and defaults."""
    text = BASE + (
        "  group_interval: 30s\n"
        "  inhibit: false\n"
        "  family_label: team\n"
        "  delivery_timeout: 2s\n"
        "  delivery_attempts: 5\n"
        "  routes:\n"
        "    - name: pager\n"
        "      match: {severity: critical}\n"
        "      urls: ['json://127.0.0.1:1/x']\n"
        "    - urls: ['json://127.0.0.1:1/y']\n"
    )
    cfg = load_config_text(text, tmp_path / "c.yaml", environ={})
    n = cfg.notifications
    assert n.group_interval.seconds == 30
    assert n.inhibit is False
    assert n.family_label == "team"
    assert n.delivery_timeout.seconds == 2
    assert n.delivery_attempts == 5
    assert [r.name for r in build_routes(n)] == ["pager", "1"]


def test_bad_notification_settings_are_reported_with_positions(tmp_path: Path) -> None:
    """Bad values are each reported at their position, not just the first."""
    text = BASE + (
        "  delivery_attempts: 0\n"
        "  family_label: 'not a label'\n"
        "  routes:\n"
        "    - name: 'two words'\n"
        "      urls: []\n"
    )
    path = tmp_path / "c.yaml"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, path, environ={})
    lines = [str(p) for p in info.value.problems]
    assert f"{path}:6:22: delivery_attempts must be 1 to 20" in lines
    assert f"{path}:7:17: invalid label name 'not a label'" in lines
    assert any(line.startswith(f"{path}:9:13: invalid route name") for line in lines)
