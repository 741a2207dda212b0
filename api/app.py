"""The HTTP API of PROTOCOL.md section 6 (FastAPI). Routes parse, call the service, and answer through
one error handler: every refusal is `{"error": {"code", "message"}}` with the catalogue's status."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import protocol
from .deps import AccountOut, JsonBody, OptionalCaller, ServiceDep, SignedCaller
from .chain import ChainUnavailable
from .errors import CATALOGUE, ApiError
from .intake import Outcome, prepare
from .routes import audit as audit_routes
from .routes import certificates as certificates_routes
from .routes import commands as commands_routes
from .routes import people as people_routes
from .routes import web as web_routes
from .certificates import Verifications
from .service import Service
from .serving import BodyLimit
from .settings import Settings, get_settings

log = logging.getLogger(__name__)


# ----- schemas (for the OpenAPI document; bodies are checked by the protocol module) ---------------


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code (see the README's catalogue)")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class OrderIn(BaseModel):
    order: dict[str, Any] = Field(description="every ServiceOrder field (PROTOCOL.md section 3)")
    signature: str = Field(description="65-byte EIP-712 signature by the station, 0x hex")
    details: dict[str, Any] = Field(description="the off-chain details whose canonical keccak256 is detailsHash")


class OrderAccepted(BaseModel):
    orderId: str
    status: str
    digest: str
    station: str


class BulkIn(BaseModel):
    items: list[dict[str, Any]]


class BulkResult(BaseModel):
    httpStatus: int
    orderId: str | None = None
    status: str | None = None
    digest: str | None = None
    station: str | None = None
    error: ErrorBody | None = None


class BulkOut(BaseModel):
    results: list[BulkResult]


class CommandIn(BaseModel):
    type: str = Field(description="one of PROTOCOL.md section 4's struct names")
    message: dict[str, Any]
    signature: str


class CommandOut(BaseModel):
    txHash: str
    blockNumber: int
    signer: str
    type: str
    applied: bool = Field(description="whether the service's mirror had applied the block when it answered")


ERRORS = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}


def _json(status: int, body: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content=body)


async def _body(request: Request, limit: int) -> Any:
    return await _body_of(await request.body(), limit)


async def _body_of(raw: bytes, limit: int) -> Any:
    """An order, bulk or command body. Parsed as Python does (NaN and lone surrogates included): what
    the protocol cannot take is refused item by item, by `prepare` and `protocol.parse_message`."""
    if len(raw) > limit:
        raise ApiError("body_too_large", f"the body is {len(raw)} bytes, over the limit of {limit}")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than Python parses
        raise ApiError("invalid_request", "the body is not JSON") from None


def _prepare_all(items: list, separator: bytes, settings: Settings) -> list:
    """`prepare` of every bulk item (off the event loop: about 0.1 ms an item), a refusal in its place."""
    prepared: list = []
    for item in items:
        try:
            prepared.append(prepare(item, separator=separator, settings=settings))
        except ApiError as exc:
            prepared.append(exc)
    return prepared


def _hex32(value: str, field: str) -> str:
    try:
        return protocol.to_hex(protocol.parse_bytes(value.lower(), 32, field))
    except protocol.ProtocolError as exc:
        raise ApiError(exc.code, exc.message) from None


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own = service is None
        app.state.service = service or Service(settings)
        app.state.verifications = Verifications(settings.certificate_verify_workers, settings.certificate_verify_waiting)
        if own:
            app.state.service.start()
        yield
        app.state.verifications.close()
        if own:
            app.state.service.stop()

    app = FastAPI(
        title="Time-bank ledger",
        version="1",
        description="Signed service orders in, Merkle-anchored batches out, proofs any auditor checks alone. "
        "Wire formats: PROTOCOL.md.",
        lifespan=lifespan,
        docs_url=None,  # /docs with local assets: api/routes/web.py
        redoc_url=None,
    )

    # bodies over the limit are refused before they are read (api/serving.py)
    app.add_middleware(BodyLimit, limit=lambda _path: settings.max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return _json(exc.status, exc.body())

    @app.exception_handler(ChainUnavailable)
    async def _chain_down(_request: Request, _exc: ChainUnavailable):
        return _json(503, ApiError("chain_unavailable").body())

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _json(400, ApiError("invalid_request", f"{where}: {first.get('msg', 'invalid')}").body())

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        code = "not_found" if exc.status_code == 404 else "invalid_request"
        return _json(exc.status_code, {"error": {"code": code, "message": str(exc.detail)}})

    def svc(request: Request) -> Service:
        return request.app.state.service

    @app.get("/v1/health", tags=["service"])
    async def health(request: Request) -> dict[str, Any]:
        """Chain id, contract, latest block, database ok, orders waiting to be anchored."""
        return await run_in_threadpool(svc(request).health)

    @app.get("/v1/domain", tags=["protocol"])
    async def domain(request: Request) -> dict[str, Any]:
        """The EIP-712 domain and types (PROTOCOL.md section 2)."""
        s = svc(request)
        return protocol.typed_data(s.chain_id, s.contract_address)

    @app.get("/v1/errors", tags=["protocol"])
    async def errors() -> dict[str, Any]:
        """The catalogue of error codes with their HTTP status."""
        return {code: {"status": status, "meaning": meaning} for code, (status, meaning) in CATALOGUE.items()}

    @app.post(
        "/v1/orders",
        tags=["orders"],
        status_code=201,
        response_model=OrderAccepted,
        responses={200: {"model": OrderAccepted, "description": "the same order again"}, **ERRORS},
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": OrderIn.model_json_schema()}}, "required": True}},
    )
    async def post_order(request: Request):
        """Submit one signed service order. 201 when accepted (durable before this answer), 200 for the
        same order again, 409 for the same orderId with other content, 4xx with a code when refused."""
        s = svc(request)
        body = await _body(request, settings.max_body_bytes)
        try:
            item = prepare(body, separator=s.separator, settings=settings)
        except ApiError as exc:
            return _json(exc.status, exc.body())
        (outcome,) = await s.writer.submit([item])
        return _json(outcome.http_status, outcome.body)

    @app.post(
        "/v1/orders/bulk",
        tags=["orders"],
        response_model=BulkOut,
        responses=ERRORS,
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": BulkIn.model_json_schema()}}, "required": True}},
    )
    async def post_bulk(request: Request):
        """Submit up to 1,000 orders; one result per item, in order, each as the single endpoint answers."""
        s = svc(request)
        body = await _body(request, settings.max_body_bytes)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ApiError("invalid_request", "expected an object with items")
        if len(items) > settings.bulk_max_items:
            raise ApiError("too_many_items", f"{len(items)} items, at most {settings.bulk_max_items}")
        prepared = await run_in_threadpool(_prepare_all, items, s.separator, settings)
        outcomes: list[Outcome] = await s.writer.submit(prepared) if prepared else []
        results = []
        for o in outcomes:
            results.append({"httpStatus": o.http_status, **o.body})
        return _json(200, {"results": results})

    @app.get("/v1/orders/{order_id}", tags=["orders"], responses=ERRORS)
    async def get_order(order_id: str, request: Request, who: OptionalCaller) -> dict[str, Any]:
        """The order, its status (accepted, anchored, revoked, rejected) and, once anchored, its batch. The
        details only to a signed request of an administrator or auditor of the order's district or the city."""
        return await run_in_threadpool(svc(request).order_view, _hex32(order_id, "orderId"), who)

    @app.get("/v1/orders/{order_id}/proof", tags=["orders"], responses=ERRORS)
    async def get_proof(order_id: str, request: Request) -> dict[str, Any]:
        """The proof bundle of PROTOCOL.md section 7; 404 unknown order, 409 not anchored yet."""
        return await run_in_threadpool(svc(request).proof_bundle, _hex32(order_id, "orderId"))

    @app.get("/v1/accounts/{account_id}", tags=["accounts"], response_model=AccountOut, responses=ERRORS)
    async def get_account(account_id: str, request: Request):
        """The account as the chain holds it, with its star level and the minutes promised in orders not
        yet anchored."""
        account = bytes.fromhex(_hex32(account_id, "accountId")[2:])
        return await run_in_threadpool(svc(request).account_view, account)

    @app.put("/v1/accounts/{account_id}/profile", tags=["accounts"], responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, **ERRORS})
    async def put_profile(account_id: str, s: ServiceDep, who: SignedCaller, body: JsonBody) -> dict[str, Any]:
        """Set an account's registered location and professional qualification (signed request of the
        administrator of the account's district, or the city's)."""
        return await run_in_threadpool(s.set_profile, who, _hex32(account_id, "accountId"), body)

    @app.put("/v1/accounts/{account_id}/location-exemption", tags=["accounts"], responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, **ERRORS})
    async def put_location_exemption(account_id: str, s: ServiceDep, who: SignedCaller, body: JsonBody) -> dict[str, Any]:
        """Record that a recipient with no registered location may be served (`{reason}`; signed request of
        the administrator of the account's district, or the city's)."""
        return await run_in_threadpool(s.set_location_exemption, who, _hex32(account_id, "accountId"), body)

    @app.delete("/v1/accounts/{account_id}/location-exemption", tags=["accounts"], responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, **ERRORS})
    async def delete_location_exemption(account_id: str, s: ServiceDep, who: SignedCaller) -> dict[str, Any]:
        """End a recipient's location exemption (same signers)."""
        return await run_in_threadpool(s.set_location_exemption, who, _hex32(account_id, "accountId"), None)

    @app.post(
        "/v1/admin/commands",
        tags=["admin"],
        response_model=CommandOut,
        responses=ERRORS,
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": CommandIn.model_json_schema()}}, "required": True}},
    )
    async def post_command(request: Request):
        """Relay a signed administrative command (PROTOCOL.md section 4). The service checks the signature
        and role, the contract checks them again; answers with the transaction hash once mined."""
        s = svc(request)
        body = await _body(request, settings.max_body_bytes)
        return await run_in_threadpool(s.relay_command, body)

    # routers of the time-bank flows (api/routes/)
    app.include_router(people_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(certificates_routes.router)
    app.include_router(commands_routes.router)
    # the pages and /docs, served from the web/ build (last: its fallback takes every other GET)
    web_routes.install(app)

    return app
