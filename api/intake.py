"""Order intake: every check of an incoming signed order, then its durable record.

`prepare` does what needs no state (parsing, digest, signature, details, times) and runs on the request's
own task. `Writer` is the single writer of orders: one thread takes what the requests queued, checks each
against the store in one transaction (so an order sees the orders queued before it), commits the group
once, and only then answers the requests: an accepted order is durable before its answer goes out.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from . import db, protocol
from .errors import ApiError
from .settings import Settings
from .vocabulary import OrderStatus

log = logging.getLogger(__name__)

CONFIRMATION_METHODS = {"voice", "card", "signature"}
MAX_SERVICE_SECONDS = 24 * 3600  # one service, check-in to check-out
MAX_NOTES_CHARS = 500  # details.notes
CST = 8 * 3600  # China Standard Time: a station's day (its ceiling of minutes) starts at midnight UTC+8


@dataclass
class Prepared:
    """An order that passed the stateless checks."""

    order: protocol.ServiceOrder
    signature: bytes
    details: Any
    digest: bytes
    station: bytes

    def answer(self, status: str) -> dict:
        return {
            "orderId": protocol.to_hex(self.order.orderId),
            "status": status,
            "digest": protocol.to_hex(self.digest),
            "station": protocol.to_hex(self.station),
        }


def _point(value: Any, field: str) -> tuple[float, float, int]:
    if not isinstance(value, dict):
        raise ApiError("malformed_details", f"details.{field}: expected an object with lat, lon, time")
    lat, lon, at = value.get("lat"), value.get("lon"), value.get("time")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon))
    if not numbers or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ApiError("malformed_details", f"details.{field}: lat and lon must be numbers in range")
    if isinstance(at, bool) or not isinstance(at, int) or at < 0:
        raise ApiError("malformed_details", f"details.{field}.time: expected unix seconds")
    return float(lat), float(lon), at


def check_details(details: Any, service_type: int) -> tuple[tuple[float, float, int], tuple[float, float, int]] | None:
    """The details object's shape (PROTOCOL.md section 3); returns check-in and check-out of a service."""
    if not isinstance(details, dict):
        raise ApiError("malformed_details", "details: expected an object")
    if service_type == protocol.TRANSFER_SERVICE_TYPE:
        return None  # a transfer delivers no service: no check-in, no check-out
    check_in, check_out = _point(details.get("checkIn"), "checkIn"), _point(details.get("checkOut"), "checkOut")
    confirmation = details.get("confirmation")
    if not isinstance(confirmation, dict) or confirmation.get("method") not in CONFIRMATION_METHODS:
        raise ApiError("malformed_details", "details.confirmation.method: expected voice, card or signature")
    rating = details.get("rating")
    if rating is not None:
        if not isinstance(rating, dict) or any(
            k not in ("byRecipient", "byVolunteer") or isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5
            for k, v in rating.items()
        ):
            raise ApiError("malformed_details", "details.rating: byRecipient and byVolunteer are 1 to 5")
    trail = details.get("trail")
    if trail is not None and (not isinstance(trail, list) or any(not isinstance(p, list) or len(p) != 3 for p in trail)):
        raise ApiError("malformed_details", "details.trail: expected [[lat, lon, time], ...]")
    notes = details.get("notes")
    if notes is not None and not isinstance(notes, str):
        raise ApiError("malformed_details", "details.notes: expected a string")
    if notes is not None and len(notes) > MAX_NOTES_CHARS:
        raise ApiError("details_too_large", f"details.notes: {len(notes)} characters, at most {MAX_NOTES_CHARS}")
    return check_in, check_out


def prepare(body: Any, *, separator: bytes, settings: Settings, now: float | None = None) -> Prepared:
    """The checks that need no stored state. Raises `ApiError`."""
    if not isinstance(body, dict) or not {"order", "signature", "details"} <= body.keys():
        raise ApiError("invalid_request", "expected an object with order, signature and details")
    try:
        order = protocol.ServiceOrder.from_json(body["order"])
        signature = protocol.parse_bytes(body["signature"], 65, "signature")
        digest = order.digest(separator)
        station = protocol.recover(digest, signature)
        if protocol.details_hash(body["details"]) != order.detailsHash:
            raise ApiError("details_hash_mismatch")
    except protocol.ProtocolError as exc:
        raise ApiError(exc.code, exc.message) from None
    if order.serviceType not in protocol.SERVICE_TYPES:
        raise ApiError("unknown_service_type", f"service type {order.serviceType} is not in the protocol")
    if order.endTime < order.startTime:
        raise ApiError("invalid_time_range")
    if order.endTime - order.startTime > MAX_SERVICE_SECONDS:  # a transfer too: no startTime 0
        raise ApiError("service_too_long", f"a service (or a transfer's time range) lasts at most {MAX_SERVICE_SECONDS // 3600} hours")
    if order.minutes == 0:
        raise ApiError("invalid_minutes", "minutes must be positive")
    if order.serviceType != protocol.TRANSFER_SERVICE_TYPE and order.minutes > (order.endTime - order.startTime) // 60:
        raise ApiError("invalid_minutes", f"{order.minutes} minutes is longer than the service lasted")
    if order.minutes > settings.max_order_minutes:
        raise ApiError("minutes_over_limit", f"{order.minutes} minutes is over the maximum of {settings.max_order_minutes}")
    now = time.time() if now is None else now
    if order.endTime > now + settings.clock_skew_seconds:
        raise ApiError("end_time_in_future")
    if order.endTime < now - settings.order_max_age_seconds:
        raise ApiError("order_too_old", f"orders older than {settings.order_max_age_seconds} s are refused")
    check_details(body["details"], order.serviceType)
    size = len(json.dumps(body["details"], ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    if size > settings.max_details_bytes:
        raise ApiError("details_too_large", f"details is {size} bytes, at most {settings.max_details_bytes}")
    return Prepared(order, signature, body["details"], digest, station)


def prepare_bulk(body: Any, *, separator: bytes, settings: Settings) -> list[Prepared | ApiError]:
    """`POST /v1/orders/bulk`: the body's items (at most `bulk_max_items`), each `prepare`d, its refusal in
    its place. About 0.1 ms an item: callers run it off the event loop."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ApiError("invalid_request", "expected an object with items")
    if len(items) > settings.bulk_max_items:
        raise ApiError("too_many_items", f"{len(items)} items, at most {settings.bulk_max_items}")
    prepared: list[Prepared | ApiError] = []
    for item in items:
        try:
            prepared.append(prepare(item, separator=separator, settings=settings))
        except ApiError as exc:
            prepared.append(exc)
    return prepared


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


@dataclass(frozen=True)
class AccountState:
    district: int
    kind: int
    status: int
    lat: float | None
    lon: float | None
    qualified: bool


class StateCache:
    """What the checks read, kept in memory by the writer: stations, accounts, each payer's available
    minutes (mirrored balance less minutes promised in orders not yet anchored) and each volunteer's
    recent service intervals. Loaded from the store on first use. Whoever changes what an entry was loaded
    from says so (`invalidate`, thread-safe); the writer drops those entries before its next group, and
    everything after a failed write. Anchoring one of our own batches needs no word: it takes the same
    minutes off the payer's balance and off what is promised, so what is available stays the same."""

    def __init__(self, intervals_window: int = 0) -> None:
        self.intervals_window = intervals_window  # seconds of past intervals an order can still overlap
        self.links_enforced = False  # the contract holds family links (set by the service)
        self._lock = threading.Lock()
        self._all = False
        self._accounts: set[str] = set()
        self._balances: set[str] = set()
        self._stations: set[str] = set()
        self.clear()

    def clear(self) -> None:
        self.stations: dict[str, db.Station | None] = {}
        self.accounts: dict[str, AccountState | None] = {}
        self.available: dict[str, int] = {}
        self.intervals: dict[str, list[tuple[int, int]]] = {}
        self.exempt: dict[str, bool] = {}
        self.links: dict[str, set[str]] = {}  # payer -> linked beneficiaries
        self.station_day: dict[str, tuple[int, int]] = {}  # station -> (day start, minutes accepted since)

    def invalidate(
        self,
        accounts: Iterable[str] = (),
        balances: Iterable[str] = (),
        stations: Iterable[str] = (),
        *,
        everything: bool = False,
    ) -> None:
        """Before the writer's next group, drop: `accounts`' entries (state, available minutes and
        intervals), `balances`' available minutes, `stations`' entries; or `everything` (also when called
        with nothing named)."""
        accounts, balances, stations = set(accounts), set(balances), set(stations)
        with self._lock:
            self._all |= everything or not (accounts or balances or stations)
            self._accounts |= accounts
            self._balances |= balances
            self._stations |= stations

    def refresh(self) -> None:
        with self._lock:
            everything, accounts, balances, stations = self._all, self._accounts, self._balances, self._stations
            self._all, self._accounts, self._balances, self._stations = False, set(), set(), set()
        if everything:
            self.clear()
            return
        for account in accounts:
            self.accounts.pop(account, None)
            self.intervals.pop(account, None)
        for account in accounts | balances:
            self.available.pop(account, None)
        for station in stations:
            self.stations.pop(station, None)
        for account in accounts:
            self.exempt.pop(account, None)
            self.links.pop(account, None)

    def station(self, session: Session, address: str) -> db.Station | None:
        if address not in self.stations:
            row = session.get(db.Station, address)
            if row is not None:
                session.expunge(row)
            self.stations[address] = row
        return self.stations[address]

    def account(self, session: Session, account: str) -> AccountState | None:
        if account not in self.accounts:
            row = session.execute(
                select(db.Account.district, db.Account.kind, db.Account.status, db.Account.lat, db.Account.lon, db.Account.qualified).where(
                    db.Account.account == account
                )
            ).first()
            self.accounts[account] = AccountState(*row) if row is not None and row.status != 0 else None
        return self.accounts[account]

    def available_minutes(self, session: Session, payer: str) -> int:
        if payer not in self.available:
            promised = (
                select(func.coalesce(func.sum(db.Order.minutes), 0))
                .where(db.Order.payer == payer, db.Order.status == OrderStatus.ACCEPTED)
                .scalar_subquery()
            )
            # one statement: balance and promised minutes from the same snapshot
            self.available[payer] = session.execute(
                select(db.Account.balance - promised).where(db.Account.account == payer)
            ).scalar_one()
        return self.available[payer]

    def linked(self, session: Session, payer: str, beneficiary: str) -> bool:
        """Whether `payer` has linked `beneficiary` on chain (LinkAccounts). Always true while the contract
        has no family links (`links_enforced` false: a contract older than protocol v1.1)."""
        if not self.links_enforced:
            return True
        if payer not in self.links:
            rows = session.scalars(select(db.AccountLink.beneficiary).where(db.AccountLink.payer == payer, db.AccountLink.linked.is_(True)))
            self.links[payer] = set(rows)
        return beneficiary in self.links[payer]

    def location_exempt(self, session: Session, account: str) -> bool:
        if account not in self.exempt:
            self.exempt[account] = session.get(db.LocationExemption, account) is not None
        return self.exempt[account]

    def station_minutes_today(self, session: Session, station: str, now: float) -> int:
        """Minutes of the station's orders accepted since midnight (China Standard Time), not rejected."""
        day = int((now + CST) // 86400 * 86400 - CST)
        known = self.station_day.get(station)
        if known is None or known[0] != day:
            total = session.execute(
                select(func.coalesce(func.sum(db.Order.minutes), 0)).where(
                    db.Order.station == station, db.Order.accepted_at >= day, db.Order.status != "rejected"
                )
            ).scalar_one()
            self.station_day[station] = known = (day, int(total))
        return known[1]

    def volunteer_intervals(self, session: Session, volunteer: str) -> list[tuple[int, int]]:
        if volunteer not in self.intervals:
            since = time.time() - self.intervals_window if self.intervals_window else 0
            rows = session.execute(
                select(db.Order.start_time, db.Order.end_time).where(
                    db.Order.volunteer == volunteer,
                    db.Order.end_time >= since,
                    db.Order.service_type != protocol.TRANSFER_SERVICE_TYPE,
                    db.Order.status.in_((OrderStatus.ACCEPTED, OrderStatus.ANCHORED)),
                )
            ).all()
            self.intervals[volunteer] = sorted((r.start_time, r.end_time) for r in rows)
        return self.intervals[volunteer]


def _overlapping(intervals: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """An interval of the sorted, mutually disjoint `intervals` that overlaps [start, end), if any."""
    i = bisect.bisect_left(intervals, (start, end))
    for j in (i - 1, i):
        if 0 <= j < len(intervals) and intervals[j][0] < end and intervals[j][1] > start:
            return intervals[j]
    return None


def check_state(session: Session, p: Prepared, settings: Settings, cache: StateCache) -> None:
    """The checks against the mirror of the chain and the stored orders. Raises `ApiError`."""
    o = p.order
    station = cache.station(session, protocol.to_hex(p.station))
    if station is None:
        raise ApiError("station_unknown", f"{protocol.checksum(p.station)} is not a registered station")
    if station.active_until:
        raise ApiError("station_removed", f"{protocol.checksum(p.station)} was removed at block {station.active_until}")
    if station.district != o.district:
        raise ApiError("station_wrong_district", f"the station belongs to district {station.district}, not {o.district}")
    accounts = {}
    for role, account_id in (("volunteer", o.volunteer), ("payer", o.payer), ("recipient", o.recipient)):
        account = cache.account(session, protocol.to_hex(account_id))
        if account is None:
            raise ApiError("unknown_account", f"{role} {protocol.to_hex(account_id)} is not registered")
        if account.status != protocol.ACTIVE:
            raise ApiError("account_not_active", f"{role} {protocol.to_hex(account_id)} is frozen or cancelled")
        accounts[role] = account
    service = o.serviceType != protocol.TRANSFER_SERVICE_TYPE
    if service and accounts["volunteer"].kind not in protocol.VOLUNTEER_KINDS:
        raise ApiError("volunteer_wrong_kind")
    if o.payer == o.volunteer:
        raise ApiError("payer_is_volunteer")
    if o.serviceType in protocol.PROFESSIONAL_SERVICE_TYPES and not accounts["volunteer"].qualified:
        raise ApiError("qualification_required")
    # consent and place (PROTOCOL.md v1.1 section 3)
    if service and accounts["recipient"].district != o.district:
        raise ApiError("recipient_other_district", f"the recipient is an account of district {accounts['recipient'].district}, not {o.district}")
    if not service and accounts["payer"].district != station.district:
        raise ApiError("transfer_other_district", f"a transfer is signed by a station of the payer's district {accounts['payer'].district}")
    beneficiary = o.recipient if service else o.volunteer
    if (o.payer != beneficiary or not service) and not cache.linked(session, protocol.to_hex(o.payer), protocol.to_hex(beneficiary)):
        raise ApiError("payer_not_linked", "the payer has not linked this recipient (LinkAccounts) to be served or given its hours")
    if service and (accounts["recipient"].lat is None or accounts["recipient"].lon is None):
        if not cache.location_exempt(session, protocol.to_hex(o.recipient)):
            raise ApiError(
                "recipient_no_location",
                "the recipient has no registered location (and no administrator's exemption): check-in cannot be checked",
            )
    station_address = protocol.to_hex(p.station)
    today = cache.station_minutes_today(session, station_address, time.time())
    if today + o.minutes > settings.station_daily_minutes:
        raise ApiError(
            "station_daily_limit", f"the station has {today} minutes today; {o.minutes} more is over its {settings.station_daily_minutes} a day"
        )
    recipient = accounts["recipient"]
    if service and recipient.lat is not None and recipient.lon is not None:
        for point in ("checkIn", "checkOut"):
            lat, lon = p.details[point]["lat"], p.details[point]["lon"]
            far = distance_m(lat, lon, recipient.lat, recipient.lon)
            if far > settings.max_checkin_distance_m:
                raise ApiError("location_mismatch", f"{point} is {far:.0f} m from the recipient's registered address")
    if service:
        clash = _overlapping(cache.volunteer_intervals(session, protocol.to_hex(o.volunteer)), o.startTime, o.endTime)
        if clash is not None:
            raise ApiError("volunteer_overlap", f"another order of the same volunteer runs from {clash[0]} to {clash[1]}")
    available = cache.available_minutes(session, protocol.to_hex(o.payer))
    if available < o.minutes:
        raise ApiError("insufficient_balance", f"the payer has {available} minutes available, the order needs {o.minutes}")


def _record(cache: StateCache, p: Prepared) -> None:
    """The cache after `p` is accepted."""
    o = p.order
    cache.available[protocol.to_hex(o.payer)] -= o.minutes
    station = protocol.to_hex(p.station)
    day, total = cache.station_day[station]
    cache.station_day[station] = (day, total + o.minutes)
    if o.serviceType != protocol.TRANSFER_SERVICE_TYPE:
        bisect.insort(cache.intervals[protocol.to_hex(o.volunteer)], (o.startTime, o.endTime))


def to_row(p: Prepared, now: float) -> dict[str, Any]:
    o = p.order
    return dict(
        order_id=protocol.to_hex(o.orderId),
        district=o.district,
        volunteer=protocol.to_hex(o.volunteer),
        payer=protocol.to_hex(o.payer),
        recipient=protocol.to_hex(o.recipient),
        service_type=o.serviceType,
        start_time=o.startTime,
        end_time=o.endTime,
        minutes=o.minutes,
        details_hash=protocol.to_hex(o.detailsHash),
        details=json.dumps(p.details, ensure_ascii=False, separators=(",", ":")),
        signature=protocol.to_hex(p.signature),
        digest=protocol.to_hex(p.digest),
        station=protocol.to_hex(p.station),
        status=OrderStatus.ACCEPTED,
        accepted_at=now,
    )


@dataclass
class Outcome:
    http_status: int
    body: dict


def _refusal(error: ApiError) -> Outcome:
    return Outcome(error.status, error.body())


_ORDERS = db.Order.__table__
_KNOWN_ORDERS = select(_ORDERS.c.order_id, _ORDERS.c.digest, _ORDERS.c.station, _ORDERS.c.status).where(
    _ORDERS.c.order_id.in_(bindparam("ids", expanding=True))
)
_INSERT_ORDERS = insert(_ORDERS)


def store_group(session: Session, items: list[Prepared | ApiError], settings: Settings, cache: StateCache) -> list[Outcome]:
    """Checks and stores a group of orders in the caller's transaction, each seeing the ones before it;
    one INSERT for the accepted ones. The caller commits, then answers."""
    ids = [protocol.to_hex(i.order.orderId) for i in items if isinstance(i, Prepared)]
    known: dict[str, tuple[str, str, str]] = {}  # orderId -> (digest, station, status)
    connection = session.connection() if ids else None  # Core statements built once: no ORM layer, no compiling per group
    for chunk in range(0, len(ids), 500):
        for order_id, digest, station, status in connection.execute(_KNOWN_ORDERS, {"ids": ids[chunk : chunk + 500]}):
            known[order_id] = (digest, station, status)
    outcomes, rows, now = [], [], time.time()
    for item in items:
        if isinstance(item, ApiError):
            outcomes.append(_refusal(item))
            continue
        order_id = protocol.to_hex(item.order.orderId)
        if order_id in known:
            digest, station, status = known[order_id]
            # the same order signed by another key is not the same request: it must not answer 200 with
            # that key as the station, nor skip the station checks
            if digest == protocol.to_hex(item.digest) and station == protocol.to_hex(item.station):
                outcomes.append(Outcome(200, item.answer(status)))
            else:
                outcomes.append(_refusal(ApiError("order_id_conflict", f"order {order_id} exists with other content, or signed by another key")))
            continue
        try:
            check_state(session, item, settings, cache)
        except ApiError as error:
            outcomes.append(_refusal(error))
            continue
        _record(cache, item)
        rows.append(to_row(item, now))
        known[order_id] = (protocol.to_hex(item.digest), protocol.to_hex(item.station), OrderStatus.ACCEPTED)
        outcomes.append(Outcome(201, item.answer(OrderStatus.ACCEPTED)))
    if rows:  # the table's insert (SQLAlchemy Core): the ORM's bulk path costs the writer 40% more here
        connection.execute(_INSERT_ORDERS, rows)
    return outcomes


class Writer:
    """The single writer of orders (see the module's docstring)."""

    def __init__(self, sessions: sessionmaker, settings: Settings, max_group: int = 2000):
        self.sessions = sessions
        self.settings = settings
        self.max_group = max_group
        # an order ending before the accepted window is refused before the checks, and a service lasts at
        # most MAX_SERVICE_SECONDS: older intervals cannot overlap one
        self.cache = StateCache(intervals_window=settings.order_max_age_seconds + MAX_SERVICE_SECONDS + 60)
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="order-writer", daemon=True)
        self._stopping = False
        self.on_commit = None  # called with the number of orders accepted by each commit
        self.rebuilding = lambda: False  # whether the mirror is being rebuilt after a chain reset (orders answered 503)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout=10)

    async def submit(self, items: list[Prepared | ApiError]) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((items, loop, future))
        return await future

    def enqueue(self, items: list[Prepared | ApiError], answer) -> None:
        """Queues `items`; the writer's thread calls `answer` with their outcomes (or the exception that
        kept the group from being stored) after the commit (the order channel of `api/channel.py`)."""
        self._queue.put((items, None, answer))

    def _run(self) -> None:
        while not self._stopping:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            size = len(first[0])
            while size < self.max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._stopping = True
                    break
                group.append(nxt)
                size += len(nxt[0])
            self._write(group)

    def _write(self, group: list) -> None:
        results: list[list[Outcome]] | BaseException
        if self.rebuilding():
            return self._refuse_rebuilding(group)
        self.cache.refresh()
        try:
            with self.sessions() as session:
                with session.begin():
                    flat = store_group(session, [item for items, _, _ in group for item in items], self.settings, self.cache)
                    if self.rebuilding():  # a chain reset began meanwhile: the checks may have read a mirror being emptied
                        raise _Rebuilding
            results, at = [], 0
            for items, _, _ in group:
                results.append(flat[at : at + len(items)])
                at += len(items)
        except _Rebuilding:  # rolled back: nothing of the group is stored
            self.cache.clear()
            return self._refuse_rebuilding(group)
        except BaseException as exc:  # the database failed: nothing of the group is stored
            log.exception("order write failed")
            self.cache.clear()
            results = exc
        if self.on_commit is not None and not isinstance(results, BaseException):
            accepted = sum(1 for r in results for o in r if o.http_status == 201)
            if accepted:
                self.on_commit(accepted)
        self._answer(group, results)

    @staticmethod
    def _answer(group: list, results: list[list[Outcome]] | BaseException) -> None:
        for index, (_items, loop, future) in enumerate(group):
            value = results if isinstance(results, BaseException) else results[index]
            if callable(future):
                try:
                    future(value)
                except Exception:
                    log.exception("answering a group failed")
            elif isinstance(value, BaseException):
                loop.call_soon_threadsafe(_set_exception, future, value)
            else:
                loop.call_soon_threadsafe(_set_result, future, value)

    @classmethod
    def _refuse_rebuilding(cls, group: list) -> None:
        """While the mirror is rebuilt after a chain reset it lacks stations, accounts, links and balances
        the chain holds: no order can be checked against it, and each is answered 503 mirror_rebuilding
        (sent again a few seconds later it is checked), never refused as if its station were unknown."""
        refusal = _refusal(ApiError("mirror_rebuilding"))
        cls._answer(group, [[refusal if isinstance(i, Prepared) else _refusal(i) for i in items] for items, _, _ in group])


class _Rebuilding(Exception):
    """A chain reset began while a group of orders was being checked: the group is rolled back."""


def _set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
