"""The AsyncAPI validation utility (tests/asyncapi_schemas.py) itself."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import asyncapi_schemas as spec

EXAMPLES = spec.SPEC_DIR.parent / "examples"

# Examples that are deliberately outside the current spec (legacy or spec gaps).
NOT_IN_SPEC = {
    "client.add_order.legacy_gfd.jsonc",  # TIF GFD (docs/protocol.md §16.16)
    "client.add_order.stop_take_profit.jsonc",  # order_type enum lacks TAKE_PROFIT
    "client.auth.api_key.legacy.json",  # pre-HMAC auth
    "client.cancel_order.by_client_order_id.legacy.json",  # §16.11
    "client.modify_order.legacy.json",  # no order_type (breaking 2025-10-13)
    "server.ack_response.json",  # §16.7
    "server.auth.legacy.json",  # §16.6
    "server.error.legacy_flat.json",  # §16.12
    "server.order_response.ack.legacy.json",  # GFD
    "server.order_response.cancel_order.legacy.json",
    "server.order_response.cancelled.legacy.json",
    "server.order_response.modified.legacy.json",
    "server.user_orders.legacy.json",  # §16.8
    "server.user_trades.json",  # §16.9
    "server.v4_bbo.json",  # retired v4 gateway
    "server.v4_orderbook.json",
    "server.mds.refdata.legacy.json",  # removed channel
}
LEGACY_ACCEPTED = {
    "server.ack_response.json",
    "server.auth.legacy.json",
    "server.error.legacy_flat.json",
    "server.order_response.ack.legacy.json",
    "server.order_response.cancel_order.legacy.json",
    "server.order_response.cancelled.legacy.json",
    "server.order_response.modified.legacy.json",
    "server.user_orders.legacy.json",
    "server.user_trades.json",
}


def load(name: str) -> Any:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    return json.loads(spec.strip_jsonc(text) if name.endswith(".jsonc") else text)


def validator_for(name: str) -> Any:
    if ".mds." in name:
        return spec.validate_mds_message
    if name.startswith("client."):
        return spec.validate_client_message
    return spec.validate_server_message


EXAMPLE_NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".json", ".jsonc"))


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples_validate_unless_outside_spec(name: str) -> None:
    """Current-form examples validate; legacy ones are rejected with a reason."""
    obj = load(name)
    validate = validator_for(name)
    if name in NOT_IN_SPEC:
        with pytest.raises(AssertionError, match="schema"):
            validate(obj)
    else:
        validate(obj)


@pytest.mark.parametrize("name", sorted(LEGACY_ACCEPTED))
def test_legacy_server_forms_with_allow_legacy(name: str) -> None:
    """allow_legacy=True accepts the docs/protocol.md §16 legacy server forms."""
    spec.validate_server_message(load(name), allow_legacy=True)


def test_strip_jsonc_keeps_slashes_in_strings() -> None:
    """strip_jsonc removes comments but not // inside strings."""
    text = '{"url": "wss://x//y", // comment\n "n": 1 // end\n}'
    assert json.loads(spec.strip_jsonc(text)) == {"url": "wss://x//y", "n": 1}


@pytest.mark.parametrize(
    ("validate", "obj", "fragment"),
    [
        (spec.validate_server_message, {}, "no schema"),
        (spec.validate_server_message, {"position_response": {"position": "1"}}, "'1' is not"),
        (spec.validate_server_message, {"subscribed": "bogus"}, "bogus"),
        (spec.validate_server_message, {"err": {"message": "x"}}, "error_code"),
        (spec.validate_server_message, [1], "JSON object"),
        (spec.validate_client_message, {"type": "subscribe"}, "params"),
        (spec.validate_client_message, {"type": "add_twap", "params": {}}, "required"),
        (spec.validate_client_message, {"type": "teleport", "params": {}}, "no schema"),
        (spec.validate_mds_message, {"type": "mark_price", "price": 1}, "string"),
        (spec.validate_mds_server_message, {"type": "subscribe", "channels": []}, "no schema"),
        (spec.validate_mds_client_message, {"type": "mark_price", "price": "1"}, "no schema"),
    ],
)
def test_invalid_messages_fail_with_reason(validate: Any, obj: Any, fragment: str) -> None:
    """Invalid messages raise AssertionError whose text explains the mismatch."""
    with pytest.raises(AssertionError, match=fragment):
        validate(obj)


def test_nullable_fields_accept_null() -> None:
    """nullable: true fields (trade_id, message) accept null after the rewrite."""
    spec.validate_server_message({"order_response": {"order_id": "1", "trade_id": None}})
    spec.validate_server_message({"err": {"error_code": "ServerError", "message": None}})


def test_message_lists_cover_both_directions() -> None:
    """The client list includes cancel_all_orders and the server list position_response."""
    assert "CancelAllOrdersCommand" in spec.client_message_names()
    assert "PositionResponse" in spec.server_message_names()
    assert not set(spec.client_message_names()) & set(spec.server_message_names())
