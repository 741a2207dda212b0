"""POST /v1/admin/commands (PROTOCOL.md sections 4 and 6): each command type's happy path and what it
changes, and every refusal by its error code (wrong signer, wrong district, reused nonce, unknown type,
malformed message, revocation of an order not anchored or unknown).

All tests share the session's service and chain (`world`); each makes its own fresh accounts and keys.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from api import db
from api import protocol as P
from tests.utils.api import order_digest, Admin, Terminal, card, wait_anchored
from tests.utils.api_world import DISTRICT, OTHER_DISTRICT

pytestmark = pytest.mark.usefixtures("api")

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


# ----- helpers ------------------------------------------------------------------------------------


def error_of(response, status: int, code: str) -> dict:
    """The refusal's `{error: {code, message}}`, after checking its status, shape and code."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "messageEn", "messageZh"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body["error"]


def ok(admin: Admin, kind: str, /, **message: Any) -> dict:
    """A command that must be relayed: its answer names the signer and type, and the mirror applied it."""
    response = admin.command(kind, **message)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == kind and answer["signer"] == admin.address and answer["applied"] is True, answer
    assert len(bytes.fromhex(answer["txHash"][2:])) == 32 and answer["blockNumber"] > 0, answer
    return answer


def signed(admin: Admin, kind: str, message: dict) -> dict:
    """The request body of a command, signed by `admin` (nonce taken from it when not given)."""
    if "nonce" not in message:
        admin.nonce += 1
        message = {**message, "nonce": admin.nonce}
    return {"type": kind, "message": message, "signature": admin.sign(kind, message)}


def post(api, body: Any) -> Any:
    return api.client.post("/v1/admin/commands", json=body)


def account_view(api, account: str) -> dict:
    response = api.client.get(f"/v1/accounts/{account}")
    assert response.status_code == 200, response.text
    return response.json()


def stranger(api, world) -> Admin:
    return Admin(secrets.token_bytes(32), api.client, world.domain)


def fresh_nonce() -> int:
    """A nonce no `Admin` counter reaches (those start below 2**40 and count up by one)."""
    return (1 << 50) + secrets.randbits(40)


def new_district() -> int:
    return 340000 + secrets.randbelow(60000)


@pytest.fixture(scope="module")
def terminal(api, world) -> Terminal:
    """This module's own station in DISTRICT."""
    terminal = Terminal(secrets.token_bytes(32), api.client, world.domain, DISTRICT)
    world.admin.ok("RegisterStation", station=terminal.address, district=DISTRICT)
    return terminal


def anchored_order(api, world, terminal: Terminal, minutes: int = 90) -> tuple[dict, str, str]:
    """An anchored order of a fresh volunteer, paid by a fresh elder granted 600 minutes."""
    volunteer, elder = world.new_account(1), world.new_account(2, grant=600)
    body = terminal.order(volunteer, elder, elder, minutes=minutes)
    assert terminal.post(body).status_code == 201
    assert wait_anchored(api.client, body["order"]["orderId"])["status"] == "anchored"
    return body, volunteer, elder


# ----- each command's happy path ---------------------------------------------------------------------


def test_register_district_gives_its_admin_the_district(api, world):
    district, admin = new_district(), stranger(api, world)
    ok(world.city, "RegisterDistrict", district=district, admin=admin.address)
    _number, account = card(f"NJ-{district}")
    ok(admin, "RegisterAccount", account=account, district=district, kind=1)
    assert account_view(api, account)["district"] == district
    # and only that district
    _number, elsewhere = card()
    error_of(admin.command("RegisterAccount", account=elsewhere, district=DISTRICT, kind=1), 403, "unauthorized")
    error_of(api.client.get(f"/v1/accounts/{elsewhere}"), 404, "not_found")


def test_register_and_remove_station(api, world):
    station = Terminal(secrets.token_bytes(32), api.client, world.domain, DISTRICT)
    elder = world.new_account(2, grant=600)
    before = station.order(world.new_account(1), elder, elder)
    assert station.post(before).json()["error"]["code"] == "station_unknown"
    ok(world.admin, "RegisterStation", station=station.address, district=DISTRICT)
    assert station.post(before).status_code == 201
    ok(world.admin, "RemoveStation", station=station.address)
    after = station.order(world.new_account(1), elder, elder)
    error_of(station.post(after), 403, "station_removed")
    # removing it again changes nothing on chain: the contract refuses, and no gas is spent on it
    error_of(world.admin.command("RemoveStation", station=station.address), 422, "command_refused")


def test_register_account(api, world):
    _number, account = card()
    ok(world.admin, "RegisterAccount", account=account, district=DISTRICT, kind=3)
    assert account_view(api, account) == {
        "account": account,
        "district": DISTRICT,
        "kind": 3,
        "status": 1,
        "balanceMinutes": 0,
        "earnedMinutes": 0,
        "starLevel": 0,
        "pendingDebitMinutes": 0,
    }
    error_of(world.admin.command("RegisterAccount", account=account, district=DISTRICT, kind=1), 422, "command_refused")
    _number, other = card()
    error_of(world.admin.command("RegisterAccount", account=other, district=DISTRICT, kind=5), 422, "command_refused")
    error_of(api.client.get(f"/v1/accounts/{other}"), 404, "not_found")


def test_set_account_status(api, world):
    account = world.new_account(1)
    for status in (2, 1, 2, 3):
        ok(world.admin, "SetAccountStatus", account=account, status=status, reason=7)
        assert account_view(api, account)["status"] == status
    # cancelled is final; statuses outside 1..3 do not exist
    error_of(world.admin.command("SetAccountStatus", account=account, status=1, reason=7), 422, "command_refused")
    for status in (0, 4):
        error_of(world.admin.command("SetAccountStatus", account=account, status=status, reason=7), 422, "command_refused")
    assert account_view(api, account)["status"] == 3


def test_grant(api, world):
    account = world.new_account(2)
    ok(world.admin, "Grant", account=account, minutes=90, reason=1)
    ok(world.city, "Grant", account=account, minutes=30, reason=1)
    assert account_view(api, account)["balanceMinutes"] == 120
    # a refused command spends no nonce: the same nonce then carries a good one
    nonce = fresh_nonce()
    error_of(world.admin.command("Grant", account=account, minutes=0, reason=1, nonce=nonce), 422, "command_refused")
    ok(world.admin, "Grant", account=account, minutes=5, reason=1, nonce=nonce)
    assert account_view(api, account)["balanceMinutes"] == 125
    ok(world.admin, "SetAccountStatus", account=account, status=2, reason=1)
    error_of(world.admin.command("Grant", account=account, minutes=5, reason=1), 422, "command_refused")
    assert account_view(api, account)["balanceMinutes"] == 125


def test_revoke_order(api, world, terminal):
    body, volunteer, elder = anchored_order(api, world, terminal, minutes=90)
    order_id = body["order"]["orderId"]
    assert (account_view(api, volunteer)["balanceMinutes"], account_view(api, volunteer)["earnedMinutes"]) == (90, 90)
    assert account_view(api, elder)["balanceMinutes"] == 510
    # only the administrator of the order's district, or the city's
    error_of(world.other_admin.command("RevokeOrder", orderId=order_id, digest=order_digest(api.client, order_id), reason=3), 403, "unauthorized")
    error_of(stranger(api, world).command("RevokeOrder", orderId=order_id, digest=order_digest(api.client, order_id), reason=3), 403, "unauthorized")
    ok(world.admin, "RevokeOrder", orderId=order_id, digest=order_digest(api.client, order_id), reason=3)

    view = api.client.get(f"/v1/orders/{order_id}").json()
    assert view["status"] == "revoked", view
    assert (account_view(api, volunteer)["balanceMinutes"], account_view(api, volunteer)["earnedMinutes"]) == (0, 0)
    assert account_view(api, elder)["balanceMinutes"] == 600
    # the same request again tells its new status; a second revocation is refused
    again = terminal.post(body)
    assert again.status_code == 200 and again.json()["status"] == "revoked"
    error_of(world.city.command("RevokeOrder", orderId=order_id, digest=order_digest(api.client, order_id), reason=3), 422, "command_refused")
    # the mirror the order checks read has the payer's minutes back: all 600 can be spent again
    full = terminal.order(world.new_account(1), elder, elder, minutes=600)
    response = terminal.post(full)
    assert response.status_code == 201, response.text


def test_revoke_order_by_the_city(api, world, terminal):
    body, _volunteer, elder = anchored_order(api, world, terminal, minutes=30)
    ok(world.city, "RevokeOrder", orderId=body["order"]["orderId"], digest=order_digest(api.client, body["order"]["orderId"]), reason=1)
    assert api.client.get(f"/v1/orders/{body['order']['orderId']}").json()["status"] == "revoked"
    assert account_view(api, elder)["balanceMinutes"] == 600


def test_revoke_order_not_anchored_or_unknown(api, world, terminal):
    # wait until nothing is waiting, so that this order is the oldest in the queue: the batcher then
    # holds it for its max wait (0.3 s), far longer than the command below takes to be refused
    deadline = time.monotonic() + 30
    while api.client.get("/v1/health").json()["ordersWaiting"]:
        assert time.monotonic() < deadline, "orders stay waiting"
        time.sleep(0.05)
    volunteer, elder = world.new_account(1), world.new_account(2, grant=600)
    body = terminal.order(volunteer, elder, elder)
    assert terminal.post(body).status_code == 201
    nonce = fresh_nonce()
    early = world.admin.command("RevokeOrder", orderId=body["order"]["orderId"], digest=order_digest(api.client, body["order"]["orderId"]), reason=1, nonce=nonce)
    error_of(early, 409, "order_not_anchored")
    error_of(world.admin.command("RevokeOrder", orderId=P.to_hex(secrets.token_bytes(32)), digest=order_digest(api.client, P.to_hex(secrets.token_bytes(32))), reason=1), 404, "not_found")
    # once anchored it can be revoked, with the nonce the refused command named (a refusal spends none)
    assert wait_anchored(api.client, body["order"]["orderId"])["status"] == "anchored"
    ok(world.admin, "RevokeOrder", orderId=body["order"]["orderId"], digest=order_digest(api.client, body["order"]["orderId"]), reason=1, nonce=nonce)


def test_register_auditor(api, world):
    auditors = {stranger(api, world).address: DISTRICT, stranger(api, world).address: 0}
    for auditor, district in auditors.items():
        ok(world.city, "RegisterAuditor", auditor=auditor, district=district)
    with api.service.reads() as session:
        assert {a: session.get(db.Auditor, a).district for a in auditors} == auditors
    moved = next(iter(auditors))
    ok(world.city, "RegisterAuditor", auditor=moved, district=OTHER_DISTRICT)
    with api.service.reads() as session:
        assert session.get(db.Auditor, moved).district == OTHER_DISTRICT
    # an unregistered district cannot be audited
    error_of(world.city.command("RegisterAuditor", auditor=moved, district=new_district()), 422, "command_refused")


# ----- who may sign what ----------------------------------------------------------------------------------


def _messages(world, station: str, account: str) -> dict[str, dict]:
    """A valid message of each command type (but RevokeOrder) about DISTRICT."""
    return {
        "RegisterDistrict": {"district": new_district(), "admin": P.to_hex(secrets.token_bytes(20))},
        "RegisterStation": {"station": P.to_hex(secrets.token_bytes(20)), "district": DISTRICT},
        "RemoveStation": {"station": station},
        "RegisterAccount": {"account": card()[1], "district": DISTRICT, "kind": 1},
        "SetAccountStatus": {"account": account, "status": 2, "reason": 1},
        "Grant": {"account": account, "minutes": 60, "reason": 1},
        "RegisterAuditor": {"auditor": P.to_hex(secrets.token_bytes(20)), "district": DISTRICT},
        "LinkAccounts": {"payer": account, "beneficiary": account, "linked": True},
    }


@pytest.fixture(scope="module")
def targets(api, world) -> tuple[str, str]:
    """A station and an account of DISTRICT that the refused commands below name (and never change)."""
    station = P.to_hex(P.address_of(secrets.token_bytes(32)))
    world.admin.ok("RegisterStation", station=station, district=DISTRICT)
    return station, world.new_account(2)


def _unchanged(api, station: str, account: str) -> None:
    view = account_view(api, account)
    assert (view["status"], view["balanceMinutes"]) == (1, 0)
    with api.service.reads() as session:
        assert session.get(db.Station, station).active_until == 0


BUT_REVOKE = [kind for kind in P.COMMAND_TYPES if kind != "RevokeOrder"]  # RevokeOrder: see test_revoke_order


@pytest.mark.parametrize("kind", BUT_REVOKE)
def test_wrong_signer(api, world, targets, kind):
    message = _messages(world, *targets)[kind]
    error_of(post(api, signed(stranger(api, world), kind, message)), 403, "unauthorized")
    # a message altered after its administrator signed it recovers another signer
    body = signed(world.city, kind, message)
    body["message"] = {**body["message"], "nonce": body["message"]["nonce"] + 1}
    error_of(post(api, body), 403, "unauthorized")
    _unchanged(api, *targets)
    if kind == "RegisterAccount":
        error_of(api.client.get(f"/v1/accounts/{message['account']}"), 404, "not_found")


@pytest.mark.parametrize("kind", BUT_REVOKE)
def test_wrong_district(api, world, targets, kind):
    """The administrator of another district; and for the city's own commands, any district's."""
    message = _messages(world, *targets)[kind]
    error_of(post(api, signed(world.other_admin, kind, message)), 403, "unauthorized")
    if kind in ("RegisterDistrict", "RegisterAuditor"):
        error_of(post(api, signed(world.admin, kind, message)), 403, "unauthorized")
    _unchanged(api, *targets)


def test_reused_nonce(api, world):
    nonce = fresh_nonce()
    first = world.new_account(1)
    _number, account = card()
    ok(world.admin, "RegisterAccount", account=account, district=DISTRICT, kind=1, nonce=nonce)
    # the same nonce again, for another command of any type, is refused
    _number, other = card()
    error_of(world.admin.command("RegisterAccount", account=other, district=DISTRICT, kind=1, nonce=nonce), 409, "nonce_used")
    error_of(world.admin.command("Grant", account=first, minutes=10, reason=1, nonce=nonce), 409, "nonce_used")
    error_of(api.client.get(f"/v1/accounts/{other}"), 404, "not_found")
    assert account_view(api, first)["balanceMinutes"] == 0
    # nonces are per signer: another administrator may use the same value
    _number, theirs = card(f"NJ-{OTHER_DISTRICT}")
    ok(world.other_admin, "RegisterAccount", account=theirs, district=OTHER_DISTRICT, kind=1, nonce=nonce)


# ----- malformed requests ----------------------------------------------------------------------------------


def test_unknown_type(api, world):
    message = {"account": card()[1], "district": DISTRICT, "kind": 1, "nonce": 1}
    for kind in ("Transfer", "registerAccount", "ServiceOrder", "SignedRequest", "", 5, None):
        body = {"type": kind, "message": message, "signature": world.admin.sign("RegisterAccount", message)}
        error_of(post(api, body), 400, "unknown_type")


@pytest.mark.parametrize("kind", [[], {}], ids=["list", "object"])
def test_type_of_wrong_json_type(api, world, kind):
    message = {"account": card()[1], "district": DISTRICT, "kind": 1, "nonce": 1}
    body = {"type": kind, "message": message, "signature": world.admin.sign("RegisterAccount", message)}
    response = post(api, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("unknown_type", "invalid_request")


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


def _good(world) -> dict:
    return signed(world.admin, "RegisterAccount", {"account": card()[1], "district": DISTRICT, "kind": 1})


def _high_s(signature: str) -> str:
    sig = bytes.fromhex(signature[2:])
    s = int.from_bytes(sig[32:64], "big")
    return P.to_hex(sig[:32] + (N - s).to_bytes(32, "big") + bytes([55 - sig[64]]))


MALFORMED = {
    "body is a list": (lambda b: [b], "invalid_request"),
    "no type": (lambda b: _without(b, "type"), "invalid_request"),
    "no message": (lambda b: _without(b, "message"), "invalid_request"),
    "no signature": (lambda b: _without(b, "signature"), "invalid_request"),
    "message a list": (lambda b: {**b, "message": []}, "malformed_message"),
    "message lacks nonce": (lambda b: {**b, "message": _without(b["message"], "nonce")}, "malformed_message"),
    "message has an extra field": (lambda b: {**b, "message": {**b["message"], "admin": "0x" + "11" * 20}}, "malformed_message"),
    "account not hex": (lambda b: {**b, "message": {**b["message"], "account": "0x" + "zz" * 32}}, "malformed_hex"),
    "account without 0x": (lambda b: {**b, "message": {**b["message"], "account": b["message"]["account"][2:]}}, "malformed_hex"),
    "account 31 bytes": (lambda b: {**b, "message": {**b["message"], "account": "0x" + "11" * 31}}, "wrong_length"),
    "kind 256": (lambda b: {**b, "message": {**b["message"], "kind": 256}}, "integer_out_of_range"),
    "kind negative": (lambda b: {**b, "message": {**b["message"], "kind": -1}}, "integer_out_of_range"),
    "kind a string": (lambda b: {**b, "message": {**b["message"], "kind": "1"}}, "malformed_integer"),
    "kind a float": (lambda b: {**b, "message": {**b["message"], "kind": 1.0}}, "malformed_integer"),
    "district boolean": (lambda b: {**b, "message": {**b["message"], "district": True}}, "malformed_integer"),
    "nonce 2**64": (lambda b: {**b, "message": {**b["message"], "nonce": 2**64}}, "integer_out_of_range"),
    "signature 64 bytes": (lambda b: {**b, "signature": b["signature"][:-2]}, "wrong_length"),
    "signature not hex": (lambda b: {**b, "signature": "0x" + "gg" * 65}, "malformed_hex"),
    "signature a number": (lambda b: {**b, "signature": 5}, "malformed_hex"),
    "signature high-s": (lambda b: {**b, "signature": _high_s(b["signature"])}, "bad_signature"),
    "signature v 29": (lambda b: {**b, "signature": b["signature"][:-2] + "1d"}, "bad_signature"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_command(api, world, case):
    mutate, code = MALFORMED[case]
    good = _good(world)
    body = mutate(good)
    error_of(post(api, body), 400, code)
    error_of(api.client.get(f"/v1/accounts/{good['message']['account']}"), 404, "not_found")


def test_malformed_body(api):
    for raw in (b"{", b"", b"null", b"[" * 100_000):
        response = api.client.post("/v1/admin/commands", content=raw, headers={"content-type": "application/json"})
        error_of(response, 400, "invalid_request")
