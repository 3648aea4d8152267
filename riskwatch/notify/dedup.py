"""Dedup: whether a notification group needs a message now (pure).

Modelled on alertmanager ``notify/dedup_stage.go`` ``needsUpdate``: the decision
depends only on what was last sent for the group, what the group holds now, the
route's ``repeat_interval`` and ``send_resolved``, and ``now`` (Unix seconds). The
reason doubles as a log field. ``LastSent`` is restored from the notification log
after a restart, so a restart does not re-notify everything that is firing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["GroupView", "LastSent", "NotifyReason", "needs_notify"]


class NotifyReason(enum.StrEnum):
    """Why a message goes out (or ``NONE``: it does not)."""

    FIRST = "first"
    """Something fires and nothing (or a resolution) was sent last."""
    CHANGED = "changed"
    """The set of firing alerts (or their trips) differs from the last message."""
    REPEAT = "repeat"
    """Nothing changed, but ``repeat_interval`` has passed since the last message."""
    RESOLVED = "resolved"
    """Everything last notified has resolved (and the route sends resolutions)."""
    NONE = "none"
    """Nothing to say."""


@dataclass(frozen=True, slots=True)
class LastSent:
    """What was last sent for a group: when, ``firing`` or ``resolved``, and its fingerprint."""

    at: float
    status: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class GroupView:
    """A group now: the fingerprint of its notifiable firing alerts (``""``: none) and
    whether an alert it last notified has resolved since."""

    fingerprint: str
    resolved: bool = False

    @property
    def firing(self) -> bool:
        """Whether any notifiable alert of the group fires."""
        return bool(self.fingerprint)


def needs_notify(
    last: LastSent | None,
    alert: GroupView,
    repeat_interval: float,
    send_resolved: bool,
    now: float,
) -> NotifyReason:
    """Decide whether to send for a group (``repeat_interval`` in seconds)."""
    if alert.firing:
        if last is None or last.status != "firing":
            return NotifyReason.FIRST
        if alert.fingerprint != last.fingerprint:
            return NotifyReason.CHANGED
        if now - last.at >= repeat_interval:
            return NotifyReason.REPEAT
        return NotifyReason.NONE
    if last is None or last.status != "firing" or not alert.resolved:
        return NotifyReason.NONE
    return NotifyReason.RESOLVED if send_resolved else NotifyReason.NONE
