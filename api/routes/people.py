"""People: the persons behind accounts (personal data only for the roles allowed to see it). The flows
are in `api/people.py`; these routes parse, authenticate and call them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import people
from ..deps import JsonBody, OptionalCaller, ServiceDep, SignedCaller, inline_schema
from ..schemas import errors

router = APIRouter(prefix="/v1/people", tags=["people"])


ERRORS = errors(400, 401, 403, 404, 409, 422)


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
    checkCode: str | None = Field(None, description="the card check code, answered only by the registration (and a re-issue)")


class ListedPerson(BaseModel):
    cardNumber: str
    account: str
    district: int
    kind: int
    status: int
    name: str
    category: str | None
    qualifications: list[str]


class PeopleOut(BaseModel):
    district: int
    total: int
    people: list[ListedPerson]


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"content": {"application/json": {"schema": inline_schema(model)}}, "required": True}}


# ----- persons ------------------------------------------------------------------------------------


@router.post(
    "", status_code=201, response_model=PersonOut, response_model_exclude_unset=True, responses=ERRORS, openapi_extra=_body_schema(PersonIn)
)
async def register_person(s: ServiceDep, who: SignedCaller, body: JsonBody):
    """Register a person (signed request of the administrator of the person's district, or the city's).
    409 `person_exists` for a card number already registered."""
    return await run_in_threadpool(people.register_person, s, who, body)


@router.get("", response_model=PeopleOut, responses=ERRORS)
async def list_people(
    s: ServiceDep,
    who: SignedCaller,
    district: int,
    kind: int | None = None,
    limit: Annotated[int, Query(ge=1, le=people.LIST_MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    """The persons of a district by card number, with their account, kind, status, name, category and
    qualifications (signed request of the district's administrator, the city's, or an auditor of it)."""
    return await run_in_threadpool(people.list_people, s, who, district=district, kind=kind, limit=limit, offset=offset)


@router.get("/{card_number}", response_model=PersonOut, response_model_exclude_unset=True, responses=ERRORS)
async def get_person(card_number: str, s: ServiceDep, who: OptionalCaller):
    """A person by card number, for a signed request of an administrator or auditor: personal data for
    those of the person's district (or the city, or city-wide auditors), the public view (account,
    district, kind, status) for the others. Unsigned, or signed without a role: `404` for every card (the
    family look-up with the card's check code is `POST /v1/people/lookup`)."""
    return await run_in_threadpool(people.get_person, s, who, card_number)


@router.patch(
    "/{card_number}", response_model=PersonOut, response_model_exclude_unset=True, responses=ERRORS, openapi_extra=_body_schema(PersonUpdate)
)
async def update_person(card_number: str, s: ServiceDep, who: SignedCaller, body: JsonBody):
    """Change a person's data (signed request of the administrator of the person's district, or the
    city's); `category: null` ends the eligibility for monthly grants."""
    return await run_in_threadpool(people.update_person, s, who, card_number, body)


@router.post("/{card_number}/id-number-match", responses=ERRORS)
async def id_number_match(card_number: str, s: ServiceDep, who: SignedCaller, body: JsonBody) -> dict[str, Any]:
    """Whether `{idNumber}` is the person's ID number: `{match, legacy}` (signed request of an administrator
    or auditor who sees the person's data; 30 a minute a signer). The stored hash is never answered."""
    return await run_in_threadpool(people.id_number_match, s, who, card_number, body)
