"""The leader check at the action shell: what a follower may send, and what it takes over.

Every replica plans the protections that are safe to repeat (:data:`SAFE`:
``close_position`` is reduce-only, ``cancel_all_orders`` cancels what is there). A
follower sets the others (:data:`LEADER_ONLY`: a second reduce-only TWAP would halve
the position again; a leverage change is not idempotent across replicas' timing) aside
as *deferred*, per trip. When the replica becomes leader, the deferred actions still
wanted are planned, unless the exchange already shows them done:

- ``reduce_position`` on a symbol: not again when this replica has seen, on the
  account's own order stream since the trip fired, a riskwatch TWAP slice on that
  symbol (a ``MARKET`` order whose client order id has riskwatch's ``rw-`` prefix: the
  old leader's TWAP is running, or ran). The exchange's stream, never the other
  replica's database, is the evidence;
- ``set_leverage``: not again when the account's position pulses for that symbol show
  the target leverage already (the old leader's change went through); planned
  otherwise.

A deferred trip is dropped when its alert resolves, or after :data:`DEFERRED_MAX_AGE`.
Frames of leader-only actions are also checked when they leave (:meth:`LeaderGate.
sender`): a replica that lost the lease sends no retry of them.

This module holds state but reads no clock and does no I/O: ``now`` comes from the
caller.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable
from typing import Final

from riskwatch.model import Event, OrderUpdate, PositionUpdate
from riskwatch.rules.engine import ActionIntent

__all__ = ["DEFERRED_MAX_AGE", "LEADER_ONLY", "SAFE", "LeaderGate"]

log = logging.getLogger(__name__)

SAFE: Final = frozenset({"close_position", "cancel_all_orders"})
LEADER_ONLY: Final = frozenset({"reduce_position", "set_leverage"})
LEADER_ONLY_FRAMES: Final = frozenset({"add_twap", "set_user_leverage"})
DEFERRED_MAX_AGE: Final = 600.0
"""Seconds a follower keeps a deferred leader-only action for a take-over."""

TWAP_CLIENT_PREFIX: Final = "rw-"


class LeaderGate:
    """See the module docstring. ``is_leader`` is the leadership's check."""

    def __init__(self, is_leader: Callable[[], bool]) -> None:
        self.is_leader = is_leader
        self._deferred: dict[tuple[str, str, str, int], ActionIntent] = {}
        self._twap_seen: dict[tuple[str, str], float] = {}
        self._leverage: dict[tuple[str, str], float] = {}
        self.held_frames = 0

    @staticmethod
    def _key(intent: ActionIntent) -> tuple[str, str, str, int]:
        return (intent.rule, intent.account, intent.symbol or "", intent.trip_id)

    def admit(self, intent: ActionIntent) -> ActionIntent | None:
        """What of ``intent`` to plan now: all of it on the leader; on a follower the
        safe actions (the rest deferred). None when nothing is left to plan."""
        if self.is_leader():
            return intent
        safe = tuple(a for a in intent.actions if a.kind not in LEADER_ONLY)
        held = tuple(a for a in intent.actions if a.kind in LEADER_ONLY)
        key = self._key(intent)
        known = key in self._deferred  # the same intent handed over twice: one line
        if held:
            self._deferred[key] = dataclasses.replace(intent, actions=held)
        if held and not known:
            log.warning(
                "follower: %s of rule %s on %s left to the leader",
                ", ".join(a.kind for a in held),
                intent.rule,
                intent.account,
                extra={"account": intent.account, "rule": intent.rule, "role": "follower"},
            )
        return dataclasses.replace(intent, actions=safe) if safe else None

    def observe(self, account: str, events: Iterable[Event], now: float) -> None:
        """Note riskwatch TWAP slices on the account's order stream, and each symbol's
        leverage in its position pulses."""
        for ev in events:
            if isinstance(ev, PositionUpdate):
                self._leverage[(account, ev.symbol)] = ev.leverage
            elif (
                isinstance(ev, OrderUpdate)
                and ev.order_type == "MARKET"
                and ev.client_order_id.startswith(TWAP_CLIENT_PREFIX)
            ):
                self._twap_seen[(account, ev.symbol)] = now

    def resolved(self, rule: str, account: str, symbol: str | None) -> None:
        """The alert's trip ended: its deferred actions are no longer wanted."""
        for key in [k for k in self._deferred if k[:3] == (rule, account, symbol or "")]:
            del self._deferred[key]

    def take_over(self, now: float) -> list[ActionIntent]:
        """On becoming leader: the deferred intents still to plan, stamped ``now``."""
        out: list[ActionIntent] = []
        for key, intent in list(self._deferred.items()):
            del self._deferred[key]
            if now - intent.at > DEFERRED_MAX_AGE:
                continue
            actions = []
            for action in intent.actions:
                seen = self._twap_seen.get((intent.account, intent.symbol or ""))
                if action.kind == "reduce_position" and seen is not None and seen >= intent.at:
                    log.warning(
                        "leader: reduce_position of rule %s on %s %s already running on the "
                        "exchange (TWAP slices seen): not started again",
                        intent.rule,
                        intent.account,
                        intent.symbol,
                        extra={"account": intent.account, "rule": intent.rule, "role": "leader"},
                    )
                    continue
                lev = self._leverage.get((intent.account, intent.symbol or ""))
                if action.kind == "set_leverage" and lev is not None and lev == action.leverage:
                    log.warning(
                        "leader: leverage of %s %s is already %g on the exchange: "
                        "set_leverage of rule %s not sent again",
                        intent.account,
                        intent.symbol,
                        lev,
                        intent.rule,
                        extra={"account": intent.account, "rule": intent.rule, "role": "leader"},
                    )
                    continue
                actions.append(action)
            if actions:
                out.append(dataclasses.replace(intent, actions=tuple(actions), at=now))
        return out

    def deferred(self) -> int:
        """How many trips hold leader-only actions for a take-over."""
        return len(self._deferred)

    def frame_allowed(self, frame: str) -> bool:
        """False for a leader-only command frame while this replica is not the leader."""
        if self.is_leader():
            return True
        try:
            kind = json.loads(frame).get("type")
        except (ValueError, AttributeError):
            return True
        return kind not in LEADER_ONLY_FRAMES

    def sender(self, send: Callable[[str, str], float]) -> Callable[[str, str], float]:
        """``send`` that refuses (``ConnectionError``) leader-only frames on a follower:
        the action book then treats the frame as not sent (its retry waits)."""

        def guarded(account: str, frame: str) -> float:
            if not self.frame_allowed(frame):
                self.held_frames += 1
                log.warning("follower: leader-only frame to %s not sent (lease lost)", account)
                msg = "not the leader: leader-only frame held"
                raise ConnectionError(msg)
            return send(account, frame)

        return guarded
