"""Command builders (riskwatch.qfex.commands) against the AsyncAPI schemas."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from riskwatch.qfex import commands
from riskwatch.qfex.auth import verify
from tests.support.asyncapi_schemas import validate_client_message, validate_mds_message

SECRET = "s3cr3t-qfex-secret-value"
NONCE = "c0ffee" * 5

ALL_TRADE_COMMANDS = [
    commands.auth_hmac("qfex_pub_1", SECRET, 1_760_545_414, NONCE),
    commands.auth_hmac("qfex_pub_1", SECRET, 1_760_545_414, NONCE, account_id="sub-1"),
    commands.auth_jwt("eyJhbGciOi.x.y"),
    commands.auth_jwt("eyJhbGciOi.x.y", account_id="sub-1"),
    *(commands.subscribe(ch) for ch in sorted(commands.TRADE_CHANNELS)),
    *(commands.unsubscribe(ch) for ch in sorted(commands.TRADE_CHANNELS)),
    commands.close_position("AAPL-USD", "rw-0123456789abcdef0123"),
    commands.cancel_all_orders(),
    *(commands.cancel_order("AAPL-USD", "id-1", t) for t in commands.CANCEL_ID_TYPES),
    commands.get_user_orders(),
    commands.get_user_orders(limit=10, offset=0, symbol="AAPL-USD"),
    commands.set_user_leverage("AAPL-USD", 5),
    commands.get_user_leverage(),
    commands.add_twap("AAPL-USD", "SELL", 10.0, 5, 30),
    commands.add_twap("AAPL-USD", "BUY", 1, 2, 60, reduce_only=False, client_twap_id="rw-x"),
]


@pytest.mark.parametrize("frame", ALL_TRADE_COMMANDS)
def test_every_trade_command_validates(frame: str) -> None:
    """Every trade command built validates against TRADE-AA and has type + params."""
    obj = json.loads(frame)
    validate_client_message(obj)
    assert set(obj) == {"type", "params"}
    assert obj["type"] != "cancel_on_disconnect"


@pytest.mark.parametrize(
    "frame",
    [
        commands.mds_subscribe("mark_price", ["AAPL-USD", "TSLA-USD"]),
        commands.mds_unsubscribe("mark_price", ["AAPL-USD"]),
        commands.mds_subscribe("market_stats", ["*"]),
    ],
)
def test_mds_commands_validate(frame: str) -> None:
    """MDS subscribe/unsubscribe frames validate against MDS-AA."""
    validate_mds_message(json.loads(frame))


def test_no_cancel_on_disconnect_builder() -> None:
    """The module deliberately offers no cancel_on_disconnect builder."""
    assert not [name for name in dir(commands) if "disconnect" in name.lower()]


def test_frames_are_compact_json() -> None:
    """Frames are compact JSON text with no whitespace between tokens."""
    assert commands.cancel_all_orders() == '{"type":"cancel_all_orders","params":{}}'
    assert commands.subscribe("positions") == (
        '{"type":"subscribe","params":{"channels":["positions"]}}'
    )


def test_auth_hmac_signature_and_no_secret() -> None:
    """The HMAC frame verifies under the secret and never contains the secret."""
    frame = commands.auth_hmac("qfex_pub_1", SECRET, 1_760_545_414, NONCE, account_id="acc")
    assert SECRET not in frame
    obj = json.loads(frame)
    h = obj["params"]["hmac"]
    assert h == {
        "public_key": "qfex_pub_1",
        "nonce": NONCE,
        "unix_ts": 1_760_545_414,
        "signature": h["signature"],
    }
    assert re.fullmatch(r"[0-9a-f]{64}", h["signature"])
    assert verify(SECRET, NONCE, 1_760_545_414, h["signature"])
    assert obj["params"]["account_id"] == "acc"


def test_auth_without_account_has_no_account_key() -> None:
    """account_id is omitted entirely when not given."""
    assert "account_id" not in json.loads(commands.auth_jwt("t"))["params"]


def test_one_channel_per_subscribe_frame() -> None:
    """subscribe and unsubscribe carry exactly one channel."""
    assert json.loads(commands.subscribe("fills"))["params"]["channels"] == ["fills"]
    assert json.loads(commands.unsubscribe("fills"))["params"]["channels"] == ["fills"]


def test_cancel_order_puts_id_in_order_id() -> None:
    """cancel_order carries any id kind in order_id with cancel_order_id_type (§16.11)."""
    params = json.loads(commands.cancel_order("A-USD", "rw-1", "client_order_id"))["params"]
    assert params == {
        "symbol": "A-USD",
        "order_id": "rw-1",
        "cancel_order_id_type": "client_order_id",
    }


def test_add_twap_params() -> None:
    """add_twap is reduce-only by default and carries float quantity and int counts."""
    params = json.loads(commands.add_twap("A-USD", "SELL", 3, 4, 45))["params"]
    assert params == {
        "symbol": "A-USD",
        "side": "SELL",
        "total_quantity": 3.0,
        "num_orders": 4,
        "order_interval_secs": 45,
        "reduce_only": True,
    }


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: commands.add_twap("A", "SELL", 1.0, 1, 30), "num_orders"),
        (lambda: commands.add_twap("A", "SELL", 1.0, 2, 29), "order_interval_secs"),
        (lambda: commands.add_twap("A", "SELL", 1.0, 2.5, 30), "num_orders"),  # type: ignore[arg-type]
        (lambda: commands.add_twap("A", "SELL", 0.0, 2, 30), "total_quantity"),
        (lambda: commands.add_twap("A", "SELL", float("nan"), 2, 30), "total_quantity"),
        (lambda: commands.add_twap("A", "HOLD", 1.0, 2, 30), "side"),  # type: ignore[arg-type]
        (lambda: commands.add_twap("A", "SELL", 1.0, 2, 30, client_twap_id="x" * 37), "client"),
        (lambda: commands.subscribe("v4_positions"), "v4_positions"),
        (lambda: commands.unsubscribe("orders"), "orders"),
        (lambda: commands.mds_subscribe("refdata", ["A"]), "refdata"),
        (lambda: commands.mds_subscribe("mark_price", []), "symbol"),
        (lambda: commands.mds_subscribe("mark_price", "AAPL-USD"), "AAPL-USD"),
        (lambda: commands.close_position("", "rw-1"), "symbol"),
        (lambda: commands.close_position("A", ""), "client_order_id"),
        (lambda: commands.cancel_order("A", "1", "uuid"), "uuid"),
        (lambda: commands.cancel_order("A", "", "order_id"), "order_id"),
        (lambda: commands.set_user_leverage("A", 0), "leverage"),
        (lambda: commands.set_user_leverage("A", True), "leverage"),
        (lambda: commands.get_user_orders(limit=-1), "limit"),
        (lambda: commands.get_user_orders(offset=1.5), "offset"),  # type: ignore[arg-type]
        (lambda: commands.auth_hmac("p", SECRET, -1, NONCE), "unix_ts"),
        (lambda: commands.auth_hmac("p", SECRET, 1, "n" * 101), "nonce"),
        (lambda: commands.auth_hmac("", SECRET, 1, NONCE), "public_key"),
        (lambda: commands.auth_jwt(""), "jwt"),
    ],
)
def test_invalid_arguments_raise_value_error(call: Any, fragment: str) -> None:
    """Invalid arguments raise ValueError naming the offending value, never the secret."""
    with pytest.raises(ValueError, match=re.escape(fragment)) as info:
        call()
    assert SECRET not in str(info.value)


def test_client_order_id_shape_and_determinism() -> None:
    """client_order_id is rw- plus 20 hex digits, stable for equal inputs."""
    a = commands.client_order_id("max_loss", "main", "AAPL-USD", 3, 1)
    assert re.fullmatch(r"rw-[0-9a-f]{20}", a)
    assert len(a) <= commands.MAX_CLIENT_ID_CHARS
    assert a == commands.client_order_id("max_loss", "main", "AAPL-USD", 3, 1)
    assert a == commands.client_order_id("max_loss", "main", "AAPL-USD", "3", 1)


@pytest.mark.parametrize(
    "other",
    [
        ("max_loss", "main", "AAPL-USD", 3, 2),
        ("max_loss", "main", "AAPL-USD", 4, 1),
        ("max_loss", "main", "TSLA-USD", 3, 1),
        ("max_loss", "alt", "AAPL-USD", 3, 1),
        ("max_lossy", "main", "AAPL-USD", 3, 1),
        ("max", "loss-main", "AAPL-USD", 3, 1),
    ],
)
def test_client_order_id_differs_per_part(other: tuple[str, str, str, int, int]) -> None:
    """Changing any part (a new attempt, trip, symbol, ...) changes the id."""
    assert commands.client_order_id(
        "max_loss", "main", "AAPL-USD", 3, 1
    ) != commands.client_order_id(*other)


def test_client_order_id_usable_in_close_position() -> None:
    """A generated id is accepted by close_position and by the schema."""
    cid = commands.client_order_id("r", "a", "AAPL-USD", 1, 1)
    validate_client_message(json.loads(commands.close_position("AAPL-USD", cid)))
