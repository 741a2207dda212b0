"""Supervision and audit (监督, 审计): the flows behind `api/routes/audit.py`.

- batch transparency: every order of an anchored batch and the per-account amounts recomputed from them,
  so anyone can recompute the root and the amounts and compare them with the anchoring transaction
  (`timebank-verify --batch`);
- spot checks (抽查): a reproducible random sample of anchored orders with their proof bundles;
- home-care comparison (居家服务订单比对): subsidised home-care visits imported from CSV, and the
  time-bank orders of the same recipient that overlap one in time;
- statistics for the yearly assessment (考核), per station and per district;
- the credit platform export (公共信用信息平台): one JSON line per anchored, non-revoked service order.

Every function here reads the store through the service's read sessions (the home-care import writes its
visits); the routes check nothing but the query's shape.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
import secrets
import statistics
import time
from collections import defaultdict
from datetime import date, datetime
from typing import Any, Iterator

from sqlalchemy import and_, select

from . import bundles, db, protocol
from .auth import Caller
from .errors import ApiError
from .service import Service
from .vocabulary import CHINA_TIME, BatchStatus, OrderStatus

CREDIT_FORMAT = "timebank-credit/1"
HOMECARE_HEADER = ["recipient_card", "start", "end", "provider"]
SPOT_CHECK_MAX = 1000
CREDIT_PAGE = 500


# ----- shared helpers -----------------------------------------------------------------------------


def parse_time(value: str, field: str) -> int:
    """Unix seconds from unix seconds or ISO 8601 (a date alone is its midnight; no offset means UTC+8)."""
    text = value.strip()
    if re.fullmatch(r"\d{1,12}", text):
        return int(text)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError("invalid_request", f"{field}: expected unix seconds or ISO 8601, got {value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA_TIME)  # as the city's systems write it
    return int(moment.timestamp())


def time_window(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """`from` (inclusive) and `to` (exclusive) of a query, applied to orders' startTime."""
    lo = None if start is None else parse_time(start, "from")
    hi = None if end is None else parse_time(end, "to")
    if lo is not None and hi is not None and hi <= lo:
        raise ApiError("invalid_request", f"to ({hi}) must be after from ({lo})")
    return lo, hi


def _station(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return protocol.to_hex(protocol.parse_address(value.strip().lower(), "station"))
    except protocol.ProtocolError as exc:
        raise ApiError(exc.code, exc.message) from None


def require_supervisor(caller: Caller, district: int | None) -> None:
    """An administrator or auditor of `district` (the city administrator and city-wide auditors are of
    every district); with no district, only the city-wide ones."""
    if district is None:
        allowed = caller.city_admin or caller.auditor_district == 0
        scope = "the whole city"
    else:
        allowed = caller.administers(district) or caller.audits(district)
        scope = f"district {district}"
    if not allowed:
        raise ApiError("forbidden", f"{caller.address} neither administers nor audits {scope}")


def _filters(district: int | None, station: str | None, lo: int | None, hi: int | None) -> list:
    where = []
    if district is not None:
        where.append(db.Order.district == district)
    if station is not None:
        where.append(db.Order.station == station)
    if lo is not None:
        where.append(db.Order.start_time >= lo)
    if hi is not None:
        where.append(db.Order.start_time < hi)
    return where


# ----- batch transparency -------------------------------------------------------------------------


def batch_listing(service: Service, batch_id: int) -> dict[str, Any]:
    """An anchored batch (by the contract's batch id) with every order (protocol fields, signature,
    station, leaf: no details, no personal data) and the per-account amounts recomputed from the orders,
    packed as `anchorBatch` takes them."""
    with service.reads() as session:
        batch = session.scalar(
            select(db.Batch)
            .where(db.Batch.chain_batch_id == batch_id, db.Batch.status == BatchStatus.ANCHORED)
            .order_by(db.Batch.id.desc())
            .limit(1)
        )
        if batch is None:
            raise ApiError("not_found", f"no anchored batch {batch_id} of this service")
        rows = session.scalars(select(db.Order).where(db.Order.batch_id == batch.id).order_by(db.Order.seq)).all()
        tx = session.get(db.Transaction, batch.tx_id) if batch.tx_id is not None else None
    return bundles.build_listing(
        service.domain(), batch, rows, revoked=[row.status == OrderStatus.REVOKED for row in rows],
        relayer=tx.sender if tx is not None else service.sender.address,
    )


# ----- spot checks (抽查) --------------------------------------------------------------------------


def spot_check(
    service: Service,
    caller: Caller,
    *,
    district: int | None,
    station: str | None,
    start: str | None,
    end: str | None,
    size: int,
    seed: str | None,
) -> dict[str, Any]:
    """A reproducible random sample of anchored orders: `random.Random(seed).sample` over the sorted order
    ids that match the filters (a decimal seed is taken as an integer). The same query and seed give the
    same sample while no order matching the filters is anchored or revoked in between."""
    station = _station(station)
    lo, hi = time_window(start, end)
    if not 1 <= size <= SPOT_CHECK_MAX:
        raise ApiError("invalid_request", f"size: expected 1 to {SPOT_CHECK_MAX}, got {size}")
    if district is None and station is not None:
        with service.reads() as session:
            row = session.get(db.Station, station)
        if row is None:
            raise ApiError("not_found", f"no station {station}")
        district = row.district
    require_supervisor(caller, district)
    seed = seed if seed is not None else str(secrets.randbelow(2**32))
    with service.reads() as session:
        ids = sorted(
            session.scalars(
                select(db.Order.order_id).where(db.Order.status == OrderStatus.ANCHORED, *_filters(district, station, lo, hi))
            )
        )
    rng = random.Random(int(seed) if seed.isdecimal() else seed)
    chosen = rng.sample(ids, min(size, len(ids)))
    return {
        "seed": seed,
        "district": district,
        "station": station,
        "from": lo,
        "to": hi,
        "population": len(ids),
        "size": len(chosen),
        "orders": service.proof_bundles(chosen),
    }


# ----- home-care comparison (居家服务订单比对) -----------------------------------------------------


def _csv_rows(raw: bytes) -> list[tuple[int, str, int, int, str]]:
    """(line, card, start, end, provider) of each data row; a bad row is `malformed_csv` with its line."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError("malformed_csv", f"the body is not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, str, int, int, str]] = []
    try:
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != HOMECARE_HEADER:
            raise ApiError("malformed_csv", f"line 1: expected the header {','.join(HOMECARE_HEADER)}")
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != 4:
                raise ApiError("malformed_csv", f"line {line}: expected 4 fields, got {len(fields)}")
            card, start_text, end_text, provider = (f.strip() for f in fields)
            if not card or len(card) > 64:
                raise ApiError("malformed_csv", f"line {line}: recipient_card: expected 1 to 64 characters")
            if not provider or len(provider) > 200:
                raise ApiError("malformed_csv", f"line {line}: provider: expected 1 to 200 characters")
            try:
                start, end = parse_time(start_text, "start"), parse_time(end_text, "end")
            except ApiError as exc:
                raise ApiError("malformed_csv", f"line {line}: {exc.message}") from None
            if end <= start:
                raise ApiError("malformed_csv", f"line {line}: end ({end_text}) is not after start ({start_text})")
            rows.append((line, card, start, end, provider))
    except csv.Error as exc:
        raise ApiError("malformed_csv", f"line {reader.line_num}: {exc}") from None
    if not rows:
        raise ApiError("malformed_csv", "no visits: the CSV holds only its header")
    return rows


def import_homecare(service: Service, caller: Caller, raw: bytes) -> tuple[bool, dict[str, Any]]:
    """Imports subsidised home-care visits (CSV `recipient_card,start,end,provider`), all or nothing.
    The city administrator imports any visit; a district's administrator those of recipients not registered
    in another district. The same file again is not imported twice: (False, the first import's answer)."""
    if not caller.city_admin and caller.district is None:
        raise ApiError("forbidden", f"{caller.address} is not an administrator")
    rows = _csv_rows(raw)
    import_id = protocol.keccak(raw).hex()
    recipients = {card: protocol.to_hex(protocol.account_id(card)) for _, card, *_ in rows}
    with service.sessions() as session, session.begin():
        done = session.scalars(select(db.HomeCareVisit.id).where(db.HomeCareVisit.import_id == import_id)).all()
        if done:
            return False, {"importId": import_id, "visits": len(done)}
        if not caller.city_admin:
            districts = dict(
                session.execute(
                    select(db.Account.account, db.Account.district).where(db.Account.account.in_(set(recipients.values())))
                ).all()
            )
            for line, card, *_ in rows:
                theirs = districts.get(recipients[card])
                if theirs is not None and theirs != caller.district:
                    raise ApiError("forbidden", f"line {line}: the recipient is registered in district {theirs}, "
                                   f"not {caller.district}")
        now = time.time()
        session.add_all(
            db.HomeCareVisit(
                import_id=import_id,
                recipient_card=card,
                recipient=recipients[card],
                start_time=start,
                end_time=end,
                provider=provider,
                imported_at=now,
            )
            for _, card, start, end, provider in rows
        )
    return True, {"importId": import_id, "visits": len(rows)}


def homecare_overlaps(service: Service, caller: Caller, district: int | None) -> dict[str, Any]:
    """Time-bank service orders (accepted or anchored, of `district` when given) of a recipient that
    overlap one of the recipient's home-care visits in time: candidates for double payment. Revoked
    orders are no longer listed."""
    require_supervisor(caller, district)
    o, v = db.Order, db.HomeCareVisit
    query = (
        select(o, v)
        .join(v, and_(v.recipient == o.recipient, o.start_time < v.end_time, v.start_time < o.end_time))
        .where(o.status.in_((OrderStatus.ACCEPTED, OrderStatus.ANCHORED)), o.service_type != protocol.TRANSFER_SERVICE_TYPE)
        .order_by(o.seq, v.id)
    )
    if district is not None:
        query = query.where(o.district == district)
    with service.reads() as session:
        pairs = session.execute(query).all()
    return {
        "district": district,
        "overlaps": [
            {
                "orderId": order.order_id,
                "status": order.status,
                "district": order.district,
                "station": order.station,
                "volunteer": order.volunteer,
                "recipient": order.recipient,
                "serviceType": order.service_type,
                "startTime": order.start_time,
                "endTime": order.end_time,
                "minutes": order.minutes,
                "visit": {
                    "id": visit.id,
                    "importId": visit.import_id,
                    "recipientCard": visit.recipient_card,
                    "start": visit.start_time,
                    "end": visit.end_time,
                    "provider": visit.provider,
                },
                # whole minutes, rounded up: any overlap shows
                "overlapMinutes": math.ceil(
                    (min(order.end_time, visit.end_time) - max(order.start_time, visit.start_time)) / 60
                ),
            }
            for order, visit in pairs
        ],
    }


# ----- statistics for the yearly assessment (考核) -----------------------------------------------


STATS_COLUMNS = [
    "level", "district", "station", "orders", "minutes", "volunteers", "recipients", "revocations",
    "revocation_reasons", "ratings_by_recipient", "rating_by_recipient", "ratings_by_volunteer", "rating_by_volunteer",
]


class _Tally:
    def __init__(self) -> None:
        self.orders = 0
        self.minutes = 0
        self.volunteers: set[str] = set()
        self.recipients: set[str] = set()
        self.revocations = 0
        self.reasons: dict[str, int] = defaultdict(int)
        self.ratings: dict[str, list[int]] = {"byRecipient": [], "byVolunteer": []}

    def add(self, row: Any) -> None:
        if row.status == OrderStatus.REVOKED:
            self.revocations += 1
            self.reasons["unknown" if row.revoke_reason is None else str(row.revoke_reason)] += 1
            return
        self.orders += 1
        self.minutes += row.minutes
        self.volunteers.add(row.volunteer)
        self.recipients.add(row.recipient)
        try:
            rating = json.loads(row.details).get("rating")
        except (ValueError, AttributeError):
            rating = None
        if isinstance(rating, dict):
            for who in ("byRecipient", "byVolunteer"):
                value = rating.get(who)
                if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5:
                    self.ratings[who].append(value)

    def view(self) -> dict[str, Any]:
        def rating(values: list[int]) -> dict[str, Any]:
            return {"count": len(values), "average": round(sum(values) / len(values), 2) if values else None}

        return {
            "orders": self.orders,
            "minutes": self.minutes,
            "volunteers": len(self.volunteers),
            "recipients": len(self.recipients),
            "revocations": self.revocations,
            "revocationReasons": dict(sorted(self.reasons.items())),
            "ratingByRecipient": rating(self.ratings["byRecipient"]),
            "ratingByVolunteer": rating(self.ratings["byVolunteer"]),
        }


def stats(service: Service, *, district: int | None, station: str | None, start: str | None, end: str | None) -> dict[str, Any]:
    """Per station and per district, over service orders (transfers excluded) whose startTime is in
    [from, to): `orders`, `minutes`, distinct `volunteers` and `recipients` of the anchored orders not
    revoked; `revocations` with their reason codes; the average ratings (details.rating) given by recipients
    and by volunteers. Orders not anchored yet do not count."""
    station = _station(station)
    lo, hi = time_window(start, end)
    o = db.Order
    with service.reads() as session:
        rows = session.execute(
            select(o.district, o.station, o.volunteer, o.recipient, o.minutes, o.status, o.revoke_reason, o.details).where(
                o.status.in_((OrderStatus.ANCHORED, OrderStatus.REVOKED)),
                o.service_type != protocol.TRANSFER_SERVICE_TYPE,
                *_filters(district, station, lo, hi),
            )
        ).all()
    by_station: dict[tuple[int, str], _Tally] = defaultdict(_Tally)
    by_district: dict[int, _Tally] = defaultdict(_Tally)
    for row in rows:
        by_station[(row.district, row.station)].add(row)
        by_district[row.district].add(row)
    return {
        "from": lo,
        "to": hi,
        "district": district,
        "station": station,
        "unusualStations": unusual_stations(service, district=district, station=station),
        "stations": [{"district": d, "station": s, **t.view()} for (d, s), t in sorted(by_station.items())],
        "districts": [{"district": d, **t.view()} for d, t in sorted(by_district.items())],
    }


USUAL_DAYS = 28  # the days a station's usual volume is taken over
UNUSUAL_FACTOR = 3  # a day over this many times the usual volume is flagged ...
UNUSUAL_FLOOR_MINUTES = 240  # ... and over this many minutes (a new or quiet station's first busy day is not)


def unusual_stations(service: Service, *, district: int | None, station: str | None, now: float | None = None) -> list[dict[str, Any]]:
    """Stations whose orders of the last 24 hours (every order accepted and not rejected, transfers
    included: what a stolen terminal key would spend) are over UNUSUAL_FACTOR times their usual day, the
    median of the USUAL_DAYS days before, and over UNUSUAL_FLOOR_MINUTES: `{district, station,
    lastDayMinutes, usualDayMinutes}`, largest first."""
    now = time.time() if now is None else now
    since = now - (USUAL_DAYS + 1) * 86400
    o = db.Order
    filters = [o.accepted_at >= since, o.status != "rejected"]
    if district is not None:
        filters.append(o.district == district)
    if station is not None:
        filters.append(o.station == station)
    with service.reads() as session:
        rows = session.execute(select(o.district, o.station, o.accepted_at, o.minutes).where(*filters)).all()
    days: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0] * (USUAL_DAYS + 1))
    for row in rows:
        age = int((now - row.accepted_at) // 86400)  # 0: the last 24 hours
        if 0 <= age <= USUAL_DAYS:
            days[(row.district, row.station)][age] += row.minutes
    flagged = []
    for (d, s), totals in days.items():
        usual = statistics.median(totals[1:])
        if totals[0] > UNUSUAL_FLOOR_MINUTES and totals[0] > UNUSUAL_FACTOR * usual:
            flagged.append({"district": d, "station": s, "lastDayMinutes": totals[0], "usualDayMinutes": usual})
    return sorted(flagged, key=lambda f: -f["lastDayMinutes"])


def stats_csv(result: dict[str, Any]) -> str:
    """The statistics as CSV: a header row, then one row per station and one per district (`level`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATS_COLUMNS)
    for level, rows in (("station", result["stations"]), ("district", result["districts"])):
        for r in rows:
            writer.writerow([
                level, r["district"], r.get("station", ""), r["orders"], r["minutes"], r["volunteers"],
                r["recipients"], r["revocations"], ";".join(f"{k}:{v}" for k, v in r["revocationReasons"].items()),
                r["ratingByRecipient"]["count"], "" if r["ratingByRecipient"]["average"] is None else r["ratingByRecipient"]["average"],
                r["ratingByVolunteer"]["count"], "" if r["ratingByVolunteer"]["average"] is None else r["ratingByVolunteer"]["average"],
            ])
    return out.getvalue()


# ----- credit platform export (公共信用信息平台) ----------------------------------------------------


def require_credit_export(caller: Caller) -> None:
    if not (caller.city_admin or caller.auditor_district == 0):
        raise ApiError("forbidden", f"{caller.address} is neither the city administrator nor a city-wide auditor")


def credit_lines(service: Service, *, start: int | None, end: int | None) -> Iterator[bytes]:
    """JSON Lines, one per anchored, non-revoked service order (transfers excluded) whose startTime is in
    [from, to): `{format, volunteer, orderId, serviceType, startTime, endTime, minutes, district, proof}`,
    the proof being the order's proof bundle. Read page by page, so the export streams."""
    after = 0
    while True:
        with service.reads() as session:
            page = session.execute(
                select(db.Order.seq, db.Order.order_id)
                .where(
                    db.Order.status == OrderStatus.ANCHORED,
                    db.Order.service_type != protocol.TRANSFER_SERVICE_TYPE,
                    db.Order.seq > after,
                    *_filters(None, None, start, end),
                )
                .order_by(db.Order.seq)
                .limit(CREDIT_PAGE)
            ).all()
        if not page:
            return
        # an order revoked (or its batch lost in a chain reset) since the page was read is left out
        for bundle in service.proof_bundles([order_id for _seq, order_id in page], revoked=False):
            order = bundle["order"]
            line = {
                "format": CREDIT_FORMAT,
                "volunteer": order["volunteer"],
                "orderId": order["orderId"],
                "serviceType": order["serviceType"],
                "startTime": order["startTime"],
                "endTime": order["endTime"],
                "minutes": order["minutes"],
                "district": order["district"],
                "proof": bundle,
            }
            yield (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        after = page[-1].seq
