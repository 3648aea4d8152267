"""How a protective order fits what the symbol allows (pure; docs/protocol.md §7, §11).

- Quantities are multiples of ``lot_size``: :func:`round_to_lot` rounds toward zero
  (a reduction never sends more than asked).
- A reduce-only TWAP needs ``total_quantity / num_orders ≥ min_quantity`` and at least
  two slices (DOCS add_twap). :func:`size_reduction` lowers the slice count down to
  two; when even two slices are too small it answers ``close_position`` if the
  reduction would leave less than ``min_quantity`` (only a close can do it), else
  ``refuse``, each with the reason: never a TWAP the exchange must reject. The action
  planner refuses both with the reason (a reduction never becomes a full close
  without a rule saying so).
- Leverage comes in discrete per-symbol levels (``get_available_leverage_levels``):
  :func:`snap_leverage` takes the highest level not above the wanted one (never more
  leverage than asked), or says which levels exist.
- TWAP statuses are undocumented (the example says ``"ENGINE_STATUS"``):
  :func:`twap_working` accepts only a status that says the TWAP runs or ran.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from riskwatch.refdata.model import LeverageLevel, SymbolRef

__all__ = [
    "DEFAULT_MIN_QUANTITY",
    "TWAP_WORKING_STATUSES",
    "Reduction",
    "round_to_lot",
    "size_reduction",
    "snap_leverage",
    "twap_working",
]

DEFAULT_MIN_QUANTITY: Final = 0.001
"""Smallest slice assumed while the symbol's ``min_quantity`` is unknown (docs/protocol.md §11;
the simulator uses the same figure)."""

MIN_SLICES: Final = 2
"""DOCS add_twap: ``num_orders ≥ 2``."""

TWAP_WORKING_STATUSES: Final = frozenset(
    {"ACK", "ACCEPTED", "ACTIVE", "NEW", "OPEN", "RUNNING", "WORKING", "COMPLETED", "FILLED"}
)
"""Statuses taken as "the exchange runs (or ran) this TWAP"."""

_EPS: Final = 1e-9


def _lot_decimals(lot: float) -> int:
    return max(0, -math.floor(math.log10(lot))) + 2 if lot > 0 else 9


def round_to_lot(quantity: float, ref: SymbolRef | None) -> float:
    """``quantity`` rounded toward zero to a multiple of the symbol's ``lot_size``
    (unchanged when the lot size is unknown)."""
    lot = ref.lot_size if ref is not None else None
    if lot is None or lot <= 0:
        return quantity
    lots = math.floor(abs(quantity) / lot + _EPS)
    return math.copysign(round(lots * lot, _lot_decimals(lot)), quantity) if lots else 0.0


@dataclass(frozen=True, slots=True)
class Reduction:
    """How to send a reduction: ``twap`` (``total_quantity`` in ``num_orders`` slices),
    ``close_position``, or ``refuse`` (``reason`` says why)."""

    kind: Literal["twap", "close_position", "refuse"]
    total_quantity: float = 0.0
    num_orders: int = 0
    reason: str = ""


def size_reduction(
    total: float, position: float, num_orders: int, ref: SymbolRef | None
) -> Reduction:
    """Fit a reduction of ``total`` (base units, > 0) of ``position`` into ≤
    ``num_orders`` slices (see the module docstring)."""
    minimum = DEFAULT_MIN_QUANTITY
    if ref is not None and ref.min_quantity is not None and ref.min_quantity > 0:
        minimum = ref.min_quantity
    size = abs(position)
    qty = round_to_lot(min(abs(total), size), ref)
    left = size - qty
    num = max(MIN_SLICES, num_orders)
    while num > MIN_SLICES and qty / num < minimum - _EPS:
        num -= 1
    if qty > 0 and qty / num >= minimum - _EPS and not (0 < left < minimum - _EPS):
        return Reduction("twap", total_quantity=qty, num_orders=num)
    if left < minimum - _EPS and size > 0:
        why = (
            f"reducing {size:g} by {abs(total):g} leaves {max(left, 0.0):g}, under the minimum "
            f"quantity {minimum:g}: only close_position can do it"
        )
        return Reduction("close_position", total_quantity=size, reason=why)
    return Reduction(
        "refuse",
        reason=(
            f"{abs(total):g} (rounded to lots: {qty:g}) in {MIN_SLICES} slices is under "
            f"the minimum quantity {minimum:g} per slice"
        ),
    )


def snap_leverage(wanted: float, levels: Sequence[LeverageLevel]) -> tuple[float | None, str]:
    """The highest available level ≤ ``wanted`` (and ""), or None and which levels exist.

    With no level known, ``wanted`` is returned unchanged (the exchange decides)."""
    if not levels:
        return wanted, ""
    fitting = [lv.leverage for lv in levels if lv.leverage <= wanted + _EPS]
    if fitting:
        return max(fitting), ""
    available = ", ".join(f"{lv.leverage:g}" for lv in levels)
    return None, f"no leverage level at or below {wanted:g}; available: {available}"


def twap_working(status: str) -> bool:
    """True when a ``twap_response`` status says the TWAP runs or ran."""
    return status.upper() in TWAP_WORKING_STATUSES
