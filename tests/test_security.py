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


# ----- 2. intake rules of consent and place -------------------------------------------------------


def test_a_station_serves_only_recipients_of_its_district(api, world):
    """Station A signed an order whose payer and recipient are a district-B elderly person: accepted
    before, refused now."""
    elder_b = world.new_account(2, admin=world.other_admin, district=OTHER_DISTRICT, grant=600)
    body = world.terminal.order(world.new_account(1), elder_b, elder_b, minutes=30)
    error_of(world.terminal.post(body), 422, "recipient_other_district")
    assert api.client.get(f"/v1/accounts/{elder_b}").json()["pendingDebitMinutes"] == 0


def test_a_recipient_without_a_location_is_served_only_with_an_exemption(api, world):
    elder = world.new_account(2, grant=600, location=None)
    volunteer = world.new_account(1)
    far = world.terminal.order(volunteer, elder, elder, minutes=30)  # would have checked in anywhere
    error_of(world.terminal.post(far), 422, "recipient_no_location")
    # the district's administrator records an exemption (another district's cannot)
    path = f"/v1/accounts/{elder}/location-exemption"
    error_of(signed(api, world, world.other_admin.key, "PUT", path, {"reason": "lives in a care home"}), 403, "forbidden")
    error_of(signed(api, world, None, "PUT", path, {"reason": "lives in a care home"}), 401, "unauthenticated")
    recorded = signed(api, world, world.admin.key, "PUT", path, {"reason": "lives in a care home"})
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["admin"] == world.admin.address.lower() and recorded.json()["reason"] == "lives in a care home"
    assert world.terminal.post(world.terminal.order(volunteer, elder, elder, minutes=30)).status_code == 201
    assert signed(api, world, world.admin.key, "DELETE", path).status_code == 200
    error_of(world.terminal.post(world.terminal.order(volunteer, elder, elder, minutes=30)), 422, "recipient_no_location")


def test_transfers_have_sane_times_and_the_payers_district(api, world):
    saver = world.new_account(1, grant=600)
    parent = world.new_account(1)
    now = int(time.time()) - 3600
    zero = world.terminal.order(parent, saver, parent, minutes=100, service_type=100, start=0, duration=now)
    error_of(world.terminal.post(zero), 422, "service_too_long")
    saver_b = world.new_account(1, admin=world.other_admin, district=OTHER_DISTRICT, grant=600)
    foreign = world.terminal.order(parent, saver_b, parent, minutes=100, service_type=100, start=now, duration=0)
    error_of(world.terminal.post(foreign), 422, "transfer_other_district")
    error_of(world.terminal.post(world.terminal.order(parent, saver, parent, minutes=100, service_type=100, start=now, duration=0)), 422, "payer_not_linked")
    world.admin.ok("LinkAccounts", payer=saver, beneficiary=parent, linked=True)
    own = world.terminal.order(parent, saver, parent, minutes=100, service_type=100, start=now, duration=0)
    assert world.terminal.post(own).status_code == 201


def test_a_station_has_a_ceiling_of_minutes_a_day(api, world):
    terminal = Terminal(secrets.token_bytes(32), api.client, world.domain, DISTRICT)
    world.admin.ok("RegisterStation", station=terminal.address, district=DISTRICT)
    elder = world.new_account(2, grant=20000)
    limit = api.settings.station_daily_minutes
    # orders of the day up to the ceiling are accepted, the next minute is refused
    volunteers = [world.new_account(1) for _ in range(3)]
    accepted = 0
    for i in range(limit // 720):
        answer = terminal.post(terminal.order(volunteers[i % 3], elder, elder, minutes=720, start=int(time.time()) - 12 * 3600 - 3600 * 24 * (i // 3 + 1)))
        assert answer.status_code == 201, answer.text
        accepted += 720
    rest = limit - accepted
    if rest:
        assert terminal.post(terminal.order(volunteers[0], elder, elder, minutes=rest, start=int(time.time()) - 23 * 3600)).status_code == 201
    error_of(terminal.post(terminal.order(volunteers[1], elder, elder, minutes=1, start=int(time.time()) - 22 * 3600)), 422, "station_daily_limit")
    # another station of the district is not held up
    assert world.terminal.post(world.terminal.order(volunteers[2], elder, elder, minutes=1)).status_code == 201
    # the statistics flag the station: its last day is far over its usual one
    flagged = api.client.get(f"/v1/stats?district={DISTRICT}").json()["unusualStations"]
    assert {"district": DISTRICT, "station": terminal.address.lower(), "lastDayMinutes": limit, "usualDayMinutes": 0} in flagged
    assert all(f["station"] != world.terminal.address.lower() or f["lastDayMinutes"] > 240 for f in flagged)


# ----- 7. large bodies refused before they are read -----------------------------------------------


def _raw_request(api, head: bytes, body: bytes = b"", timeout: float = 10) -> tuple[bytes, int]:
    """Sends `head` and as much of `body` as the service reads; the answer and how much of the body went."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=timeout) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < len(body):
                sent += sock.send(body[sent : sent + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"body_too_large" in answer:
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, sent


def test_a_body_over_the_limit_is_refused_by_its_length_before_it_is_read(api):
    limit = api.settings.max_body_bytes
    head = f"POST /v1/orders HTTP/1.1\r\nHost: {host_of(api.client.base_url)}\r\nContent-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n".encode()
    started = time.monotonic()
    answer, _sent = _raw_request(api, head)  # no body sent at all: the answer comes anyway
    assert answer.startswith(b"HTTP/1.1 413") and b"body_too_large" in answer, answer[:300]
    assert time.monotonic() - started < 5


def test_a_streamed_body_is_cut_off_at_the_limit(api):
    limit = api.settings.max_body_bytes
    chunk = b"x" * 65536
    stream = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 40)) + b"0\r\n\r\n"
    head = f"POST /v1/orders HTTP/1.1\r\nHost: {host_of(api.client.base_url)}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    answer, _sent = _raw_request(api, head, stream)
    assert answer.startswith(b"HTTP/1.1 413") and b"body_too_large" in answer, answer[:300]


def test_details_and_notes_are_capped(api, world):
    elder = world.new_account(2, grant=600)
    body = world.terminal.order(world.new_account(1), elder, elder, minutes=10)
    for extra, code in (({"notes": "护" * 501}, "details_too_large"), ({"trail": [[32.05, 118.79, i] for i in range(400)]}, "details_too_large")):
        d = {**body["details"], **extra}
        big = world.terminal.signed({**body["order"], "detailsHash": P.to_hex(P.details_hash(d))}, d)
        error_of(world.terminal.post(big), 413, code)
    assert world.terminal.post(body).status_code == 201


# ----- 11. slow connections closed ----------------------------------------------------------------


def test_slow_header_connections_are_closed_and_do_not_hold_the_service(api):
    timeout = api.settings.header_timeout_seconds
    slow = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", api.port), timeout=timeout + 20)
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        slow.append(sock)
    try:
        assert api.client.get("/v1/health").status_code == 200  # served meanwhile
        started = time.monotonic()
        for sock in slow:
            sock.sendall(b"X-A: b\r\n")  # dribbling does not keep a connection open
        closed = 0
        for sock in slow:
            try:
                closed += sock.recv(1024) == b""
            except (ConnectionResetError, TimeoutError):
                closed += 1
        assert closed == 200 and time.monotonic() - started < timeout + 10
    finally:
        for sock in slow:
            sock.close()


# ----- 5. ID numbers: a keyed hash, and auditors learn only whether one matches -----------------


def test_id_numbers_are_keyed_and_only_matched(api, world, auditors):
    import hashlib

    number, account = card()
    id_number = "320102193901010021"
    assert signed(api, world, world.admin.key, "POST", "/v1/people", {"cardNumber": number, "district": DISTRICT, "kind": 2, "name": "王秀英", "idNumber": id_number}).status_code == 201
    with api.service.reads() as session:
        stored = session.get(db.Person, account).id_number_hash
    # no salt to try candidates with: the HMAC key is not in the database
    assert stored.startswith("hmac-sha256$") and id_number not in stored
    assert hashlib.sha256(id_number.encode()).hexdigest() not in stored
    view = signed(api, world, auditors["district"], "GET", f"/v1/people/{number}").json()
    assert "idNumberHash" not in view and stored not in json.dumps(view) and view["idNumberLegacy"] is False
    path = f"/v1/people/{number}/id-number-match"
    assert signed(api, world, auditors["district"], "POST", path, {"idNumber": id_number}).json() == {"match": True, "legacy": False}
    assert signed(api, world, auditors["district"], "POST", path, {"idNumber": "320102193901010038"}).json()["match"] is False
    for key in (auditors["other"], world.other_admin.key, secrets.token_bytes(32)):
        error_of(signed(api, world, key, "POST", path, {"idNumber": id_number}), 403, "forbidden")
    error_of(signed(api, world, None, "POST", path, {"idNumber": id_number}), 401, "unauthenticated")


def test_legacy_salted_hashes_are_marked_and_still_match(api, world):
    """A row of before the keyed hash (as the migration marks it) is shown as legacy; entering the ID
    number again re-keys it."""
    import hashlib

    number, account = card()
    assert signed(api, world, world.admin.key, "POST", "/v1/people", {"cardNumber": number, "district": DISTRICT, "kind": 1, "name": "李四", "idNumber": "320102199001010011"}).status_code == 201
    salt = secrets.token_hex(16)
    with api.service.sessions() as session, session.begin():
        session.get(db.Person, account).id_number_hash = f"legacy${salt}${hashlib.sha256((salt + '320102199001010011').encode()).hexdigest()}"
    assert signed(api, world, world.admin.key, "GET", f"/v1/people/{number}").json()["idNumberLegacy"] is True
    path = f"/v1/people/{number}/id-number-match"
    assert signed(api, world, world.admin.key, "POST", path, {"idNumber": "320102199001010011"}).json() == {"match": True, "legacy": True}
    assert signed(api, world, world.admin.key, "PATCH", f"/v1/people/{number}", {"idNumber": "320102199001010011"}).status_code == 200
    assert signed(api, world, world.admin.key, "GET", f"/v1/people/{number}").json()["idNumberLegacy"] is False


def test_the_id_hash_key_is_required_outside_development():
    from api.settings import Settings

    with pytest.raises(RuntimeError, match="TIMEBANK_ID_HASH_KEY"):
        Settings(id_hash_key=None).id_hash_key_bytes(31338)
    with pytest.raises(RuntimeError, match="at least 32"):
        Settings(id_hash_key="short").id_hash_key_bytes(31338)
    assert Settings(id_hash_key="k" * 32).id_hash_key_bytes(31338) == b"k" * 32
    assert Settings(id_hash_key=None).id_hash_key_bytes(31337)  # the development chain's fixed value


# ----- 6. certificate verification cannot tie up the service ------------------------------------


def test_certificate_verification_is_capped_and_kept_off_intake(api, world):
    import concurrent.futures
    import httpx

    volunteer = world.new_account(1)
    elder = world.new_account(2, grant=600)
    body = world.terminal.order(volunteer, elder, elder, minutes=10)
    assert world.terminal.post(body).status_code == 201
    wait_anchored(api.client, body["order"]["orderId"])
    certificate = api.client.get(f"/v1/accounts/{volunteer}/certificate").json()
    assert api.client.post("/v1/certificates/verify", json=certificate).json()["valid"] is True
    big = {**certificate, "orders": certificate["orders"] * (api.settings.certificate_max_orders + 1)}
    error_of(api.client.post("/v1/certificates/verify", json=big), 400, "too_many_items")
    # many large ones at once: some are refused 429, health and intake answer meanwhile
    heavy = {**certificate, "orders": certificate["orders"] * 400}
    payload = json.dumps(heavy).encode()

    def verify(_):
        with httpx.Client(base_url=api.url, timeout=120) as client:
            return client.post("/v1/certificates/verify", content=payload, headers={"content-type": "application/json"}).status_code

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(verify, i) for i in range(20)]
        time.sleep(0.5)
        started = time.monotonic()
        assert api.client.get("/v1/health").status_code == 200
        health_seconds = time.monotonic() - started
        statuses = [f.result() for f in futures]
    assert set(statuses) <= {200, 429}, statuses
    assert health_seconds < 5, health_seconds
    # while every slot is taken, one more is refused at once
    verifications = api.server.config.app.state.verifications
    taken = 0
    while verifications.slots.acquire(blocking=False):
        taken += 1
    try:
        assert taken == api.settings.certificate_verify_workers + api.settings.certificate_verify_waiting
        error_of(api.client.post("/v1/certificates/verify", json=certificate), 429, "verification_busy")
    finally:
        for _ in range(taken):
            verifications.slots.release()
    assert api.client.post("/v1/certificates/verify", json=certificate).json()["valid"] is True


# ----- 9. card numbers carry their district code --------------------------------------------------


def test_a_district_cannot_take_another_districts_card(api, world):
    number_b, account_b = card(f"NJ-{OTHER_DISTRICT}")
    person = {"cardNumber": number_b, "district": DISTRICT, "kind": 1, "name": "李四", "idNumber": "320102199001010011"}
    error_of(signed(api, world, world.admin.key, "POST", "/v1/people", person), 422, "card_other_district")
    error_of(signed(api, world, world.admin.key, "POST", "/v1/people", {**person, "cardNumber": "SEC-B-FUTURE"}), 422, "card_other_district")
    # RegisterAccount with the card beside it, or of a registered person
    world.admin.nonce += 1
    message = {"account": account_b, "district": DISTRICT, "kind": 1, "nonce": world.admin.nonce}
    answer = api.client.post("/v1/admin/commands", json={"type": "RegisterAccount", "message": message, "signature": world.admin.sign("RegisterAccount", message), "cardNumber": number_b})
    error_of(answer, 422, "card_other_district")
    assert signed(api, world, world.other_admin.key, "POST", "/v1/people", {**person, "district": OTHER_DISTRICT}).status_code == 201
    error_of(world.admin.command("RegisterAccount", account=account_b, district=DISTRICT, kind=1), 422, "card_other_district")
    world.other_admin.ok("RegisterAccount", account=account_b, district=OTHER_DISTRICT, kind=1)


def test_a_payer_serves_or_gives_only_to_the_accounts_it_linked(api, world):
    """payer_not_linked: a saver's minutes pay for, or go to, only the family members its district linked
    on chain at its request (LinkAccounts, followed from AccountsLinked into the mirror)."""
    assert api.service.writer.cache.links_enforced  # the contract has family links (protocol v1.1)
    saver, parent, stranger = world.new_account(1, grant=600), world.new_account(2), world.new_account(2)
    volunteer = world.new_account(1)
    now = int(time.time()) - 60
    # before: any station spent anyone's minutes on anyone
    error_of(world.terminal.post(world.terminal.order(volunteer, saver, parent, minutes=20)), 422, "payer_not_linked")
    world.admin.ok("LinkAccounts", payer=saver, beneficiary=parent, linked=True)
    world.admin.ok("LinkAccounts", payer=saver, beneficiary=stranger, linked=True)
    world.admin.ok("LinkAccounts", payer=saver, beneficiary=stranger, linked=False)  # linked, then unlinked
    for recipient in (stranger, world.new_account(2)):
        error_of(world.terminal.post(world.terminal.order(volunteer, saver, recipient, minutes=20)), 422, "payer_not_linked")
    gift = world.terminal.order(stranger, saver, stranger, minutes=20, service_type=100, start=now, duration=0)
    error_of(world.terminal.post(gift), 422, "payer_not_linked")
    assert world.terminal.post(world.terminal.order(volunteer, saver, parent, minutes=20)).status_code == 201
    gift = world.terminal.order(parent, saver, parent, minutes=20, service_type=100, start=now, duration=0)
    assert world.terminal.post(gift).status_code == 201
    # an elderly person paying for their own care needs no link
    elder = world.new_account(2, grant=100)
    assert world.terminal.post(world.terminal.order(volunteer, elder, elder, minutes=20)).status_code == 201
    # another district's administrator cannot link this district's payer
    error_of(world.other_admin.command("LinkAccounts", payer=saver, beneficiary=stranger, linked=True), 403, "unauthorized")
