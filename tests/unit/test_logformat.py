"""JSON log lines: one object per line, context fields, secrets masked as in text mode."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from riskwatch.logformat import JsonFormatter, bound_context, log_context
from riskwatch.logredact import RedactingFilter

SECRET = "sk-Tz91-very-secret-4e1b"


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter([SECRET]))
    logger = logging.getLogger("riskwatch.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_base_fields(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.warning("alert %s FIRING", "MarginWarn")
    (doc,) = lines(stream)
    assert doc["level"] == "warning"
    assert doc["logger"] == "riskwatch.test.json"
    assert doc["message"] == "alert MarginWarn FIRING"
    assert isinstance(doc["time"], str)
    assert doc["time"].endswith("Z")
    assert "T" in doc["time"]
    assert set(doc) == {"time", "level", "logger", "message"}


def test_extra_and_bound_context(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    with log_context(account="desk-a", trip_id=7):
        logger.info("inside", extra={"rule": "LossFlatten", "action_id": "t7-close-1"})
        with log_context(symbol="AAPL-USD"):
            logger.info("nested")
    logger.info("outside")
    inside, nested, outside = lines(stream)
    assert inside["account"] == "desk-a"
    assert inside["trip_id"] == 7
    assert inside["rule"] == "LossFlatten"
    assert inside["action_id"] == "t7-close-1"
    assert nested["symbol"] == "AAPL-USD"
    assert nested["account"] == "desk-a"
    assert "account" not in outside
    assert "symbol" not in outside


async def test_task_context(capture: tuple[logging.Logger, io.StringIO]) -> None:
    """A task started with ``bound_context`` names its account on every line it logs."""
    logger, stream = capture

    async def work() -> None:
        logger.info("from the task")

    await asyncio.create_task(work(), context=bound_context(account="desk-b"))
    logger.info("from the caller")
    task_line, caller_line = lines(stream)
    assert task_line["account"] == "desk-b"
    assert "account" not in caller_line


def test_multiline_and_exception_stay_on_one_line(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    try:
        raise RuntimeError(f"connect to wss://user:{SECRET}@x failed\nsecond line")
    except RuntimeError:
        logger.exception("trade connection failed with %s", SECRET)
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert SECRET not in text
    (doc,) = lines(stream)
    assert doc["message"] == "trade connection failed with ********"
    assert "RuntimeError" in str(doc["exception"])
    assert "********" in str(doc["exception"])


def test_unserialisable_values_become_text(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("odd", extra={"account": object()})
    (doc,) = lines(stream)
    assert str(doc["account"]).startswith("<object object")
