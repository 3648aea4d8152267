"""The configuration and rule set in force, shared by the daemon's parts.

A reload (:mod:`riskwatch.daemon.reload`) replaces both in one loop step; every part
reads them through the same :class:`LiveConfig`, so none keeps a stale copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from riskwatch.config import Config
from riskwatch.rules.model import RuleSet

__all__ = ["LiveConfig"]


@dataclass(slots=True)
class LiveConfig:
    """``config`` and ``rules`` as they are now (a reload assigns new ones)."""

    config: Config
    rules: RuleSet
