"""Card check codes (卡片校验码) against the real service and chain: issued once at registration, kept only
as a slow hash, the family look-up with number and code (one answer for a wrong code and an unknown card,
failures limited per client), re-issue for a lost card, no person view for unsigned callers (issue 10,
finding 10), district names, and `timebank-admin reissue-check-code`."""

from __future__ import annotations

import secrets

import pytest

from api import cards, db
from api import protocol as P
from scripts import admin as cli
from tests.test_people import error_of, person_body, register, request
from tests.utils.api_world import DISTRICT

pytestmark = pytest.mark.usefixtures("api")


@pytest.fixture(autouse=True)
def fresh_limits(api):
    cards.limiter_of(api.service).reset()
    yield
    cards.limiter_of(api.service).reset()


def lookup(api, number: str, code: str, **headers):
    return api.client.post("/v1/people/lookup", json={"cardNumber": number, "checkCode": code}, headers=headers)


def test_code_shape_and_hash():
    code = cards.new_check_code()
    assert len(code) == cards.CODE_LENGTH and set(code) <= set(cards.ALPHABET) and not set(code) & set("01OI")
    stored = cards.hash_check_code(code)
    assert stored.startswith("scrypt$8192$8$1$") and code not in stored
    assert cards.check_code_matches(stored, code) and not cards.check_code_matches(stored, cards.new_check_code())
    assert cards.hash_check_code(code) != stored  # salted
    assert cards.normalize_code(f" {code[:4].lower()}-{code[4:]} ") == code
    assert cards.normalize_code("0OI1ABCD") is None and cards.normalize_code(12345678) is None
    assert cards.mask_name("王秀英") == "王*英" and cards.mask_name("王英") == "王*" and cards.mask_name("欧阳秀英") == "欧**英"
    assert cards.card_qr_payload(base_url="http://h:8000/", card_number="NJ-1", check_code="ABCD2345") == "http://h:8000/my#card=NJ-1&code=ABCD2345"


def test_lookup_by_card_number_and_check_code(api, world):
    body = person_body(kind=2, category="80_alone")
    number, account = body["cardNumber"], P.to_hex(P.account_id(body["cardNumber"]))
    created = register(api, world, world.admin.key, body)
    code = created["checkCode"]
    assert len(code) == 8 and set(code) <= set(cards.ALPHABET)
    with api.service.reads() as session:
        stored = session.get(db.Person, account).check_code_hash
    assert stored.startswith("scrypt$") and code not in stored

    # before the chain registers the account: the person, no hours yet
    before = lookup(api, number, code)
    assert before.status_code == 200, before.text
    assert before.json() == {
        "cardNumber": number, "account": account, "district": DISTRICT, "districtName": "玄武区", "kind": 2, "status": 0,
        "name": "王*英", "balanceMinutes": 0, "earnedMinutes": 0, "starLevel": 0, "pendingDebitMinutes": 0,
    }
    world.admin.ok("RegisterAccount", account=account, district=DISTRICT, kind=2)
    world.admin.ok("Grant", account=account, minutes=600, reason=1)
    after = lookup(api, number, f"{code[:4].lower()}-{code[4:]}")  # case and dashes ignored
    assert after.status_code == 200 and after.json()["balanceMinutes"] == 600 and after.json()["status"] == 1

    # a wrong code and an unknown card: the same answer
    wrong = lookup(api, number, cards.new_check_code(), **{"Accept-Language": "zh"})
    unknown = lookup(api, f"NJ-{DISTRICT}-nobody{secrets.randbelow(10**6)}", code, **{"Accept-Language": "zh"})
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json() == unknown.json() and wrong.json()["error"]["messageEn"] == cards.WRONG
    error_of(lookup(api, number, "not a code"), 404, "not_found")
    error_of(api.client.post("/v1/people/lookup", json={"cardNumber": number}), 400, "invalid_request")

    # finding 10: no person view without a role, registered or not
    error_of(api.client.get(f"/v1/people/{number}"), 404, "not_found")
    assert api.client.get(f"/v1/people/{number}").json() == api.client.get(f"/v1/people/NJ-{DISTRICT}-x").json()
    error_of(request(api, world, secrets.token_bytes(32), "GET", f"/v1/people/{number}"), 404, "not_found")
    assert request(api, world, world.admin.key, "GET", f"/v1/people/{number}").json()["name"] == "王秀英"
    assert "checkCode" not in request(api, world, world.admin.key, "GET", f"/v1/people/{number}").json()


def test_failed_lookups_are_limited_per_client(api, world):
    body = person_body(kind=1)
    code = register(api, world, world.admin.key, body)["checkCode"]
    for _ in range(cards.LOOKUP_FAILURES_PER_MINUTE):
        error_of(lookup(api, body["cardNumber"], cards.new_check_code()), 404, "not_found")
    limited = lookup(api, body["cardNumber"], code, **{"Accept-Language": "zh-CN"})  # even the right code now
    error_of(limited, 429, "too_many_requests")
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    assert limited.json()["error"]["message"].startswith("本客户端查询失败次数过多")
    cards.limiter_of(api.service).reset()  # the window passed
    assert lookup(api, body["cardNumber"], code).status_code == 200


def test_reissue_for_a_lost_card(api, world, tmp_path, monkeypatch, capsys):
    body = person_body(kind=2)
    number = body["cardNumber"]
    old = register(api, world, world.admin.key, body)["checkCode"]
    path = f"/v1/people/{number}/check-code"
    error_of(request(api, world, None, "POST", path), 401, "unauthenticated")
    error_of(request(api, world, world.other_admin.key, "POST", path), 403, "forbidden")
    error_of(request(api, world, world.admin.key, "POST", f"/v1/people/NJ-{DISTRICT}-nobody/check-code"), 404, "not_found")
    again = request(api, world, world.admin.key, "POST", path)
    assert again.status_code == 200 and again.json()["cardNumber"] == number
    new = again.json()["checkCode"]
    assert new != old
    error_of(lookup(api, number, old), 404, "not_found")
    assert lookup(api, number, new).status_code == 200

    # the administrators' tool: the same, through a keystore
    password = "correct horse battery staple"
    keystore = tmp_path / "admin.json"
    cli.write_keystore(keystore, world.admin.key, password, kdf="pbkdf2", work=cli.KDF_MINIMUM["pbkdf2"])
    monkeypatch.setenv("TIMEBANK_ADMIN_PASSWORD", password)
    assert cli.main(["reissue-check-code", "--card", number, "--keystore", str(keystore), "--api", api.url]) == 0
    printed = capsys.readouterr().out
    newest = printed.split("new card check code of ")[1].split(": ")[1].split()[0]
    assert f"card QR: {api.url}/my#card={number}&code={newest}" in printed
    assert lookup(api, number, newest).status_code == 200 and lookup(api, number, new).status_code == 404


def test_district_names(api, world):
    listed = api.client.get("/v1/districts").json()["districts"]
    assert {"district": 320102, "name": "玄武区", "fullName": "江苏省南京市玄武区"} in listed
    assert {"district": 320104, "name": "秦淮区", "fullName": "江苏省南京市秦淮区"} in listed


def test_console_listings(api, world):
    """The district console's lists: its persons (administrators and auditors of the district) and the
    stations the chain registered (anyone)."""
    body = person_body(kind=2, category="60_79_alone")
    register(api, world, world.admin.key, body)
    path = f"/v1/people?district={DISTRICT}&limit=1000"
    listed = request(api, world, world.admin.key, "GET", path)
    assert listed.status_code == 200, listed.text
    mine = [p for p in listed.json()["people"] if p["cardNumber"] == body["cardNumber"]]
    assert mine == [{"cardNumber": body["cardNumber"], "account": P.to_hex(P.account_id(body["cardNumber"])), "district": DISTRICT,
                     "kind": 2, "status": 0, "name": "王秀英", "category": "60_79_alone", "qualifications": []}]
    assert listed.json()["total"] >= 1 and all(p["district"] == DISTRICT for p in listed.json()["people"])
    cards_listed = [p["cardNumber"] for p in listed.json()["people"]]
    assert cards_listed == sorted(cards_listed)
    volunteers = request(api, world, world.city.key, "GET", f"/v1/people?district={DISTRICT}&kind=1&limit=1000").json()["people"]
    assert all(p["kind"] == 1 for p in volunteers) and body["cardNumber"] not in [p["cardNumber"] for p in volunteers]
    error_of(request(api, world, world.other_admin.key, "GET", path), 403, "forbidden")
    error_of(request(api, world, None, "GET", path), 401, "unauthenticated")
    error_of(request(api, world, world.admin.key, "GET", f"/v1/people?district={DISTRICT}&kind=4"), 400, "invalid_request")

    stations = api.client.get(f"/v1/stations?district={DISTRICT}").json()["stations"]
    assert {"station": world.terminal.address.lower(), "district": DISTRICT} in [
        {"station": s["station"].lower(), "district": s["district"]} for s in stations]
    assert all(s["district"] == DISTRICT and s["activeFromBlock"] > 0 for s in stations)
    everywhere = api.client.get("/v1/stations").json()["stations"]
    assert {s["district"] for s in everywhere} >= {DISTRICT, 320104}
