"""The service end to end: a terminal and administrators built from PROTOCOL.md register, submit
orders, see them anchored, fetch proofs and verify them with the standalone verifier."""

from __future__ import annotations

import json
import subprocess

import pytest

from api import protocol as P
from scripts.verify_proof import verify_bundle
from tests.utils.api import wait_anchored

pytestmark = pytest.mark.usefixtures("api")


def test_health_and_domain(api, world):
    health = api.client.get("/v1/health").json()
    assert health["chainOk"] and health["databaseOk"]
    assert health["contract"].lower() == world.domain["verifyingContract"].lower()
    domain = api.client.get("/v1/domain").json()
    assert domain["domain"] == world.domain
    assert [f["name"] for f in domain["types"]["ServiceOrder"]] == [n for n, _ in P.TYPES["ServiceOrder"]]


def test_order_is_anchored_and_its_proof_verifies(api, world, api_anvil_url):
    body = world.terminal.order(world.volunteer, world.elder, world.elder, minutes=45)
    first = world.terminal.post(body)
    assert first.status_code == 201, first.text
    accepted = first.json()
    assert accepted["status"] == "accepted"
    assert accepted["station"] == world.terminal.address
    again = world.terminal.post(body)
    assert again.status_code == 200 and again.json() == accepted

    view = wait_anchored(api.client, accepted["orderId"])
    assert view["status"] == "anchored", view
    assert view["batchId"] >= 1 and view["txHash"].startswith("0x")

    bundle = api.client.get(f"/v1/orders/{accepted['orderId']}/proof").json()
    result = verify_bundle(bundle, api_anvil_url)
    assert result.ok, [c for c in result.checks if not c.ok]
    node = subprocess.run(
        ["node", "tests/node/verify_proof.mjs"], input=json.dumps(bundle), capture_output=True, text=True, check=True
    )
    assert json.loads(node.stdout)["merkleTree"] is True

    volunteer = api.client.get(f"/v1/accounts/{world.volunteer}").json()
    assert volunteer["earnedMinutes"] >= 45


def test_unanchored_and_unknown_proofs(api, world):
    missing = P.to_hex(b"\x11" * 32)
    response = api.client.get(f"/v1/orders/{missing}/proof")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_profile_needs_a_signed_request_of_the_district(api, world):
    from api.auth import host_of, sign_headers

    account = world.new_account(2, grant=600)
    path = f"/v1/accounts/{account}/profile"
    body = json.dumps({"location": {"lat": 32.05, "lon": 118.79}, "qualified": False}).encode()
    separator = P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"])
    unsigned = api.client.put(path, content=body)
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "unauthenticated"
    other = api.client.put(path, content=body, headers=sign_headers(world.other_admin.key, separator, "PUT", path, body, host=host_of(api.client.base_url)))
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"
    tampered = sign_headers(world.admin.key, separator, "PUT", path, body, host=host_of(api.client.base_url))
    assert api.client.put(path, content=body.replace(b"32.05", b"33.05"), headers=tampered).status_code == 401
    ok = api.client.put(path, content=body, headers=sign_headers(world.admin.key, separator, "PUT", path, body, host=host_of(api.client.base_url)))
    assert ok.status_code == 200, ok.text

    far = world.terminal.order(world.volunteer2, account, account, minutes=30)  # details default: 32.05, 118.79
    assert world.terminal.post(far).status_code == 201
    moved = world.terminal.order(world.volunteer2, account, account, minutes=30, details=None)
    moved_details = {**moved["details"], "checkIn": {"lat": 32.2, "lon": 118.79, "time": moved["order"]["startTime"]}}
    moved["order"]["detailsHash"] = P.to_hex(P.details_hash(moved_details))
    bad = world.terminal.post(world.terminal.signed(moved["order"], moved_details))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "location_mismatch"
