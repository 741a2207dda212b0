"""Accounts: an account as the chain holds it (with the minutes promised in orders not yet anchored), and
its off-chain profile, which the order checks read: the registered location (check-in and check-out must
be near it) and whether the volunteer holds a professional qualification (service type 9).

The profile has one writer, `write_profile`: the profile endpoint (PUT /v1/accounts/{id}/profile) and the
people registry (POST and PATCH /v1/people, api/people.py) both go through it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from . import db, protocol
from .errors import ApiError
from .vocabulary import OrderStatus

if TYPE_CHECKING:
    from .auth import Caller
    from .service import Service


def account_view(service: Service, account: bytes) -> dict[str, Any]:
    held = service.chain.get_account(account)
    if held.status == 0:
        raise ApiError("not_found", f"no account {protocol.to_hex(account)}")
    with service.reads() as session:
        promised = session.scalar(
            select(func.coalesce(func.sum(db.Order.minutes), 0)).where(
                db.Order.payer == protocol.to_hex(account), db.Order.status == OrderStatus.ACCEPTED
            )
        )
    return {
        "account": protocol.to_hex(account),
        "district": held.district,
        "kind": held.kind,
        "status": held.status,
        "balanceMinutes": held.balance,
        "earnedMinutes": held.earned,
        "starLevel": service.chain.star_level(account),
        "pendingDebitMinutes": promised,
    }


def parse_location(location: Any) -> dict | None:
    """A registered location `{lat, lon}` in range, or None."""
    if location is not None and (
        not isinstance(location, dict)
        or set(location) != {"lat", "lon"}
        or not all(isinstance(location[k], (int, float)) and not isinstance(location[k], bool) for k in ("lat", "lon"))
        or not (-90 <= location["lat"] <= 90 and -180 <= location["lon"] <= 180)
    ):
        raise ApiError("invalid_request", "location: expected {lat, lon} in range, or null")
    return location


def set_profile(service: Service, caller: Caller, account: str, body: Any) -> dict[str, Any]:
    """Sets an account's profile (signed request of the administrator of the account's district, or the
    city's). The location of a registered person changes with it, so the two endpoints agree."""
    if not isinstance(body, dict) or set(body) - {"location", "qualified"}:
        raise ApiError("invalid_request", "expected an object with location {lat, lon} or null, and qualified")
    location, qualified = parse_location(body.get("location")), body.get("qualified", False)
    if not isinstance(qualified, bool):
        raise ApiError("invalid_request", "qualified: expected a boolean")
    if not (caller.city_admin or caller.district is not None):  # before anything is looked up
        raise ApiError("forbidden", f"{caller.address} is not an administrator")
    with service.sessions() as session, session.begin():
        row = session.get(db.Account, account)
        if row is None or row.status == 0:
            raise ApiError("not_found", f"no account {account}")
        if not caller.administers(row.district):
            raise ApiError("forbidden", f"{caller.address} does not administer district {row.district}")
        write_profile(session, account, location=location, qualified=qualified)
        person = session.get(db.Person, account)
        if person is not None:
            person.lat, person.lon = (None, None) if location is None else (float(location["lat"]), float(location["lon"]))
            person.updated_at = time.time()
    service.writer.cache.invalidate(accounts=[account])
    return {"account": account, "location": location, "qualified": qualified}


def set_location_exemption(service: Service, caller: Caller, account: str, body: Any | None) -> dict[str, Any]:
    """Records (`body` {reason}) or ends (`body` None) an administrator's exemption: a recipient with no
    registered location may be served (intake's `recipient_no_location`). Signed request of the
    administrator of the account's district, or the city's; the exemption names who recorded it."""
    if not (caller.city_admin or caller.district is not None):  # before anything is looked up
        raise ApiError("forbidden", f"{caller.address} is not an administrator")
    reason = None
    if body is not None:
        reason = body.get("reason") if isinstance(body, dict) and set(body) == {"reason"} else None
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 500 or "\x00" in reason:
            raise ApiError("invalid_request", "expected {reason}: why this person is served without a registered location (1 to 500 characters)")
    with service.sessions() as session, session.begin():
        row = session.get(db.Account, account)
        if row is None or row.status == 0:
            raise ApiError("not_found", f"no account {account}")
        if not caller.administers(row.district):
            raise ApiError("forbidden", f"{caller.address} does not administer district {row.district}")
        exemption = session.get(db.LocationExemption, account)
        if reason is None:
            if exemption is not None:
                session.delete(exemption)
            answer = {"account": account, "exempt": False}
        else:
            exemption = session.merge(db.LocationExemption(account=account, admin=caller.address, reason=reason, created_at=time.time()))
            answer = {"account": account, "exempt": True, "admin": caller.address, "reason": reason, "createdAt": exemption.created_at}
    service.writer.cache.invalidate(accounts=[account])
    return answer


def write_profile(session, account: str, *, location: dict | None, qualified: bool, district: int = 0, kind: int = 0) -> None:
    """Writes the profile the order checks read (`accounts.lat`, `lon`, `qualified`) in the caller's
    transaction. Before the chain registers the account, a row of status 0 holds it (with `district` and
    `kind`; the follower fills in the chain's part). The caller invalidates the writer's cache after its
    commit."""
    row = session.get(db.Account, account)
    if row is None:
        row = db.Account(account=account, district=district, kind=kind, status=0, balance=0, earned=0)
        session.add(row)
    row.lat = None if location is None else float(location["lat"])
    row.lon = None if location is None else float(location["lon"])
    row.qualified = qualified
