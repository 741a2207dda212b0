"""What an attacker found (an outsider, a stolen terminal key, a curious auditor), each finding reproduced
against the real service and chain and now refused: details to the district's roles only, signed requests
used once and addressed to this service, admin commands that leak nothing to a signer without the role,
signatures as the contract takes them, intake rules of consent and place, bodies refused before they are
read, slow connections closed."""

from __future__ import annotations

import json
import secrets
import socket
import time
from typing import Any

import pytest

from api import db
from api import protocol as P
from api.auth import host_of, sign_headers
from tests.utils.api import Admin, Terminal, card, wait_anchored
from tests.utils.api_world import DISTRICT, OTHER_DISTRICT

pytestmark = pytest.mark.usefixtures("api")


def separator(world) -> bytes:
    return P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"])


def signed(api, world, key: bytes | None, method: str, path: str, body: Any = None, **kw: Any):
    """A request signed by `key` (unsigned when None)."""
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode())
    headers = {"Content-Type": "application/json"} if raw else {}
    if key is not None:
        headers.update(sign_headers(key, separator(world), method, path, raw, host=host_of(api.client.base_url), **kw))
    return api.client.request(method, path, content=raw, headers=headers)


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


@pytest.fixture(scope="module")
def auditors(world) -> dict[str, bytes]:
    keys = {"district": secrets.token_bytes(32), "other": secrets.token_bytes(32), "city": secrets.token_bytes(32)}
    for name, district in (("district", DISTRICT), ("other", OTHER_DISTRICT), ("city", 0)):
        world.city.ok("RegisterAuditor", auditor=P.to_hex(P.address_of(keys[name])), district=district)
    return keys


# ----- 1. details only to the district's roles ----------------------------------------------------


def test_order_details_only_to_the_districts_administrators_and_auditors(api, world, auditors):
    elder = world.new_account(2, grant=600)
    body = world.terminal.order(world.new_account(1), elder, elder, minutes=30)
    body["details"]["notes"] = "王奶奶 needs insulin at 8pm; daughter 13812345678"
    body["order"]["detailsHash"] = P.to_hex(P.details_hash(body["details"]))
    body = world.terminal.signed(body["order"], body["details"])
    assert world.terminal.post(body).status_code == 201
    order_id = body["order"]["orderId"]
    path = f"/v1/orders/{order_id}"
    view = wait_anchored(api.client, order_id)
    # before: anyone read the details; now nobody without a role of the order's district
    for key in (None, secrets.token_bytes(32), world.other_admin.key, auditors["other"], world.terminal.key):
        answer = signed(api, world, key, "GET", path)
        assert answer.status_code == 200 and answer.json()["details"] is None, (key, answer.text)
        assert "insulin" not in answer.text
    for key in (world.admin.key, world.city.key, auditors["district"], auditors["city"]):
        answer = signed(api, world, key, "GET", path)
        assert answer.status_code == 200 and answer.json()["details"]["notes"].startswith("王奶奶"), answer.text
    # nor through the batch listing, the proof, the certificate, the history, the statistics or the export
    batch = api.client.get(f"/v1/batches/{view['batchId']}")
    assert batch.status_code == 200 and "insulin" not in batch.text and "checkIn" not in batch.text
    for public in (f"{path}/proof", f"/v1/accounts/{body['order']['volunteer']}/certificate",
                   f"/v1/accounts/{elder}/history", "/v1/stats"):
        answer = api.client.get(public)
        assert answer.status_code == 200 and "insulin" not in answer.text and "checkIn" not in answer.text, public
    spot = signed(api, world, auditors["district"], "GET", f"/v1/audit/spot-check?district={DISTRICT}&size=1000")
    assert spot.status_code == 200 and "insulin" not in spot.text and "checkIn" not in spot.text
    export = signed(api, world, world.city.key, "GET", "/v1/exports/credit")
    assert export.status_code == 200 and "insulin" not in export.text and "checkIn" not in export.text


# ----- 3. signed requests: once, for this host, within 60 s ---------------------------------------


def test_a_signed_request_is_taken_once(api, world):
    path = f"/v1/grants/monthly?district={DISTRICT}"
    headers = sign_headers(world.admin.key, separator(world), "GET", path, host=host_of(api.client.base_url))
    assert api.client.get(path, headers=headers).status_code == 200
    error_of(api.client.get(path, headers=headers), 401, "request_replayed")  # 3 s later or 3 ms: refused
    with api.service.reads() as session:  # remembered in the database, not in the process
        row = session.get(db.RequestNonce, headers["X-TimeBank-Nonce"].lower())
    assert row is not None and row.signer == world.admin.address.lower()
    assert api.client.get(path, headers=sign_headers(world.admin.key, separator(world), "GET", path, host=host_of(api.client.base_url))).status_code == 200


def test_a_replayed_profile_change_does_not_set_it_back(api, world):
    account = world.new_account(2)
    path = f"/v1/accounts/{account}/profile"
    first = json.dumps({"location": {"lat": 32.05, "lon": 118.79}, "qualified": False}).encode()
    captured = sign_headers(world.admin.key, separator(world), "PUT", path, first, host=host_of(api.client.base_url))
    assert api.client.put(path, content=first, headers=captured).status_code == 200
    assert signed(api, world, world.admin.key, "PUT", path, {"location": {"lat": 32.06, "lon": 118.80}, "qualified": False}).status_code == 200
    error_of(api.client.put(path, content=first, headers=captured), 401, "request_replayed")
    with api.service.reads() as session:
        assert session.get(db.Account, account).lat == 32.06


def test_a_signed_request_names_this_service_and_a_recent_time(api, world):
    path = f"/v1/grants/monthly?district={DISTRICT}"
    forged = sign_headers(world.admin.key, separator(world), "GET", path, host="evil.example:8000")
    error_of(api.client.get(path, headers={**forged, "Host": "evil.example:8000"}), 401, "unauthenticated")
    # signed for another host, sent to this one
    error_of(api.client.get(path, headers=forged), 401, "unauthenticated")
    host = host_of(api.client.base_url)
    old = sign_headers(world.admin.key, separator(world), "GET", path, host=host, timestamp=int(time.time()) - 61)
    error_of(api.client.get(path, headers=old), 401, "unauthenticated")
    ahead = sign_headers(world.admin.key, separator(world), "GET", path, host=host, timestamp=int(time.time()) + 61)
    error_of(api.client.get(path, headers=ahead), 401, "unauthenticated")
    no_nonce = sign_headers(world.admin.key, separator(world), "GET", path, host=host)
    del no_nonce["X-TimeBank-Nonce"]
    error_of(api.client.get(path, headers=no_nonce), 401, "unauthenticated")
    # the nonce is signed: another one under the same signature recovers another signer
    swapped = {**sign_headers(world.admin.key, separator(world), "GET", path, host=host), "X-TimeBank-Nonce": P.to_hex(secrets.token_bytes(32))}
    error_of(api.client.get(path, headers=swapped), 401, "unauthenticated")


# ----- 4. admin commands: the role first, nothing named to a signer without it ---------------------


def test_a_command_from_a_key_without_the_role_names_nothing(api, world):
    number, account = card()
    person = {"cardNumber": number, "district": DISTRICT, "kind": 2, "name": "王秀英", "idNumber": "320102193901010021"}
    assert signed(api, world, world.admin.key, "POST", "/v1/people", person).status_code == 201
    world.admin.ok("RegisterAccount", account=account, district=DISTRICT, kind=2)
    for stranger in (Admin(secrets.token_bytes(32), api.client, world.domain), world.other_admin):
        for message in ({"account": account, "minutes": 1, "reason": 1}, {"account": account, "minutes": 1, "reason": 2}):
            error = error_of(stranger.command("Grant", **message), 403, "unauthorized")
            assert number not in error["message"] and account not in error["message"], error
        error = error_of(stranger.command("SetAccountStatus", account=account, status=2, reason=1), 403, "unauthorized")
        assert number not in error["message"] and account not in error["message"]
    # the district's administrator is told
    assert world.admin.command("Grant", account=account, minutes=1, reason=1).json()["error"]["code"] == "not_eligible"


# ----- 8. signatures as the contract takes them ---------------------------------------------------


def test_signatures_with_v_0_or_1_are_refused(api, world):
    elder = world.new_account(2, grant=100)
    body = world.terminal.order(world.new_account(1), elder, elder, minutes=10)
    raw = bytes.fromhex(body["signature"][2:])
    for v in (0, 1):
        twin = {**body, "signature": P.to_hex(raw[:64] + bytes([raw[64] - 27]))}
        if raw[64] - 27 != v:
            continue
        error_of(world.terminal.post(twin), 400, "bad_signature")
        error_of(api.client.get(f"/v1/orders/{body['order']['orderId']}"), 404, "not_found")
    message = {"account": elder, "minutes": 1, "reason": 2, "nonce": secrets.randbits(40)}
    sig = bytes.fromhex(world.admin.sign("Grant", message)[2:])
    low = api.client.post("/v1/admin/commands", json={"type": "Grant", "message": message, "signature": P.to_hex(sig[:64] + bytes([sig[64] - 27]))})
    error_of(low, 400, "bad_signature")
    assert world.terminal.post(body).status_code == 201
