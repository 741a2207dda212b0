"""Administrative commands (PROTOCOL.md section 4): relayed to the contract once checked."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..deps import LaxJsonBody, ServiceDep
from ..schemas import errors

router = APIRouter(prefix="/v1/admin", tags=["admin"])


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


@router.post(
    "/commands",
    response_model=CommandOut,
    responses=errors(400, 404, 409, 422),
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": CommandIn.model_json_schema()}}, "required": True}},
)
async def post_command(s: ServiceDep, body: LaxJsonBody):
    """Relay a signed administrative command (PROTOCOL.md section 4). The service checks the signature
    and role, the contract checks them again; answers with the transaction hash once mined."""
    return await run_in_threadpool(s.relay_command, body)
