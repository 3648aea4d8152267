"""The retry-or-fatal verdict on a connection failure (riskwatch.qfex.transport)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.frames import Close
from websockets.http11 import Response

from riskwatch.qfex.transport import classify_failure


def _status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "x", Headers()))


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(),
        ConnectionResetError(),
        OSError("network unreachable"),
        TimeoutError(),
        EOFError(),
        ConnectionClosedError(Close(1011, "internal"), None),
        ConnectionClosedOK(Close(1000, ""), Close(1000, ""), rcvd_then_sent=True),
        InvalidMessage("did not receive a valid HTTP response"),
        _status(500),
        _status(503),
        _status(429),
        _status(401),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientConnectionError("connection reset"),
    ],
)
def test_retryable(exc: BaseException) -> None:
    """Network, timeout, closed-connection and handshake failures, on either transport, are retried."""
    assert classify_failure(exc) == "retry"


@pytest.mark.parametrize(
    "exc",
    [
        TypeError("bug"),
        AttributeError("bug"),
        KeyError("k"),
        ValueError("v"),
        ZeroDivisionError(),
        InvalidURI("ftp://x", "scheme isn't ws or wss"),
        asyncio.CancelledError(),
        KeyboardInterrupt(),
    ],
)
def test_fatal(exc: BaseException) -> None:
    """Programming and configuration errors, and cancellation, are fatal."""
    assert classify_failure(exc) == "fatal"
