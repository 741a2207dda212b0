"""Supervision and audit endpoints: spot checks (抽查), the home-care comparison (居家服务订单比对),
statistics for the assessment (考核) and the credit platform export. The flows are in `api/audit.py`;
batch transparency is `api/routes/batches.py`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .. import audit
from ..deps import RawBody, ServiceDep, SignedCaller

router = APIRouter(prefix="/v1", tags=["audit"])

District = Query(None, ge=1, lt=2**32, description="GB/T 2260 district code")
Station = Query(None, description="station address (0x hex)")
From = Query(None, alias="from", description="unix seconds or ISO 8601 (no offset: UTC+8); orders' startTime ≥ it")
To = Query(None, alias="to", description="unix seconds or ISO 8601 (no offset: UTC+8); orders' startTime < it")


@router.get("/audit/spot-check")
async def spot_check(
    s: ServiceDep,
    who: SignedCaller,
    district: int | None = District,
    station: str | None = Station,
    start: str | None = From,
    end: str | None = To,
    size: int = Query(20, description=f"orders in the sample, 1 to {audit.SPOT_CHECK_MAX}"),
    seed: str | None = Query(None, max_length=100, description="the sample's seed (one is chosen and returned when absent)"),
) -> dict[str, Any]:
    """A reproducible random sample of anchored orders with their proof bundles (signed request of an
    auditor of the district or city-wide, or of the district's administrator)."""
    return await run_in_threadpool(
        audit.spot_check, s, who, district=district, station=station, start=start, end=end, size=size, seed=seed
    )


@router.post("/audit/homecare", status_code=201)
async def post_homecare(s: ServiceDep, who: SignedCaller, raw: RawBody):
    """Import subsidised home-care visits: `text/csv` with the header `recipient_card,start,end,provider`
    (times as unix seconds or ISO 8601). All or nothing: a bad row answers 400 `malformed_csv` with its
    line. The same file again answers 200 and imports nothing (signed request of an administrator)."""
    created, body = await run_in_threadpool(audit.import_homecare, s, who, raw)
    return JSONResponse(status_code=201 if created else 200, content=body)


@router.get("/audit/homecare/overlaps")
async def homecare_overlaps(s: ServiceDep, who: SignedCaller, district: int | None = District) -> dict[str, Any]:
    """Time-bank orders of a recipient that overlap a home-care visit of that recipient in time (signed
    request of an administrator or auditor of the district, or city-wide without one)."""
    return await run_in_threadpool(audit.homecare_overlaps, s, who, district)


@router.get("/stats")
async def get_stats(
    s: ServiceDep,
    district: int | None = District,
    station: str | None = Station,
    start: str | None = From,
    end: str | None = To,
    format: Literal["json", "csv"] = Query("json"),
):
    """Per station and per district: orders, minutes, distinct volunteers and recipients, revocations and
    their reasons, average ratings. `format=csv`: the same as CSV with a header row."""
    result = await run_in_threadpool(audit.stats, s, district=district, station=station, start=start, end=end)
    if format == "csv":
        return Response(audit.stats_csv(result), media_type="text/csv; charset=utf-8")
    return result


@router.get("/exports/credit")
async def export_credit(s: ServiceDep, who: SignedCaller, start: str | None = From, end: str | None = To):
    """JSON Lines for the credit platform, one per anchored, non-revoked service order:
    `timebank-credit/1` (signed request of the city administrator or a city-wide auditor)."""
    audit.require_credit_export(who)
    lo, hi = audit.time_window(start, end)
    return StreamingResponse(audit.credit_lines(s, start=lo, end=hi), media_type="application/x-ndjson")
