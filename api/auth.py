"""Signed requests: administrative and audit endpoints answer only requests signed by keys the chain
holds for that role (the city administrator, a district's administrator, an auditor).

A request carries three headers:
- `X-TimeBank-Signer`: the signer's address;
- `X-TimeBank-Timestamp`: unix seconds, within `clock_skew_seconds` of the service's clock;
- `X-TimeBank-Signature`: the EIP-712 signature (same domain as orders) of
  `SignedRequest(string method,string path,bytes32 bodyHash,uint64 timestamp)`, where `path` includes
  the query string and `bodyHash` is keccak256 of the raw body (of the empty string for a GET).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select

from . import db, protocol
from .errors import ApiError


@dataclass(frozen=True)
class Caller:
    address: str
    city_admin: bool
    district: int | None  # the district it administers
    auditor_district: int | None  # the district it audits (0: city-wide)

    def administers(self, district: int) -> bool:
        return self.city_admin or self.district == district

    def audits(self, district: int) -> bool:
        return self.auditor_district is not None and self.auditor_district in (0, district)


def authenticate(headers, method: str, path: str, body: bytes, *, separator: bytes, city_admin: str, sessions, skew: int) -> Caller:
    signer, stamp, signature = (headers.get(f"x-timebank-{h}") for h in ("signer", "timestamp", "signature"))
    if not signer or not stamp or not signature:
        raise ApiError("unauthenticated", "sign the request: X-TimeBank-Signer, -Timestamp and -Signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise ApiError("unauthenticated", "X-TimeBank-Timestamp: expected unix seconds") from None
    if abs(time.time() - timestamp) > skew:
        raise ApiError("unauthenticated", "X-TimeBank-Timestamp is too far from the service's clock")
    message = {"method": method.upper(), "path": path, "bodyHash": protocol.to_hex(protocol.keccak(body)), "timestamp": timestamp}
    try:
        recovered = protocol.to_hex(
            protocol.recover(protocol.typed_digest(separator, "SignedRequest", message), protocol.parse_bytes(signature, 65, "signature"))
        )
    except protocol.ProtocolError as exc:
        raise ApiError("unauthenticated", exc.message) from None
    if recovered != signer.lower():
        raise ApiError("unauthenticated", f"the signature recovers {recovered}, not {signer.lower()}")
    with sessions() as session:
        district = session.scalar(select(db.District.district).where(db.District.admin == recovered))
        auditor = session.get(db.Auditor, recovered)
    return Caller(recovered, recovered == city_admin, district, auditor.district if auditor else None)


def sign_headers(key: bytes, separator: bytes, method: str, path: str, body: bytes = b"", timestamp: int | None = None) -> dict[str, str]:
    """The headers of a signed request (for clients, the admin tool and tests)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    message = {"method": method.upper(), "path": path, "bodyHash": protocol.to_hex(protocol.keccak(body)), "timestamp": timestamp}
    signature = protocol.sign(protocol.typed_digest(separator, "SignedRequest", message), key)
    return {
        "X-TimeBank-Signer": protocol.to_hex(protocol.address_of(key)),
        "X-TimeBank-Timestamp": str(timestamp),
        "X-TimeBank-Signature": protocol.to_hex(signature),
    }
