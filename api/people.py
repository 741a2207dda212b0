"""People and roles: the persons behind accounts, kept off chain (the chain knows only account ids), the
members of group volunteers, an account's history, and the monthly grants to eligible recipients.

Privacy. A person's personal data (name, ID-number hash, phone, address and its location, eligibility
category, qualifications) is shown only to the administrators of the person's district (and the city's)
and to the auditors of that district or of the whole city. Everyone else sees the account id, district,
kind and status. The ID number itself is never stored: only `salt$sha256(salt ‖ idNumber)`.

The order checks read the `accounts` mirror, not this registry: registering or updating a person writes
the location and `qualified` (held when the volunteer holds any qualification) there, through
`accounts.write_profile`.

Monthly grants (每月发放). A `Grant` command with reason `GRANT_REASON_MONTHLY` to a registered person is
a monthly grant: it is refused before it is relayed when the person has no eligibility category
(`not_eligible`) or when the account's grant of the current period is recorded or under way
(`already_granted`); once the chain has it, a `MonthlyGrant` row is recorded for (account, period). A Grant
with another reason, or to an account with no person record, is a plain grant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError

from . import db, names, protocol
from .accounts import account_view, parse_location, write_profile
from .errors import ApiError
from .vocabulary import CHINA_TIME

if TYPE_CHECKING:
    from .auth import Caller
    from .service import Service

log = logging.getLogger(__name__)

# Grant reasons: the `reason` field of a Grant command (PROTOCOL.md section 4), kept on chain in the
# Granted event. The contract records any value; the service gives these their meaning.
GRANT_REASON_MONTHLY = 1  # 每月发放: the monthly grant to an eligible recipient, at most one per account and period
GRANT_REASON_ONE_OFF = 2  # 临时发放: a one-off grant the district decides (a new recipient, a special need)
GRANT_REASON_CORRECTION = 3  # 更正: minutes given back after an error (a wrong revocation, a lost grant)
GRANT_REASONS = {
    GRANT_REASON_MONTHLY: "monthly",
    GRANT_REASON_ONE_OFF: "one_off",
    GRANT_REASON_CORRECTION: "correction",
}

# Eligibility categories of recipients for monthly grants (重点发放时间对象, DOMAIN.md).
CATEGORIES = ("80_alone", "60_79_low_income", "60_79_disabled", "60_79_alone", "rural_left_behind")
# Professional qualifications of volunteers; holding any makes the account `qualified` (service type 9).
QUALIFICATIONS = ("doctor", "nurse", "care_worker", "lawyer")
VOLUNTEER, RECIPIENT, GROUP = protocol.KIND_VOLUNTEER, protocol.KIND_RECIPIENT, protocol.KIND_GROUP
PERSON_KINDS = {kind: protocol.ACCOUNT_KINDS[kind] for kind in (VOLUNTEER, RECIPIENT, GROUP)}  # a person: not a pool

_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_CARD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_ID_NUMBER = re.compile(r"^[0-9A-Z]{6,32}$")
_UPDATABLE = ("name", "idNumber", "phone", "address", "location", "category", "qualifications")
HISTORY_MAX_LIMIT = 1000


# ----- values -------------------------------------------------------------------------------------


def current_period(now: float | None = None) -> str:
    """The month (`YYYY-MM`) in China Standard Time at `now` (unix seconds): a month begins at midnight
    UTC+8."""
    return datetime.fromtimestamp(time.time() if now is None else now, CHINA_TIME).strftime("%Y-%m")


def parse_period(value: Any) -> str:
    if not isinstance(value, str) or not _PERIOD.match(value):
        raise ApiError("invalid_request", f"period: expected YYYY-MM, got {str(value)[:20]!r}")
    return value


_CARD_DISTRICT = re.compile(r"^[A-Za-z]+-([0-9]{6})-")


def card_district(card_number: str) -> int | None:
    """The district code a card number carries (`NJ-320102-000123` -> 320102), None when it carries none."""
    match = _CARD_DISTRICT.match(card_number)
    return int(match.group(1)) if match else None


def require_card_of(card_number: str, district: int) -> None:
    """A card number is issued by its district: refused (`card_other_district`) when the district code it
    carries is not `district`, or when it carries none."""
    code = card_district(card_number)
    if code != district:
        where = f"carries district code {code}" if code is not None else "carries no district code (e.g. NJ-320102-000123)"
        raise ApiError("card_other_district", f"card {card_number} {where}, not {district}")


def parse_card_number(value: Any) -> str:
    if not isinstance(value, str) or not _CARD.match(value):
        raise ApiError("invalid_request", "cardNumber: 1 to 64 letters, digits, '-' or '_'")
    return value


def administered_person(session, caller, card_number: str) -> db.Person:
    """The person of `card_number`, for a change by the administrator of the person's district (or the
    city's): `not_found` without one, `forbidden` for anyone else."""
    person = session.get(db.Person, account_of(card_number))
    if person is None:
        raise ApiError("not_found", f"no person with card {card_number}")
    if not caller.administers(person.district):
        raise ApiError("forbidden", f"{caller.address} does not administer district {person.district}")
    return person


def account_of(card_number: str) -> str:
    """The account id of a card number: keccak256(utf8(cardNumber)) (PROTOCOL.md section 1)."""
    return protocol.to_hex(protocol.account_id(card_number))


ID_HASH_SCHEME = "hmac-sha256"
LEGACY_PREFIX = "legacy$"  # rows hashed before the keyed hash: `legacy$salt$sha256hex(salt ‖ idNumber)`


def hash_id_number(id_number: str, key: bytes) -> str:
    """`hmac-sha256$hex(HMAC-SHA256(key, idNumber))`: a keyed hash whose key is never in the database
    (TIMEBANK_ID_HASH_KEY), so a copy of the database does not give the ID numbers back (an 18-digit ID
    number has too few candidates for any unkeyed hash, salted or not)."""
    return f"{ID_HASH_SCHEME}${hmac.new(key, id_number.encode('utf-8'), hashlib.sha256).hexdigest()}"


def id_number_matches(stored: str, id_number: str, key: bytes) -> bool:
    """Whether `id_number` is the one stored: by the keyed hash, or by a legacy row's salted sha256."""
    normal = _id_number(id_number)
    if stored.startswith(LEGACY_PREFIX):
        salt, _, digest = stored[len(LEGACY_PREFIX) :].partition("$")
        return secrets.compare_digest(hashlib.sha256((salt + normal).encode("utf-8")).hexdigest(), digest)
    return secrets.compare_digest(hash_id_number(normal, key), stored)


def _id_number(value: Any) -> str:
    normal = value.strip().upper() if isinstance(value, str) else None
    if normal is None or not _ID_NUMBER.match(normal):
        raise ApiError("invalid_request", "idNumber: 6 to 32 digits or letters")
    return normal


def _text(value: Any, field: str, limit: int, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ApiError("invalid_request", f"{field}: expected a non-empty string of at most {limit} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise ApiError("invalid_request", f"{field}: NUL characters are not allowed")
    return value.strip()


def _uint(value: Any, bits: int, field: str) -> int:
    try:
        return protocol.parse_uint(value, bits, field)
    except protocol.ProtocolError as exc:
        raise ApiError("invalid_request", exc.message) from None


def _fields(body: dict[str, Any], kind: int, id_key: bytes) -> dict[str, Any]:
    """The person's columns of the given fields of `body`, checked."""
    out: dict[str, Any] = {}
    if "name" in body:
        out["name"] = _text(body["name"], "name", 200, optional=False)
    if "idNumber" in body:
        out["id_number_hash"] = hash_id_number(_id_number(body["idNumber"]), id_key)
    if "phone" in body:
        out["phone"] = _text(body["phone"], "phone", 40, optional=True)
    if "address" in body:
        out["address"] = _text(body["address"], "address", 2000, optional=True)
    if "location" in body:
        location = parse_location(body["location"])
        out["lat"], out["lon"] = (None, None) if location is None else (float(location["lat"]), float(location["lon"]))
    if "category" in body:
        category = body["category"]
        if category is not None and category not in CATEGORIES:
            raise ApiError("invalid_request", f"category: one of {', '.join(CATEGORIES)}, or null")
        if category is not None and kind != RECIPIENT:
            raise ApiError("invalid_request", "category: only a recipient (kind 2) has an eligibility category")
        out["category"] = category
    if "qualifications" in body:
        held = body["qualifications"]
        if not isinstance(held, list) or any(q not in QUALIFICATIONS for q in held) or len(set(held)) != len(held):
            raise ApiError("invalid_request", f"qualifications: a list of distinct {', '.join(QUALIFICATIONS)}")
        if held and kind != VOLUNTEER:
            raise ApiError("invalid_request", "qualifications: only a volunteer (kind 1) holds qualifications")
        out["qualifications"] = json.dumps(sorted(held))
    return out


# ----- views --------------------------------------------------------------------------------------


def _sees_personal_data(caller: Caller | None, district: int) -> bool:
    return caller is not None and (caller.administers(district) or caller.audits(district))


def person_view(person: db.Person, account: db.Account | None, *, personal: bool) -> dict[str, Any]:
    """The public view (account, district, kind, status: 0 until the chain registers the account), and the
    personal data when `personal`."""
    view: dict[str, Any] = {
        "account": person.account,
        "district": person.district,
        "kind": account.kind if account is not None else 0,
        "status": account.status if account is not None else 0,
    }
    if personal:
        qualifications = json.loads(person.qualifications)
        view.update(
            cardNumber=person.card_number,
            name=person.name,
            idNumberLegacy=person.id_number_hash.startswith(LEGACY_PREFIX),
            phone=person.phone,
            address=person.address,
            location=None if person.lat is None else {"lat": person.lat, "lon": person.lon},
            category=person.category,
            qualifications=qualifications,
            qualified=bool(account.qualified) if account is not None else bool(qualifications),
            createdAt=person.created_at,
            updatedAt=person.updated_at,
        )
    return view


# ----- persons ------------------------------------------------------------------------------------


def register_person(service: Service, caller: Caller, body: Any) -> dict[str, Any]:
    """Registers a person (signed request of the administrator of the person's district, or the city's).
    The account may be registered on chain before or after (`RegisterAccount`); when it is, its district
    and kind must be the person's."""
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "expected an object")
    required = {"cardNumber", "district", "kind", "name", "idNumber"}
    missing, extra = required - body.keys(), body.keys() - required - set(_UPDATABLE)
    if missing or extra:
        raise ApiError("invalid_request", f"person: missing {sorted(missing)}, unexpected {sorted(extra)}")
    card_number = parse_card_number(body["cardNumber"])
    district = _uint(body["district"], 32, "district")
    kind = _uint(body["kind"], 8, "kind")
    if kind not in PERSON_KINDS:
        raise ApiError("invalid_request", "kind: 1 volunteer, 2 recipient or 3 group")
    if not caller.administers(district):
        raise ApiError("forbidden", f"{caller.address} does not administer district {district}")
    require_card_of(card_number, district)
    fields = _fields(body, kind, service.id_hash_key)
    fields.setdefault("qualifications", "[]")
    account = account_of(card_number)
    now = time.time()
    from .cards import hash_check_code, new_check_code

    check_code = new_check_code()  # the card check code: answered this once, kept only as a slow hash
    fields["check_code_hash"] = hash_check_code(check_code)
    for attempt in (1, 2):  # the follower may insert the account's mirror row meanwhile: once more then
        try:
            with service.sessions() as session, session.begin():
                if session.get(db.Person, account) is not None:
                    raise ApiError("person_exists", f"card {card_number} is registered")
                mirror = session.get(db.Account, account)
                if mirror is not None and mirror.status != 0 and (mirror.district, mirror.kind) != (district, kind):
                    raise ApiError(
                        "account_mismatch",
                        f"the chain holds account {account} in district {mirror.district} with kind {mirror.kind}",
                    )
                person = db.Person(account=account, card_number=card_number, district=district, created_at=now, updated_at=now, **fields)
                session.add(person)
                session.flush()
                _write_profile(session, person, district=district, kind=kind)
            break
        except IntegrityError:
            if attempt == 2:
                raise ApiError("person_exists", f"card {card_number} is registered") from None
    service.writer.cache.invalidate(accounts=[account])
    return {**get_person(service, caller, card_number), "checkCode": check_code}


def update_person(service: Service, caller: Caller, card_number: str, body: Any) -> dict[str, Any]:
    """Changes a person's data (signed request of the administrator of the person's district, or the
    city's). `category: null` ends the person's eligibility for monthly grants."""
    card_number = parse_card_number(card_number)
    if not isinstance(body, dict) or not body or body.keys() - set(_UPDATABLE):
        raise ApiError("invalid_request", f"expected an object with some of {', '.join(_UPDATABLE)}")
    account = account_of(card_number)
    with service.sessions() as session, session.begin():
        person = administered_person(session, caller, card_number)
        mirror = session.get(db.Account, account)
        kind = mirror.kind if mirror is not None else 0  # registration wrote the mirror row (status 0 until on chain)
        for column, value in _fields(body, kind, service.id_hash_key).items():
            setattr(person, column, value)
        person.updated_at = time.time()
        _write_profile(session, person, district=person.district, kind=kind)
    service.writer.cache.invalidate(accounts=[account])
    return get_person(service, caller, card_number)


def _write_profile(session, person: db.Person, *, district: int, kind: int) -> None:
    location = None if person.lat is None else {"lat": person.lat, "lon": person.lon}
    qualified = any(q in QUALIFICATIONS for q in json.loads(person.qualifications))
    write_profile(session, person.account, location=location, qualified=qualified, district=district, kind=kind)


def _holds_a_role(caller: Caller | None) -> bool:
    return caller is not None and (caller.city_admin or caller.district is not None or caller.auditor_district is not None)


def get_person(service: Service, caller: Caller | None, card_number: str) -> dict[str, Any]:
    """A person by card number: personal data for the district's administrators and auditors only; the
    public view (account, district, kind, status) for the holders of any administrator or auditor role.
    Anyone else (unsigned, or signed by a key with no role) gets `not_found` for every card, registered
    or not, so card numbers cannot be enumerated here (the family look-up is `POST /v1/people/lookup`,
    with the card's check code)."""
    account = account_of(parse_card_number(card_number))
    if not _holds_a_role(caller):
        raise ApiError(
            "not_found",
            "no person visible: a signed request of an administrator or auditor, or the card's check code "
            "(POST /v1/people/lookup)",
        )
    with service.reads() as session:
        person = session.get(db.Person, account)
        if person is None:
            raise ApiError("not_found", f"no person with card {card_number}")
        mirror = session.get(db.Account, account)
    return person_view(person, mirror, personal=_sees_personal_data(caller, person.district))


def id_number_match(service: Service, caller: Caller, card_number: str, body: Any) -> dict[str, Any]:
    """Whether a candidate ID number is the person's (`{idNumber}` -> `{match}`): for the administrators
    and auditors who see the person's data; never the hash. At most ID_MATCHES_PER_MINUTE a signer."""
    if not caller.has_role:  # before anything is looked up
        raise ApiError("forbidden", f"{caller.address} holds no role")
    if not isinstance(body, dict) or set(body) != {"idNumber"}:
        raise ApiError("invalid_request", "expected {idNumber}")
    candidate = _id_number(body["idNumber"])
    account = account_of(parse_card_number(card_number))
    with service.reads() as session:
        person = session.get(db.Person, account)
    if person is None or not _sees_personal_data(caller, person.district):
        raise ApiError("forbidden", f"{caller.address} does not see this person's data")
    _id_match_budget(caller.address)
    return {"match": id_number_matches(person.id_number_hash, candidate, service.id_hash_key), "legacy": person.id_number_hash.startswith(LEGACY_PREFIX)}


ID_MATCHES_PER_MINUTE = 30
_id_matches: dict[str, list[float]] = {}
_id_matches_lock = threading.Lock()


def _id_match_budget(signer: str) -> None:
    now = time.monotonic()
    with _id_matches_lock:
        recent = [t for t in _id_matches.get(signer, []) if now - t < 60]
        if len(recent) >= ID_MATCHES_PER_MINUTE:
            raise ApiError("too_many_requests", f"at most {ID_MATCHES_PER_MINUTE} ID-number checks a minute")
        recent.append(now)
        _id_matches[signer] = recent


# ----- history ------------------------------------------------------------------------------------


def history(service: Service, account: str, *, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """The account's hours and star level (as the chain holds them) and its orders as volunteer and as
    payer, newest first: status, minutes, service type, times. Nothing about the other parties."""
    if not 1 <= limit <= HISTORY_MAX_LIMIT or offset < 0:
        raise ApiError("invalid_request", f"limit: 1 to {HISTORY_MAX_LIMIT}; offset: 0 or more")
    view = account_view(service, bytes.fromhex(account[2:]))
    mine = or_(db.Order.volunteer == account, db.Order.payer == account)
    with service.reads() as session:
        total = session.scalar(select(func.count()).select_from(db.Order).where(mine))
        rows = session.execute(
            select(
                db.Order.order_id,
                db.Order.volunteer,
                db.Order.status,
                db.Order.district,
                db.Order.service_type,
                db.Order.minutes,
                db.Order.start_time,
                db.Order.end_time,
                db.Order.accepted_at,
            )
            .where(mine)
            .order_by(db.Order.start_time.desc(), db.Order.seq.desc())
            .limit(limit)
            .offset(offset)
        ).all()
    orders = [
        {
            "orderId": r.order_id,
            "role": "volunteer" if r.volunteer == account else "payer",
            "status": r.status,
            "district": r.district,
            "serviceType": r.service_type,
            "serviceName": names.service_type_name(r.service_type, "zh"),
            "serviceNameEn": names.service_type_name(r.service_type, "en"),
            "districtName": names.name_of(r.district),
            "minutes": r.minutes,
            "startTime": r.start_time,
            "endTime": r.end_time,
            "acceptedAt": r.accepted_at,
        }
        for r in rows
    ]
    return {**view, "total": total, "orders": orders}


# ----- group volunteers ---------------------------------------------------------------------------


def _group(session, caller: Caller, group: str, *, audit: bool = False) -> db.Account:
    row = session.get(db.Account, group)
    if row is None or row.status == 0:
        raise ApiError("not_found", f"no account {group}")
    if row.kind != GROUP:
        raise ApiError("account_wrong_kind", f"account {group} is of kind {row.kind}, not a group (3)")
    if not (caller.administers(row.district) or (audit and caller.audits(row.district))):
        raise ApiError("forbidden", f"{caller.address} does not administer district {row.district}")
    return row


def group_members(service: Service, caller: Caller, group: str) -> dict[str, Any]:
    """The member accounts of a group volunteer (its district's administrators and auditors)."""
    with service.reads() as session:
        _group(session, caller, group, audit=True)
        members = session.scalars(
            select(db.GroupMember.member_account).where(db.GroupMember.group_account == group).order_by(db.GroupMember.member_account)
        ).all()
    return {"group": group, "members": list(members)}


def add_group_member(service: Service, caller: Caller, group: str, body: Any) -> tuple[bool, dict[str, Any]]:
    """Adds a volunteer account (of any district) to a group; (added, members). Adding a member again
    changes nothing."""
    if not isinstance(body, dict) or set(body) != {"account"}:
        raise ApiError("invalid_request", "expected an object with account")
    try:
        member = protocol.to_hex(protocol.parse_bytes(body["account"].lower() if isinstance(body["account"], str) else None, 32, "account"))
    except protocol.ProtocolError as exc:
        raise ApiError(exc.code, exc.message) from None
    with service.sessions() as session, session.begin():
        _group(session, caller, group)
        row = session.get(db.Account, member)
        if row is None or row.status == 0:
            raise ApiError("unknown_account", f"account {member} is not registered")
        if row.kind != VOLUNTEER:
            raise ApiError("account_wrong_kind", f"account {member} is of kind {row.kind}, not a volunteer (1)")
        added = session.get(db.GroupMember, (group, member)) is None
        if added:
            session.add(db.GroupMember(group_account=group, member_account=member))
    return added, group_members(service, caller, group)


def remove_group_member(service: Service, caller: Caller, group: str, member: str) -> dict[str, Any]:
    with service.sessions() as session, session.begin():
        _group(session, caller, group)
        row = session.get(db.GroupMember, (group, member))
        if row is None:
            raise ApiError("not_found", f"{member} is not a member of {group}")
        session.delete(row)
    return group_members(service, caller, group)


# ----- monthly grants -----------------------------------------------------------------------------


def monthly_plan(service: Service, caller: Caller, *, district: int, period: str | None) -> dict[str, Any]:
    """The eligible recipients of `district` whose monthly grant of `period` (default: the current one)
    is not recorded: registered persons with an eligibility category whose account is an active
    recipient on chain (administrators of the district, or the city's)."""
    district = _uint(district, 32, "district")
    period = current_period() if period is None else parse_period(period)
    if not caller.administers(district):
        raise ApiError("forbidden", f"{caller.address} does not administer district {district}")
    granted = exists().where(db.MonthlyGrant.account == db.Person.account, db.MonthlyGrant.period == period)
    with service.reads() as session:
        rows = session.execute(
            select(db.Person.account, db.Person.card_number, db.Person.name, db.Person.category)
            .join(db.Account, db.Account.account == db.Person.account)
            .where(
                db.Person.district == district,
                db.Person.category.is_not(None),
                db.Account.kind == RECIPIENT,
                db.Account.status == protocol.ACTIVE,
                ~granted,
            )
            .order_by(db.Person.card_number)
        ).all()
    return {
        "district": district,
        "period": period,
        "currentPeriod": current_period(),
        "reason": GRANT_REASON_MONTHLY,
        "persons": [{"account": r.account, "cardNumber": r.card_number, "name": r.name, "category": r.category} for r in rows],
    }


class _Claim:
    """The claim of one account's monthly grant of one period, while its command is relayed."""

    def __init__(self, service: Service | None, account: str = "", period: str = "", minutes: int = 0):
        self.service, self.account, self.period, self.minutes = service, account, period, minutes

    def record(self, tx_hash: str) -> None:
        if self.service is None:
            return
        try:
            with self.service.sessions() as session, session.begin():
                session.add(
                    db.MonthlyGrant(account=self.account, period=self.period, minutes=self.minutes, tx_hash=tx_hash, granted_at=time.time())
                )
        except IntegrityError:  # another service sharing the store recorded it meanwhile
            log.warning("monthly grant of %s for %s recorded twice (tx %s)", self.account, self.period, tx_hash)


_claims_lock = threading.Lock()
_claimed: set[tuple[int, str, str]] = set()


@contextmanager
def monthly_grant_claim(service: Service, kind: str, message: dict[str, Any]) -> Iterator[_Claim]:
    """Around the relay of a checked command: for a monthly grant to a registered person, refuses it
    (`not_eligible`, `already_granted`) or holds the account's claim on the current period until the
    grant is recorded (`_Claim.record`) or fails. Any other command passes through."""
    if kind != "Grant" or message["reason"] != GRANT_REASON_MONTHLY:
        yield _Claim(None)
        return
    account = message["account"]
    with service.reads() as session:
        person = session.get(db.Person, account)
    if person is None:
        yield _Claim(None)
        return
    if person.category is None:
        raise ApiError("not_eligible", f"card {person.card_number} has no eligibility category: no monthly grant")
    period = current_period()
    key = (id(service), account, period)
    with _claims_lock:
        with service.reads() as session:
            recorded = session.get(db.MonthlyGrant, (account, period))
        if recorded is not None or key in _claimed:
            where = f"in transaction {recorded.tx_hash}" if recorded is not None else "being relayed"
            raise ApiError("already_granted", f"the monthly grant of {period} to card {person.card_number} is {where}")
        _claimed.add(key)
    try:
        yield _Claim(service, account, period, message["minutes"])
    finally:
        with _claims_lock:
            _claimed.discard(key)


# ----- listings (the district console) -------------------------------------------------------------

LIST_MAX_LIMIT = 1000


def list_people(service: Service, caller: Caller, *, district: int, kind: int | None, limit: int, offset: int) -> dict[str, Any]:
    """The persons of a district, by card number (signed request of the district's administrator, the
    city's, or an auditor of the district or city-wide): card number, account, kind and status (the
    chain's; 0 until it registers the account), name, category and qualifications. No ID-number hash,
    phone or address: those stay on the person's own page."""
    district = _uint(district, 32, "district")
    if not 1 <= limit <= LIST_MAX_LIMIT or offset < 0:
        raise ApiError("invalid_request", f"limit: 1 to {LIST_MAX_LIMIT}; offset: 0 or more")
    if kind is not None and kind not in PERSON_KINDS:
        raise ApiError("invalid_request", "kind: 1 volunteer, 2 recipient or 3 group")
    if not _sees_personal_data(caller, district):
        raise ApiError("forbidden", f"{caller.address} neither administers nor audits district {district}")
    query = (
        select(db.Person, db.Account.kind, db.Account.status)
        .outerjoin(db.Account, db.Account.account == db.Person.account)
        .where(db.Person.district == district)
    )
    if kind is not None:
        query = query.where(db.Account.kind == kind)
    with service.reads() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        rows = session.execute(query.order_by(db.Person.card_number).limit(limit).offset(offset)).all()
    return {
        "district": district,
        "total": total,
        "people": [
            {
                "cardNumber": p.card_number,
                "account": p.account,
                "district": p.district,
                "kind": k or 0,
                "status": st or 0,
                "name": p.name,
                "category": p.category,
                "qualifications": json.loads(p.qualifications),
            }
            for p, k, st in rows
        ],
    }


def list_stations(service: Service, *, district: int | None) -> dict[str, Any]:
    """The stations the chain registered (the mirror), of one district or all: public, as the chain's are."""
    query = select(db.Station).order_by(db.Station.district, db.Station.station)
    if district is not None:
        query = query.where(db.Station.district == _uint(district, 32, "district"))
    with service.reads() as session:
        rows = session.scalars(query).all()
    return {
        "stations": [
            {"station": r.station, "district": r.district, "activeFromBlock": r.active_from, "activeUntilBlock": r.active_until}
            for r in rows
        ]
    }
