"""Voice confirmations (语音确认): the recording a station terminal makes of the recipient's consent.

The terminal puts the recording's keccak256 into the order's details before signing
(`details.confirmation = {method: "voice", time, recording: {keccak256, mimeType, bytes}}`), so the
signed order (its `detailsHash`) commits to the recording. After the order is accepted the terminal
uploads the bytes (`PUT /v1/orders/{orderId}/recording`, not signed: only bytes whose keccak256 is the
one the stored details name are taken, once; the same bytes again answer `200`). The recording is
personal data, kept with the order's details: only signed requests of the administrators and auditors
of the order's district (or the city's, or city-wide auditors) get it back.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from . import db, protocol
from .errors import ApiError

if TYPE_CHECKING:
    from .auth import Caller
    from .service import Service

MAX_RECORDING_BYTES = 5 * 1024 * 1024
MAX_MIME_TYPE = 100


def expected_keccak(details: str) -> str | None:
    """The recording's keccak256 (0x hex, lower case) a voice confirmation names, or None."""
    try:
        confirmation = json.loads(details).get("confirmation")
    except (ValueError, AttributeError):
        return None
    if not isinstance(confirmation, dict) or confirmation.get("method") != "voice":
        return None
    recording = confirmation.get("recording")
    value = recording.get("keccak256") if isinstance(recording, dict) else None
    try:
        return protocol.to_hex(protocol.parse_bytes(value.lower(), 32, "keccak256")) if isinstance(value, str) else None
    except protocol.ProtocolError:
        return None


def parse_mime_type(content_type: str | None) -> str:
    value = (content_type or "").strip()
    if not value.lower().startswith("audio/") or len(value) > MAX_MIME_TYPE or not value.isascii():
        raise ApiError("invalid_request", "Content-Type: expected the recording's audio/* type")
    return value


def _view(row: db.Recording) -> dict[str, Any]:
    return {"orderId": row.order_id, "keccak256": row.keccak, "bytes": row.size, "mimeType": row.mime_type}


def upload(service: Service, order_id: str, content: bytes, content_type: str | None) -> tuple[bool, dict[str, Any]]:
    """Stores the recording of an order's voice confirmation; (created, view). `recording_not_expected`
    when the order's confirmation is not by voice with a recording's hash, `recording_mismatch` when the
    bytes are not the ones hashed."""
    mime_type = parse_mime_type(content_type)
    if len(content) > MAX_RECORDING_BYTES:
        raise ApiError("body_too_large", f"the recording is {len(content)} bytes, over the limit of {MAX_RECORDING_BYTES}")
    with service.reads() as session:
        order = session.query(db.Order.details).filter(db.Order.order_id == order_id).one_or_none()
        stored = session.get(db.Recording, order_id)
    if order is None:
        raise ApiError("not_found", f"no order {order_id}")
    wanted = expected_keccak(order.details)
    if wanted is None:
        raise ApiError("recording_not_expected", "details.confirmation is not {method: voice, recording: {keccak256}}")
    got = protocol.to_hex(protocol.keccak(content))
    if got != wanted:
        raise ApiError("recording_mismatch", f"the bytes hash to {got}; the order's details name {wanted}")
    if stored is not None:
        return False, _view(stored)
    row = db.Recording(order_id=order_id, keccak=got, mime_type=mime_type, size=len(content), content=content, uploaded_at=time.time())
    try:
        with service.sessions() as session, session.begin():
            session.add(row)
    except IntegrityError:  # the same upload at the same time: the bytes are the hashed ones either way
        return False, {"orderId": order_id, "keccak256": got, "bytes": len(content), "mimeType": mime_type}
    return True, {"orderId": order_id, "keccak256": got, "bytes": len(content), "mimeType": mime_type}


def download(service: Service, caller: Caller, order_id: str) -> tuple[bytes, str]:
    """The recording and its MIME type, for an administrator or auditor of the order's district."""
    with service.reads() as session:
        district = session.query(db.Order.district).filter(db.Order.order_id == order_id).scalar()
        if district is None:
            raise ApiError("not_found", f"no order {order_id}")
        if not (caller.administers(district) or caller.audits(district)):
            raise ApiError("forbidden", f"{caller.address} neither administers nor audits district {district}")
        row = session.get(db.Recording, order_id)
        if row is None:
            raise ApiError("not_found", f"no recording of order {order_id}")
        return row.content, row.mime_type
