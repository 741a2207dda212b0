"""Orders (PROTOCOL.md section 6): submit one or many signed orders, read one, and its proof bundle."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..deps import LaxJsonBody, OptionalCaller, ServiceDep, hex32
from ..errors import localize, request_language
from ..schemas import ErrorBody, errors

router = APIRouter(prefix="/v1/orders", tags=["orders"])

ERRORS = errors(400, 404, 409, 422)


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


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()}}, "required": True}}


@router.post(
    "",
    status_code=201,
    response_model=OrderAccepted,
    responses={200: {"model": OrderAccepted, "description": "the same order again"}, **ERRORS},
    openapi_extra=_body_schema(OrderIn),
)
async def post_order(s: ServiceDep, body: LaxJsonBody, request: Request):
    """Submit one signed service order. 201 when accepted (durable before this answer), 200 for the
    same order again, 409 for the same orderId with other content, 4xx with a code when refused."""
    outcome = await s.submit_order(body)
    return JSONResponse(status_code=outcome.http_status, content=localize(outcome.body, request_language(request)))


@router.post("/bulk", response_model=BulkOut, responses=ERRORS, openapi_extra=_body_schema(BulkIn))
async def post_bulk(s: ServiceDep, body: LaxJsonBody, request: Request):
    """Submit up to 1,000 orders; one result per item, in order, each as the single endpoint answers."""
    outcomes = await s.submit_bulk(body)
    language = request_language(request)
    return JSONResponse(status_code=200, content={"results": [{"httpStatus": o.http_status, **localize(o.body, language)} for o in outcomes]})


@router.get("/{order_id}", responses=ERRORS)
async def get_order(order_id: str, s: ServiceDep, who: OptionalCaller) -> dict[str, Any]:
    """The order, its status (accepted, anchored, revoked, rejected) and, once anchored, its batch. The
    details only to a signed request of an administrator or auditor of the order's district or the city."""
    return await run_in_threadpool(s.order_view, hex32(order_id, "orderId"), who)


@router.get("/{order_id}/proof", responses=ERRORS)
async def get_proof(order_id: str, s: ServiceDep) -> dict[str, Any]:
    """The proof bundle of PROTOCOL.md section 7; 404 unknown order, 409 not anchored yet."""
    return await run_in_threadpool(s.proof_bundle, hex32(order_id, "orderId"))
