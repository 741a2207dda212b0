"""Fault suite: the chain losing blocks or going away under load, and bad input at every door.

1. The chain restarted from an OLDER state (its node's state file put back): the blocks of a batch are
   gone. The service must notice it (follower), rebuild its mirror and anchor the lost batch's orders
   again, with the relayer's nonces rolled back with the chain; afterwards every order is anchored exactly
   once on the chain as it now is, the balances on chain are those the orders justify and every proof
   served verifies with `scripts.verify_proof.verify_bundle`.
2. The chain node stopped for a while under a steady load of orders, then started again with its state:
   every order is accepted throughout (201) and anchored after. `-m long` runs it with a 30 s outage;
   the quick variant (3 s) runs in CI.
3. Bad input, each refused with its code and never a 500 (what tests/test_api_orders.py and
   test_api_commands.py already cover is not repeated here): bodies over the size limit on every endpoint
   that takes one, malformed path parameters on every endpoint that has one, orders signed under another
   domain, high-s signatures on bulk items, on every command type and on signed requests, integers at
   their limits, and details that RFC 8785 canonicalisation must take or refuse without crashing.

Sections 1 and 2 run the service as a subprocess (tests/utils/process.py) on an Anvil of their own whose
state directory the test controls; section 3 uses the session's in-process service (`api`, `world`).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from eth_account import Account
from web3 import Web3

from api import protocol as P
from api.auth import host_of, sign_headers
from scripts.chain import DEV_KEYS, free_port, snapshot_dir, snapshots, start_anvil, stop_anvil
from scripts.compile import load_artifact
from scripts.deploy import deploy
from scripts.verify_proof import verify_bundle
from tests.utils.api import CITY_KEY, Terminal, card
from tests.utils.api_world import DISTRICT, make_world
from tests.utils.process import ServiceProcess

CITY = Account.from_key(DEV_KEYS[0])
RELAYER = Account.from_key(DEV_KEYS[1])
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
DAY = 24 * 3600
U64 = 2**64 - 1
U32 = 2**32 - 1


# =====================================================================================================
# helpers: a chain of the test's own, exactly-once checks
# =====================================================================================================


class OwnChain(SimpleNamespace):
    """An Anvil the test stops and starts (`handle`, `url`, `w3`, `contract`, `state_dir`)."""

    def batch_count(self) -> int:
        return self.contract.functions.batchCount().call()

    def balance(self, account: str) -> int:
        return self.contract.functions.getAccount(bytes.fromhex(account[2:])).call()[3]

    def batch_id_of_root(self, root: str) -> int:
        return self.contract.functions.batchIdOfRoot(bytes.fromhex(root[2:])).call()

    def stop(self) -> None:
        stop_anvil(self.handle)  # a last snapshot, then SIGTERM

    def keep_state(self, path: Path) -> Path:
        """Stops the chain (a last snapshot), copies that snapshot to `path` and starts it again."""
        self.stop()
        shutil.copyfile(snapshots(self.state_dir)[0], path)
        self.start()
        return path

    def put_back_state(self, path: Path) -> None:
        """Stops the chain and starts it again from the snapshot at `path` alone (its later blocks lost)."""
        self.stop()
        for old in snapshots(self.state_dir):
            old.unlink()
        shutil.copyfile(path, snapshot_dir(self.state_dir) / "state-00000001.json")
        self.start()

    def start(self) -> None:
        self.handle = start_anvil(self.handle.port, self.state_dir, block_time=0)


def own_chain(state_dir: Path) -> OwnChain:
    handle = start_anvil(free_port(), state_dir, block_time=0)
    w3 = Web3(Web3.HTTPProvider(handle.url, request_kwargs={"timeout": 30}))
    artifact = load_artifact("TimeBank")
    address, _receipt = deploy(w3, artifact, CITY.key, CITY.address, RELAYER.address)
    return OwnChain(handle=handle, url=handle.url, w3=w3, contract=w3.eth.contract(address=address, abi=artifact["abi"]),
                    state_dir=Path(state_dir))


@pytest.fixture
def chain_and_service(tmp_path):
    """An Anvil of the test's own (state in tmp_path/anvil) and a service process on it; both stopped after."""
    chain = own_chain(tmp_path / "anvil")
    made: list[ServiceProcess] = []

    def service(name: str = "service", **env) -> ServiceProcess:
        proc = ServiceProcess(chain.url, chain.contract.address, tmp_path / name, name, **env)
        made.append(proc)
        return proc

    try:
        yield chain, service
    finally:
        for proc in made:
            proc.close()
        stop_anvil(chain.handle)


def post_bulk(proc: ServiceProcess, bodies: list[dict]) -> list[str]:
    response = proc.client.post("/v1/orders/bulk", json={"items": bodies})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["httpStatus"] for r in results] == [201] * len(bodies), results
    return [r["orderId"] for r in results]


def wait_until(predicate, timeout: float, what: str, proc: ServiceProcess | None = None, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n{proc.log_tail(60)}" if proc is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(interval)


def anchored_on_chain(chain: OwnChain, proc: ServiceProcess, order_ids: list[str]) -> dict[str, dict] | None:
    """The orders' views when every one is anchored in a batch the chain holds now (its root at its id), and
    the service's mirror follows the chain's head; else None."""
    health = proc.health()
    if health.get("latestBlock") is None or health["followedBlock"] < health["latestBlock"]:
        return None
    views = {}
    for order_id in order_ids:
        view = proc.order(order_id).json()
        if view.get("status") != "anchored" or view.get("batchId") is None:
            return None
        views[order_id] = view
    for batch_id in {v["batchId"] for v in views.values()}:
        response = proc.client.get(f"/v1/orders/{next(o for o, v in views.items() if v['batchId'] == batch_id)}/proof")
        if response.status_code != 200:  # anchored again meanwhile (a chain reset between the two reads)
            return None
        proof = response.json()
        if chain.contract.functions.getBatch(batch_id).call()[0] != bytes.fromhex(proof["batch"]["root"][2:]):
            return None
    return views


def assert_exactly_once(chain: OwnChain, proc: ServiceProcess, views: dict[str, dict], batches_before: int,
                        opening: dict[str, int], verify: int | None = None) -> None:
    """Every order of `views` is anchored once, in a batch the chain holds, and they are all the chain
    anchored since `batches_before`; balances on chain are `opening` moved by the orders; proofs verify."""
    assert {v["status"] for v in views.values()} == {"anchored"}, Counter(v["status"] for v in views.values())
    per_batch = Counter(v["batchId"] for v in views.values())
    assert set(per_batch) == set(range(batches_before + 1, chain.batch_count() + 1)), (
        f"the orders sit in batches {sorted(per_batch)}; the chain anchored {batches_before + 1}..{chain.batch_count()}"
    )
    bundles = {o: proc.client.get(f"/v1/orders/{o}/proof").json() for o in views}
    roots = {}
    for order_id, b in bundles.items():
        roots.setdefault(b["batch"]["id"], set()).add(b["batch"]["root"])
    for batch_id, count in per_batch.items():
        assert len(roots[batch_id]) == 1, f"batch {batch_id} served with roots {roots[batch_id]}"
        (root,) = roots[batch_id]
        on_chain_root, on_chain_count, _block = chain.contract.functions.getBatch(batch_id).call()
        assert P.to_hex(on_chain_root) == root, f"batch {batch_id}: chain root {P.to_hex(on_chain_root)}, served {root}"
        assert on_chain_count == count, f"batch {batch_id}: {on_chain_count} leaves on chain, {count} orders in it"
        assert chain.batch_id_of_root(root) == batch_id
    expected = dict(opening)
    for v in views.values():
        o = v["order"]
        expected[o["volunteer"]] = expected.get(o["volunteer"], 0) + o["minutes"]
        expected[o["payer"]] = expected.get(o["payer"], 0) - o["minutes"]
    assert {a: chain.balance(a) for a in expected} == expected
    ids = list(views)
    if verify is not None and verify < len(ids):
        ids = random.sample(ids, verify)
    for order_id in ids:
        result = verify_bundle(bundles[order_id], chain.url)
        assert result.ok, (order_id, [c for c in result.checks if not c.ok])
    # the service's own view of the accounts is the chain's, with nothing left promised
    for account, balance in expected.items():
        view = proc.client.get(f"/v1/accounts/{account}").json()
        assert (view["balanceMinutes"], view["pendingDebitMinutes"]) == (balance, 0), (account, view)
    assert proc.health()["ordersWaiting"] == 0


# =====================================================================================================
# 1. the chain comes back from an older state: a batch's blocks are lost
# =====================================================================================================


@pytest.mark.parametrize("service_running", [True, False], ids=["service-running", "service-restarted-after"])
def test_chain_restarted_from_an_older_state_anchors_the_lost_batch_again(tmp_path, chain_and_service, service_running):
    """The service runs through the chain's return to the older state, or is itself stopped meanwhile and
    started on the older chain (it then finds its cursor ahead of the chain's head at start)."""
    chain, service = chain_and_service
    proc = service("rollback", TIMEBANK_BATCH_MAX_ORDERS=8).start()
    w = make_world(SimpleNamespace(client=proc.client))
    volunteers = [w.new_account(1) for _ in range(3)]
    elder = w.new_account(2, grant=5000)
    opening = {elder: 5000, **{v: 0 for v in volunteers}}
    terminal = w.terminal
    batches_before = chain.batch_count()

    # batch A, on the state that will be kept
    batch_a = post_bulk(proc, [terminal.order(volunteers[i % 3], elder, elder, minutes=10 + i) for i in range(5)])
    views_a = wait_until(lambda: anchored_on_chain(chain, proc, batch_a), 30, "batch A anchored", proc)
    older = chain.keep_state(tmp_path / "older-state.json")
    assert chain.batch_count() == batches_before + len({v["batchId"] for v in views_a.values()})
    batches_after_a = chain.batch_count()
    head_a = chain.w3.eth.block_number

    # batch B, on blocks that will be lost
    batch_b = post_bulk(proc, [terminal.order(volunteers[i % 3], elder, elder, minutes=20 + i) for i in range(6)])
    views_b = wait_until(lambda: anchored_on_chain(chain, proc, batch_b), 30, "batch B anchored", proc)
    assert all(v["blockNumber"] > head_a for v in views_b.values())
    roots_b = {proc.client.get(f"/v1/orders/{o}/proof").json()["batch"]["root"] for o in batch_b}
    assert chain.batch_count() > batches_after_a
    head_b = chain.w3.eth.block_number
    assert head_b > head_a
    relayer_nonce_b = chain.w3.eth.get_transaction_count(RELAYER.address)

    # the node comes back from the older state file: B's blocks (and the relayer's nonces) are gone
    if service_running:  # paused (SIGSTOP) while the test looks at the older chain, before the service can act
        os.kill(proc.pid, signal.SIGSTOP)
    else:
        proc.stop()
    try:
        chain.put_back_state(older)
        assert chain.w3.eth.block_number == head_a
        assert chain.batch_count() == batches_after_a
        assert chain.w3.eth.get_transaction_count(RELAYER.address) < relayer_nonce_b
        for root in roots_b:
            assert chain.batch_id_of_root(root) == 0
    finally:
        if service_running:
            os.kill(proc.pid, signal.SIGCONT)
    if not service_running:
        proc.start()

    # the service notices, rebuilds its mirror and anchors B's orders again, once
    views = wait_until(lambda: anchored_on_chain(chain, proc, batch_a + batch_b), 60, "batch B anchored again", proc)
    assert "chain reset detected" in proc.log_tail(400), proc.log_tail(60)
    for order_id in batch_b:  # on the chain as it is now, not the lost blocks
        assert views[order_id]["blockNumber"] > head_a
    assert_exactly_once(chain, proc, views, batches_before, opening)

    # the mirror is whole again: new orders are accepted, and anchored with the right nonces
    batch_c = post_bulk(proc, [terminal.order(volunteers[i % 3], elder, elder, minutes=5) for i in range(3)])
    views = wait_until(lambda: anchored_on_chain(chain, proc, batch_a + batch_b + batch_c), 30, "batch C anchored", proc)
    assert_exactly_once(chain, proc, views, batches_before, opening)
    # the proofs of the kept batch A still verify (their blocks were never lost)
    for order_id in batch_a:
        assert views[order_id]["batchId"] == views_a[order_id]["batchId"]
        assert views[order_id]["txHash"] == views_a[order_id]["txHash"]


def test_a_lost_batch_transaction_back_in_the_pool_is_kept_not_made_anew(tmp_path, chain_and_service):
    """A reorganisation on a network puts the transactions of the blocks it dropped back into the nodes'
    pools. Here: the chain comes back from an older state and batch B's transaction is sent to it again
    (as a node that reorganised would hold it), mining paused, while two more orders wait to be batched.
    The service keeps batch B in flight on that transaction, which holds its nonce, instead of making B
    anew with the two others (another root, and B's orders anchored twice once the old transaction is
    mined too). Every order is anchored exactly once."""
    chain, service = chain_and_service
    proc = service("pooled", TIMEBANK_BATCH_MAX_ORDERS=8, TIMEBANK_BATCH_MAX_WAIT_SECONDS=1.5).start()
    w = make_world(SimpleNamespace(client=proc.client))
    volunteers = [w.new_account(1) for _ in range(3)]
    elder = w.new_account(2, grant=5000)
    opening = {elder: 5000, **{v: 0 for v in volunteers}}
    terminal = w.terminal
    batches_before = chain.batch_count()
    wait_until(lambda: proc.health()["followedBlock"] >= chain.w3.eth.block_number, 20, "mirror followed", proc)

    older = chain.keep_state(tmp_path / "older-state.json")
    head = chain.w3.eth.block_number
    nonce = chain.w3.eth.get_transaction_count(RELAYER.address)
    batch_b = post_bulk(proc, [terminal.order(volunteers[i % 3], elder, elder, minutes=10 + i) for i in range(6)])
    views_b = wait_until(lambda: anchored_on_chain(chain, proc, batch_b), 30, "batch B anchored", proc)
    (tx_hash,) = {v["txHash"] for v in views_b.values()}
    transaction = chain.w3.eth.get_transaction(tx_hash)
    assert transaction["nonce"] == nonce and transaction["blockNumber"] > head
    raw = chain.w3.eth.get_raw_transaction(tx_hash)
    queued = post_bulk(proc, [terminal.order(volunteers[i % 3], elder, elder, minutes=30 + i) for i in range(2)])

    os.kill(proc.pid, signal.SIGSTOP)  # before the two are batched (1.5 s)
    try:
        chain.put_back_state(older)
        assert chain.w3.eth.block_number == head
        chain.w3.provider.make_request("evm_setAutomine", [False])
        assert chain.w3.eth.send_raw_transaction(raw).hex().removeprefix("0x") == tx_hash.removeprefix("0x")
        assert chain.w3.eth.get_transaction(tx_hash)["blockNumber"] is None  # pending
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    wait_until(lambda: "chain reset detected" in proc.log_tail(400), 30, "the reset noticed", proc)
    wait_until(lambda: not proc.health().get("mirrorRebuilding"), 30, "the mirror rebuilt", proc)
    time.sleep(3)  # the two queued orders batched meanwhile (alone, or with B's orders if B were made anew)
    chain.w3.provider.make_request("evm_setAutomine", [True])
    chain.w3.provider.make_request("anvil_mine", [hex(3)])

    views = wait_until(lambda: anchored_on_chain(chain, proc, batch_b + queued), 60, "every order anchored", proc)
    for order_id in batch_b:  # by the transaction that was back in the pool
        assert views[order_id]["txHash"] == tx_hash, views[order_id]
    chain.w3.provider.make_request("anvil_mine", [hex(3)])
    views = wait_until(lambda: anchored_on_chain(chain, proc, batch_b + queued), 30, "the mirror at the head", proc)
    assert_exactly_once(chain, proc, views, batches_before, opening)


@pytest.mark.parametrize("nonce_taken", [False, True], ids=["command-sent-again", "command-lost"])
def test_a_command_lost_with_the_blocks_is_sent_again_or_shown_lost(tmp_path, chain_and_service, nonce_taken):
    """The lost blocks also held the registration of an account that orders of the lost batch credit. The
    service sends the registration again (the administrator's signature and nonce still hold) before it
    anchors the batch again, so every order is anchored. Unless the chain now refuses it (here: the
    administrator's nonce was used meanwhile by another command): then the command is `lost` with the
    reason (its status, /v1/health), and the orders that need the account end `rejected` (a final state,
    with a reason) while the rest of the batch is anchored once, not queued forever."""
    chain, service = chain_and_service
    proc = service("rollback-accounts", TIMEBANK_BATCH_MAX_ORDERS=8).start()
    w = make_world(SimpleNamespace(client=proc.client))
    kept_volunteer = w.new_account(1)
    elder = w.new_account(2, grant=3000)
    batches_before = chain.batch_count()
    wait_until(lambda: proc.health()["followedBlock"] >= chain.w3.eth.block_number, 20, "mirror followed", proc)

    older = chain.keep_state(tmp_path / "older-state.json")
    head = chain.w3.eth.block_number
    _number, lost_volunteer = card("NJ-320102")
    registration = w.admin.ok("RegisterAccount", account=lost_volunteer, district=DISTRICT, kind=1)  # on lost blocks
    nonce = w.admin.nonce
    kept = post_bulk(proc, [w.terminal.order(kept_volunteer, elder, elder, minutes=30) for _ in range(2)])
    lost = post_bulk(proc, [w.terminal.order(lost_volunteer, elder, elder, minutes=40) for _ in range(2)])
    wait_until(lambda: anchored_on_chain(chain, proc, kept + lost), 30, "the batch anchored", proc)

    os.kill(proc.pid, signal.SIGSTOP)  # the service waits while the test looks at the older chain
    try:
        chain.put_back_state(older)
        assert chain.w3.eth.block_number == head
        assert chain.contract.functions.getAccount(bytes.fromhex(lost_volunteer[2:])).call()[2] == 0  # unknown
        if nonce_taken:  # the administrator's nonce used on this chain by another command, sent by someone else
            other = card("NJ-320102")[1]
            message = {"account": other, "district": DISTRICT, "kind": 1, "nonce": nonce}
            struct = (bytes.fromhex(other[2:]), DISTRICT, 1, nonce)
            tx = chain.contract.functions.registerAccount(struct, bytes.fromhex(w.admin.sign("RegisterAccount", message)[2:]))
            assert chain.w3.eth.wait_for_transaction_receipt(tx.transact({"from": CITY.address}))["status"] == 1
    finally:
        os.kill(proc.pid, signal.SIGCONT)

    wait_until(lambda: "chain reset detected" in proc.log_tail(400), 30, "the reset noticed", proc)
    command = f"/v1/admin/commands/{registration['txHash']}"
    if not nonce_taken:
        views = wait_until(lambda: anchored_on_chain(chain, proc, kept + lost), 60, "every order anchored again", proc)
        view = proc.client.get(command).json()
        assert (view["status"], view["resends"], view["acknowledged"]) == ("mined", 1, True), view
        # (the same transaction, when the relayer's nonce and the fees came back as they were: signing is deterministic)
        assert chain.w3.eth.get_transaction_receipt(view["currentTxHash"])["status"] == 1
        assert_exactly_once(chain, proc, views, batches_before, {elder: 3000, kept_volunteer: 0, lost_volunteer: 0})
        assert proc.health()["commandsLost"] == 0
        return
    views = wait_until(lambda: anchored_on_chain(chain, proc, kept), 60, "the kept orders anchored again", proc)
    final = proc.wait_final(lost, timeout=30, final=("rejected",))
    for order_id in lost:
        assert "account_not_active" in final[order_id]["reason"], final[order_id]
        assert proc.client.get(f"/v1/orders/{order_id}/proof").status_code == 409
    assert_exactly_once(chain, proc, views, batches_before, {elder: 3000, kept_volunteer: 0})
    assert proc.client.get(f"/v1/accounts/{lost_volunteer}").status_code == 404  # the chain forgot it
    view = proc.client.get(command).json()
    assert view["status"] == "lost" and "TimeBankNonceUsed" in view["reason"], view
    health = proc.health()
    assert health["commandsLost"] == 1 and health["lostCommands"][0]["txHash"] == registration["txHash"], health


# =====================================================================================================
# 2. the chain node stops under load, and comes back with its state
# =====================================================================================================


def _outage_under_load(chain: OwnChain, service, outage: float) -> None:
    proc = service("outage", TIMEBANK_BATCH_MAX_ORDERS=32).start()
    w = make_world(SimpleNamespace(client=proc.client))
    volunteers = [w.new_account(1) for _ in range(4)]
    elder = w.new_account(2, grant=1_000_000)
    opening = {elder: 1_000_000, **{v: 0 for v in volunteers}}
    batches_before = chain.batch_count()
    terminal = w.terminal

    answers: list[tuple[float, int, str, str]] = []  # (when, status, orderId, text)
    failures: list[str] = []
    stop = threading.Event()

    def poster() -> None:
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                body = terminal.order(volunteers[i % len(volunteers)], elder, elder, minutes=5)
                i += 1
                try:
                    response = client.post("/v1/orders", json=body)
                except httpx.TransportError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                answers.append((time.monotonic(), response.status_code, body["order"]["orderId"], response.text[:200]))
                time.sleep(0.02)

    thread = threading.Thread(target=poster, daemon=True)
    thread.start()
    try:
        time.sleep(1.5)
        down_at = time.monotonic()
        chain.stop()
        wait_until(lambda: proc.health()["chainOk"] is False, 10, "health to see the chain down", proc)
        time.sleep(max(0.0, outage - (time.monotonic() - down_at)))
        up_at = time.monotonic()
        chain.start()
        time.sleep(1.5)
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    assert not failures, failures[:3]
    refused = [(s, t) for _, s, _, t in answers if s != 201]
    assert not refused, refused[:3]
    during = [o for at, _, o, _ in answers if down_at < at < up_at]
    assert len(during) >= outage * 5, f"only {len(during)} orders answered during the {outage}s outage"
    accepted = [o for _, _, o, _ in answers]
    print(f"outage {outage}s: {len(accepted)} orders accepted, {len(during)} while the chain was down")

    views = wait_until(lambda: anchored_on_chain(chain, proc, accepted), 60 + outage, "every order anchored", proc, interval=0.3)
    assert_exactly_once(chain, proc, views, batches_before, opening, verify=15)


def test_chain_stopped_briefly_under_load(chain_and_service):
    chain, service = chain_and_service
    _outage_under_load(chain, service, outage=3)


@pytest.mark.long
def test_chain_stopped_30s_under_load(chain_and_service):
    chain, service = chain_and_service
    _outage_under_load(chain, service, outage=30)


# =====================================================================================================
# 3. bad input (the session's in-process service)
# =====================================================================================================


def error_of(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:300]}"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "messageEn", "messageZh"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def _separator(world) -> bytes:
    return P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"])


def signed_request(api, world, method: str, path: str, raw: bytes = b"", key: bytes = CITY_KEY, **kw) -> httpx.Response:
    """A request signed by `key`. The service checks the signature over Starlette's `request.url.path`:
    the path percent-decoded, and then with tabs and line breaks dropped (urllib's urlsplit drops them), and
    the query string as sent; so that is what is signed here."""
    from urllib.parse import unquote

    signed_path, _, query = path.partition("?")
    signed_path = unquote(signed_path).replace("\t", "").replace("\r", "").replace("\n", "")
    signed_path += f"?{query}" if query else ""
    headers = {"content-type": "application/json", **sign_headers(key, _separator(world), method, signed_path, raw, host=host_of(api.client.base_url))}
    headers.update(kw.pop("headers", {}))
    return api.client.request(method, path, content=raw, headers=headers, **kw)


def raw_post(api, path: str, raw: bytes | str, method: str = "POST", content_type: str = "application/json") -> httpx.Response:
    data = raw.encode() if isinstance(raw, str) else raw
    return api.client.request(method, path, content=data, headers={"content-type": content_type})


def once(api, method: str, path: str, **kw) -> httpx.Response:
    """A request on a connection of its own: after an unhandled error the server drops the connection,
    which must not fail the next test that reuses the shared client's."""
    with httpx.Client(base_url=api.url, timeout=60) as client:
        return client.request(method, path, **kw)


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (N - s).to_bytes(32, "big") + bytes([55 - signature[64]])


@pytest.fixture(scope="module")
def station(api, world) -> Terminal:
    """This module's own station in DISTRICT."""
    terminal = Terminal(secrets.token_bytes(32), api.client, world.domain, DISTRICT)
    world.admin.ok("RegisterStation", station=terminal.address, district=DISTRICT)
    return terminal


@pytest.fixture(scope="module")
def parties(world) -> tuple[str, str, str]:
    """A volunteer and an elderly person who pays; for refusals decided before anything is stored."""
    elder = world.new_account(2, grant=1000)
    return world.new_account(1), elder, elder


def not_stored(api, order_id: str) -> None:
    error_of(api.client.get(f"/v1/orders/{order_id}"), 404, "not_found")


# ----- bodies over the size limit -------------------------------------------------------------------

# every endpoint that takes a body, with the path a real request would use
BODY_ENDPOINTS = [
    ("POST", "/v1/orders"),
    ("POST", "/v1/orders/bulk"),
    ("POST", "/v1/admin/commands"),
    ("POST", "/v1/people"),
    ("PATCH", "/v1/people/NJ-320102-000000001"),
    ("PUT", "/v1/accounts/0x" + "11" * 32 + "/profile"),
    ("POST", "/v1/groups/0x" + "22" * 32 + "/members"),
    ("POST", "/v1/audit/homecare"),
    ("POST", "/v1/certificates/verify"),
]


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("method,path", BODY_ENDPOINTS, ids=[f"{m} {p}" for m, p in BODY_ENDPOINTS])
def test_body_over_the_limit_is_refused_on_every_endpoint(api, world, method, path, signed):
    """One byte over the limit: 413 body_too_large, before any parsing or authentication (a correctly
    signed request included: the size is refused, not the signature)."""
    limit = api.settings.max_body_bytes
    raw = b'{"notes": "' + b"x" * (limit - 12) + b'"}'
    assert len(raw) == limit + 1
    if signed:
        response = signed_request(api, world, method, path, raw)
    else:
        response = raw_post(api, path, raw, method)
    error_of(response, 413, "body_too_large")


@pytest.mark.parametrize("method,path", [e for e in BODY_ENDPOINTS if e[1] in ("/v1/orders", "/v1/orders/bulk", "/v1/admin/commands", "/v1/certificates/verify")])
def test_body_at_the_limit_is_parsed(api, method, path):
    """Exactly the limit is not too large: the body is parsed (and refused for what it says)."""
    limit = api.settings.max_body_bytes
    raw = b"{}" + b" " * (limit - 2)
    response = raw_post(api, path, raw, method)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["code"] in ("invalid_request", "malformed_certificate")


def test_chunked_body_over_the_limit_is_refused(api):
    """No Content-Length (chunked transfer): the limit holds all the same."""
    limit = api.settings.max_body_bytes

    def chunks():
        yield b'{"items": ['
        sent = 11
        while sent <= limit:
            piece = b'"' + b"y" * 65_000 + b'",'
            sent += len(piece)
            yield piece
        yield b"0]}"

    response = api.client.post("/v1/orders/bulk", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    error_of(response, 413, "body_too_large")


# ----- malformed path parameters ---------------------------------------------------------------------

BAD_IDS = {
    "0x1234": "wrong_length",
    "0x": "wrong_length",
    "0x" + "11" * 33: "wrong_length",
    "0x" + "1" * 63: "malformed_hex",
    "zz": "malformed_hex",
    "11" * 32: "malformed_hex",  # no 0x
    "0x" + "g" * 64: "malformed_hex",
    "0x" + "\u0661" * 64: "malformed_hex",  # Arabic-Indic digit one: a digit, not a hex digit
    "0x" + "\uff11" * 64: "malformed_hex",  # full-width 1
    " 0x" + "11" * 32: "malformed_hex",
    "0x" + "11" * 31 + " 1": "malformed_hex",
    "0x" + "11" * 31 + "\n1": "malformed_hex",
    "0x-" + "1" * 63: "malformed_hex",
}

# endpoints with a bytes32 path parameter; `{}` is where it goes; whether the request must be signed
ID_ENDPOINTS = [
    ("GET", "/v1/orders/{}", False),
    ("GET", "/v1/orders/{}/proof", False),
    ("GET", "/v1/accounts/{}", False),
    ("GET", "/v1/accounts/{}/history", False),
    ("GET", "/v1/accounts/{}/certificate", False),
    ("GET", "/v1/accounts/{}/certificate.pdf", False),
    ("PUT", "/v1/accounts/{}/profile", True),
    ("GET", "/v1/groups/{}/members", True),
    ("POST", "/v1/groups/{}/members", True),
    ("DELETE", "/v1/groups/{}/members/0x" + "33" * 32, True),
    ("DELETE", "/v1/groups/0x" + "33" * 32 + "/members/{}", True),
]


@pytest.mark.parametrize("method,template,signed", ID_ENDPOINTS, ids=[f"{m} {t}" for m, t, _ in ID_ENDPOINTS])
def test_malformed_ids_in_paths(api, world, method, template, signed):
    for bad, code in BAD_IDS.items():
        path = template.replace("{}", _quote(bad))
        raw = b'{"location": null, "qualified": false}' if method == "PUT" else (b'{"account": "0x' + b"44" * 32 + b'"}' if method == "POST" else b"")
        if signed:
            response = signed_request(api, world, method, path, raw)
        else:
            response = api.client.request(method, path)
        error_of(response, 400, code)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", str(2**63), str(2**64), str(10**400), "1e3", "0x10", "7a"])
def test_malformed_batch_id(api, bad):
    error_of(api.client.get(f"/v1/batches/{_quote(bad)}"), 400, "invalid_request")


def test_batch_id_at_its_limit_is_not_found(api):
    error_of(api.client.get(f"/v1/batches/{2**63 - 1}"), 404, "not_found")


# ----- orders signed under another domain -----------------------------------------------------------


@pytest.mark.parametrize("other", ["chain id 1", "chain id 31338", "another contract", "chain id 2**256-1"])
def test_order_signed_under_another_domain_is_signed_by_no_station(api, world, station, other):
    """The terminal's key is a station here, but the signature is over another domain's digest: the key
    recovered under ours is no station (403 station_unknown), single and in bulk, and nothing is stored."""
    chain_id, contract = world.domain["chainId"], world.domain["verifyingContract"]
    if other == "another contract":
        contract = P.to_hex(secrets.token_bytes(20))
    else:
        chain_id = {"chain id 1": 1, "chain id 31338": 31338, "chain id 2**256-1": 2**256 - 1}[other]
    foreign = Terminal(station.key, api.client, {"chainId": chain_id, "verifyingContract": contract}, DISTRICT)
    elder = world.new_account(2, grant=100)
    body = foreign.order(world.new_account(1), elder, elder)
    error = error_of(api.client.post("/v1/orders", json=body), 403, "station_unknown")
    assert P.checksum(bytes.fromhex(station.address[2:])) not in error["message"]
    not_stored(api, body["order"]["orderId"])
    # the same order signed under our domain is the station's
    good = station.signed(body["order"], body["details"])
    results = api.client.post("/v1/orders/bulk", json={"items": [body, good]}).json()["results"]
    assert [(r["httpStatus"], (r.get("error") or {}).get("code")) for r in results] == [(403, "station_unknown"), (201, None)]
    assert results[1]["station"] == station.address


# ----- high-s signatures -------------------------------------------------------------------------------


def test_high_s_order_in_bulk_is_refused_alone(api, world, station):
    volunteer, elder = world.new_account(1), world.new_account(2, grant=600)
    good = station.order(volunteer, elder, elder, minutes=30)
    twin = station.order(volunteer, elder, elder, minutes=30)
    twin["signature"] = P.to_hex(_high_s(bytes.fromhex(twin["signature"][2:])))
    results = api.client.post("/v1/orders/bulk", json={"items": [twin, good]}).json()["results"]
    assert [(r["httpStatus"], (r.get("error") or {}).get("code")) for r in results] == [(400, "bad_signature"), (201, None)]
    not_stored(api, twin["order"]["orderId"])


def _command_message(kind: str) -> dict[str, Any]:
    values = {
        "bytes32": P.to_hex(secrets.token_bytes(32)),
        "address": P.to_hex(secrets.token_bytes(20)),
        "uint32": DISTRICT,
        "uint8": 1,
        "uint16": 1,
        "bool": True,
        "uint64": secrets.randbits(40),
    }
    return {name: values[t] for name, t in P.TYPES[kind]}


@pytest.mark.parametrize("kind", P.COMMAND_TYPES)
def test_high_s_command_of_every_type_is_refused(api, world, kind):
    """The city admin's signature of each command type, made malleable: 400 bad_signature before the
    service relays anything (the chain's nonce of the relayer does not move)."""
    message = _command_message(kind)
    signature = bytes.fromhex(world.city.sign(kind, message)[2:])
    before = _command_transactions(api)
    body = {"type": kind, "message": message, "signature": P.to_hex(_high_s(signature))}
    error_of(api.client.post("/v1/admin/commands", json=body), 400, "bad_signature")
    # (the relayer's chain nonce may move meanwhile: the batcher anchors other tests' orders)
    assert _command_transactions(api) == before


def _command_transactions(api) -> int:
    """How many command transactions the service has recorded (every one is recorded before it is sent)."""
    from sqlalchemy import func, select

    from api import db

    with api.service.reads() as session:
        return session.scalar(select(func.count()).select_from(db.Transaction).where(db.Transaction.purpose.like("command:%")))


def test_high_s_signed_request_is_unauthenticated(api, world):
    """A signed request whose X-TimeBank-Signature is the high-s twin of a good one: 401, nothing done."""
    number, account = card()
    person = {"cardNumber": number, "district": DISTRICT, "kind": 1, "name": "李四", "idNumber": "320102199001010011"}
    raw = json.dumps(person).encode()
    headers = sign_headers(world.admin.key, _separator(world), "POST", "/v1/people", raw, host=host_of(api.client.base_url))
    twin = _high_s(bytes.fromhex(headers["X-TimeBank-Signature"][2:]))
    bad = {**headers, "X-TimeBank-Signature": P.to_hex(twin), "content-type": "application/json"}
    error_of(api.client.post("/v1/people", content=raw, headers=bad), 401, "unauthenticated")
    error_of(api.client.get(f"/v1/people/{number}"), 404, "not_found")
    # and a read whose signature is refused is refused, not answered as an unsigned one
    read = sign_headers(world.admin.key, _separator(world), "GET", f"/v1/people/{number}", host=host_of(api.client.base_url))
    read["X-TimeBank-Signature"] = P.to_hex(_high_s(bytes.fromhex(read["X-TimeBank-Signature"][2:])))
    error_of(api.client.get(f"/v1/people/{number}", headers=read), 401, "unauthenticated")
    good = {**headers, "content-type": "application/json"}
    assert api.client.post("/v1/people", content=raw, headers=good).status_code == 201


# ----- integers at their limits ----------------------------------------------------------------------

INTEGER_LIMITS: dict[str, tuple[dict[str, Any], int, str | tuple[str, ...]]] = {
    # (order fields, or `type` for the service type; status; code, or the codes any of which is right where
    # more than one check refuses the order)
    "start = end = 2**64-1": ({"startTime": U64, "endTime": U64, "minutes": 1}, 422, "invalid_minutes"),
    "ends at 2**64-1": ({"startTime": U64 - 3600, "endTime": U64, "minutes": 60}, 422, "end_time_in_future"),
    "from 0 to 2**64-1": ({"startTime": 0, "endTime": U64, "minutes": 60}, 422, ("end_time_in_future", "service_too_long")),
    "start 2**64-1, end 0": ({"startTime": U64, "endTime": 0, "minutes": 1}, 422, "invalid_time_range"),
    "start = end = 0": ({"startTime": 0, "endTime": 0, "minutes": 1}, 422, "invalid_minutes"),
    "transfer at time 0": ({"startTime": 0, "endTime": 0, "minutes": 1, "type": 100}, 422, "order_too_old"),
    "the first hour of 1970": ({"startTime": 0, "endTime": 3600, "minutes": 60}, 422, "order_too_old"),
    "minutes 2**32-1 over 2**64-1 seconds": ({"startTime": 0, "endTime": U64, "minutes": U32}, 422, ("minutes_over_limit", "service_too_long")),
    "minutes 2**32-1 in an hour": ({"minutes": U32}, 422, "invalid_minutes"),
    "transfer of 2**32-1 minutes": ({"minutes": U32, "type": 100}, 422, "minutes_over_limit"),
    "district 2**32-1": ({"district": U32}, 403, "station_wrong_district"),
    "district 0": ({"district": 0}, 403, "station_wrong_district"),
    "service type 2**16-1": ({"type": 2**16 - 1}, 422, "unknown_service_type"),
    "startTime -1": ({"startTime": -1}, 400, "integer_out_of_range"),
    "endTime 2**64": ({"endTime": 2**64}, 400, "integer_out_of_range"),
    "minutes 2**32": ({"minutes": 2**32}, 400, "integer_out_of_range"),
    "minutes 2**1000": ({"minutes": 2**1000}, 400, "integer_out_of_range"),
    "minutes -2**1000": ({"minutes": -(2**1000)}, 400, "integer_out_of_range"),
    "minutes 1e2": ({"minutes": 1e2}, 400, "malformed_integer"),
}


@pytest.mark.parametrize("case", INTEGER_LIMITS, ids=list(INTEGER_LIMITS))
def test_integers_at_their_limits(api, station, parties, case):
    fields, status, code = INTEGER_LIMITS[case]
    fields = dict(fields)
    service_type = fields.pop("type", 1)
    body = station.order(*parties, minutes=60, service_type=service_type, start=int(time.time()) - 3 * DAY, duration=3600)
    order = {**body["order"], **fields}
    try:
        body = station.signed(order, body["details"])
    except P.ProtocolError:  # out of the field's range: the digest cannot be made, any signature will do
        body = {**body, "order": order}
    response = api.client.post("/v1/orders", json=body)
    codes = code if isinstance(code, tuple) else (code,)
    answered = (response.json().get("error") or {}).get("code") if response.status_code < 500 else None
    error_of(response, status, answered if answered in codes else codes[0])
    not_stored(api, order["orderId"])


def test_huge_integers_in_a_command_and_a_query(api, world):
    message = {"account": card()[1], "minutes": 2**1000, "reason": 1, "nonce": 1}
    error_of(api.client.post("/v1/admin/commands", json={"type": "Grant", "message": message, "signature": "0x" + "11" * 65}),
             400, "integer_out_of_range")
    message = {"account": card()[1], "minutes": 1, "reason": 1, "nonce": U64 + 1}
    error_of(api.client.post("/v1/admin/commands", json={"type": "Grant", "message": message, "signature": "0x" + "11" * 65}),
             400, "integer_out_of_range")
    for query in (f"district={2**32}", "district=0", f"district={2**1000}", "district=-1", "district=1e3"):
        error_of(api.client.get(f"/v1/stats?{query}"), 400, "invalid_request")
    for query in (f"from={2**64}", f"to={10**400}", "from=-99999999999999999999", "from=1e400"):
        response = api.client.get(f"/v1/stats?{query}")
        assert response.status_code in (200, 400), (query, response.status_code, response.text[:300])
        if response.status_code == 400:
            assert response.json()["error"]["code"] == "invalid_request"


# ----- details: what RFC 8785 takes, and what it refuses --------------------------------------------


def _order_with_raw_details(station: Terminal, parties, raw_details: str, details_hash: bytes | None) -> tuple[bytes, str]:
    """The raw request body of an order whose details are the JSON text `raw_details`, its detailsHash
    `details_hash` (a random one when None), signed by `station`."""
    body = station.order(*parties, start=int(time.time()) - 2 * DAY, duration=3600)
    order = {**body["order"], "detailsHash": P.to_hex(details_hash or secrets.token_bytes(32))}
    signed = station.signed(order, {})
    raw = json.dumps({"order": order, "signature": signed["signature"], "details": None})
    return raw.replace('"details": null', f'"details": {raw_details}').encode(), order["orderId"]


def _details_json(extra: str, at: int) -> str:
    """A valid details object as JSON text, with `extra` (JSON members) added."""
    base = (
        f'"checkIn": {{"lat": 32.05, "lon": 118.79, "time": {at - 3600}}}, '
        f'"checkOut": {{"lat": 32.05, "lon": 118.79, "time": {at}}}, '
        f'"confirmation": {{"method": "card", "time": {at}}}'
    )
    return "{" + base + (", " + extra if extra else "") + "}"


def _canonical(extra_canonical: str, at: int) -> bytes:
    """The RFC 8785 form of `_details_json`, written out by hand: members sorted, no whitespace."""
    members = [
        f'"checkIn":{{"lat":32.05,"lon":118.79,"time":{at - 3600}}}',
        f'"checkOut":{{"lat":32.05,"lon":118.79,"time":{at}}}',
        f'"confirmation":{{"method":"card","time":{at}}}',
    ]
    if extra_canonical:
        members.append(extra_canonical)  # every extra member here sorts after "confirmation"
    return ("{" + ",".join(members) + "}").encode("utf-8")


# (extra members as sent, their canonical form written out per RFC 8785): each must be accepted with the
# detailsHash a conforming canonicaliser computes
CANONICAL_CASES: dict[str, tuple[str, str]] = {
    # RFC 8785 section 3.2.3: keys sorted by their UTF-16 code units (the emoji's surrogates before U+FB33)
    "keys sorted by UTF-16 units": (
        r'"x": {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh", '
        r'"1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}',
        '"x":{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
        '"\u20ac":"Euro Sign","\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ),
    # RFC 8785 section 3.2.2 and appendix B: numbers as ECMAScript prints them
    "numbers": (
        '"y": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001, -0.0, 1e21, 1e-7, '
        "5e-324, 1.7976931348623157e308, 9007199254740991, -9007199254740991, 2.9514790517935283e20, 0.1]",
        '"y":[333333333.3333333,1e+30,4.5,0.002,1e-27,0,1e+21,1e-7,5e-324,1.7976931348623157e+308,'
        "9007199254740991,-9007199254740991,295147905179352830000,0.1]",
    ),
    # strings: only the JSON escapes that must be; other characters as UTF-8
    "string escapes": (
        r'"z": "\u20ac$\u000f\u000aA\u0027B\u0022\u005c\\\u0022\/ \u0000\u001f\u007f\u2028 \ud83d\ude00 é e\u0301"',
        '"z":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/ \\u0000\\u001f\u007f\u2028 \U0001f600 é e\u0301"',
    ),
    "strings that look like numbers": (
        '"zz": ["NaN", "Infinity", "-Infinity", "1e400", "-0", "0x10", "9007199254740993"]',
        '"zz":["NaN","Infinity","-Infinity","1e400","-0","0x10","9007199254740993"]',
    ),
    "empty and nested": (
        '"zzz": {"": [], "a": {}, "b": ' + "[" * 40 + "null" + "]" * 40 + ', "c": [true, false, null]}',
        '"zzz":{"":[],"a":{},"b":' + "[" * 40 + "null" + "]" * 40 + ',"c":[true,false,null]}',
    ),
}


@pytest.mark.parametrize("case", CANONICAL_CASES, ids=list(CANONICAL_CASES))
def test_details_hashed_as_rfc_8785_says(api, world, station, case):
    extra, canonical_extra = CANONICAL_CASES[case]
    elder = world.new_account(2, grant=100)
    parties = (world.new_account(1), elder, elder)
    at = int(time.time()) - 2 * DAY + 3600
    canonical = _canonical(canonical_extra, at)
    raw, order_id = _order_with_raw_details(station, parties, _details_json(extra, at), P.keccak(canonical))
    response = api.client.post("/v1/orders", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 201, (response.text[:300], canonical)
    view = signed_request(api, world, "GET", f"/v1/orders/{order_id}").json()  # details: to the city's and district's roles
    assert P.keccak(P.rfc8785.dumps(view["details"])) == P.keccak(canonical)  # stored as it came


# details that are not I-JSON (RFC 7493, which RFC 8785 requires): refused, never a crash, nothing stored
NOT_CANONICALISABLE = {
    "lone high surrogate in a value": r'"notes": "\ud800"',
    "lone low surrogate in a value": r'"notes": "a\udfffb"',
    "lone surrogate in a key": r'"\udc00": 1',
    "reversed surrogate pair": r'"notes": "\ude00\ud83d"',
    "number beyond a double": '"x": 1e400',
    "negative number beyond a double": '"x": -1e400',
    "NaN": '"x": NaN',
    "-Infinity": '"x": -Infinity',
    "integer 2**53+1": '"x": 9007199254740993',
    "integer of 400 digits": '"x": ' + "9" * 400,
    "check-in time 2**64-1": None,  # built below
}


@pytest.mark.parametrize("case", NOT_CANONICALISABLE, ids=list(NOT_CANONICALISABLE))
def test_details_that_cannot_be_canonicalised(api, station, parties, case):
    at = int(time.time()) - 2 * DAY + 3600
    if case == "check-in time 2**64-1":
        text = _details_json("", at).replace(f'"time": {at - 3600}', f'"time": {U64}')
    else:
        text = _details_json(NOT_CANONICALISABLE[case], at)
    raw, order_id = _order_with_raw_details(station, parties, text, None)
    response = api.client.post("/v1/orders", content=raw, headers={"content-type": "application/json"})
    error_of(response, 400, "malformed_details")
    not_stored(api, order_id)
    # in bulk, beside a good order: refused alone
    good = station.order(*parties, minutes=1)
    bulk = b'{"items": [' + raw + b", " + json.dumps(good).encode() + b"]}"
    results = api.client.post("/v1/orders/bulk", content=bulk, headers={"content-type": "application/json"}).json()["results"]
    assert [(r["httpStatus"], (r.get("error") or {}).get("code")) for r in results] == [(400, "malformed_details"), (201, None)]


def test_duplicate_keys_in_details_are_taken_as_parsed(api, world, station):
    """JSON with a duplicate member: the last one counts (as Python, JavaScript and the detailsHash of the
    parsed object agree); the stored details are what was hashed."""
    elder = world.new_account(2, grant=100)
    at = int(time.time()) - 2 * DAY + 3600
    text = _details_json('"notes": "first", "notes": "second"', at)
    canonical = _canonical('"notes":"second"', at)
    raw, order_id = _order_with_raw_details(station, (world.new_account(1), elder, elder), text, P.keccak(canonical))
    response = api.client.post("/v1/orders", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    assert signed_request(api, world, "GET", f"/v1/orders/{order_id}").json()["details"]["notes"] == "second"


# ----- text fields of the people registry: lone surrogates, NUL ------------------------------------


@pytest.mark.parametrize("field,value", [("name", "\\ud800"), ("address", "a\\udfffb"), ("phone", "\\ud83d")],
                         ids=["name", "address", "phone"])
def test_person_with_a_lone_surrogate_is_refused(api, world, field, value):
    """A JSON string escape of a lone surrogate is no text (RFC 8259 section 8.2, I-JSON): the service
    must refuse it (400 invalid_request), not fail storing it."""
    number, _account = card()
    person = {"cardNumber": number, "district": DISTRICT, "kind": 2, "name": "王秀英", "idNumber": "320102193901010021"}
    person[field] = "@@"
    raw = json.dumps(person).replace('"@@"', f'"{value}"')
    headers = {"content-type": "application/json", **sign_headers(world.admin.key, _separator(world), "POST", "/v1/people", raw.encode(), host=host_of(api.client.base_url))}
    error_of(once(api, "POST", "/v1/people", content=raw.encode(), headers=headers), 400, "invalid_request")
    error_of(api.client.get(f"/v1/people/{number}"), 404, "not_found")


def test_person_with_a_nul_character_round_trips(api, world):
    number, _account = card()
    person = {"cardNumber": number, "district": DISTRICT, "kind": 1, "name": "张\u0000三", "idNumber": "320102199001010011",
              "address": "\U0001f600 \u2028 \u00e9"}
    raw = json.dumps(person).encode()
    response = signed_request(api, world, "POST", "/v1/people", raw, key=world.admin.key)
    assert response.status_code in (201, 400), response.text
    if response.status_code == 201:
        read = signed_request(api, world, "GET", f"/v1/people/{number}", key=world.admin.key)
        assert read.json()["name"] == "张\u0000三" and read.json()["address"] == "\U0001f600 \u2028 \u00e9"
    else:
        assert response.json()["error"]["code"] == "invalid_request"


# ----- a certificate with numbers JSON should not hold -----------------------------------------------


def _certificate_shell(world, account: str, **over: Any) -> dict:
    chain = {"chainId": world.domain["chainId"], "contract": world.domain["verifyingContract"], "blockNumber": 1}
    cert = {"format": "timebank-certificate/1", "account": account, "district": DISTRICT, "issuedAt": int(time.time()),
            "chain": chain, "earnedMinutes": 0, "hours": 0, "starLevel": 0, "starLevelSource": "chain", "orders": [],
            "totalMinutes": 0}
    cert.update(over)
    return cert


def test_certificate_with_a_huge_hours_number_is_refused_not_a_500(api, world):
    """`hours` given as a 400-digit integer: comparing it with earnedMinutes / 60 overflows a float."""
    from api.certificates import CERTIFICATE_FORMAT

    cert = _certificate_shell(world, world.volunteer, format=CERTIFICATE_FORMAT)
    raw = json.dumps(cert).replace('"hours": 0', '"hours": ' + "9" * 400).encode()
    response = once(api, "POST", "/v1/certificates/verify", content=raw, headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text[:300]
    if response.status_code == 200:
        assert response.json()["valid"] is False and "hours" in response.json()["failed"]
    else:
        error_of(response, 400, "malformed_certificate")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_certificate_with_non_finite_hours_is_not_valid(api, world, value):
    """`hours` as NaN (which Python's parser takes though JSON has no such number): never `valid`."""
    from api.certificates import CERTIFICATE_FORMAT

    account = world.new_account(1)  # registered, nothing earned: an empty certificate is otherwise right
    cert = _certificate_shell(world, account, format=CERTIFICATE_FORMAT)
    raw = json.dumps(cert).replace('"hours": 0', f'"hours": {value}').encode()
    response = once(api, "POST", "/v1/certificates/verify", content=raw, headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text[:300]
    if response.status_code == 200:
        result = response.json()
        assert result["valid"] is False and "hours" in result["failed"], result
    else:  # NaN and Infinity are not JSON: the body is refused before it is read as a certificate
        error_of(response, 400, "invalid_request")
    # the same certificate with hours 0 is valid: only the number was wrong
    ok = raw_post(api, "/v1/certificates/verify", json.dumps(cert).encode()).json()
    assert ok["valid"] is True, ok


# ----- orders far outside any plausible service ---------------------------------------------------------


def test_service_from_the_epoch_is_answered_without_a_500(api, world, station):
    """startTime 0 and a recent endTime: a "service" 55 years long. The protocol sets no bound on a
    service's length, so the answer is the service's policy; it must be a 201 or a 4xx with a code."""
    volunteer, elder = world.new_account(1), world.new_account(2, grant=100)
    end = int(time.time()) - 3 * DAY
    body = station.order(volunteer, elder, elder, minutes=60, start=end - 3600, duration=3600)
    body = station.signed({**body["order"], "startTime": 0}, body["details"])
    response = api.client.post("/v1/orders", json=body)
    assert response.status_code == 201 or 400 <= response.status_code < 500, response.text
    if response.status_code != 201:
        assert response.json()["error"]["code"]
