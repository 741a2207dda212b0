"""The service and its protocol: health, the EIP-712 domain and types, the error catalogue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from .. import protocol
from ..deps import ServiceDep
from ..errors import CATALOGUE, MESSAGES_ZH

router = APIRouter(prefix="/v1")


@router.get("/health", tags=["service"])
async def health(s: ServiceDep) -> dict[str, Any]:
    """Chain id, contract, latest block, database ok, orders waiting to be anchored."""
    return await run_in_threadpool(s.health)


@router.get("/domain", tags=["protocol"])
async def domain(s: ServiceDep) -> dict[str, Any]:
    """The EIP-712 domain and types (PROTOCOL.md section 2)."""
    return protocol.typed_data(s.chain_id, s.contract_address)


@router.get("/errors", tags=["protocol"])
async def errors() -> dict[str, Any]:
    """The catalogue of error codes with their HTTP status."""
    return {code: {"status": status, "meaning": meaning, "meaningZh": MESSAGES_ZH[code]} for code, (status, meaning) in CATALOGUE.items()}
