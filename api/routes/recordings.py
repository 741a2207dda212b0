"""Voice confirmation recordings of orders (`api/recordings.py`): uploaded by the terminal, read by the
district's administrators and auditors."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from .. import recordings
from ..deps import ServiceDep, SignedCaller, hex32
from ..errors import ApiError
from ..schemas import errors

router = APIRouter(prefix="/v1", tags=["orders"])


class RecordingOut(BaseModel):
    orderId: str
    keccak256: str
    bytes: int
    mimeType: str


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, refused by its Content-Length or while streaming once over `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError("body_too_large", f"the recording is {declared} bytes, over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError("body_too_large", f"the recording is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.put(
    "/orders/{order_id}/recording",
    response_model=RecordingOut,
    status_code=201,
    responses={200: {"model": RecordingOut, "description": "the same recording again"}, **errors(400, 404, 413, 422)},
    openapi_extra={"requestBody": {"content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}}, "required": True}},
)
async def put_recording(order_id: str, request: Request, s: ServiceDep):
    """Upload the recording of an order's voice confirmation (raw body, `Content-Type` audio/*, at most
    5 MiB). Not signed: taken only when its keccak256 is `details.confirmation.recording.keccak256` of
    the stored order. 201 stored, 200 the same again."""
    order = hex32(order_id, "orderId")
    content = await _read_capped(request, recordings.MAX_RECORDING_BYTES)
    created, view = await run_in_threadpool(recordings.upload, s, order, content, request.headers.get("content-type"))
    return JSONResponse(status_code=201 if created else 200, content=view)


@router.get(
    "/orders/{order_id}/recording",
    response_class=Response,
    responses={200: {"content": {"audio/*": {}}, "description": "the recording"}, **errors(400, 401, 403, 404)},
)
async def get_recording(order_id: str, s: ServiceDep, who: SignedCaller) -> Response:
    """The recording (signed request of an administrator or auditor of the order's district, or the
    city's); 404 when none was uploaded."""
    content, mime_type = await run_in_threadpool(recordings.download, s, who, hex32(order_id, "orderId"))
    return Response(content, media_type=mime_type, headers={"Cache-Control": "no-store"})
