"""Signed requests: administrative and audit endpoints answer only requests signed by keys the chain
holds for that role (the city administrator, a district's administrator, an auditor).

A request carries four headers:
- `X-TimeBank-Signer`: the signer's address;
- `X-TimeBank-Timestamp`: unix seconds, within `request_window_seconds` (60) of the service's clock;
- `X-TimeBank-Nonce`: 32 random bytes (0x hex), used once: the service remembers it (in the database)
  until the timestamp leaves the window, and refuses it again (`request_replayed`);
- `X-TimeBank-Signature`: the EIP-712 signature (same domain as orders) of
  `SignedRequest(string method,string host,string path,bytes32 bodyHash,uint64 timestamp,bytes32 nonce)`,
  where `host` is the service's host and port as the client addresses it (the URL's authority, e.g.
  `ledger.example.org` or `127.0.0.1:8000`, lower-case) and must be one of the service's own names
  (`TIMEBANK_PUBLIC_HOSTS`), `path` includes the query string and `bodyHash` is keccak256 of the raw body
  (of the empty string for a GET).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from . import db, protocol
from .errors import ApiError

_NONCE = re.compile(r"0x[0-9a-f]{64}")
_PRUNE_EVERY = 200  # nonces taken between two deletions of the expired ones


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

    @property
    def has_role(self) -> bool:
        return self.city_admin or self.district is not None or self.auditor_district is not None


class _Pruner:
    taken = 0


def take_nonce(writes, nonce: str, signer: str, expires_at: int) -> None:
    """Records `nonce` as used until `expires_at`; `request_replayed` when it was used already."""
    try:
        with writes() as session, session.begin():
            session.add(db.RequestNonce(nonce=nonce, signer=signer, expires_at=expires_at))
            _Pruner.taken += 1
            if _Pruner.taken % _PRUNE_EVERY == 0:
                session.execute(delete(db.RequestNonce).where(db.RequestNonce.expires_at < int(time.time())))
    except IntegrityError:
        raise ApiError("request_replayed", "this signed request (its nonce) was already used: sign each request anew") from None


def authenticate(
    headers, method: str, path: str, body: bytes, *, separator: bytes, city_admin: str, sessions, skew: int, hosts, writes
) -> Caller:
    """The signer of a signed request and the roles the mirror gives it. `skew`: the window (seconds) a
    timestamp may be off the service's clock; `hosts`: the service's own names (host[:port]) a request
    may be signed for; `writes`: sessions of the writer engine, where nonces are kept."""
    signer, stamp, nonce, signature = (headers.get(f"x-timebank-{h}") for h in ("signer", "timestamp", "nonce", "signature"))
    if not signer or not stamp or not signature or not nonce:
        raise ApiError("unauthenticated", "sign the request: X-TimeBank-Signer, -Timestamp, -Nonce and -Signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise ApiError("unauthenticated", "X-TimeBank-Timestamp: expected unix seconds") from None
    if abs(time.time() - timestamp) > skew:
        raise ApiError("unauthenticated", f"X-TimeBank-Timestamp is more than {skew} s from the service's clock")
    nonce = nonce.lower()
    if not _NONCE.fullmatch(nonce):
        raise ApiError("unauthenticated", "X-TimeBank-Nonce: expected 32 bytes as 0x-prefixed hex")
    host = (headers.get("host") or "").lower()
    if host not in hosts:
        raise ApiError("unauthenticated", f"the request is addressed to {host[:100]!r}, not to this service ({', '.join(sorted(hosts))})")
    message = {
        "method": method.upper(),
        "host": host,
        "path": path,
        "bodyHash": protocol.to_hex(protocol.keccak(body)),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    try:
        recovered = protocol.to_hex(
            protocol.recover(protocol.typed_digest(separator, "SignedRequest", message), protocol.parse_bytes(signature, 65, "signature"))
        )
    except protocol.ProtocolError as exc:
        raise ApiError("unauthenticated", exc.message) from None
    if recovered != signer.lower():
        raise ApiError("unauthenticated", f"the signature recovers {recovered}, not {signer.lower()}")
    take_nonce(writes, nonce, recovered, timestamp + skew)
    with sessions() as session:
        district = session.scalar(select(db.District.district).where(db.District.admin == recovered))
        auditor = session.get(db.Auditor, recovered)
    return Caller(recovered, recovered == city_admin, district, auditor.district if auditor else None)


def sign_headers(
    key: bytes,
    separator: bytes,
    method: str,
    path: str,
    body: bytes = b"",
    timestamp: int | None = None,
    *,
    host: str,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers of a signed request to the service at `host` (host[:port] as in its URL) (for clients,
    the admin tool and tests). Each call draws a new nonce: sign every request anew."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or protocol.to_hex(secrets.token_bytes(32))
    message = {
        "method": method.upper(),
        "host": host.lower(),
        "path": path,
        "bodyHash": protocol.to_hex(protocol.keccak(body)),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    signature = protocol.sign(protocol.typed_digest(separator, "SignedRequest", message), key)
    return {
        "X-TimeBank-Signer": protocol.to_hex(protocol.address_of(key)),
        "X-TimeBank-Timestamp": str(timestamp),
        "X-TimeBank-Nonce": nonce,
        "X-TimeBank-Signature": protocol.to_hex(signature),
    }


def host_of(base_url) -> str:
    """The `host` a client signs for a service URL (`http://127.0.0.1:8000` -> `127.0.0.1:8000`): the URL's
    authority as written, lower-case, the default port left out as the Host header leaves it out."""
    import httpx

    url = httpx.URL(str(base_url))
    return (url.host if url.port is None else f"{url.host}:{url.port}").lower()
