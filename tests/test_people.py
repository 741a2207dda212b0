"""People and roles through the API (real chain, real database): persons off chain with the privacy
rules, the ID number never stored in clear, qualifications and locations feeding the order checks, an
account's history, group members, monthly grants end to end with `timebank-admin`, and its keystores.

All tests share the session's service and chain (`world`); each makes its own cards, accounts and keys.
"""

from __future__ import annotations

import io
import hashlib
import json
import os
import secrets
import stat
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import select

from api import db
from api import protocol as P
from api.auth import host_of, sign_headers
from api.people import GRANT_REASON_MONTHLY, GRANT_REASON_ONE_OFF, current_period
from scripts import admin as cli
from tests.utils.api import Admin, card, wait_anchored
from tests.utils.api_world import DISTRICT, OTHER_DISTRICT

pytestmark = pytest.mark.usefixtures("api")

PASSWORD = "correct horse battery staple"
PUBLIC_KEYS = {"account", "district", "kind", "status"}
PERSONAL_KEYS = {"cardNumber", "name", "idNumberLegacy", "phone", "address", "location", "category", "qualifications", "qualified", "createdAt", "updatedAt"}
HISTORY_ORDER_KEYS = {"orderId", "role", "status", "district", "districtName", "serviceType", "serviceName", "serviceNameEn", "minutes", "startTime", "endTime", "acceptedAt"}


# ----- helpers ------------------------------------------------------------------------------------


def request(api, world, key: bytes | None, method: str, path: str, body: Any = None):
    """A request, signed by `key` unless None."""
    raw = b"" if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if raw else {}
    if key is not None:
        separator = P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"])
        headers.update(sign_headers(key, separator, method, path, raw, host=host_of(api.client.base_url)))
    return api.client.request(method, path, content=raw, headers=headers)


def error_of(response, status: int, code: str) -> None:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.json()["error"]["code"] == code, response.text


def id_number() -> str:
    return f"320102{1930 + secrets.randbelow(60)}0101{secrets.randbelow(10**4):04d}"


def person_body(district: int = DISTRICT, kind: int = 2, **extra: Any) -> dict:
    number, _account = card(f"NJ-{district}")
    return {"cardNumber": number, "district": district, "kind": kind, "name": "王秀英", "idNumber": id_number(), **extra}


def register(api, world, key: bytes, body: dict) -> dict:
    response = request(api, world, key, "POST", "/v1/people", body)
    assert response.status_code == 201, response.text
    return response.json()


def account_row(api, account: str) -> db.Account:
    with api.service.reads() as session:
        return session.get(db.Account, account)


def balance(api, account: str) -> int:
    return api.client.get(f"/v1/accounts/{account}").json()["balanceMinutes"]


def fresh_district(api, world) -> tuple[int, Admin]:
    """A district of its own (its plan holds only this test's persons) and its administrator."""
    while True:
        district = 330000 + secrets.randbelow(60000)
        with api.service.reads() as session:
            if session.get(db.District, district) is None:
                break
    admin = Admin(secrets.token_bytes(32), api.client, world.domain)
    world.city.ok("RegisterDistrict", district=district, admin=admin.address)
    return district, admin


def next_period(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year + month // 12}-{month % 12 + 1:02d}"


# ----- persons and privacy ------------------------------------------------------------------------


def test_register_lookup_update_and_who_sees_personal_data(api, world):
    body = person_body(phone="13800000000", address="南京市玄武区北京东路41号", location={"lat": 32.06, "lon": 118.8}, category="80_alone")
    account = P.to_hex(P.account_id(body["cardNumber"]))
    path = f"/v1/people/{body['cardNumber']}"

    error_of(request(api, world, None, "POST", "/v1/people", body), 401, "unauthenticated")
    error_of(request(api, world, world.other_admin.key, "POST", "/v1/people", body), 403, "forbidden")
    created = register(api, world, world.admin.key, body)
    assert set(created) == PUBLIC_KEYS | PERSONAL_KEYS | {"checkCode"}, created  # the card check code, once
    assert created["account"] == account and created["district"] == DISTRICT
    assert (created["kind"], created["status"]) == (2, 0)  # not on chain yet: the mirror row waits for it
    assert created["name"] == "王秀英" and created["category"] == "80_alone" and created["location"] == {"lat": 32.06, "lon": 118.8}
    error_of(request(api, world, world.admin.key, "POST", "/v1/people", body), 409, "person_exists")
    world.admin.ok("RegisterAccount", account=account, district=DISTRICT, kind=2)

    # auditors, registered by the city: of this district, of another, city-wide
    auditors = {name: secrets.token_bytes(32) for name in ("district", "other", "city")}
    for name, district in (("district", DISTRICT), ("other", OTHER_DISTRICT), ("city", 0)):
        world.city.ok("RegisterAuditor", auditor=P.to_hex(P.address_of(auditors[name])), district=district)

    def seen_by(key: bytes | None) -> dict:
        response = request(api, world, key, "GET", path)
        assert response.status_code == 200, response.text
        return response.json()

    for key in (world.admin.key, world.city.key, auditors["district"], auditors["city"]):
        full = seen_by(key)
        assert set(full) == PUBLIC_KEYS | PERSONAL_KEYS and full["phone"] == "13800000000" and full["status"] == 1, full
    public = {"account": account, "district": DISTRICT, "kind": 2, "status": 1}
    for key in (world.other_admin.key, auditors["other"]):
        assert seen_by(key) == public
    for key in (None, secrets.token_bytes(32)):  # no role: nothing, as for a card never registered
        error_of(request(api, world, key, "GET", path), 404, "not_found")
    forged = sign_headers(world.admin.key, P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"]), "GET", "/v1/people/x", host=host_of(api.client.base_url))
    assert api.client.get(path, headers=forged).status_code == 401  # signed for another path
    error_of(api.client.get("/v1/people/NJ-999999-nobody"), 404, "not_found")

    # updates: only the district's administrators (or the city's); district, kind and card are the chain's
    change = {"phone": "13900000000", "address": "南京市玄武区中山路1号"}
    error_of(request(api, world, world.other_admin.key, "PATCH", path, change), 403, "forbidden")
    error_of(request(api, world, None, "PATCH", path, change), 401, "unauthenticated")
    error_of(request(api, world, world.admin.key, "PATCH", path, {"district": OTHER_DISTRICT}), 400, "invalid_request")
    error_of(request(api, world, world.admin.key, "PATCH", path, {"category": "young_and_rich"}), 400, "invalid_request")
    error_of(request(api, world, world.admin.key, "PATCH", path, {"qualifications": ["nurse"]}), 400, "invalid_request")
    updated = request(api, world, world.admin.key, "PATCH", path, change)
    assert updated.status_code == 200, updated.text
    assert updated.json()["phone"] == "13900000000" and updated.json()["name"] == "王秀英"
    assert updated.json()["updatedAt"] >= created["updatedAt"]
    by_city = request(api, world, world.city.key, "PATCH", path, {"category": None})  # eligibility ended
    assert by_city.status_code == 200 and by_city.json()["category"] is None


def test_registration_is_checked(api, world):
    for bad in (
        {"cardNumber": "NJ 320102 1"},  # not a card number
        {"kind": 4},  # a pool is no person
        {"idNumber": "12"},
        {"name": ""},
        {"location": {"lat": 91, "lon": 0}},
        {"category": "80_alone", "kind": 1},  # only recipients are eligible
        {"qualifications": ["doctor"], "kind": 2},  # only volunteers hold qualifications
        {"qualifications": ["astronaut"], "kind": 1},
        {"unexpected": 1},
    ):
        error_of(request(api, world, world.admin.key, "POST", "/v1/people", person_body(**bad)), 400, "invalid_request")
    error_of(request(api, world, world.admin.key, "POST", "/v1/people", []), 400, "invalid_request")
    # the chain holds the account as a volunteer of this district: a recipient record of it is refused
    volunteer = person_body(kind=2)
    world.admin.ok("RegisterAccount", account=P.to_hex(P.account_id(volunteer["cardNumber"])), district=DISTRICT, kind=1)
    error_of(request(api, world, world.admin.key, "POST", "/v1/people", volunteer), 422, "account_mismatch")


def test_id_number_is_never_stored_in_clear(api, world):
    from api.people import id_number_matches

    body = person_body(kind=1)
    created = register(api, world, world.admin.key, body)
    with api.service.reads() as session:
        row = session.get(db.Person, created["account"])
    columns = {c.key: getattr(row, c.key) for c in db.Person.__mapper__.column_attrs}
    assert all(body["idNumber"] not in str(value) for value in columns.values()), columns
    scheme, _, digest = row.id_number_hash.partition("$")
    assert scheme == "hmac-sha256" and len(digest) == 64 and "idNumberHash" not in created and created["idNumberLegacy"] is False
    key = api.service.id_hash_key
    assert id_number_matches(row.id_number_hash, body["idNumber"], key) and not id_number_matches(row.id_number_hash, id_number(), key)
    # without the key (it is not in the database) the hash is not the plain sha256 of any candidate
    assert digest != hashlib.sha256(body["idNumber"].encode()).hexdigest()
    # nor anywhere in the database's files. Read by another process: opening and closing the file in
    # this one would drop the POSIX locks the service's SQLite connections hold on it (and corrupt it).
    database = Path(api.settings.database_url.split("///", 1)[1])
    for path in (database, Path(f"{database}-wal")):
        if path.exists():
            found = subprocess.run(["grep", "-qaF", body["idNumber"], str(path)])
            assert found.returncode == 1, (path, found.returncode)


# ----- what the order checks read -----------------------------------------------------------------


def test_qualification_enables_professional_service(api, world):
    terminal = world.terminal
    body = person_body(kind=1)
    account = P.to_hex(P.account_id(body["cardNumber"]))
    world.admin.ok("RegisterAccount", account=account, district=DISTRICT, kind=1)  # chain first, then the record
    register(api, world, world.admin.key, body)
    path = f"/v1/people/{body['cardNumber']}"
    error_of(terminal.post(terminal.order(account, world.elder, world.elder, minutes=30, service_type=9)), 422, "qualification_required")

    updated = request(api, world, world.admin.key, "PATCH", path, {"qualifications": ["nurse", "care_worker"]})
    assert updated.status_code == 200 and updated.json()["qualified"] is True, updated.text
    assert updated.json()["qualifications"] == ["care_worker", "nurse"]
    assert account_row(api, account).qualified is True
    accepted = terminal.post(terminal.order(account, world.elder, world.elder, minutes=30, service_type=9))
    assert accepted.status_code == 201, accepted.text

    request(api, world, world.admin.key, "PATCH", path, {"qualifications": []})
    assert account_row(api, account).qualified is False
    error_of(terminal.post(terminal.order(account, world.elder, world.elder, minutes=30, service_type=9)), 422, "qualification_required")


def test_location_feeds_the_location_checks(api, world):
    terminal = world.terminal
    body = person_body(kind=2, location={"lat": 32.05, "lon": 118.79}, address="南京市玄武区")
    register(api, world, world.admin.key, body)  # the record first: the chain registers the account after
    elder = P.to_hex(P.account_id(body["cardNumber"]))
    world.admin.ok("RegisterAccount", account=elder, district=DISTRICT, kind=2)
    world.admin.ok("Grant", account=elder, minutes=600, reason=GRANT_REASON_ONE_OFF)
    row = account_row(api, elder)
    assert (row.status, row.lat, row.lon) == (1, 32.05, 118.79)
    volunteer = world.new_account(1)

    def at(lat: float) -> dict:
        order = terminal.order(volunteer, elder, elder, minutes=20, details=None)
        moved = {**order["details"], "checkIn": {**order["details"]["checkIn"], "lat": lat}, "checkOut": {**order["details"]["checkOut"], "lat": lat}}
        order["order"]["detailsHash"] = P.to_hex(P.details_hash(moved))
        return terminal.signed(order["order"], moved)

    assert terminal.post(at(32.05)).status_code == 201
    error_of(terminal.post(at(32.2)), 422, "location_mismatch")
    moved = request(api, world, world.admin.key, "PATCH", f"/v1/people/{body['cardNumber']}", {"location": {"lat": 32.2, "lon": 118.79}})
    assert moved.status_code == 200, moved.text
    assert (account_row(api, elder).lat, account_row(api, elder).lon) == (32.2, 118.79)
    assert terminal.post(at(32.2)).status_code == 201
    error_of(terminal.post(at(32.05)), 422, "location_mismatch")


# ----- history ------------------------------------------------------------------------------------


def test_history_of_an_account(api, world):
    terminal = world.terminal
    volunteer, elder = world.new_account(1), world.new_account(2, grant=600)
    first = terminal.order(volunteer, elder, elder, minutes=30, service_type=1)
    second = terminal.order(volunteer, elder, elder, minutes=20, service_type=5)
    for body in (first, second):
        assert terminal.post(body).status_code == 201
    for body in (first, second):
        assert wait_anchored(api.client, body["order"]["orderId"])["status"] == "anchored"

    mine = api.client.get(f"/v1/accounts/{volunteer}/history").json()  # anyone may read it: unsigned
    assert (mine["account"], mine["earnedMinutes"], mine["balanceMinutes"], mine["starLevel"], mine["total"]) == (volunteer, 50, 50, 0, 2)
    assert [o["orderId"] for o in mine["orders"]] == [second["order"]["orderId"], first["order"]["orderId"]]  # newest first
    assert all(set(o) == HISTORY_ORDER_KEYS for o in mine["orders"]), mine["orders"]  # no other party named
    assert [(o["role"], o["status"], o["minutes"], o["serviceType"]) for o in mine["orders"]] == [
        ("volunteer", "anchored", 20, 5),
        ("volunteer", "anchored", 30, 1),
    ]
    assert mine["orders"][1]["startTime"] == first["order"]["startTime"] and mine["orders"][1]["endTime"] == first["order"]["endTime"]
    theirs = api.client.get(f"/v1/accounts/{elder}/history").json()
    assert theirs["balanceMinutes"] == 550 and [o["role"] for o in theirs["orders"]] == ["payer", "payer"]
    page = api.client.get(f"/v1/accounts/{volunteer}/history?limit=1&offset=1").json()
    assert page["total"] == 2 and [o["orderId"] for o in page["orders"]] == [first["order"]["orderId"]]
    error_of(api.client.get(f"/v1/accounts/{card()[1]}/history"), 404, "not_found")
    error_of(api.client.get(f"/v1/accounts/{volunteer}/history?limit=0"), 400, "invalid_request")
    error_of(api.client.get("/v1/accounts/0x12/history"), 400, "wrong_length")


# ----- group volunteers ---------------------------------------------------------------------------


def test_group_members(api, world):
    group, member, member2, elder = world.new_account(3), world.new_account(1), world.new_account(1), world.new_account(2)
    path = f"/v1/groups/{group}/members"
    added = request(api, world, world.admin.key, "POST", path, {"account": member})
    assert added.status_code == 201 and added.json() == {"group": group, "members": [member]}, added.text
    again = request(api, world, world.admin.key, "POST", path, {"account": member})
    assert again.status_code == 200 and again.json()["members"] == [member]
    assert request(api, world, world.city.key, "POST", path, {"account": member2}).status_code == 201
    listed = request(api, world, world.admin.key, "GET", path)
    assert listed.status_code == 200 and listed.json()["members"] == sorted([member, member2])

    error_of(request(api, world, world.admin.key, "POST", path, {"account": elder}), 422, "account_wrong_kind")
    error_of(request(api, world, world.admin.key, "POST", path, {"account": card()[1]}), 422, "unknown_account")
    error_of(request(api, world, world.admin.key, "POST", f"/v1/groups/{member}/members", {"account": member2}), 422, "account_wrong_kind")
    error_of(request(api, world, world.admin.key, "GET", f"/v1/groups/{card()[1]}/members"), 404, "not_found")
    error_of(request(api, world, world.other_admin.key, "POST", path, {"account": member}), 403, "forbidden")
    error_of(request(api, world, world.other_admin.key, "GET", path), 403, "forbidden")
    error_of(request(api, world, None, "GET", path), 401, "unauthenticated")
    error_of(request(api, world, world.admin.key, "POST", path, {"member": member}), 400, "invalid_request")

    error_of(request(api, world, world.other_admin.key, "DELETE", f"{path}/{member}"), 403, "forbidden")
    removed = request(api, world, world.admin.key, "DELETE", f"{path}/{member}")
    assert removed.status_code == 200 and removed.json()["members"] == [member2], removed.text
    error_of(request(api, world, world.admin.key, "DELETE", f"{path}/{member}"), 404, "not_found")


# ----- monthly grants with timebank-admin ---------------------------------------------------------


@pytest.fixture
def password(monkeypatch):
    monkeypatch.setenv(cli.PASSWORD_ENV, PASSWORD)
    return PASSWORD


def import_keystore(monkeypatch, out: Path, key: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(P.to_hex(key) + "\n"))
    assert cli.main(["keystore", "import", "--out", str(out), "--work", str(2**14)]) == 0


def test_monthly_grants_end_to_end(api, world, tmp_path, monkeypatch, capsys, password):
    district, admin = fresh_district(api, world)
    keystore = tmp_path / "admin.json"
    import_keystore(monkeypatch, keystore, admin.key)
    common = ["--keystore", str(keystore), "--api", api.url]

    cards = {}
    for name, kind, extra in (
        ("alone", "recipient", ["--category", "80_alone", "--lat", "32.05", "--lon", "118.79"]),
        ("rural", "recipient", ["--category", "rural_left_behind"]),
        ("not_eligible", "recipient", []),
        ("volunteer", "volunteer", ["--qualification", "doctor"]),
    ):
        cards[name] = f"NJ-{district}-{secrets.randbelow(10**9):09d}"
        argv = ["register-person", "--card", cards[name], "--district", str(district), "--kind", kind, "--name", name, "--id-number", id_number(), *extra]
        assert cli.main([*argv, *common]) == 0
    accounts = {name: P.to_hex(P.account_id(number)) for name, number in cards.items()}
    assert account_row(api, accounts["volunteer"]).qualified is True and account_row(api, accounts["alone"]).lat == 32.05
    assert cli.main(["register-person", "--card", cards["rural"], "--district", str(district), "--kind", "recipient", "--name", "rural", "--id-number", id_number(), *common]) == 0  # again: nothing to do
    capsys.readouterr()

    period = current_period()
    plan_path = f"/v1/grants/monthly?district={district}&period={period}"
    plan = request(api, world, admin.key, "GET", plan_path)
    assert plan.status_code == 200, plan.text
    assert plan.json()["period"] == plan.json()["currentPeriod"] == period and plan.json()["reason"] == GRANT_REASON_MONTHLY
    assert sorted(p["account"] for p in plan.json()["persons"]) == sorted([accounts["alone"], accounts["rural"]])
    error_of(request(api, world, None, "GET", plan_path), 401, "unauthenticated")
    error_of(request(api, world, world.admin.key, "GET", plan_path), 403, "forbidden")
    error_of(request(api, world, admin.key, "GET", f"/v1/grants/monthly?district={district}&period=2026-13"), 400, "invalid_request")

    assert cli.main(["grant-monthly", "--district", str(district), "--minutes", "300", "--dry-run", *common]) == 0
    assert balance(api, accounts["alone"]) == 0  # a dry run sends nothing
    capsys.readouterr()
    assert cli.main(["grant-monthly", "--district", str(district), "--minutes", "300", "--json", *common]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["period"], summary["planned"], len(summary["granted"]), summary["skipped"], summary["failed"]) == (period, 2, 2, [], [])
    assert balance(api, accounts["alone"]) == balance(api, accounts["rural"]) == 300
    with api.service.reads() as session:
        rows = session.scalars(select(db.MonthlyGrant).where(db.MonthlyGrant.account.in_(list(accounts.values())))).all()
    assert {(r.account, r.period, r.minutes) for r in rows} == {(accounts["alone"], period, 300), (accounts["rural"], period, 300)}
    assert {r.tx_hash for r in rows} == {g["txHash"] for g in summary["granted"]}

    # the plan of this period is empty; a second monthly grant is refused before it is relayed
    assert request(api, world, admin.key, "GET", plan_path).json()["persons"] == []
    error_of(admin.command("Grant", account=accounts["alone"], minutes=300, reason=GRANT_REASON_MONTHLY), 409, "already_granted")
    error_of(world.city.command("Grant", account=accounts["alone"], minutes=300, reason=GRANT_REASON_MONTHLY), 409, "already_granted")
    error_of(admin.command("Grant", account=accounts["not_eligible"], minutes=300, reason=GRANT_REASON_MONTHLY), 422, "not_eligible")
    assert balance(api, accounts["alone"]) == 300 and balance(api, accounts["not_eligible"]) == 0
    admin.ok("Grant", account=accounts["alone"], minutes=60, reason=GRANT_REASON_ONE_OFF)  # other reasons are not monthly
    assert balance(api, accounts["alone"]) == 360
    assert cli.main(["grant-monthly", "--district", str(district), "--minutes", "300", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)["planned"] == 0

    # eligibility ended: not in the next period's plan
    ended = request(api, world, admin.key, "PATCH", f"/v1/people/{cards['alone']}", {"category": None})
    assert ended.status_code == 200 and ended.json()["category"] is None
    upcoming = next_period(period)
    later = request(api, world, admin.key, "GET", f"/v1/grants/monthly?district={district}&period={upcoming}").json()
    assert [p["account"] for p in later["persons"]] == [accounts["rural"]] and later["currentPeriod"] == period
    # grants are recorded for the current period only: another period's plan is shown, not granted
    assert cli.main(["grant-monthly", "--district", str(district), "--minutes", "300", "--period", upcoming, *common]) == cli.EXIT_USAGE
    assert cli.main(["grant-monthly", "--district", str(district), "--minutes", "300", "--period", upcoming, "--dry-run", *common]) == 0

    # `command` signs any command from the keystore; an account may be named by its card number
    station = P.to_hex(P.address_of(secrets.token_bytes(32)))
    assert cli.main(["command", "RegisterStation", f"station={station}", f"district={district}", *common]) == 0
    with api.service.reads() as session:
        assert session.get(db.Station, station).district == district
    assert cli.main(["command", "Grant", f"account={cards['not_eligible']}", "minutes=45", "reason=2", *common]) == 0
    assert balance(api, accounts["not_eligible"]) == 45
    assert cli.main(["command", "Grant", f"account={cards['not_eligible']}", "minutes=45", "reason=1", *common]) == cli.EXIT_FAILED
    assert "not_eligible" in capsys.readouterr().err


def test_period_is_china_standard_time():
    # 2026-01-31 16:30 UTC is already February in Nanjing
    assert current_period(datetime.fromisoformat("2026-01-31T16:30:00+00:00").timestamp()) == "2026-02"
    assert current_period(datetime.fromisoformat("2026-01-31T15:59:59+00:00").timestamp()) == "2026-01"


# ----- keystores ----------------------------------------------------------------------------------


def test_keystore_round_trip(tmp_path, monkeypatch, capsys, password):
    out = tmp_path / "new.json"
    assert cli.main(["keystore", "new", "--out", str(out), "--kdf", "pbkdf2", "--work", "100000"]) == 0
    printed = capsys.readouterr().out
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    keystore = json.loads(out.read_text())
    assert keystore["crypto"]["kdf"] == "pbkdf2" and "ciphertext" in keystore["crypto"]
    key = cli.load_key(out, PASSWORD)
    address = P.checksum(P.address_of(key))
    assert address in printed and key.hex() not in printed and key.hex() not in out.read_text()
    assert bytes(Account.decrypt(keystore, PASSWORD)) == key
    with pytest.raises(cli.AdminError):
        cli.load_key(out, "wrong password")
    assert cli.main(["keystore", "new", "--out", str(out)]) == cli.EXIT_USAGE  # never overwritten
    assert cli.load_key(out, PASSWORD) == key
    assert cli.main(["keystore", "address", "--keystore", str(out)]) == 0
    assert capsys.readouterr().out.strip() == address

    imported = tmp_path / "imported.json"
    secret = secrets.token_bytes(32)
    import_keystore(monkeypatch, imported, secret)
    assert json.loads(imported.read_text())["crypto"]["kdf"] == "scrypt"
    assert cli.load_key(imported, PASSWORD) == secret
    assert secret.hex() not in capsys.readouterr().out

    monkeypatch.setenv(cli.PASSWORD_ENV, "")
    assert cli.main(["keystore", "new", "--out", str(tmp_path / "empty.json")]) == cli.EXIT_USAGE  # no empty password
    monkeypatch.setenv(cli.PASSWORD_ENV, "wrong password")
    argv = ["command", "Grant", "account=NJ-1", "minutes=1", "reason=2", "--keystore", str(out), "--api", "http://127.0.0.1:9"]
    assert cli.main(argv) == cli.EXIT_USAGE and "wrong password" in capsys.readouterr().err
    # without the environment variable the password is asked for
    monkeypatch.delenv(cli.PASSWORD_ENV)
    monkeypatch.setattr(cli.getpass, "getpass", lambda _prompt: PASSWORD)
    assert cli.read_password(confirm=True) == PASSWORD
