"""Dependencies the routers receive (never build): the service, a signed caller, the raw and parsed
bodies; and the one check of a 32-byte id in a path (`hex32`)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from . import protocol
from .auth import Caller, authenticate
from .errors import ApiError
from .service import Service


def hex32(value: str, field: str) -> str:
    """A 32-byte id of a path (an order, account, group or member id) as 0x lower-case hex; 400
    `malformed_hex` or `wrong_length` otherwise."""
    try:
        return protocol.to_hex(protocol.parse_bytes(value.lower(), 32, field))
    except protocol.ProtocolError as exc:
        raise ApiError(exc.code, exc.message) from None


async def get_service(request: Request) -> Service:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


async def raw_body(request: Request) -> bytes:
    raw = await request.body()
    limit = request.app.state.service.settings.max_body_bytes
    if len(raw) > limit:
        raise ApiError("body_too_large", f"the body is {len(raw)} bytes, over the limit of {limit}")
    return raw


RawBody = Annotated[bytes, Depends(raw_body)]


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """The body of the routers' endpoints (people, supervision, certificates) as strict JSON (RFC 8259):
    no NaN or Infinity, no lone surrogates (which no database or UTF-8 text can hold), no nesting deeper
    than Python parses. Refusals are 400 `invalid_request`."""
    try:
        value = json.loads(raw, parse_constant=_no_constant)
        if _SURROGATE_ESCAPE.search(raw):  # escaped surrogates: only whole pairs are text
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError):
        raise ApiError("invalid_request", "the body is not JSON (RFC 8259, UTF-8)") from None
    return value


async def json_body(raw: RawBody) -> Any:
    return parse_json(raw)


JsonBody = Annotated[Any, Depends(json_body)]


async def lax_json_body(raw: RawBody) -> Any:
    """The body of an order, bulk or command request, parsed as Python does (NaN and lone surrogates
    included): what the protocol cannot take is refused item by item (`intake.prepare`,
    `protocol.parse_message`), so that one bad item of a bulk request does not refuse the others."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than Python parses
        raise ApiError("invalid_request", "the body is not JSON") from None


LaxJsonBody = Annotated[Any, Depends(lax_json_body)]


async def signed_caller(request: Request, raw: RawBody) -> Caller:
    """The signer of a signed request (api/auth.py), with the roles the chain gives it; 401 otherwise."""
    s: Service = request.app.state.service
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return await run_in_threadpool(
        authenticate,
        request.headers,
        request.method,
        path,
        raw,
        separator=s.separator,
        city_admin=s.city_admin,
        sessions=s.reads,
        skew=s.settings.request_window_seconds,
        hosts=s.settings.service_hosts(),
        writes=s.sessions,
    )


SignedCaller = Annotated[Caller, Depends(signed_caller)]


async def optional_caller(request: Request, raw: RawBody) -> Caller | None:
    """The signer of a signed request, or None for an unsigned one (a badly signed one is refused: 401)."""
    if not any(h in request.headers for h in ("x-timebank-signer", "x-timebank-signature")):
        return None
    return await signed_caller(request, raw)


OptionalCaller = Annotated[Caller | None, Depends(optional_caller)]


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` written in place, for an operation's `openapi_extra` (a
    `#/$defs/...` reference would point at nothing inside the OpenAPI document)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref[len("#/$defs/") :]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)
