"""Dependencies the routers receive (never build): the service, a signed caller, the raw JSON body."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from .auth import Caller, authenticate
from .errors import ApiError
from .service import Service


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


async def raw_body(request: Request) -> bytes:
    raw = await request.body()
    limit = request.app.state.service.settings.max_body_bytes
    if len(raw) > limit:
        raise ApiError("body_too_large", f"the body is {len(raw)} bytes, over the limit of {limit}")
    return raw


RawBody = Annotated[bytes, Depends(raw_body)]


async def json_body(raw: RawBody) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError("invalid_request", "the body is not JSON") from None


JsonBody = Annotated[Any, Depends(json_body)]


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
        skew=s.settings.clock_skew_seconds,
    )


SignedCaller = Annotated[Caller, Depends(signed_caller)]
