"""People and roles: persons behind accounts, an account's history, group members, monthly grants.
The flows are in `api/people.py`; these routes parse, authenticate and call them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import people, protocol
from ..auth import Caller
from ..deps import AccountOut, JsonBody, OptionalCaller, ServiceDep, SignedCaller, inline_schema
from ..errors import ApiError

router = APIRouter(prefix="/v1", tags=["people"])


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 422)}


# ----- schemas ------------------------------------------------------------------------------------


class Location(BaseModel):
    lat: float
    lon: float


class PersonIn(BaseModel):
    cardNumber: str = Field(description="the time-bank card number; the account id is keccak256(utf8(cardNumber))")
    district: int
    kind: int = Field(description="1 volunteer, 2 recipient, 3 group")
    name: str
    idNumber: str = Field(description="kept only as a salted hash")
    phone: str | None = None
    address: str | None = None
    location: Location | None = Field(None, description="the address's map location; the order checks use it")
    category: str | None = Field(None, description=f"recipients: {', '.join(people.CATEGORIES)}, or null (not eligible)")
    qualifications: list[str] = Field(default_factory=list, description=f"volunteers: {', '.join(people.QUALIFICATIONS)}")


class PersonUpdate(BaseModel):
    name: str | None = None
    idNumber: str | None = None
    phone: str | None = None
    address: str | None = None
    location: Location | None = None
    category: str | None = Field(None, description="null ends the eligibility for monthly grants")
    qualifications: list[str] | None = None


class PersonOut(BaseModel):
    """Account, district, kind, status (0 until the chain registers the account) for everyone; the rest
    only for administrators of the person's district and auditors of it or of the city."""

    account: str
    district: int
    kind: int
    status: int
    cardNumber: str | None = None
    name: str | None = None
    idNumberLegacy: bool | None = Field(None, description="the ID number is kept as a salted hash of before the keyed hash (re-enter it to re-key)")
    phone: str | None = None
    address: str | None = None
    location: Location | None = None
    category: str | None = None
    qualifications: list[str] | None = None
    qualified: bool | None = None
    createdAt: float | None = None
    updatedAt: float | None = None


class HistoryOrder(BaseModel):
    orderId: str
    role: str = Field(description="volunteer or payer")
    status: str
    district: int
    serviceType: int
    minutes: int
    startTime: int
    endTime: int
    acceptedAt: float


class HistoryOut(AccountOut):
    total: int = Field(description="the account's orders as volunteer and as payer, all pages")
    orders: list[HistoryOrder]


class MemberIn(BaseModel):
    account: str = Field(description="a volunteer's account id")


class MembersOut(BaseModel):
    group: str
    members: list[str]


class PlanPerson(BaseModel):
    account: str
    cardNumber: str
    name: str
    category: str


class PlanOut(BaseModel):
    district: int
    period: str
    currentPeriod: str = Field(description="grants are recorded for the current period (China Standard Time)")
    reason: int = Field(description="the Grant reason of a monthly grant")
    persons: list[PlanPerson]


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"content": {"application/json": {"schema": inline_schema(model)}}, "required": True}}


def _hex32(value: str, field: str) -> str:
    try:
        return protocol.to_hex(protocol.parse_bytes(value.lower(), 32, field))
    except protocol.ProtocolError as exc:
        raise ApiError(exc.code, exc.message) from None


# ----- persons ------------------------------------------------------------------------------------


@router.post(
    "/people", status_code=201, response_model=PersonOut, response_model_exclude_unset=True, responses=ERRORS, openapi_extra=_body_schema(PersonIn)
)
async def register_person(s: ServiceDep, who: SignedCaller, body: JsonBody):
    """Register a person (signed request of the administrator of the person's district, or the city's).
    409 `person_exists` for a card number already registered."""
    return await run_in_threadpool(people.register_person, s, who, body)


@router.get("/people/{card_number}", response_model=PersonOut, response_model_exclude_unset=True, responses=ERRORS)
async def get_person(card_number: str, s: ServiceDep, who: OptionalCaller):
    """A person by card number. Anyone may ask; personal data only for a signed request of an administrator
    of the person's district (or the city's) or an auditor of it (or city-wide)."""
    return await run_in_threadpool(people.get_person, s, who, card_number)


@router.patch(
    "/people/{card_number}", response_model=PersonOut, response_model_exclude_unset=True, responses=ERRORS, openapi_extra=_body_schema(PersonUpdate)
)
async def update_person(card_number: str, s: ServiceDep, who: SignedCaller, body: JsonBody):
    """Change a person's data (signed request of the administrator of the person's district, or the
    city's); `category: null` ends the eligibility for monthly grants."""
    return await run_in_threadpool(people.update_person, s, who, card_number, body)


@router.post("/people/{card_number}/id-number-match", responses=ERRORS)
async def id_number_match(card_number: str, s: ServiceDep, who: SignedCaller, body: JsonBody) -> dict[str, Any]:
    """Whether `{idNumber}` is the person's ID number: `{match, legacy}` (signed request of an administrator
    or auditor who sees the person's data; 30 a minute a signer). The stored hash is never answered."""
    return await run_in_threadpool(people.id_number_match, s, who, card_number, body)


# ----- history ------------------------------------------------------------------------------------


@router.get("/accounts/{account_id}/history", response_model=HistoryOut, responses=ERRORS)
async def get_history(
    account_id: str,
    s: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=people.HISTORY_MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    """An account's hours, star level and orders as volunteer and as payer (newest first). Anyone may
    read it by account id; it names no other party."""
    return await run_in_threadpool(people.history, s, _hex32(account_id, "accountId"), limit=limit, offset=offset)


# ----- group volunteers ---------------------------------------------------------------------------


@router.get("/groups/{group_id}/members", response_model=MembersOut, responses=ERRORS)
async def list_members(group_id: str, s: ServiceDep, who: SignedCaller):
    """The member accounts of a group volunteer (signed request of an administrator or auditor of its district)."""
    return await run_in_threadpool(people.group_members, s, who, _hex32(group_id, "groupId"))


@router.post("/groups/{group_id}/members", response_model=MembersOut, status_code=201, responses=ERRORS, openapi_extra=_body_schema(MemberIn))
async def add_member(group_id: str, s: ServiceDep, who: SignedCaller, body: JsonBody):
    """Add a volunteer account to a group (signed request of the administrator of the group's district, or
    the city's). 201 when added, 200 when it was a member already."""
    added, members = await run_in_threadpool(people.add_group_member, s, who, _hex32(group_id, "groupId"), body)
    return JSONResponse(status_code=201 if added else 200, content=MembersOut(**members).model_dump())


@router.delete("/groups/{group_id}/members/{member_id}", response_model=MembersOut, responses=ERRORS)
async def remove_member(group_id: str, member_id: str, s: ServiceDep, who: SignedCaller):
    """Remove a member from a group (signed request of the administrator of the group's district, or the city's)."""
    return await run_in_threadpool(people.remove_group_member, s, who, _hex32(group_id, "groupId"), _hex32(member_id, "memberId"))


# ----- monthly grants -----------------------------------------------------------------------------


@router.get("/grants/monthly", response_model=PlanOut, responses=ERRORS)
async def monthly_plan(s: ServiceDep, who: SignedCaller, district: int, period: str | None = None):
    """The eligible recipients of a district with no monthly grant recorded for `period` (YYYY-MM, default
    the current month): the plan an administrator signs one `Grant` (reason 1) per person for (signed
    request of the district's administrator, or the city's)."""
    return await run_in_threadpool(people.monthly_plan, s, who, district=district, period=period)
