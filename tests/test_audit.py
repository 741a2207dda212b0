"""Supervision and audit, end to end on a real chain and a real database: batch transparency and the
verifier's batch mode (including a relayer that moves minutes no order justifies), the audit sweep against
rows changed behind the service's back, spot checks, the home-care comparison down to the revocation,
statistics and the credit platform export."""

from __future__ import annotations

import copy
import csv
import io
import json
import random
import secrets
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from api import protocol as P
from api.audit import CREDIT_FORMAT, STATS_COLUMNS
from api.bundles import BATCH_FORMAT, amounts_of
from api.auth import host_of, sign_headers
from api.protocol import canonical_deltas, unpack_deltas
from scripts import audit_sweep
from scripts.verify_proof import (
    EXIT_MALFORMED,
    EXIT_USAGE,
    calldata_checks,
    compare_amounts,
    main as verify_main,
    verify_batch,
    verify_bundle,
)
from tests.utils import chain as C
from tests.utils.api import Terminal, card, order_digest, wait_anchored, wait_for
from tests.utils.api_world import DISTRICT, HOME, OTHER_DISTRICT, link, set_location

ROOT = Path(__file__).resolve().parent.parent


# ----- helpers ------------------------------------------------------------------------------------


def separator(world) -> bytes:
    return P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"])


def signed(api, world, key: bytes, method: str, path: str, body: bytes = b"", **kw: Any):
    headers = {**sign_headers(key, separator(world), method, path, body, host=host_of(api.client.base_url)), **kw.pop("headers", {})}
    return api.client.request(method, path, content=body or None, headers=headers, **kw)


def anchored_orders(api, world, terminal: Terminal, volunteer: str, payer: str, n: int, **kw: Any) -> list[dict]:
    """`n` orders posted in one bulk request and waited for until anchored; their request bodies."""
    return anchor_all(api, [terminal.order(volunteer, payer, payer, **kw) for _ in range(n)])


def anchor_all(api, bodies: list[dict]) -> list[dict]:
    response = api.client.post("/v1/orders/bulk", json={"items": bodies})
    assert response.status_code == 200, response.text
    assert all(r["httpStatus"] == 201 for r in response.json()["results"]), response.text
    for body in bodies:
        assert wait_anchored(api.client, body["order"]["orderId"])["status"] == "anchored"
    return bodies


def new_terminal(api, world) -> Terminal:
    terminal = Terminal(secrets.token_bytes(32), api.client, world.domain, DISTRICT)
    world.admin.ok("RegisterStation", station=terminal.address, district=DISTRICT)
    return terminal


@pytest.fixture(scope="module")
def auditors(api, world) -> dict[str, bytes]:
    """Auditors registered by the city: of DISTRICT, of OTHER_DISTRICT, city-wide (district 0)."""
    keys = {"district": secrets.token_bytes(32), "other": secrets.token_bytes(32), "city": secrets.token_bytes(32)}
    for name, district in (("district", DISTRICT), ("other", OTHER_DISTRICT), ("city", 0)):
        world.city.ok("RegisterAuditor", auditor=P.to_hex(P.address_of(keys[name])), district=district)
    return keys


@pytest.fixture(scope="module")
def batch_of_three(api, world) -> tuple[int, list[dict]]:
    """Three orders of one volunteer (one a transfer), posted together and anchored; the batch id of the
    first."""
    volunteer, terminal = world.new_account(1), world.terminal
    link(world.admin, world.elder, volunteer)  # the transfer's receiver
    bodies = anchor_all(api, [
        terminal.order(volunteer, world.elder, world.elder, minutes=30),
        terminal.order(volunteer, world.elder2, world.elder2, minutes=30),
        terminal.order(volunteer, world.elder, world.elder, minutes=20, service_type=100),
    ])
    view = api.client.get(f"/v1/orders/{bodies[0]['order']['orderId']}").json()
    return view["batchId"], bodies


# ----- batch transparency and the verifier's batch mode --------------------------------------------


def test_batch_listing_holds_every_order_and_the_amounts(api, world, batch_of_three):
    batch_id, bodies = batch_of_three
    listing = api.client.get(f"/v1/batches/{batch_id}").json()
    assert listing["format"] == BATCH_FORMAT and listing["id"] == batch_id
    assert listing["domain"] == world.domain
    assert listing["count"] == len(listing["orders"]) >= 1
    ids = {item["order"]["orderId"] for item in listing["orders"]}
    assert bodies[0]["order"]["orderId"] in ids
    for item in listing["orders"]:
        assert set(item) == {"order", "signature", "digest", "station", "leaf", "revoked"}  # no details
        assert set(item["order"]) == {n for n, _ in P.TYPES["ServiceOrder"]}
    leaves = [P.parse_bytes(item["leaf"], 32, "leaf") for item in listing["orders"]]
    assert P.to_hex(P.MerkleTree(leaves).root) == listing["root"]
    orders = [P.ServiceOrder.from_json(item["order"]) for item in listing["orders"]]
    want = {P.to_hex(a): {"earned": e, "received": r, "spent": s} for a, (e, r, s) in amounts_of(orders).items()}
    assert {a.pop("account"): a for a in copy.deepcopy(listing["amounts"])} == want
    assert {b["order"]["orderId"] for b in bodies} <= ids  # committed together, so batched together
    assert want[bodies[0]["order"]["volunteer"]] == {"earned": 60, "received": 20, "spent": 0}  # the transfer: received

    missing = api.client.get("/v1/batches/999999")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_verifier_batch_mode_passes_on_a_real_batch(api, world, batch_of_three, api_anvil_url, capsys):
    batch_id, _ = batch_of_three
    code = verify_main(["--batch", str(batch_id), "--api", api.url, "--rpc-url", api_anvil_url,
                        "--contract", world.domain["verifyingContract"]])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith(("✓", "✗"))]
    assert lines and all(line.startswith("✓") for line in lines), out
    assert {int(line.split("]")[0].split("[")[1]) for line in lines} == {0, 1, 2, 3, 4}
    assert f"verified: batch {batch_id}" in out

    # the transfer (type 100) is credited `received`, the services `earned`: a listing that says otherwise
    listing = api.client.get(f"/v1/batches/{batch_id}").json()
    tampered = copy.deepcopy(listing)
    tampered["amounts"][0]["earned"] += 5
    result = verify_batch(tampered, api_anvil_url)
    assert result.failed_step == 4 and result.exit_code == 4
    assert "listing's amounts" in next(c for c in result.checks if not c.ok).name

    changed = copy.deepcopy(listing)
    changed["orders"][0]["order"]["minutes"] += 1
    assert verify_batch(changed, api_anvil_url).failed_step == 1


def test_verifier_batch_mode_command_line(api, api_anvil_url, batch_of_three, capsys):
    for argv in (["--batch", "1", "--rpc-url", api_anvil_url],  # no --api
                 ["bundle.json", "--batch", "1", "--api", api.url, "--rpc-url", api_anvil_url],
                 ["--rpc-url", api_anvil_url]):  # neither a bundle nor a batch
        with pytest.raises(SystemExit) as exc:
            verify_main(argv)
        assert exc.value.code == EXIT_USAGE
    assert verify_main(["--batch", "999999", "--api", api.url, "--rpc-url", api_anvil_url]) == EXIT_MALFORMED
    capsys.readouterr()


def test_relayer_moving_minutes_no_order_justifies_is_caught(w3, bank, chain_snapshot, anvil):
    """The relayer (Anvil's 2nd key) anchors a batch whose calldata credits the volunteer more than its
    orders justify; the listing of the orders is honest. Batch mode fails at step 4 and names the account;
    the same orders anchored with honest amounts verify."""
    district = 320199
    station_key = C.new_key()
    C.register_district(bank, district, C.address(C.new_key()))
    C.register_station(bank, C.address(station_key), district)
    volunteer, recipient = C.new_account_id(), C.new_account_id()
    C.register_account(bank, volunteer, district, C.KIND_VOLUNTEER)
    C.register_account(bank, recipient, district, C.KIND_RECIPIENT)
    C.grant(bank, recipient, 600)

    def listing_of(batch: C.Batch, receipt) -> dict:
        orders = batch.orders
        return {
            "format": BATCH_FORMAT,
            "domain": P.domain(w3.eth.chain_id, bank.contract.address),
            "id": batch.batch_id,
            "root": P.to_hex(batch.root),
            "count": batch.count,
            "txHash": receipt["transactionHash"].to_0x_hex(),
            "blockNumber": receipt["blockNumber"],
            "blockHash": receipt["blockHash"].to_0x_hex(),
            "orders": [
                {"order": o.to_json(), "signature": P.to_hex(s), "digest": P.to_hex(d), "station": st.lower(),
                 "leaf": P.to_hex(leaf)}
                for o, s, d, st, leaf in zip(orders, batch.signatures, batch.digests, batch.stations, batch.leaves)
            ],
            "amounts": [{"account": P.to_hex(a), "earned": e, "received": r, "spent": s}
                        for a, (e, r, s) in amounts_of(orders).items()],
        }

    orders = [C.make_order(district=district, volunteer=volunteer, payer=recipient, minutes=m) for m in (30, 45)]
    honest = amounts_of(orders)
    inflated = {**honest, volunteer: (honest[volunteer][0] + 600, 0, 0)}
    forged = C.build_batch(bank, orders, station_key, deltas=C.pack_deltas(bank, inflated))
    _, receipt = C.anchor(bank, forged)  # sent from bank.relayer: Anvil's 2nd development key
    result = verify_batch(listing_of(forged, receipt), anvil.url)
    failed = [c for c in result.checks if not c.ok]
    assert result.failed_step == 4 and result.exit_code == 4, failed
    assert [c.name for c in failed] == ["amounts moved equal the orders' amounts"]
    assert P.to_hex(volunteer) in failed[0].message and "earned 675" in failed[0].message
    assert all(c.ok for c in result.checks if c.step < 4)

    again = [C.make_order(district=district, volunteer=volunteer, payer=recipient, minutes=m) for m in (10, 20)]
    fair = C.build_batch(bank, again, station_key)
    _, receipt = C.anchor(bank, fair)
    assert verify_batch(listing_of(fair, receipt), anvil.url).ok


# ----- the comparison alone -----------------------------------------------------------------------


def _calldata(root: bytes, count: int, deltas: bytes) -> bytes:
    from eth_abi import encode

    from scripts.verify_proof import ANCHOR_BATCH_SELECTOR

    return ANCHOR_BATCH_SELECTOR + encode(["bytes32", "uint32", "bytes"], [root, count, deltas])


def test_comparison_of_orders_and_calldata():
    a, b, c, d = (P.account_id(f"NJ-320102-{i}") for i in range(4))
    orders = [
        C.make_order(district=320102, volunteer=a, payer=b, minutes=30),
        C.make_order(district=320102, volunteer=a, payer=c, minutes=15),
        C.make_order(district=320102, volunteer=d, payer=a, minutes=20, service_type=100),
    ]
    amounts = amounts_of(orders)
    assert amounts == {a: (45, 0, 20), b: (0, 0, 30), c: (0, 0, 15), d: (0, 20, 0)}
    root = secrets.token_bytes(32)
    stranger = P.account_id("NJ-320102-stranger")
    index = {a: 1, b: 2, c: 3, d: 4, stranger: 5}
    account_at = {i: x for x, i in index.items()}.get

    def pack_amounts(values) -> bytes:
        return canonical_deltas(values, index)

    def failures(deltas: bytes, *, count: int = 3, at_root: bytes = root) -> list[str]:
        calldata = _calldata(at_root, count, deltas)
        return [ch.message or ch.name for ch in calldata_checks(orders, root, calldata, account_at) if not ch.ok]

    assert failures(pack_amounts(amounts)) == []
    assert failures(pack_amounts(dict(reversed(list(amounts.items()))))) == []  # canonical: sorted by index
    split = pack_amounts({a: (40, 0, 20)}) + pack_amounts({b: (0, 0, 30), c: (0, 0, 15), d: (0, 20, 0)}) + pack_amounts({a: (5, 0, 0)})
    assert len(failures(split)) == 1 and "not canonical" in failures(split)[0]  # the contract refuses it too

    inflated = failures(pack_amounts({**amounts, a: (645, 0, 20)}))
    assert inflated == [f"account {P.to_hex(a)}: moved earned 645, received 0, spent 20, "
                        f"the orders justify earned 45, received 0, spent 20"]
    extra = failures(pack_amounts({**amounts, stranger: (0, 600, 0)}))
    assert extra == [f"account {P.to_hex(stranger)}: moved earned 0, received 600, spent 0 that no order of the batch justifies"]
    dropped = failures(pack_amounts({k: v for k, v in amounts.items() if k != b}))
    assert dropped == [f"account {P.to_hex(b)}: the orders justify earned 0, received 0, spent 30, nothing moved"]
    as_earned = failures(pack_amounts({**amounts, d: (20, 0, 0)}))  # a transfer credited as service
    assert len(as_earned) == 1 and P.to_hex(d) in as_earned[0]

    assert failures(pack_amounts(amounts), count=4) == ["calldata count equals the number of orders"]
    assert failures(pack_amounts(amounts), at_root=b"\x01" * 32) == ["calldata root equals the recomputed root"]
    wrong_call = [ch for ch in calldata_checks(orders, root, b"\x12\x34\x56\x78" + b"\x00" * 96, account_at) if not ch.ok]
    assert len(wrong_call) == 1 and "anchorBatch" in wrong_call[0].message
    truncated = [ch for ch in calldata_checks(orders, root, _calldata(root, 3, pack_amounts(amounts)[:-1]), account_at) if not ch.ok]
    assert len(truncated) == 1 and "multiple of 16" in truncated[0].message
    with pytest.raises(P.ProtocolError):
        unpack_deltas(b"\x00" * 15)
    assert compare_amounts(amounts, amounts)[0].ok


# ----- the audit sweep ----------------------------------------------------------------------------


def _sweep(api, api_anvil_url, world):
    return audit_sweep.sweep(api.settings.database_url, api_anvil_url, world.domain["verifyingContract"], progress=False)


class _Tamper:
    """Changes one stored row behind the service's back, and puts it back."""

    def __init__(self, url: str):
        self.engine = create_engine(url, connect_args={"timeout": 30})

    def set(self, table: str, key: str, key_value: Any, column: str, value: Any) -> Any:
        with self.engine.begin() as conn:
            old = conn.execute(text(f"SELECT {column} FROM {table} WHERE {key} = :k"), {"k": key_value}).scalar_one()
            conn.execute(text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k"), {"v": value, "k": key_value})
        return old


def test_audit_sweep_reports_exactly_the_changed_row(api, world, batch_of_three, api_anvil_url):
    _, bodies = batch_of_three
    order_id = bodies[0]["order"]["orderId"]
    orders, batches, findings = _sweep(api, api_anvil_url, world)
    assert orders >= 3 and batches >= 1
    assert findings == [], [f.line() for f in findings]

    tamper = _Tamper(api.settings.database_url)
    with tamper.engine.connect() as conn:
        batch_row = conn.execute(text("SELECT batch_id FROM orders WHERE order_id = :o"), {"o": order_id}).scalar_one()
    other_payer = world.elder2
    for table, key, value, column, new in [
        ("orders", "order_id", order_id, "minutes", 29),
        ("orders", "order_id", order_id, "payer", other_payer),
        ("batches", "id", batch_row, "root", P.to_hex(secrets.token_bytes(32))),
    ]:
        old = tamper.set(table, key, value, column, new)
        try:
            _, _, findings = _sweep(api, api_anvil_url, world)
        finally:
            tamper.set(table, key, value, column, old)
        assert audit_sweep.rows_of(findings) == [(table, str(value))], [f.line() for f in findings]
        if table == "orders":
            checks = {f.check for f in findings}
            assert {"digest", "signature", "leaf", "amounts"} <= checks, checks
        else:
            assert [f.check for f in findings] == ["root"]
    assert _sweep(api, api_anvil_url, world)[2] == []


def test_audit_sweep_command(api, world, batch_of_three, api_anvil_url):
    _, bodies = batch_of_three
    order_id = bodies[1]["order"]["orderId"]
    command = [sys.executable, "-m", "scripts.audit_sweep", "--database-url", api.settings.database_url,
               "--rpc-url", api_anvil_url, "--contract", world.domain["verifyingContract"], "--no-progress"]
    clean = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    listed = json.loads(subprocess.run(command + ["--json"], capture_output=True, text=True, cwd=ROOT, timeout=120).stdout)
    assert [row for row in listed["rows"] if row[0] != "chain"] == []
    if not listed["foreignBatches"]:
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "every row matches what was anchored" in clean.stdout
    else:  # other tests' relayers anchored on this chain too: named, and never "every row matches"
        assert clean.returncode in (1, 3) and "every row matches" not in clean.stdout, clean.stdout
        assert "batches this database does not" in clean.stdout

    tamper = _Tamper(api.settings.database_url)
    old = tamper.set("orders", "order_id", order_id, "details", json.dumps({"notes": "rewritten"}))
    try:
        run = subprocess.run(command + ["--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    finally:
        tamper.set("orders", "order_id", order_id, "details", old)
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert [row for row in report["rows"] if row[0] != "chain"] == [["orders", order_id]]
    assert [f["check"] for f in report["findings"] if f["table"] != "chain"] == ["details"]

    down = subprocess.run(command[:5] + ["--rpc-url", "http://127.0.0.1:9", "--contract", world.domain["verifyingContract"]],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert down.returncode == 2 and "cannot run" in down.stderr


# ----- spot checks (抽查) ---------------------------------------------------------------------------


def test_spot_check_is_a_reproducible_sample_for_the_districts_auditors(api, world, auditors, api_anvil_url):
    terminal = new_terminal(api, world)
    bodies = anchored_orders(api, world, terminal, world.new_account(1), world.new_account(2, grant=600), 5, minutes=20)
    ours = {b["order"]["orderId"] for b in bodies}
    path = f"/v1/audit/spot-check?station={terminal.address}&size=3&seed=20250101"

    first = signed(api, world, auditors["district"], "GET", path)
    assert first.status_code == 200, first.text
    sample = first.json()
    assert sample["population"] == 5 and sample["size"] == 3 and sample["seed"] == "20250101"
    assert sample["district"] == DISTRICT
    chosen = [b["order"]["orderId"] for b in sample["orders"]]
    assert chosen == random.Random(20250101).sample(sorted(ours), 3)
    assert verify_bundle(sample["orders"][0], api_anvil_url).ok

    for key in (auditors["city"], world.admin.key, world.city.key):  # city-wide auditor, district admin, city
        again = signed(api, world, key, "GET", path)
        assert again.status_code == 200 and [b["order"]["orderId"] for b in again.json()["orders"]] == chosen
    other_seed = signed(api, world, auditors["district"], "GET", path.replace("20250101", "7")).json()
    assert other_seed["population"] == 5 and len(other_seed["orders"]) == 3

    for key in (auditors["other"], world.other_admin.key, secrets.token_bytes(32)):
        refused = signed(api, world, key, "GET", path)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert api.client.get(path).status_code == 401
    city_wide = "/v1/audit/spot-check?size=2&seed=1"
    assert signed(api, world, auditors["district"], "GET", city_wide).status_code == 403
    everything = signed(api, world, auditors["city"], "GET", city_wide)
    assert everything.status_code == 200 and everything.json()["population"] >= 5
    bad = signed(api, world, auditors["city"], "GET", "/v1/audit/spot-check?size=0")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


# ----- home-care comparison (居家服务订单比对) ------------------------------------------------------


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone(timedelta(hours=8))).replace(tzinfo=None).isoformat()


def test_homecare_comparison_and_revocation_of_the_double_paid_order(api, world, auditors):
    number, elder = card(f"NJ-{DISTRICT}")
    world.admin.ok("RegisterAccount", account=elder, district=DISTRICT, kind=2)
    world.admin.ok("Grant", account=elder, minutes=600, reason=1)
    set_location(world.admin, elder, HOME)
    terminal = new_terminal(api, world)
    volunteer = world.new_account(1)
    double, fine = anchored_orders(api, world, terminal, volunteer, elder, 2, minutes=60)
    start, end = double["order"]["startTime"], double["order"]["endTime"]
    path = "/v1/audit/homecare"
    body = (
        "recipient_card,start,end,provider\n"
        f"{number},{_iso(start + 1800)},{end},Xuanwu Home Care Co.\n"  # naive ISO: UTC+8; unix seconds
        f"{number},{fine['order']['endTime'] + 7200},{fine['order']['endTime'] + 9000},Xuanwu Home Care Co.\n"
        "NJ-320102-not-in-the-time-bank,2025-01-01T09:00:00+08:00,2025-01-01T10:00:00+08:00,Other Co.\n"
    ).encode()
    csv_type = {"headers": {"Content-Type": "text/csv"}}

    bad_time = body.replace(f",{end},".encode(), b",tomorrow,")
    refused = signed(api, world, world.admin.key, "POST", path, bad_time, **csv_type)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "malformed_csv"
    assert refused.json()["error"]["message"].startswith("line 2:")
    short = body + b"NJ-1,1700000000\n"
    assert "line 5" in signed(api, world, world.admin.key, "POST", path, short, **csv_type).json()["error"]["message"]
    header = signed(api, world, world.admin.key, "POST", path, body.replace(b"provider", b"vendor", 1), **csv_type)
    assert header.status_code == 400 and "line 1" in header.json()["error"]["message"]
    backwards = body.replace(f",{end},".encode(), f",{start},".encode())
    assert "line 2" in signed(api, world, world.admin.key, "POST", path, backwards, **csv_type).json()["error"]["message"]
    assert signed(api, world, auditors["district"], "POST", path, body, **csv_type).status_code == 403  # admins only
    assert signed(api, world, world.other_admin.key, "POST", path, body, **csv_type).status_code == 403  # not theirs
    assert api.client.post(path, content=body, **csv_type).status_code == 401

    imported = signed(api, world, world.admin.key, "POST", path, body, **csv_type)
    assert imported.status_code == 201, imported.text
    assert imported.json()["visits"] == 3
    again = signed(api, world, world.admin.key, "POST", path, body, **csv_type)
    assert again.status_code == 200 and again.json() == imported.json()

    overlaps_path = f"/v1/audit/homecare/overlaps?district={DISTRICT}"
    listed = signed(api, world, world.admin.key, "GET", overlaps_path)
    assert listed.status_code == 200, listed.text
    ours = [o for o in listed.json()["overlaps"] if o["recipient"] == elder]
    assert [o["orderId"] for o in ours] == [double["order"]["orderId"]]
    assert ours[0]["overlapMinutes"] == 30 and ours[0]["visit"]["provider"] == "Xuanwu Home Care Co."
    assert ours[0]["visit"]["start"] == start + 1800 and ours[0]["visit"]["end"] == end
    assert signed(api, world, auditors["district"], "GET", overlaps_path).status_code == 200
    assert signed(api, world, world.other_admin.key, "GET", overlaps_path).status_code == 403
    other = signed(api, world, world.other_admin.key, "GET", f"/v1/audit/homecare/overlaps?district={OTHER_DISTRICT}")
    assert all(o["recipient"] != elder for o in other.json()["overlaps"])

    # the district admin revokes the double-paid order with one signed RevokeOrder command
    before = api.client.get(f"/v1/accounts/{elder}").json()["balanceMinutes"]
    world.admin.ok("RevokeOrder", orderId=double["order"]["orderId"], digest=order_digest(api.client, double["order"]["orderId"]), reason=3)
    wait_for(lambda: api.client.get(f"/v1/orders/{double['order']['orderId']}").json()["status"] == "revoked")
    assert api.client.get(f"/v1/accounts/{elder}").json()["balanceMinutes"] == before + 60
    after = signed(api, world, world.admin.key, "GET", overlaps_path).json()["overlaps"]
    assert all(o["recipient"] != elder for o in after)


# ----- statistics (考核) ----------------------------------------------------------------------------


def test_stats_per_station_and_district_in_json_and_csv(api, world):
    terminal = new_terminal(api, world)
    volunteers = [world.new_account(1), world.new_account(1)]
    elder = world.new_account(2, grant=1000)
    rated = [
        terminal.order(volunteers[0], elder, elder, minutes=40, details=None),
        terminal.order(volunteers[1], elder, elder, minutes=50),
        terminal.order(volunteers[0], elder, elder, minutes=30),
    ]
    for body, (by_recipient, by_volunteer) in zip(rated[:2], ((5, 4), (4, 2))):
        d = {**body["details"], "rating": {"byRecipient": by_recipient, "byVolunteer": by_volunteer}}
        body["order"]["detailsHash"] = P.to_hex(P.details_hash(d))
        body.update(terminal.signed(body["order"], d))
    assert all(terminal.post(b).status_code == 201 for b in rated)
    for b in rated:
        wait_anchored(api.client, b["order"]["orderId"])
    world.admin.ok("RevokeOrder", orderId=rated[2]["order"]["orderId"], digest=order_digest(api.client, rated[2]["order"]["orderId"]), reason=2)
    wait_for(lambda: api.client.get(f"/v1/orders/{rated[2]['order']['orderId']}").json()["status"] == "revoked")

    result = api.client.get(f"/v1/stats?station={terminal.address}")
    assert result.status_code == 200, result.text
    stations = result.json()["stations"]
    assert stations == [{
        "district": DISTRICT, "station": terminal.address, "orders": 2, "minutes": 90, "volunteers": 2,
        "recipients": 1, "revocations": 1, "revocationReasons": {"2": 1},
        "ratingByRecipient": {"count": 2, "average": 4.5}, "ratingByVolunteer": {"count": 2, "average": 3.0},
    }]
    assert result.json()["districts"] == [{k: v for k, v in stations[0].items() if k != "station"}]

    whole = api.client.get(f"/v1/stats?district={DISTRICT}").json()
    district_row = whole["districts"][0]
    assert district_row["district"] == DISTRICT and district_row["orders"] >= 2
    assert sum(s["orders"] for s in whole["stations"]) == district_row["orders"]
    assert any(s["station"] == terminal.address for s in whole["stations"])

    table = api.client.get(f"/v1/stats?station={terminal.address}&format=csv")
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(table.text)))
    assert rows[0] == STATS_COLUMNS
    assert rows[1] == ["station", str(DISTRICT), terminal.address, "2", "90", "2", "1", "1", "2:1", "2", "4.5", "2", "3.0"]
    assert rows[2][:2] == ["district", str(DISTRICT)] and len(rows) == 3

    late = api.client.get(f"/v1/stats?station={terminal.address}&from=4000000000").json()
    assert late["stations"] == [] and late["districts"] == []
    bad = api.client.get("/v1/stats?format=xml")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    assert api.client.get("/v1/stats?from=yesterday").status_code == 400


# ----- credit platform export ---------------------------------------------------------------------


def test_credit_export_streams_anchored_unrevoked_service_orders(api, world, auditors, api_anvil_url):
    terminal = new_terminal(api, world)
    volunteer, elder = world.new_account(1), world.new_account(2, grant=600)
    kept, revoked = anchored_orders(api, world, terminal, volunteer, elder, 2, minutes=25)
    link(world.admin, elder, volunteer)
    (transfer,) = anchored_orders(api, world, terminal, volunteer, elder, 1, minutes=10, service_type=100)
    world.admin.ok("RevokeOrder", orderId=revoked["order"]["orderId"], digest=order_digest(api.client, revoked["order"]["orderId"]), reason=1)
    wait_for(lambda: api.client.get(f"/v1/orders/{revoked['order']['orderId']}").json()["status"] == "revoked")

    path = "/v1/exports/credit"
    response = signed(api, world, world.city.key, "GET", path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    by_id = {line["orderId"]: line for line in lines}
    assert kept["order"]["orderId"] in by_id
    assert revoked["order"]["orderId"] not in by_id and transfer["order"]["orderId"] not in by_id
    line = by_id[kept["order"]["orderId"]]
    assert set(line) == {"format", "volunteer", "orderId", "serviceType", "startTime", "endTime", "minutes", "district", "proof"}
    assert line["format"] == CREDIT_FORMAT and line["volunteer"] == volunteer and line["minutes"] == 25
    assert line["district"] == DISTRICT and line["proof"]["order"] == kept["order"]
    assert verify_bundle(line["proof"], api_anvil_url).ok

    start = kept["order"]["startTime"]
    window = f"{path}?from={start}&to={start + 1}"
    only = signed(api, world, auditors["city"], "GET", window)
    assert only.status_code == 200
    assert kept["order"]["orderId"] in {json.loads(x)["orderId"] for x in only.text.splitlines()}
    for key in (auditors["district"], world.admin.key):
        refused = signed(api, world, key, "GET", path)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert api.client.get(path).status_code == 401
