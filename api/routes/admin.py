"""Administrative commands (PROTOCOL.md section 4): relayed to the contract once checked, and what became
of one (`api/commands.py`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..deps import LaxJsonBody, ServiceDep, hex32
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
    return await run_in_threadpool(s.commands.relay, body)


class CommandStatus(BaseModel):
    txHash: str = Field(description="the transaction hash the administrator was answered with")
    type: str
    signer: str
    message: dict[str, Any]
    status: str = Field(
        description="sent, mined, reverted, refused (its transaction's status); resending (the chain lost it"
        " with rolled-back blocks and it is being sent again); lost (lost, and the chain now refuses it: reason)"
    )
    acknowledged: bool = Field(description="answered 200 with txHash")
    currentTxHash: str = Field(description="the transaction now carrying it (another one once sent again)")
    blockNumber: int | None
    resends: int
    reason: str | None


@router.get("/commands/{tx_hash}", response_model=CommandStatus, responses=errors(400, 404))
async def get_command(tx_hash: str, s: ServiceDep) -> dict[str, Any]:
    """A command this service relayed, by the transaction hash it answered with (or a later one's): whether
    the chain holds it, and if the chain lost it with rolled-back blocks, whether it was sent again or why
    it is lost."""
    return await run_in_threadpool(s.commands.view, hex32(tx_hash, "txHash"))
