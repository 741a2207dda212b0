"""Relayed administrative commands: what became of one (`api/commands.py`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import protocol
from ..deps import ServiceDep
from ..errors import ApiError

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


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


@router.get(
    "/commands/{tx_hash}",
    response_model=CommandStatus,
    responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)
async def get_command(tx_hash: str, s: ServiceDep) -> dict[str, Any]:
    """A command this service relayed, by the transaction hash it answered with (or a later one's): whether
    the chain holds it, and if the chain lost it with rolled-back blocks, whether it was sent again or why
    it is lost."""
    try:
        tx_hash = protocol.to_hex(protocol.parse_bytes(tx_hash.lower(), 32, "txHash"))
    except protocol.ProtocolError as exc:
        raise ApiError(exc.code, exc.message) from None
    return await run_in_threadpool(s.commands.view, tx_hash)
