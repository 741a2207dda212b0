"""Monthly grants (每月发放): the plan of a district's eligible recipients with no grant recorded for a
period. The grants themselves are `Grant` commands (`api/routes/admin.py`); the flows are in
`api/people.py`."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import people
from ..deps import ServiceDep, SignedCaller
from ..schemas import errors

router = APIRouter(prefix="/v1/grants", tags=["people"])

ERRORS = errors(400, 401, 403, 404, 409, 422)


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



@router.get("/monthly", response_model=PlanOut, responses=ERRORS)
async def monthly_plan(s: ServiceDep, who: SignedCaller, district: int, period: str | None = None):
    """The eligible recipients of a district with no monthly grant recorded for `period` (YYYY-MM, default
    the current month): the plan an administrator signs one `Grant` (reason 1) per person for (signed
    request of the district's administrator, or the city's)."""
    return await run_in_threadpool(people.monthly_plan, s, who, district=district, period=period)
