"""The family look-up by card number and check code (卡片校验码), the check code's re-issue, the names
of the districts and the registered stations. The flows are in `api/cards.py` and `api/names.py`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import cards, names, people
from ..deps import JsonBody, ServiceDep, SignedCaller, inline_schema
from ..schemas import errors

router = APIRouter(prefix="/v1", tags=["people"])


class LookupIn(BaseModel):
    cardNumber: str
    checkCode: str = Field(description="the code printed with the card (case, spaces and dashes ignored)")


class LookupOut(BaseModel):
    cardNumber: str
    account: str = Field(description="keccak256(utf8(cardNumber))")
    district: int
    districtName: str | None
    kind: int
    status: int = Field(description="0 until the chain registers the account")
    name: str = Field(description="masked: first and last character")
    balanceMinutes: int
    earnedMinutes: int
    starLevel: int
    pendingDebitMinutes: int


class CheckCodeOut(BaseModel):
    cardNumber: str
    checkCode: str


class DistrictOut(BaseModel):
    district: int
    name: str | None
    fullName: str | None


class DistrictsOut(BaseModel):
    districts: list[DistrictOut]


class StationOut(BaseModel):
    station: str
    district: int
    activeFromBlock: int
    activeUntilBlock: int = Field(description="0: still active")


class StationsOut(BaseModel):
    stations: list[StationOut]


def client_of(request: Request) -> str:
    """The client's address, as the connection shows it (behind a reverse proxy: the proxy's; see the
    README on running behind one)."""
    return request.client.host if request.client else "unknown"


@router.post(
    "/people/lookup",
    response_model=LookupOut,
    responses=errors(400, 404, 429),
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": inline_schema(LookupIn)}}, "required": True}},
)
async def lookup(request: Request, s: ServiceDep, body: JsonBody):
    """A person's own hours by card number and check code (the family page). A wrong code and an unknown
    card both answer `404 not_found`; after a few failures a minute from one client, `429
    too_many_requests` with `Retry-After`."""
    return await run_in_threadpool(cards.lookup, s, body, client=client_of(request))


@router.post("/people/{card_number}/check-code", response_model=CheckCodeOut, responses=errors(400, 401, 403, 404))
async def reissue_check_code(card_number: str, s: ServiceDep, who: SignedCaller):
    """A new check code for a lost card (signed request of the administrator of the person's district, or
    the city's); the old one stops working. The code is in this answer only."""
    return await run_in_threadpool(cards.reissue, s, who, card_number)


@router.get("/stations", response_model=StationsOut, tags=["service"])
async def list_stations(s: ServiceDep, district: int | None = None):
    """The stations registered on chain (of one district, or all), as the service's mirror holds them."""
    return await run_in_threadpool(people.list_stations, s, district=district)


@router.get("/districts", response_model=DistrictsOut, tags=["service"])
async def list_districts(s: ServiceDep) -> dict[str, Any]:
    """The districts registered on chain, with their GB/T 2260 names."""

    def read() -> dict[str, Any]:
        from sqlalchemy import select

        from .. import db

        with s.reads() as session:
            codes = session.scalars(select(db.District.district).order_by(db.District.district)).all()
        return {"districts": [names.view(code) for code in codes]}

    return await run_in_threadpool(read)
