"""JSON in and out of the HTTP API: documents with explicit non-finite numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = ["error_response", "json_response", "read_json_body"]


def _json_default(value: object) -> object:
    return str(value)


def _clean(value: Any) -> Any:
    """Make a document JSON-safe: non-finite floats become strings ("inf", "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def json_response(doc: Any, status: int = 200) -> web.Response:
    """A JSON response with non-finite floats made explicit strings."""
    text = json.dumps(_clean(doc), default=_json_default, indent=1, sort_keys=False)
    return web.Response(text=text, status=status, content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    """``{"error": message}`` with ``status``."""
    return json_response({"error": message}, status=status)


async def read_json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; raises HTTPBadRequest with a clear reason."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body
