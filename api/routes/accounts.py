"""Accounts: an account as the chain holds it, its profile (the registered location and qualification the
order checks read) and its history. The certificates of an account are `api/routes/certificates.py`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import accounts, people
from ..deps import JsonBody, ServiceDep, SignedCaller, hex32
from ..schemas import AccountOut, errors

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

ERRORS = errors(400, 404, 409, 422)


class HistoryOrder(BaseModel):
    orderId: str
    role: str = Field(description="volunteer or payer")
    status: str
    district: int
    serviceType: int
    serviceName: str = Field(description="the service type's Chinese name (PROTOCOL.md section 1)")
    serviceNameEn: str
    districtName: str | None = Field(description="the GB/T 2260 name of the order's district")
    minutes: int
    startTime: int
    endTime: int
    acceptedAt: float


class HistoryOut(AccountOut):
    total: int = Field(description="the account's orders as volunteer and as payer, all pages")
    orders: list[HistoryOrder]


@router.get("/{account_id}", response_model=AccountOut, responses=ERRORS)
async def get_account(account_id: str, s: ServiceDep):
    """The account as the chain holds it, with its star level and the minutes promised in orders not
    yet anchored."""
    account = bytes.fromhex(hex32(account_id, "accountId")[2:])
    return await run_in_threadpool(accounts.account_view, s, account)


@router.put("/{account_id}/profile", responses=errors(400, 401, 403, 404, 409, 422))
async def put_profile(account_id: str, s: ServiceDep, who: SignedCaller, body: JsonBody) -> dict[str, Any]:
    """Set an account's registered location and professional qualification (signed request of the
    administrator of the account's district, or the city's)."""
    return await run_in_threadpool(accounts.set_profile, s, who, hex32(account_id, "accountId"), body)


@router.put("/{account_id}/location-exemption", responses=errors(400, 401, 403, 404, 422))
async def put_location_exemption(account_id: str, s: ServiceDep, who: SignedCaller, body: JsonBody) -> dict[str, Any]:
    """Record that a recipient with no registered location may be served (`{reason}`; signed request of
    the administrator of the account's district, or the city's)."""
    return await run_in_threadpool(accounts.set_location_exemption, s, who, hex32(account_id, "accountId"), body)


@router.delete("/{account_id}/location-exemption", responses=errors(400, 401, 403, 404, 422))
async def delete_location_exemption(account_id: str, s: ServiceDep, who: SignedCaller) -> dict[str, Any]:
    """End a recipient's location exemption (same signers)."""
    return await run_in_threadpool(accounts.set_location_exemption, s, who, hex32(account_id, "accountId"), None)


@router.get("/{account_id}/history", response_model=HistoryOut, responses=errors(400, 401, 403, 404, 409, 422))
async def get_history(
    account_id: str,
    s: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=people.HISTORY_MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    """An account's hours, star level and orders as volunteer and as payer (newest first). Anyone may
    read it by account id; it names no other party."""
    return await run_in_threadpool(people.history, s, hex32(account_id, "accountId"), limit=limit, offset=offset)
