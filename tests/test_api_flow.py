"""The service end to end: a terminal and administrators built from PROTOCOL.md register, submit
orders, see them anchored, fetch proofs and verify them with the standalone verifier."""

from __future__ import annotations

import json
import subprocess

import pytest

from api import protocol as P
from scripts.verify_proof import verify_bundle
from tests.utils.api import Terminal, card, wait_anchored

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
