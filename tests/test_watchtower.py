"""The watchtower (scripts/watchtower.py) and the service's follower against a relayer that cheats, on a real
Anvil with the compiled contract and a real service (its own database, uvicorn).

The honest relayer is the service's (Anvil's key 1). The cheater is another development key granted
`RELAYER_ROLE` by the city administrator; it anchors what it likes and serves its listings from a small HTTP
server, as a cheating service would. The watchtower, with its own key, gets nothing from either but the
listings; for each fault reason it must challenge, and the challenge must leave every balance as the valid
orders make it, revoke exactly the bad orders and take the cheater's role; the service's follower then shows
the chain's balances and revocations. An honest batch is not challenged; a withheld listing is reported.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from web3 import Web3

from api import protocol as P
from scripts import audit_sweep, watchtower
from scripts.chain import free_port, start_anvil, stop_anvil
from scripts.deploy import deploy
from tests.utils import chain as C
from tests.utils.api import ApiServer, settings_for, wait_anchored, wait_for
from tests.utils.api_world import DISTRICT, make_world

RELAYER_ROLE = Web3.keccak(text="RELAYER_ROLE")


class Listings:
    """The cheater's service: `GET /v1/batches/{id}` answers the listings it was given, 404 otherwise."""

    def __init__(self) -> None:
        self.by_id: dict[int, dict] = {}
        listings = self.by_id

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                try:
                    body = json.dumps(listings[int(self.path.rsplit("/", 1)[-1])]).encode()
                    self.send_response(200)
                except (KeyError, ValueError):
                    body, _ = b'{"code": "not_found"}', self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Env:
    def __init__(self, tmp: Path, artifact: dict, keys) -> None:
        self.anvil = start_anvil(free_port(), tmp / "anvil", block_time=0)
        self.w3 = Web3(Web3.HTTPProvider(self.anvil.url, request_kwargs={"timeout": 30}))
        address, _ = deploy(self.w3, artifact, keys.city_admin.key, keys.city_admin.address, keys.relayer.address)
        self.address = address
        self.service = ApiServer(settings_for(self.anvil.url, address, f"sqlite:///{tmp / 'service.sqlite3'}"))
        self.world = make_world(self.service)
        self.cheater = keys.others[3].address
        self.city = keys.city_admin.address
        self.tower_key = bytes(keys.others[4].key)
        self.bank = C.Bank(w3=self.w3, contract=self.w3.eth.contract(address=address, abi=artifact["abi"]),
                           city_key=bytes(keys.city_admin.key), relayer=self.cheater)
        self.listings = Listings()
        self.domain = P.domain(self.w3.eth.chain_id, address)
        self.state = tmp / "watch.json"
        self.volunteer, self.volunteer2, self.elder = (bytes.fromhex(a[2:]) for a in
                                                      (self.world.volunteer, self.world.volunteer2, self.world.elder))
        self.station = self.world.terminal.key

    def stop(self) -> None:
        self.listings.server.shutdown()
        self.service.stop()
        stop_anvil(self.anvil)

    def grant_cheater(self) -> None:
        if not self.bank.fns.hasRole(RELAYER_ROLE, self.cheater).call():
            tx = self.bank.fns.grantRole(RELAYER_ROLE, self.cheater).transact({"from": self.city})
            assert self.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1

    def order(self, minutes: int, volunteer: bytes | None = None, **kw) -> P.ServiceOrder:
        return C.make_order(district=DISTRICT, volunteer=volunteer or self.volunteer, payer=self.elder, minutes=minutes, **kw)

    def anchor(self, batch: C.Batch, *, listed: bool = True, signatures=None) -> int:
        """The cheater anchors `batch` and (unless withheld) serves its listing."""
        batch_id, receipt = C.anchor(self.bank, batch, sender=self.cheater)
        if listed:
            self.listings.by_id[batch_id] = self.listing(batch, batch_id, receipt, signatures or batch.signatures)
        return batch_id

    def listing(self, batch: C.Batch, batch_id: int, receipt, signatures) -> dict:
        return {
            "format": "timebank-batch/1",
            "domain": self.domain,
            "id": batch_id,
            "root": P.to_hex(batch.root),
            "count": batch.count,
            "txHash": receipt["transactionHash"].to_0x_hex(),
            "blockNumber": receipt["blockNumber"],
            "blockHash": receipt["blockHash"].to_0x_hex(),
            "relayer": self.cheater.lower(),
            "deltas": P.to_hex(batch.deltas),
            "orders": [
                {"order": o.to_json(), "signature": P.to_hex(s), "digest": P.to_hex(d), "station": st.lower(),
                 "leaf": P.to_hex(leaf), "revoked": False}
                for o, s, d, st, leaf in zip(batch.orders, signatures, batch.digests, batch.stations, batch.leaves)
            ],
            "amounts": [{"account": P.to_hex(a), "earned": e, "received": r, "spent": s}
                        for a, (e, r, s) in P.amounts((o.volunteer, o.payer, o.serviceType, o.minutes) for o in batch.orders).items()],
        }

    def watch(self, *extra: str) -> int:
        """One run of the watchtower to the chain's head, with its own key; its exit status."""
        return watchtower.main(["--rpc-url", self.anvil.url, "--contract", self.address, "--api", self.service.url,
                                "--api", self.listings.url, "--state", str(self.state), "--once", *extra])

    def balances(self) -> dict[bytes, tuple[int, int]]:
        return C.balances(self.bank, [self.volunteer, self.volunteer2, self.elder])

    def service_shows_chain(self) -> None:
        """The service's follower reaches the head and its accounts say what the chain says."""
        head = self.w3.eth.block_number
        wait_for(lambda: self.service.client.get("/v1/health").json()["followedBlock"] >= head)
        for account, (balance, earned) in self.balances().items():
            view = self.service.client.get(f"/v1/accounts/{P.to_hex(account)}").json()
            assert (view["balanceMinutes"], view["earnedMinutes"]) == (balance, earned), view


@pytest.fixture(scope="module")
def env(tmp_path_factory, artifact, keys, monkeypatch_module):
    env = Env(tmp_path_factory.mktemp("watch"), artifact, keys)
    monkeypatch_module.setenv("TIMEBANK_WATCHTOWER_KEY", "0x" + env.tower_key.hex())
    assert env.watch("--from-block", "0") == 0  # the world's own history: nothing to find
    yield env
    env.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture
def cheat(env):
    env.grant_cheater()
    return env


def honest_after(before: dict, orders) -> dict:
    out = dict(before)
    for account, (e, r, s) in C.account_deltas(orders).items():
        if account in out:
            balance, earned = out[account]
            out[account] = (balance + e + r - s, earned + e)
    return out


def findings(env) -> list[dict]:
    return json.loads(env.state.read_text())["findings"]


def assert_challenged(env, before, valid, revoked_ids, kept_ids):
    assert env.balances() == honest_after(before, valid)
    assert not env.bank.fns.hasRole(RELAYER_ROLE, env.cheater).call()
    for order_id in revoked_ids:
        assert env.bank.fns.isRevoked(order_id).call()
    for order_id in kept_ids:
        assert not env.bank.fns.isRevoked(order_id).call()
    assert findings(env)[-1]["kind"] == "challenged"
    env.service_shows_chain()


def test_honest_batches_are_not_challenged(cheat):
    env = cheat
    orders = [env.order(30), env.order(45, volunteer=env.volunteer2)]
    env.anchor(C.build_batch(env.bank, orders, env.station))
    # and one of the real service's own
    body = env.world.terminal.order(env.world.volunteer, env.world.elder, env.world.elder, minutes=20)
    assert env.world.terminal.post(body).status_code == 201
    view = wait_anchored(env.service.client, body["order"]["orderId"])
    listing = env.service.client.get(f"/v1/batches/{view['batchId']}").json()
    tx = env.w3.eth.get_transaction(listing["txHash"])
    assert listing["relayer"] == tx["from"].lower() == env.service.service.sender.address
    assert listing["deltas"] == P.to_hex(env.bank.contract.decode_function_input(tx["input"])[1]["deltas"])
    assert all("details" not in item for item in listing["orders"])
    before = env.balances()
    assert env.watch() == 0
    assert env.balances() == before and env.bank.fns.hasRole(RELAYER_ROLE, env.cheater).call()
    assert env.watch() == 0  # a restart: the state file's position, nothing seen twice


def test_forged_signature_challenged(cheat):
    env = cheat
    before = env.balances()
    good, forged = env.order(30), env.order(600, volunteer=env.volunteer2)
    batch = C.build_batch(env.bank, [good, forged], env.station)
    signatures = [batch.signatures[0], P.sign(batch.digests[1], C.new_key())]  # not the station's key
    env.anchor(batch, signatures=signatures)
    assert env.watch() == watchtower.EXIT_FAULT
    assert_challenged(env, before, [good], [forged.orderId], [good.orderId])


def test_removed_station_challenged(cheat):
    env = cheat
    removed = C.new_key()
    env.world.admin.ok("RegisterStation", station=C.address(removed).lower(), district=DISTRICT)
    env.world.admin.ok("RemoveStation", station=C.address(removed).lower())
    before = env.balances()
    good, bad = env.order(30), env.order(500, volunteer=env.volunteer2)
    env.anchor(C.build_batch(env.bank, [good, bad], [env.station, removed]))
    assert env.watch() == watchtower.EXIT_FAULT
    assert_challenged(env, before, [good], [bad.orderId], [good.orderId])


def test_amounts_that_differ_challenged(cheat):
    env = cheat
    before = env.balances()
    orders = [env.order(30), env.order(40, volunteer=env.volunteer2)]
    inflated = C.pack_deltas(env.bank, {env.volunteer: (3000, 0, 0), env.volunteer2: (40, 0, 0), env.elder: (0, 0, 70)})
    env.anchor(C.build_batch(env.bank, orders, env.station, deltas=inflated))
    assert env.watch() == watchtower.EXIT_FAULT
    assert_challenged(env, before, orders, [], [o.orderId for o in orders])


def test_same_order_in_two_batches_challenged(cheat):
    env = cheat
    before = env.balances()
    twice, other = env.order(50), env.order(10, volunteer=env.volunteer2)
    env.anchor(C.build_batch(env.bank, [twice, other], env.station))
    assert env.watch() == 0
    env.anchor(C.build_batch(env.bank, [twice], env.station))
    assert env.watch() == watchtower.EXIT_FAULT
    # every copy reversed, the order id revoked; the other order stands
    assert env.balances() == honest_after(before, [other])
    assert env.bank.fns.isRevoked(twice.orderId).call()
    assert not env.bank.fns.hasRole(RELAYER_ROLE, env.cheater).call()
    env.service_shows_chain()


def test_same_order_twice_in_one_batch_challenged(cheat):
    env = cheat
    before = env.balances()
    twice = env.order(70)
    env.anchor(C.build_batch(env.bank, [twice, twice], env.station))
    assert env.watch() == watchtower.EXIT_FAULT
    assert env.balances() == before
    assert env.bank.fns.isRevoked(twice.orderId).call()
    assert not env.bank.fns.hasRole(RELAYER_ROLE, env.cheater).call()
    env.service_shows_chain()


def test_withheld_listing_only_reported(cheat):
    env = cheat
    before = env.balances()
    unlisted = env.order(25)
    batch_id = env.anchor(C.build_batch(env.bank, [unlisted], env.station), listed=False)
    assert env.watch() == 0  # still within the time a listing may take
    assert str(batch_id) in json.loads(env.state.read_text())["waiting"]
    assert env.watch("--listing-timeout", "0") == watchtower.EXIT_WITHHELD
    assert findings(env)[-1]["kind"] == "withheld" and "WITHHELD" in findings(env)[-1]["message"]
    assert env.balances() == honest_after(before, [unlisted])  # nobody could challenge it


def test_follower_goes_on_past_junk_and_the_role_lost(cheat):
    """A foreign relayer anchoring junk (no deltas, an unknown index) stops nothing; the service's relayer
    losing its role stops anchoring (health says why) until the role is granted again."""
    env = cheat
    client = env.service.client
    C.relay(env.bank, env.bank.fns.anchorBatch(secrets.token_bytes(32), 1, b""), env.cheater)
    # a root of no orders moving minutes (the chain accepts canonical deltas whatever the root)
    C.relay(env.bank, env.bank.fns.anchorBatch(secrets.token_bytes(32), 7, C.pack_deltas(env.bank, {env.volunteer2: (5, 0, 0)})), env.cheater)
    body = env.world.terminal.order(env.world.volunteer, env.world.elder, env.world.elder, minutes=15)
    assert env.world.terminal.post(body).status_code == 201
    assert wait_anchored(client, body["order"]["orderId"])["status"] == "anchored"
    env.service_shows_chain()
    # a restart still starts, past the junk
    settings = env.service.settings.model_copy(update={"port": free_port()})
    env.service.stop()
    env.service = ApiServer(settings)
    client = env.service.client
    env.world.terminal.client = env.world.admin.client = client
    env.service_shows_chain()
    relayer = env.service.service.sender.address
    tx = env.bank.fns.revokeRole(RELAYER_ROLE, Web3.to_checksum_address(relayer)).transact({"from": env.city})
    env.w3.eth.wait_for_transaction_receipt(tx)
    health = wait_for(lambda: (h := client.get("/v1/health").json()) and not h["anchoring"] and h)
    assert "RELAYER_ROLE" in health["anchoringStopped"]
    body = env.world.terminal.order(env.world.volunteer, env.world.elder, env.world.elder, minutes=16)
    assert client.post("/v1/orders", json=body).status_code == 201
    time.sleep(1.5)
    assert client.get(f"/v1/orders/{body['order']['orderId']}").json()["status"] == "accepted"
    tx = env.bank.fns.grantRole(RELAYER_ROLE, Web3.to_checksum_address(relayer)).transact({"from": env.city})
    env.w3.eth.wait_for_transaction_receipt(tx)
    assert wait_anchored(client, body["order"]["orderId"])["status"] == "anchored"
    assert client.get("/v1/health").json()["anchoring"] is True
    assert client.get("/v1/health").json()["followerProblems"] == 0  # all of it was the contract's own


def test_audit_sweep_names_the_chain_batches_the_service_does_not_know(env, capsys):
    """The cheater's batches are on the chain and not in the service's database: the sweep does not say
    every row matches; without their listings it cannot check them (3), with them the faulty ones fail (1)."""
    base = ["--database-url", env.service.settings.database_url, "--rpc-url", env.anvil.url, "--contract", env.address,
            "--no-progress"]
    challenged = sorted({f["batchId"] for f in findings(env) if f["kind"] == "challenged" and "challengeBatch" in f["message"]})
    assert len(challenged) == 3
    assert audit_sweep.main(base) == audit_sweep.EXIT_DIFFERS  # the challenged ones, proven faulty on chain
    out = capsys.readouterr().out
    assert "every row matches" not in out and "batches this database does not" in out and "not checked" in out
    for batch_id in challenged:
        assert f"chain batch {batch_id}: challenged" in out
    assert audit_sweep.main([*base, "--api", env.listings.url]) == audit_sweep.EXIT_DIFFERS
    out = capsys.readouterr().out
    assert "chain batch 3: orders[1]" in out  # the forged signature (batch 3) fails its check
