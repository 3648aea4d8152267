"""Hypothesis strategies shared by the fuzz tests: JSON values and QFEX-shaped frames."""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = float(os.environ.get("RISKWATCH_FUZZ_SCALE", "1"))
"""Multiplier on every example count (CI runs 1; a long local run may set 20)."""


def examples(n: int) -> settings:
    """Hypothesis settings for ``n`` examples (times ``RISKWATCH_FUZZ_SCALE``), no deadline."""
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


KNOWN_KEYS = (
    "position_response",
    "balance_response",
    "order_response",
    "fill_response",
    "all_orders_response",
    "user_orders",
    "authenticated",
    "subscribed",
    "unsubscribed",
    "ack",
    "ack_response",
    "err",
    "type",
    "channel",
    "contents",
    "user_leverage_response",
)
"""Top-level keys of the trade gateway's frames (docs/protocol.md §3)."""

FIELDS = (
    "symbol",
    "position",
    "average_price",
    "unrealised_pnl",
    "realised_pnl",
    "leverage",
    "initial_margin",
    "maintenance_margin",
    "net_funding",
    "margin_alloc",
    "open_orders",
    "open_quantity",
    "deposit",
    "order_margin",
    "position_margin",
    "available_balance",
    "order_id",
    "status",
    "quantity",
    "quantity_remaining",
    "side",
    "price",
    "error_code",
    "orders",
    "incoming_message",
    "result",
    "time",
)
"""Field names the decoder looks for inside a frame."""

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(["437.45", "nan", "inf", "-1e999", "", "0x10", "1e308", "-0"]),
)
"""Numbers as QFEX may send them: floats, huge ints, numeric and non-numeric strings."""

scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))

json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), inner, max_size=6),
    ),
    max_leaves=20,
)
"""Arbitrary JSON-like values whose object keys are mostly the decoder's field names."""


def _body() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS))


shaped_frames: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.builds(lambda k, b: {k: b}, st.sampled_from(KNOWN_KEYS), st.one_of(_body(), json_values)),
    st.builds(
        lambda ch, items: {"type": "channel_data", "channel": ch, "contents": items},
        st.sampled_from(["v4_positions", "v4_balances", "v4_orders", "other"]),
        st.lists(_body(), max_size=3),
    ),
    st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=3),
)
"""Frames shaped like the exchange's, with arbitrary (often wrong) field values."""


def dumps(value: Any) -> str:
    """JSON text of ``value`` as Python writes it (``NaN``/``Infinity`` literals included)."""
    return json.dumps(value)


def mangle(text: str, cut: int, junk: bytes) -> bytes:
    """``text`` truncated at ``cut`` with ``junk`` bytes appended (possibly not UTF-8)."""
    raw = text.encode("utf-8")
    return raw[: cut % (len(raw) + 1)] + junk
