"""POST /v1/orders and /v1/orders/bulk (PROTOCOL.md sections 3 and 6): every refusal by its error code,
with nothing stored and never a 500; idempotent and conflicting repeats; bulk results item by item;
orders signed by ethers v6.

All tests share the session's service and chain (`world`). Each test that stores anything makes its own
fresh accounts, so no test depends on another's state; the refusals that need no stored state share one
set of accounts (`shared`), which they never change.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coincurve
import pytest
from sqlalchemy import func, select

from api import db
from api import protocol as P
from api.auth import host_of, sign_headers
from tests.utils.api import Terminal, card, details, wait_anchored
from tests.utils.api_world import DISTRICT, OTHER_DISTRICT, link

pytestmark = pytest.mark.usefixtures("api")

ROOT = Path(__file__).resolve().parent.parent
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
DAY = 24 * 3600


# ----- helpers ------------------------------------------------------------------------------------


@dataclass
class People:
    """A fresh volunteer and a fresh elderly person (recipient and payer, with granted minutes)."""

    volunteer: str
    elder: str

    def parties(self) -> tuple[str, str, str]:
        return self.volunteer, self.elder, self.elder


def make_people(world, grant: int = 1000) -> People:
    return People(world.new_account(1), world.new_account(2, grant=grant))


def error_of(response, status: int, code: str) -> dict:
    """The refusal's `{error: {code, message}}`, after checking its status, shape and code."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "messageEn", "messageZh"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body["error"]


def order_count(api) -> int:
    with api.service.reads() as session:
        return session.scalar(select(func.count()).select_from(db.Order))


def assert_not_stored(api, body: Any) -> None:
    """GET /v1/orders/{orderId} answers 404 for the refused body's orderId (when it has a usable one)."""
    try:
        order_id = P.to_hex(P.parse_bytes(body["order"]["orderId"], 32, "orderId"))
    except (TypeError, KeyError, P.ProtocolError):
        return
    error_of(api.client.get(f"/v1/orders/{order_id}"), 404, "not_found")


def refused(api, body: Any, status: int, code: str) -> dict:
    """Posts `body`, checks the refusal, and that nothing was stored."""
    before = order_count(api)
    error = error_of(api.client.post("/v1/orders", json=body), status, code)
    assert_not_stored(api, body)
    assert order_count(api) == before
    return error


def accepted(terminal: Terminal, body: dict) -> dict:
    response = terminal.post(body)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer == {
        "orderId": body["order"]["orderId"],
        "status": "accepted",
        "digest": P.to_hex(P.ServiceOrder.from_json(body["order"]).digest(terminal.separator)),
        "station": terminal.address,
    }
    return answer


def set_profile(api, world, account: str, location: dict | None = None, qualified: bool = False) -> None:
    """PUT /v1/accounts/{id}/profile (the whole off-chain profile), signed by the district's admin."""
    path = f"/v1/accounts/{account}/profile"
    raw = json.dumps({"location": location, "qualified": qualified}).encode()
    separator = P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"])
    response = api.client.put(path, content=raw, headers=sign_headers(world.admin.key, separator, "PUT", path, raw, host=host_of(api.client.base_url)))
    assert response.status_code == 200, response.text


def with_details(terminal: Terminal, body: dict, d: Any) -> dict:
    """`body` with details `d`, its detailsHash, signed again."""
    return terminal.signed({**body["order"], "detailsHash": P.to_hex(P.details_hash(d))}, d)


def resign(terminal: Terminal, body: dict, **changes: Any) -> dict:
    """`body` with order fields changed and signed again by `terminal`."""
    return terminal.signed({**body["order"], **changes}, body["details"])


def new_terminal(api, world, district: int = DISTRICT, register: bool = True) -> Terminal:
    terminal = Terminal(secrets.token_bytes(32), api.client, world.domain, district)
    if register:
        admin = world.admin if district == DISTRICT else world.other_admin
        admin.ok("RegisterStation", station=terminal.address, district=district)
    return terminal


@pytest.fixture(scope="module")
def terminal(api, world) -> Terminal:
    """This module's own station in DISTRICT, with its own clock of services laid one after another."""
    return new_terminal(api, world)


@pytest.fixture(scope="module")
def shared(world) -> People:
    """Accounts for the refusals decided before any stored state is read; nothing is ever stored for them."""
    return make_people(world)


@pytest.fixture
def people(world) -> People:
    return make_people(world)


# ----- malformed requests (decided without stored state) -------------------------------------------


def test_malformed_json_and_oversized_body(api, terminal, shared):
    before = order_count(api)
    for raw in (b"{not json", b"", b'{"order": ', "{\"order\": \"\xff\"}".encode("latin-1"), b"[" * 100_000):
        response = api.client.post("/v1/orders", content=raw, headers={"content-type": "application/json"})
        error_of(response, 400, "invalid_request")
    body = terminal.order(*shared.parties())
    body["details"]["notes"] = "x" * (api.settings.max_body_bytes + 1)
    error_of(api.client.post("/v1/orders", json=body), 413, "body_too_large")
    assert_not_stored(api, body)
    assert order_count(api) == before


def _drop(*path: str) -> Callable[[dict], None]:
    def mutate(body: dict) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _set(value: Any, *path: str) -> Callable[[dict], None]:
    def mutate(body: dict) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _signature(fn: Callable[[bytes], bytes]) -> Callable[[dict], None]:
    def mutate(body: dict) -> None:
        body["signature"] = P.to_hex(fn(bytes.fromhex(body["signature"][2:])))

    return mutate


def _high_s(sig: bytes) -> bytes:
    """The same signature's malleable twin: s -> n - s, v flipped. It recovers the same key, and is refused."""
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


MALFORMED: dict[str, tuple[Callable[[dict], None], int, str]] = {
    # the request's shape
    "body is a list": (lambda b: b.update(_list=True), 400, "invalid_request"),
    "no order": (_drop("order"), 400, "invalid_request"),
    "no signature": (_drop("signature"), 400, "invalid_request"),
    "no details": (_drop("details"), 400, "invalid_request"),
    "order is a list": (_set([], "order"), 400, "malformed_order"),
    "order lacks minutes": (_drop("order", "minutes"), 400, "malformed_order"),
    "order lacks detailsHash": (_drop("order", "detailsHash"), 400, "malformed_order"),
    "order has an extra field": (_set(1, "order", "tip"), 400, "malformed_order"),
    # bytes values
    "orderId without 0x": (lambda b: b["order"].update(orderId=b["order"]["orderId"][2:]), 400, "malformed_hex"),
    "orderId is a number": (_set(7, "order", "orderId"), 400, "malformed_hex"),
    "volunteer not hex": (_set("0x" + "zz" * 32, "order", "volunteer"), 400, "malformed_hex"),
    "payer is null": (_set(None, "order", "payer"), 400, "malformed_hex"),
    "orderId empty": (_set("0x", "order", "orderId"), 400, "wrong_length"),
    "recipient 31 bytes": (_set("0x" + "11" * 31, "order", "recipient"), 400, "wrong_length"),
    "detailsHash 33 bytes": (_set("0x" + "11" * 33, "order", "detailsHash"), 400, "wrong_length"),
    "odd hex digits": (_set("0x" + "1" * 63, "order", "volunteer"), 400, "malformed_hex"),
    # integers
    "minutes 2**32": (_set(2**32, "order", "minutes"), 400, "integer_out_of_range"),
    "minutes negative": (_set(-1, "order", "minutes"), 400, "integer_out_of_range"),
    "minutes boolean": (_set(True, "order", "minutes"), 400, "malformed_integer"),
    "minutes float": (_set(60.0, "order", "minutes"), 400, "malformed_integer"),
    "minutes string": (_set("60", "order", "minutes"), 400, "malformed_integer"),
    "district 2**32": (_set(2**32, "order", "district"), 400, "integer_out_of_range"),
    "serviceType 2**16": (_set(2**16, "order", "serviceType"), 400, "integer_out_of_range"),
    "startTime 2**64": (_set(2**64, "order", "startTime"), 400, "integer_out_of_range"),
    "endTime null": (_set(None, "order", "endTime"), 400, "malformed_integer"),
    "endTime huge": (_set(10**30, "order", "endTime"), 400, "integer_out_of_range"),
    # the signature
    "signature 64 bytes": (_signature(lambda s: s[:64]), 400, "wrong_length"),
    "signature 66 bytes": (_signature(lambda s: s + b"\x00"), 400, "wrong_length"),
    "signature not hex": (_set("0x" + "gg" * 65, "signature"), 400, "malformed_hex"),
    "signature high-s": (_signature(_high_s), 400, "bad_signature"),
    "signature v 29": (_signature(lambda s: s[:64] + b"\x1d"), 400, "bad_signature"),
    "signature v 2": (_signature(lambda s: s[:64] + b"\x02"), 400, "bad_signature"),
    "signature r zero": (_signature(lambda s: b"\x00" * 32 + s[32:]), 400, "bad_signature"),
    "signature s zero": (_signature(lambda s: s[:32] + b"\x00" * 32 + s[64:]), 400, "bad_signature"),
    "signature r = n": (_signature(lambda s: N.to_bytes(32, "big") + s[32:]), 400, "bad_signature"),
    # content the signature does not cover, or covers differently
    "details changed after signing": (_set("added later", "details", "notes"), 422, "details_hash_mismatch"),
    "order changed after signing": (lambda b: b["order"].update(minutes=b["order"]["minutes"] - 1), 403, "station_unknown"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_order_is_refused(api, terminal, shared, case):
    mutate, status, code = MALFORMED[case]
    body = terminal.order(*shared.parties())
    mutate(body)
    if body.pop("_list", False):
        body = [body]
    refused(api, body, status, code)


def test_high_s_twin_recovers_the_same_station(terminal, shared):
    """The high-s case above is refused for its malleability alone: its twin recovers the same key."""
    body = terminal.order(*shared.parties())
    digest = P.ServiceOrder.from_json(body["order"]).digest(terminal.separator)
    sig = bytes.fromhex(body["signature"][2:])
    twin = _high_s(sig)
    public = coincurve.PublicKey.from_signature_and_message(twin[:64] + bytes([twin[64] - 27]), digest, hasher=None)
    assert P.to_hex(P.keccak(public.format(compressed=False)[1:])[12:]) == terminal.address


# ----- content checks that need no stored state ---------------------------------------------------


def _bad_details(d: Any) -> Callable[[int], dict]:
    """Details `d`, signed with their hash, so that only their shape is wrong."""
    return lambda _now: {"_details": d}


def _point(**change: Any) -> dict:
    d = details()
    d["checkIn"] = {**d["checkIn"], **change}
    return d


CONTENT: dict[str, tuple[Callable[[int], dict], int, str]] = {
    "unknown service type 10": (lambda now: {"service_type": 10}, 422, "unknown_service_type"),
    "unknown service type 0": (lambda now: {"service_type": 0}, 422, "unknown_service_type"),
    "unknown service type 99": (lambda now: {"service_type": 99}, 422, "unknown_service_type"),
    "endTime before startTime": (lambda now: {"start": now - 7200, "duration": -60}, 422, "invalid_time_range"),
    "zero minutes": (lambda now: {"minutes": 0, "duration": 3600}, 422, "invalid_minutes"),
    "minutes longer than the service": (lambda now: {"minutes": 61, "duration": 3600 + 59}, 422, "invalid_minutes"),
    "minutes over the per-order maximum": (lambda now: {"minutes": 721}, 422, "minutes_over_limit"),
    "end beyond the clock skew": (lambda now: {"start": now - 3600 + 600, "duration": 3600}, 422, "end_time_in_future"),
    "end far in the future": (lambda now: {"start": now + 10 * DAY, "duration": 3600}, 422, "end_time_in_future"),
    "end older than the window": (lambda now: {"start": now - 31 * DAY, "duration": 3600}, 422, "order_too_old"),
    "details not an object": (_bad_details(["checkIn"]), 400, "malformed_details"),
    "details empty": (_bad_details({}), 400, "malformed_details"),
    "no checkOut": (_bad_details({k: v for k, v in details().items() if k != "checkOut"}), 400, "malformed_details"),
    "latitude 91": (_bad_details(_point(lat=91)), 400, "malformed_details"),
    "longitude -181": (_bad_details(_point(lon=-181)), 400, "malformed_details"),
    "latitude a string": (_bad_details(_point(lat="32.05")), 400, "malformed_details"),
    "latitude boolean": (_bad_details(_point(lat=True)), 400, "malformed_details"),
    "check-in time negative": (_bad_details(_point(time=-1)), 400, "malformed_details"),
    "check-in time a float": (_bad_details(_point(time=1.5)), 400, "malformed_details"),
    "no confirmation": (_bad_details({k: v for k, v in details().items() if k != "confirmation"}), 400, "malformed_details"),
    "confirmation by email": (_bad_details(details(confirmation={"method": "email", "time": 1})), 400, "malformed_details"),
    "rating 6": (_bad_details(details(rating={"byRecipient": 6})), 400, "malformed_details"),
    "rating 0": (_bad_details(details(rating={"byVolunteer": 0})), 400, "malformed_details"),
    "rating unknown key": (_bad_details(details(rating={"byNeighbour": 3})), 400, "malformed_details"),
    "trail not triples": (_bad_details(details(trail=[[32.05, 118.79]])), 400, "malformed_details"),
    "trail not a list": (_bad_details(details(trail="north")), 400, "malformed_details"),
    "notes a number": (_bad_details(details(notes=5)), 400, "malformed_details"),
}


@pytest.mark.parametrize("case", CONTENT, ids=list(CONTENT))
def test_order_content_is_refused(api, terminal, shared, case):
    kwargs, status, code = CONTENT[case]
    kw = kwargs(int(time.time()))
    if "start" not in kw:
        kw["start"] = int(time.time()) - 2 * DAY - 721 * 60  # in the past, whatever the duration
    d = kw.pop("_details", None)
    body = terminal.order(*shared.parties(), **kw)
    if d is not None:
        body = with_details(terminal, body, d)
    refused(api, body, status, code)


@pytest.mark.parametrize(
    "raw_details",
    [
        pytest.param('{"checkIn": NaN}', id="NaN"),
        pytest.param('{"checkIn": Infinity}', id="Infinity"),
        pytest.param('{"notes": 9007199254740993}', id="integer beyond 2**53"),
        pytest.param("[" * 900 + "]" * 900, id="list nested 900 deep"),
        pytest.param('{"notes": ' + "[" * 900 + "]" * 900 + "}", id="notes nested 900 deep"),
    ],
)
def test_details_the_parser_takes_but_not_the_protocol(api, terminal, shared, raw_details):
    """JSON that Python's parser takes but that RFC 8785 cannot canonicalise (or not at any stack depth),
    or that is no details object. Where the test can hash it, the order is signed with its true hash."""
    try:
        digest = P.details_hash(json.loads(raw_details))
    except P.ProtocolError:
        digest = secrets.token_bytes(32)
    body = terminal.order(*shared.parties())
    body = terminal.signed({**body["order"], "detailsHash": P.to_hex(digest)}, {})
    raw = json.dumps({"order": body["order"], "signature": body["signature"], "details": None})
    raw = raw.replace('"details": null', f'"details": {raw_details}')
    before = order_count(api)
    response = api.client.post("/v1/orders", content=raw.encode(), headers={"content-type": "application/json"})
    error_of(response, 400, "malformed_details")
    assert_not_stored(api, body)
    assert order_count(api) == before


# ----- stations -------------------------------------------------------------------------------------


def test_signer_not_a_station(api, world, shared):
    stranger = new_terminal(api, world, register=False)
    error = refused(api, stranger.order(*shared.parties()), 403, "station_unknown")
    assert P.checksum(bytes.fromhex(stranger.address[2:])) in error["message"]


def test_station_of_another_district(api, world, terminal, shared):
    # a station of OTHER_DISTRICT signing an order of DISTRICT
    foreign = world.other_terminal
    body = foreign.order(*shared.parties(), district=DISTRICT)
    refused(api, body, 403, "station_wrong_district")
    # and this module's station of DISTRICT signing an order of OTHER_DISTRICT
    refused(api, terminal.order(*shared.parties(), district=OTHER_DISTRICT), 403, "station_wrong_district")


def test_removed_station(api, world, people):
    station = new_terminal(api, world)
    accepted(station, station.order(*people.parties()))
    world.admin.ok("RemoveStation", station=station.address)
    refused(api, station.order(*people.parties()), 403, "station_removed")


# ----- accounts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["volunteer", "payer", "recipient"])
def test_unknown_account(api, terminal, shared, role):
    parties = dict(zip(("volunteer", "payer", "recipient"), shared.parties()))
    parties[role] = card()[1]  # a well-formed id no one registered
    error = refused(api, terminal.order(**parties), 422, "unknown_account")
    assert role in error["message"]


@pytest.mark.parametrize("role", ["volunteer", "payer", "recipient"])
def test_frozen_account(api, world, terminal, role):
    volunteer, payer, recipient = world.new_account(1), world.new_account(2, grant=600), world.new_account(2)
    parties = {"volunteer": volunteer, "payer": payer, "recipient": recipient}
    link(world.admin, payer, recipient)  # the payer pays for another person's care
    world.admin.ok("SetAccountStatus", account=parties[role], status=2, reason=1)
    error = refused(api, terminal.order(**parties), 422, "account_not_active")
    assert role in error["message"]
    # active again, the same parties are served
    world.admin.ok("SetAccountStatus", account=parties[role], status=1, reason=2)
    accepted(terminal, terminal.order(**parties))


@pytest.mark.parametrize("kind", [2, 4])
def test_volunteer_of_wrong_kind(api, world, terminal, people, kind):
    not_a_volunteer = world.new_account(kind)
    refused(api, terminal.order(not_a_volunteer, people.elder, people.elder), 422, "volunteer_wrong_kind")


def test_group_volunteers_and_transfers_to_any_kind(world, terminal, people):
    group = world.new_account(3)
    accepted(terminal, terminal.order(group, people.elder, people.elder, minutes=30))
    # a transfer (type 100) delivers no service: any kind may receive, minutes are not bound to the duration
    family = world.new_account(2)
    link(world.admin, people.elder, family)  # a transfer goes only to an account the payer linked
    gift = terminal.order(family, people.elder, people.elder, minutes=120, service_type=100, duration=60, details={"notes": "x"})
    accepted(terminal, gift)


def test_payer_is_volunteer(api, world, terminal, people):
    saver = world.new_account(1, grant=600)
    refused(api, terminal.order(saver, saver, people.elder), 422, "payer_is_volunteer")


# ----- balances -------------------------------------------------------------------------------------


def test_balance_less_promised_minutes(api, world, terminal):
    volunteer, volunteer2, elder = world.new_account(1), world.new_account(1), world.new_account(2, grant=100)
    first = terminal.order(volunteer, elder, elder, minutes=60)
    second = terminal.order(volunteer2, elder, elder, minutes=60)  # fits the balance alone, not after the first
    accepted(terminal, first)
    error = refused(api, second, 422, "insufficient_balance")
    assert "40" in error["message"]
    account = api.client.get(f"/v1/accounts/{elder}").json()
    assert account["balanceMinutes"] in (100, 40) and account["balanceMinutes"] - account["pendingDebitMinutes"] == 40
    # exactly what is left is accepted; once anchored, the balance itself says so
    rest = terminal.order(volunteer2, elder, elder, minutes=40)
    accepted(terminal, rest)
    refused(api, terminal.order(volunteer, elder, elder, minutes=1), 422, "insufficient_balance")
    for body in (first, rest):
        assert wait_anchored(api.client, body["order"]["orderId"])["status"] == "anchored"
    account = api.client.get(f"/v1/accounts/{elder}").json()
    assert (account["balanceMinutes"], account["pendingDebitMinutes"]) == (0, 0)
    refused(api, terminal.order(volunteer, elder, elder, minutes=1), 422, "insufficient_balance")


def test_payer_without_any_balance(api, world, terminal):
    volunteer, elder = world.new_account(1), world.new_account(2)
    refused(api, terminal.order(volunteer, elder, elder, minutes=1), 422, "insufficient_balance")


# ----- minutes and times at their limits ------------------------------------------------------------


def test_minutes_and_times_at_their_limits(api, world, terminal):
    elder = world.new_account(2, grant=720 + 60 * 4)
    now = int(time.time())
    # minutes == the service's whole duration, at the per-order maximum
    accepted(terminal, terminal.order(world.new_account(1), elder, elder, minutes=720))
    # a service that lasted a few seconds more than its whole minutes
    accepted(terminal, terminal.order(world.new_account(1), elder, elder, minutes=60, duration=3600 + 59))
    # ending within the allowed clock skew, and just inside the window of accepted age
    accepted(terminal, terminal.order(world.new_account(1), elder, elder, minutes=60, start=now - 3600 + 60))
    old = now - api.settings.order_max_age_seconds + 120
    accepted(terminal, terminal.order(world.new_account(1), elder, elder, minutes=60, start=old - 3600))


# ----- location and qualification (the off-chain profile) -------------------------------------------


@pytest.mark.parametrize("point", ["checkIn", "checkOut"])
def test_location_mismatch(api, world, terminal, point):
    volunteer, elder = world.new_account(1), world.new_account(2, grant=600)
    set_profile(api, world, elder, location={"lat": 32.05, "lon": 118.79})
    far = details()
    far[point] = {**far[point], "lat": 32.06}  # ~1.1 km north; the limit is 500 m
    error = refused(api, terminal.order(volunteer, elder, elder, details=far), 422, "location_mismatch")
    assert point in error["message"]
    near = details(lat=32.052, lon=118.791)  # ~240 m away
    accepted(terminal, terminal.order(volunteer, elder, elder, details=near))
    # without a registered location, no service is taken (unless an administrator records an exemption)
    set_profile(api, world, elder, location=None)
    refused(api, terminal.order(volunteer, elder, elder, details=far), 422, "recipient_no_location")


def test_without_a_registered_location_only_an_exemption_lets_a_service_in(api, world, terminal):
    volunteer, elder = world.new_account(1), world.new_account(2, grant=600, location=None)
    sydney = details(lat=-33.86, lon=151.21)
    refused(api, terminal.order(volunteer, elder, elder, details=sydney), 422, "recipient_no_location")
    path = f"/v1/accounts/{elder}/location-exemption"
    raw = json.dumps({"reason": "bedridden, served where the family lives"}).encode()
    separator = P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"])
    headers = sign_headers(world.admin.key, separator, "PUT", path, raw, host=host_of(api.client.base_url))
    assert api.client.put(path, content=raw, headers={**headers, "Content-Type": "application/json"}).status_code == 200
    accepted(terminal, terminal.order(volunteer, elder, elder, details=sydney))


def test_professional_service_needs_a_qualification(api, world, terminal, people):
    body = terminal.order(*people.parties(), service_type=9)
    refused(api, body, 422, "qualification_required")
    set_profile(api, world, people.volunteer, qualified=True)
    accepted(terminal, body)
    set_profile(api, world, people.volunteer, qualified=False)
    refused(api, terminal.order(*people.parties(), service_type=9), 422, "qualification_required")
    # other service types never needed it
    accepted(terminal, terminal.order(world.new_account(1), people.elder, people.elder, service_type=2))


# ----- overlap ---------------------------------------------------------------------------------------


def test_volunteer_overlap(api, world, terminal, people):
    start = int(time.time()) - 3 * DAY
    accepted(terminal, terminal.order(*people.parties(), minutes=60, start=start))
    other_elder = world.new_account(2, grant=600)
    for offset, duration in ((0, 120), (-119, 120), (3599, 120), (1800, 60), (-60, 3720), (0, 3600)):
        body = terminal.order(people.volunteer, other_elder, other_elder, minutes=1, start=start + offset, duration=duration)
        refused(api, body, 409, "volunteer_overlap")
    # back to back is not an overlap
    accepted(terminal, terminal.order(people.volunteer, other_elder, other_elder, minutes=30, start=start + 3600, duration=1800))
    accepted(terminal, terminal.order(people.volunteer, other_elder, other_elder, minutes=30, start=start - 1800, duration=1800))
    # another volunteer at the same time is fine, and a transfer never overlaps
    accepted(terminal, terminal.order(world.new_account(1), other_elder, other_elder, minutes=60, start=start))
    link(world.admin, other_elder, people.volunteer)
    transfer = terminal.order(people.volunteer, other_elder, other_elder, minutes=5, service_type=100, start=start)
    accepted(terminal, transfer)


# ----- repeats -----------------------------------------------------------------------------------------


def test_repeats(api, world, terminal, people):
    body = terminal.order(*people.parties(), minutes=50)
    answer = accepted(terminal, body)
    again = terminal.post(body)
    assert again.status_code == 200 and again.json() == answer
    # the same orderId with other content: another amount, other details, another station
    refused_conflict = [
        resign(terminal, body, minutes=49),
        terminal.signed({**body["order"], "detailsHash": P.to_hex(P.details_hash(details(notes="x")))}, details(notes="x")),
    ]
    for other in refused_conflict:
        error_of(terminal.post(other), 409, "order_id_conflict")
    path = f"/v1/orders/{answer['orderId']}"
    separator = P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"])
    view = api.client.get(path, headers=sign_headers(world.admin.key, separator, "GET", path, host=host_of(api.client.base_url))).json()
    assert view["order"] == body["order"] and view["signature"] == body["signature"] and view["details"] == body["details"]
    # after anchoring the same request answers 200 with its new status; the conflict stays a conflict
    assert wait_anchored(api.client, answer["orderId"])["status"] == "anchored"
    again = terminal.post(body)
    assert again.status_code == 200 and again.json() == {**answer, "status": "anchored"}
    error_of(terminal.post(refused_conflict[0]), 409, "order_id_conflict")


def test_same_order_signed_by_another_key_is_not_a_repeat(api, world, terminal, people):
    """Same orderId and content, but signed by another key (a stranger, or another station): not "the
    same request again", so not a 200 as if that key's order had been accepted; the first one stays."""
    body = terminal.order(*people.parties())
    answer = accepted(terminal, body)
    for signer in (new_terminal(api, world, register=False), new_terminal(api, world)):
        other = signer.signed(body["order"], body["details"])
        error_of(signer.post(other), 409, "order_id_conflict")
    view = api.client.get(f"/v1/orders/{answer['orderId']}").json()
    assert view["station"] == terminal.address and view["signature"] == body["signature"]


# ----- bulk ------------------------------------------------------------------------------------------


def test_bulk_mixed_items(api, world, terminal, people):
    good = terminal.order(*people.parties(), minutes=20)
    good2 = terminal.order(world.new_account(1), people.elder, people.elder, minutes=25)
    malformed = terminal.order(*people.parties())
    malformed["order"]["minutes"] = "25"
    unknown = terminal.order(people.volunteer, card()[1], people.elder)
    conflict = resign(terminal, good, minutes=19)
    items = [good, good, malformed, unknown, "not an object", good2, conflict]
    response = api.client.post("/v1/orders/bulk", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["httpStatus"] for r in results] == [201, 200, 400, 422, 400, 201, 409]
    digest = P.ServiceOrder.from_json(good["order"]).digest(terminal.separator)
    first = {"orderId": good["order"]["orderId"], "status": "accepted", "digest": P.to_hex(digest), "station": terminal.address}
    assert {k: v for k, v in results[0].items() if v is not None and k != "httpStatus"} == first
    assert {k: v for k, v in results[1].items() if v is not None and k != "httpStatus"} == first
    codes = [r["error"]["code"] if r.get("error") else None for r in results]
    assert codes == [None, None, "malformed_integer", "unknown_account", "invalid_request", None, "order_id_conflict"]
    assert all(r["error"]["message"] for r in results if r.get("error"))
    for body in (malformed, unknown):
        assert_not_stored(api, body)
    for body in (good, good2):
        assert wait_anchored(api.client, body["order"]["orderId"])["status"] == "anchored"
    # the single endpoint agrees afterwards
    again = terminal.post(good)
    assert again.status_code == 200 and again.json() == {**first, "status": "anchored"}


def test_bulk_orders_see_the_ones_before_them(api, world, terminal):
    elder = world.new_account(2, grant=100)
    volunteer = world.new_account(1)
    a = terminal.order(volunteer, elder, elder, minutes=60)
    overlapping = terminal.order(volunteer, elder, elder, minutes=10, start=a["order"]["startTime"], duration=600)
    over = terminal.order(world.new_account(1), elder, elder, minutes=41)
    fits = terminal.order(world.new_account(1), elder, elder, minutes=40)
    results = api.client.post("/v1/orders/bulk", json={"items": [a, overlapping, over, fits]}).json()["results"]
    assert [(r["httpStatus"], (r.get("error") or {}).get("code")) for r in results] == [
        (201, None),
        (409, "volunteer_overlap"),
        (422, "insufficient_balance"),
        (201, None),
    ]


def test_bulk_limits(api, terminal, people):
    body = terminal.order(*people.parties())
    error_of(api.client.post("/v1/orders/bulk", json={"items": [body] * 1001}), 400, "too_many_items")
    assert_not_stored(api, body)
    for shape in ({"items": "x"}, {"orders": []}, [body], {"items": None}):
        error_of(api.client.post("/v1/orders/bulk", json=shape), 400, "invalid_request")
    not_json = api.client.post("/v1/orders/bulk", content=b"{", headers={"content-type": "application/json"})
    error_of(not_json, 400, "invalid_request")
    assert_not_stored(api, body)
    assert api.client.post("/v1/orders/bulk", json={"items": []}).json() == {"results": []}
    # exactly the limit is taken: one order, then 999 repeats of it
    results = api.client.post("/v1/orders/bulk", json={"items": [body] * 1000}).json()["results"]
    assert len(results) == 1000
    assert [r["httpStatus"] for r in results] == [201] + [200] * 999


# ----- ethers v6 ----------------------------------------------------------------------------------------


def test_order_signed_with_ethers(api, terminal, people):
    typed = api.client.get("/v1/domain").json()
    d = details(at=int(time.time()) - 600)
    order = {
        "orderId": P.to_hex(secrets.token_bytes(32)),
        "district": DISTRICT,
        "volunteer": people.volunteer,
        "payer": people.elder,
        "recipient": people.elder,
        "serviceType": 5,
        "startTime": d["checkIn"]["time"],
        "endTime": d["checkOut"]["time"],
        "minutes": 55,
        "detailsHash": P.to_hex(P.details_hash(d)),
    }
    signing = {
        "domain": typed["domain"],
        "types": typed["types"],
        "primaryType": "ServiceOrder",
        "message": order,
        "privateKey": P.to_hex(terminal.key),
    }
    node = subprocess.run(
        ["node", "tests/node/sign_typed.mjs"],
        input=json.dumps(signing),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert node.returncode == 0, node.stderr
    signature = node.stdout.strip()
    assert len(bytes.fromhex(signature[2:])) == 65
    response = terminal.post({"order": order, "signature": signature, "details": d})
    assert response.status_code == 201, response.text
    assert response.json()["station"] == terminal.address
    view = wait_anchored(api.client, order["orderId"])
    assert view["status"] == "anchored" and view["signature"] == signature


# ----- lookups -----------------------------------------------------------------------------------------


def test_order_and_account_lookups(api, world):
    malformed = {"0x1234": "wrong_length", "zz": "malformed_hex", "0x" + "g" * 64: "malformed_hex"}
    malformed["0x" + "1" * 66] = "wrong_length"
    for bad, code in malformed.items():
        error_of(api.client.get(f"/v1/orders/{bad}"), 400, code)
        error_of(api.client.get(f"/v1/orders/{bad}/proof"), 400, code)
        error_of(api.client.get(f"/v1/accounts/{bad}"), 400, code)
    error_of(api.client.get(f"/v1/orders/{P.to_hex(secrets.token_bytes(32))}"), 404, "not_found")
    error_of(api.client.get(f"/v1/accounts/{card()[1]}"), 404, "not_found")
    # upper-case hex is the same id
    account = api.client.get(f"/v1/accounts/0x{world.elder[2:].upper()}")
    assert account.status_code == 200 and account.json()["account"] == world.elder
