"""Validate QFEX WebSocket messages against the published AsyncAPI documents.

Loads ``tests/fixtures/qfex/spec/qfex-trade-asyncapi.yml`` and ``qfex-mds-asyncapi.yml``
(copied into the repository; ``tests/fixtures/qfex/README.md`` says from where), inlines every local ``$ref`` and builds
one Draft 7 validator per message payload, once per process (``functools.cache``).

Public API (each raises ``AssertionError`` with the reason, returns None on success):

- ``validate_client_message(obj)``: obj is one of the trade gateway's client commands
  (what the server receives: auth, subscribe, add_order, cancel_all_orders, ...).
- ``validate_server_message(obj, allow_legacy=False)``: obj is one of the trade gateway's
  server messages (position_response, balance_response, authenticated, subscribed,
  order_response, fill_response, all_orders_response, ack, err, ...). With
  ``allow_legacy=True`` the docs/protocol.md §16 legacy forms are accepted too (``ack_response``,
  ``{"type":"auth","result":...}``, flat ``{"type":"error",...}``, ``user_orders``,
  ``user_trades``), described by schemas written here since the spec has none.
- ``strip_jsonc(text)``: drop ``//`` comments from the ``.jsonc`` examples.
- ``validate_mds_message(obj)``: obj is any market-data message, client subscribe or
  server update; ``validate_mds_client_message`` / ``validate_mds_server_message``
  narrow that to one direction.

Importing: ``from tests.support import asyncapi_schemas``.

Which messages are "client" ones: those referenced by an operation with
``action: receive`` (AsyncAPI 3: the described server receives them), plus channel
messages no operation references whose name ends in ``Command``.

Where the spec is wrong or too loose, and what this module does about it:

- Every server "response" payload is ``{"type":"object","properties":{"<key>": ...}}``
  with no ``required``, so ANY object (even ``{}``) validates against every one of
  them. This module adds ``required: ["<key>"]`` to every single-property payload, so a
  server message must at least carry the key it claims.
- ``nullable: true`` (OpenAPI 3.0, not JSON Schema) appears on ``trade_id``,
  ``client_twap_id``, ``updated_at``, ``created_at`` and ``ErrResponse.message``;
  jsonschema ignores it, so a ``null`` there would be rejected. It is rewritten as
  ``type: [<t>, "null"]``.
- ``CancelAllOrdersCommand`` is listed on the channel but referenced by no operation.
- ``SubscribeOrdersCommand`` message points at the ``SubscribePositionsCommand`` schema,
  so ``order_responses`` / ``stop_orders`` subscribes only validate through the
  unsubscribe-capable ``UnsubscribeCommand`` or not at all; this module fixes the
  message to use ``SubscribeOrdersCommand``.
- ``BalanceUpdate`` / ``PositionUpdate`` are the legacy ``v4_*`` envelope
  (docs/protocol.md §16.1/§16.2) and require ``connection_id`` and ``message_id``; the
  current server sends ``balance_response`` / ``position_response`` instead.
- ``ErrResponse.error_code`` is an enum; a newer server code would be rejected (the
  decoder accepts any string).
- ``LeveragePublic.leverage`` is ``type: string`` but leverage elsewhere is a number;
  left as published.
- MDS updates: every ``*Update`` schema is the ``MessageEnvelope`` (``connection_id``,
  ``message_id`` required) with a ``contents`` array, but every example (and the live
  gateway) sends flat frames ``{"type":"mark_price","symbol":...,"price":"..."}``. This
  module validates MDS updates against a flat schema derived from each update:
  ``type`` must equal the example's type and the ``contents`` item properties are
  checked at top level; the envelope form is accepted too. Prices are strings there.
- MDS subscribe commands' ``type`` enum is ``[unsubscribe, subscribe]`` and nothing
  prevents an empty ``symbols`` list.
- ``AddOrderCommand.order_type`` lacks ``TAKE_PROFIT`` / ``STOP_LOSS`` although the docs
  place stop orders through ``add_order`` (ex:client.add_order.stop_take_profit.jsonc);
  ``reduce_only`` (sent by the official CLI, docs/protocol.md §16.20) is not declared but
  passes because nothing forbids extra keys.
- No payload sets ``additionalProperties: false``: misspelled optional fields pass.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from tests.support.paths import QFEX_SPEC

SPEC_DIR = QFEX_SPEC
TRADE_SPEC = SPEC_DIR / "qfex-trade-asyncapi.yml"
MDS_SPEC = SPEC_DIR / "qfex-mds-asyncapi.yml"

_Named = list[tuple[str, Draft7Validator]]


def _resolve(node: Any, root: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Return ``node`` with every local ``$ref`` inlined and ``nullable`` rewritten."""
    if isinstance(node, list):
        return [_resolve(item, root, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:
            msg = f"recursive $ref {ref!r}"
            raise ValueError(msg)
        if not ref.startswith("#/"):
            msg = f"non-local $ref {ref!r}"
            raise ValueError(msg)
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return _resolve(target, root, (*seen, ref))
    out = {key: _resolve(value, root, seen) for key, value in node.items() if key != "examples"}
    if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict):
        msg = f"spec {path} is not a mapping"
        raise TypeError(msg)
    return doc


def _split_messages(doc: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Names (components/messages keys) of client and server messages, in spec order."""
    channel_msgs: dict[str, Any] = {}
    for channel in doc.get("channels", {}).values():
        channel_msgs.update(channel.get("messages", {}))

    def component_name(channel_msg_ref: str) -> str:
        key = channel_msg_ref.rsplit("/", 1)[-1]
        return str(channel_msgs[key]["$ref"]).rsplit("/", 1)[-1]

    client: list[str] = []
    server: list[str] = []
    for op in doc.get("operations", {}).values():
        bucket = client if op.get("action") == "receive" else server
        for ref in op.get("messages", []):
            name = component_name(ref["$ref"])
            if name not in bucket:
                bucket.append(name)
    for entry in channel_msgs.values():
        name = str(entry["$ref"]).rsplit("/", 1)[-1]
        if name not in client and name not in server:
            (client if name.endswith("Command") else server).append(name)
    return client, server


def _tighten_wrapper(schema: dict[str, Any]) -> dict[str, Any]:
    """Require the single key of a ``{"<key>_response": ...}`` wrapper payload."""
    props = schema.get("properties")
    if schema.get("type") == "object" and isinstance(props, dict) and len(props) == 1:
        if "required" not in schema and "allOf" not in schema:
            schema = {**schema, "required": list(props)}
    return schema


def _validator(schema: dict[str, Any]) -> Draft7Validator:
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def _payloads(doc: dict[str, Any], names: Iterable[str]) -> dict[str, dict[str, Any]]:
    messages = doc["components"]["messages"]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        payload = messages[name]["payload"]
        out[name] = _tighten_wrapper(_resolve(payload, doc))
    return out


@functools.cache
def _trade() -> tuple[_Named, _Named]:
    doc = _load(TRADE_SPEC)
    # Spec bug: the SubscribeOrdersCommand message points at SubscribePositionsCommand.
    doc["components"]["messages"]["SubscribeOrdersCommand"]["payload"] = {
        "$ref": "#/components/schemas/SubscribeOrdersCommand"
    }
    client_names, server_names = _split_messages(doc)
    client = [(n, _validator(s)) for n, s in _payloads(doc, client_names).items()]
    server = [(n, _validator(s)) for n, s in _payloads(doc, server_names).items()]
    return client, server


_NUM = {"type": ["number", "string"]}
_LEGACY_SERVER: dict[str, dict[str, Any]] = {
    # docs/protocol.md §16.7: ack_response is a bare boolean.
    "legacy ack_response": {
        "type": "object",
        "required": ["ack_response"],
        "properties": {"ack_response": {"type": "boolean"}},
    },
    # docs/protocol.md §16.4: {"type":"auth","result":"success"}.
    "legacy auth": {
        "type": "object",
        "required": ["type", "result"],
        "properties": {"type": {"const": "auth"}, "result": {"type": "string"}},
    },
    # docs/protocol.md §16.12: flat error form.
    "legacy error": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"const": "error"},
            "error_code": {"type": "string"},
            "message": {"type": ["string", "null"]},
        },
    },
    "legacy user_orders": {
        "type": "object",
        "required": ["user_orders"],
        "properties": {"user_orders": {"type": ["array", "object"]}},
    },
    "legacy user_trades": {
        "type": "object",
        "required": ["user_trades"],
        "properties": {"user_trades": {"type": "array"}},
    },
    "legacy v4 envelope": {
        "type": "object",
        "required": ["type", "channel", "contents"],
        "properties": {
            "type": {"type": "string"},
            "channel": {"enum": ["v4_positions", "v4_balances"]},
            "contents": {"type": "array", "items": {"type": "object"}},
        },
    },
}


def _drop_enum(schema: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    inner = out["properties"]["order_response"]["properties"][key]
    inner.pop("enum", None)
    return out


@functools.cache
def _legacy_server() -> _Named:
    named = [(n, _validator(s)) for n, s in _LEGACY_SERVER.items()]
    # docs/protocol.md §16.16: older docs show time_in_force "GFD", outside the enum.
    for name, validator in _trade()[1]:
        if name == "OrderResponse":
            loose = _drop_enum(dict(validator.schema), "time_in_force")
            named.append(("legacy order_response (any time_in_force)", _validator(loose)))
    return named


def _flatten_mds_update(schema: dict[str, Any], type_name: str | None) -> dict[str, Any]:
    """Derive the flat frame schema from an envelope ``allOf`` with a ``contents`` array."""
    item: dict[str, Any] = {}
    for part in schema.get("allOf", []):
        contents = part.get("properties", {}).get("contents")
        if isinstance(contents, dict):
            item = contents.get("items", {})
    props = dict(item.get("properties", {}))
    props["type"] = {"const": type_name} if type_name else {"type": "string"}
    return {"type": "object", "required": ["type"], "properties": props}


@functools.cache
def _mds() -> tuple[_Named, _Named]:
    doc = _load(MDS_SPEC)
    client_names, server_names = _split_messages(doc)
    client = [(n, _validator(s)) for n, s in _payloads(doc, client_names).items()]
    server: _Named = []
    messages = doc["components"]["messages"]
    schemas = doc["components"]["schemas"]
    for name in server_names:
        raw_ref = str(messages[name]["payload"].get("$ref", ""))
        raw = schemas.get(raw_ref.rsplit("/", 1)[-1], {})
        examples = raw.get("examples") or [{}]
        type_name = examples[0].get("type") if isinstance(examples[0], dict) else None
        envelope = _resolve(messages[name]["payload"], doc)
        server.append((f"{name} (flat)", _validator(_flatten_mds_update(envelope, type_name))))
        server.append((f"{name} (envelope)", _validator(envelope)))
    return client, server


def _candidates(obj: dict[str, Any], named: _Named) -> _Named:
    """Schemas worth reporting on: those whose ``type`` enum or wrapper key fits obj."""
    out: _Named = []
    for name, validator in named:
        props = validator.schema.get("properties", {})
        type_schema = props.get("type", {})
        allowed = type_schema.get("enum") or (
            [type_schema["const"]] if "const" in type_schema else None
        )
        if allowed is not None and obj.get("type") in allowed:
            out.append((name, validator))
        elif "type" not in props and set(validator.schema.get("required", [])) & set(obj):
            out.append((name, validator))
    return out


def _check(obj: object, named: _Named, what: str) -> None:
    if not isinstance(obj, dict):
        msg = f"{what}: expected a JSON object, got {type(obj).__name__}"
        raise AssertionError(msg)
    # Try the schemas whose type/key fits first: most calls then check one schema.
    near = _candidates(obj, named)
    for _name, validator in near:
        if validator.is_valid(obj):
            return
    for _name, validator in named:
        if validator.is_valid(obj):
            return
    sample = json.dumps(obj, default=str)[:200]
    if not near:
        msg = f"{what}: no schema has type/key matching {sample}"
        raise AssertionError(msg)
    reasons = []
    for name, validator in near:
        err = best_match(validator.iter_errors(obj))
        where = "/".join(str(p) for p in err.absolute_path) if err else ""
        reasons.append(f"{name}: {err.message if err else '?'} at '{where}'")
    msg = f"{what}: {sample} matches no schema; " + "; ".join(reasons)
    raise AssertionError(msg)


def validate_client_message(obj: dict[str, Any]) -> None:
    """Raise AssertionError unless obj is a valid trade-gateway client command."""
    _check(obj, _trade()[0], "client message")


def validate_server_message(obj: dict[str, Any], *, allow_legacy: bool = False) -> None:
    """Raise AssertionError unless obj is a valid trade-gateway server message."""
    named = _trade()[1] + (_legacy_server() if allow_legacy else [])
    _check(obj, named, "server message")


def validate_mds_client_message(obj: dict[str, Any]) -> None:
    """Raise AssertionError unless obj is a valid MDS subscribe/unsubscribe command."""
    _check(obj, _mds()[0], "mds client message")


def validate_mds_server_message(obj: dict[str, Any]) -> None:
    """Raise AssertionError unless obj is a valid MDS update (flat or envelope form)."""
    _check(obj, _mds()[1], "mds server message")


def validate_mds_message(obj: dict[str, Any]) -> None:
    """Raise AssertionError unless obj is a valid MDS message in either direction."""
    client, server = _mds()
    _check(obj, client + server, "mds message")


def strip_jsonc(text: str) -> str:
    """Remove ``//`` comments (outside strings) from a ``.jsonc`` example."""
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def client_message_names() -> list[str]:
    """Component names of the trade gateway's client messages (for coverage tests)."""
    return [name for name, _ in _trade()[0]]


def server_message_names() -> list[str]:
    """Component names of the trade gateway's server messages (for coverage tests)."""
    return [name for name, _ in _trade()[1]]


def _copy_schema(name: str) -> dict[str, Any]:
    """A deep copy of one resolved trade schema by message name (for inspection)."""
    for group in _trade():
        for n, validator in group:
            if n == name:
                return copy.deepcopy(dict(validator.schema))
    msg = f"no message named {name!r}"
    raise KeyError(msg)
