"""Group volunteers (团体志愿者): their member accounts. The flows are in `api/people.py`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import people
from ..deps import JsonBody, ServiceDep, SignedCaller, hex32, inline_schema
from ..schemas import errors

router = APIRouter(prefix="/v1/groups", tags=["people"])

ERRORS = errors(400, 401, 403, 404, 409, 422)


class MemberIn(BaseModel):
    account: str = Field(description="a volunteer's account id")


class MembersOut(BaseModel):
    group: str
    members: list[str]


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"content": {"application/json": {"schema": inline_schema(model)}}, "required": True}}


@router.get("/{group_id}/members", response_model=MembersOut, responses=ERRORS)
async def list_members(group_id: str, s: ServiceDep, who: SignedCaller):
    """The member accounts of a group volunteer (signed request of an administrator or auditor of its district)."""
    return await run_in_threadpool(people.group_members, s, who, hex32(group_id, "groupId"))


@router.post("/{group_id}/members", response_model=MembersOut, status_code=201, responses=ERRORS, openapi_extra=_body_schema(MemberIn))
async def add_member(group_id: str, s: ServiceDep, who: SignedCaller, body: JsonBody):
    """Add a volunteer account to a group (signed request of the administrator of the group's district, or
    the city's). 201 when added, 200 when it was a member already."""
    added, members = await run_in_threadpool(people.add_group_member, s, who, hex32(group_id, "groupId"), body)
    return JSONResponse(status_code=201 if added else 200, content=MembersOut(**members).model_dump())


@router.delete("/{group_id}/members/{member_id}", response_model=MembersOut, responses=ERRORS)
async def remove_member(group_id: str, member_id: str, s: ServiceDep, who: SignedCaller):
    """Remove a member from a group (signed request of the administrator of the group's district, or the city's)."""
    return await run_in_threadpool(people.remove_group_member, s, who, hex32(group_id, "groupId"), hex32(member_id, "memberId"))
