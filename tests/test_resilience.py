"""Resilience of the service against a real Anvil, the real contract and a real database, with the
service run as a separate process (`python -m api`) so it can be killed:

- crash safety: the process dies at each fault injection point between recording a batch and seeing its
  receipt (`TIMEBANK_FAULT_POINT`), or by SIGKILL at a random moment under load; after a restart every
  accepted order is anchored exactly once (batch count, per-batch leaf counts, balances and proofs are
  checked on chain);
- the relayer's transaction is refused by the node (no funds), refused again when re-sent after a restart,
  or lost on the wire (before or after the node got it): the batch still goes out, once;
- the chain stops while orders arrive (they are still accepted) and comes back with its state; the
  follower's cursor survives confirmations it cannot meet yet;
- a batch the chain would refuse is split: an account frozen after its orders were accepted, and a payer
  spent by a second service sharing the contract.

Every service here is a subprocess on a free port over its own SQLite file (tests/utils/process.py); the
module has its own Anvil. Two services with the same relayer key never run at once (they would fight over
its nonces).
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from eth_account import Account
from web3 import Web3

from scripts.chain import DEV_KEYS, free_port, start_anvil, stop_anvil
from scripts.compile import load_artifact
from scripts.deploy import deploy
from scripts.verify_proof import verify_bundle
from tests.utils.api_world import HOME, World, make_world, set_location
from tests.utils.process import RpcProxy, ServiceProcess

CITY = Account.from_key(DEV_KEYS[0])
RELAYER = Account.from_key(DEV_KEYS[1])
SECOND_RELAYER = Account.from_key(DEV_KEYS[2])
FROZEN = 2
KILLED = 137  # what os._exit(137) at a fault point, and SIGKILL seen through a shell, exit with


# ----- fixtures ---------------------------------------------------------------------------------------


class Chain(SimpleNamespace):
    """One Anvil with a TimeBank on it: `handle`, `url`, `w3`, `contract`."""

    def batch_count(self) -> int:
        return self.contract.functions.batchCount().call()

    def balance(self, account: str) -> int:
        return self.contract.functions.getAccount(bytes.fromhex(account[2:])).call()[3]


def _deployed_chain(state_dir: Path) -> Chain:
    handle = start_anvil(free_port(), state_dir, block_time=0)
    w3 = Web3(Web3.HTTPProvider(handle.url, request_kwargs={"timeout": 30}))
    artifact = load_artifact("TimeBank")
    address, receipt = deploy(w3, artifact, CITY.key, CITY.address, RELAYER.address)
    contract = w3.eth.contract(address=address, abi=artifact["abi"])
    return Chain(handle=handle, url=handle.url, w3=w3, contract=contract, deployment=receipt)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    c = _deployed_chain(tmp_path_factory.mktemp("resilience-anvil"))
    yield c
    stop_anvil(c.handle)


@pytest.fixture
def services(tmp_path, chain):
    """Makes service processes on the module's chain; kills them all when the test ends."""
    made: list[ServiceProcess] = []

    def make(name: str = "service", rpc_url: str | None = None, contract: str | None = None, **env) -> ServiceProcess:
        proc = ServiceProcess(rpc_url or chain.url, contract or chain.contract.address, tmp_path / name, name, **env)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.close()


def bind(world: World, proc: ServiceProcess) -> World:
    """Points the world's administrators and terminals at `proc`."""
    for party in (world.city, world.admin, world.other_admin, world.terminal, world.other_terminal):
        party.client = proc.client
    return world


@pytest.fixture(scope="module")
def world(chain, tmp_path_factory):
    """Districts, their admins and stations, registered once through a service that is then stopped (one
    relayer key must not be used by two running services)."""
    proc = ServiceProcess(chain.url, chain.contract.address, tmp_path_factory.mktemp("world"), "world")
    try:
        proc.start()
        w = make_world(SimpleNamespace(client=proc.client))
    finally:
        proc.close()
    return w


# ----- checks -----------------------------------------------------------------------------------------


def post_bulk(proc: ServiceProcess, bodies: list[dict]) -> list[str]:
    response = proc.client.post("/v1/orders/bulk", json={"items": bodies})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["httpStatus"] for r in results] == [201] * len(bodies), results
    return [r["orderId"] for r in results]


def assert_anchored_exactly_once(chain: Chain, proc: ServiceProcess, views: dict[str, dict], batches_before: int,
                                 opening: dict[str, int], verify: int | None = None) -> None:
    """`views`: every order of the test that exists in the service, and nothing else was anchored since
    `batches_before`. `opening`: the accounts' balances before the test's orders."""
    assert {v["status"] for v in views.values()} == {"anchored"}, Counter(v["status"] for v in views.values())
    per_batch = Counter(v["batchId"] for v in views.values())
    assert chain.batch_count() - batches_before == len(per_batch), (
        f"{chain.batch_count() - batches_before} batches anchored on chain for {len(per_batch)} batches of orders"
    )
    assert set(per_batch) == set(range(batches_before + 1, chain.batch_count() + 1))
    for batch_id, count in per_batch.items():
        _root, on_chain_count, _block = chain.contract.functions.getBatch(batch_id).call()
        assert on_chain_count == count, f"batch {batch_id}: {on_chain_count} leaves on chain, {count} orders in it"
    expected = dict(opening)
    for v in views.values():
        o = v["order"]
        expected[o["volunteer"]] = expected.get(o["volunteer"], 0) + o["minutes"]
        expected[o["payer"]] = expected.get(o["payer"], 0) - o["minutes"]
    actual = {a: chain.balance(a) for a in expected}
    assert actual == expected
    ids = list(views)
    if verify is not None and verify < len(ids):
        ids = random.sample(ids, verify)
    for order_id in ids:
        bundle = proc.client.get(f"/v1/orders/{order_id}/proof").json()
        result = verify_bundle(bundle, chain.url)
        assert result.ok, [c for c in result.checks if not c.ok]
    assert proc.health()["ordersWaiting"] == 0


# ----- 0. the relayer keeps paying a sane price ------------------------------------------------------


def test_relayer_gas_price_does_not_escalate(chain, world):
    """The world's dozen administrative commands, relayed one after another: the gas price the relayer pays
    must follow the chain's base fee, not the price of its own previous transaction. (Paying twice Anvil's
    `eth_gasPrice`, which adds the tip paid in the latest block, doubled the price at every transaction and
    drained the relayer after ~25 of them.)"""
    prices = []
    for number in range(1, chain.w3.eth.block_number + 1):
        block = chain.w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"] == RELAYER.address:
                prices.append((number, tx["gasPrice"], block["baseFeePerGas"]))
    assert len(prices) >= 10
    lowest = min(p for _, p, _ in prices)
    worst = max(prices, key=lambda p: p[1])
    assert worst[1] <= 10 * lowest, (
        f"the relayer paid {worst[1] / 1e9:.0f} gwei in block {worst[0]} (base fee {worst[2] / 1e9:.2f} gwei), "
        f"{worst[1] / lowest:.0f} times its lowest price; prices in gwei: {[round(p / 1e9, 1) for _, p, _ in prices]}"
    )


# ----- 1. crash safety --------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["batch_recorded", "tx_recorded", "tx_broadcast"])
def test_killed_between_batch_and_receipt_anchors_every_order_once(chain, world, services, fault):
    proc = services(fault, TIMEBANK_BATCH_MAX_ORDERS=4)
    proc.start(TIMEBANK_FAULT_POINT=fault)
    bind(world, proc)
    volunteers = [world.new_account(1) for _ in range(2)]
    elder = world.new_account(2, grant=1000)
    opening = {elder: 1000, **{v: 0 for v in volunteers}}
    batches_before = chain.batch_count()

    first = post_bulk(proc, [world.terminal.order(volunteers[i % 2], elder, elder, minutes=10 + i) for i in range(10)])
    assert proc.wait_exit(20) == KILLED, proc.log_tail()
    assert f"dying at {fault}" in proc.log_tail()
    if fault == "tx_broadcast":  # the node has the transaction: it is mined without the service
        deadline = time.monotonic() + 5
        while chain.batch_count() == batches_before and time.monotonic() < deadline:
            time.sleep(0.05)
    assert chain.batch_count() - batches_before == (1 if fault == "tx_broadcast" else 0)

    proc.start()  # no fault now
    for order_id in first:  # every accepted order survived the crash
        assert proc.order(order_id).status_code == 200
    later = post_bulk(proc, [world.terminal.order(volunteers[i % 2], elder, elder, minutes=30) for i in range(3)])
    views = proc.wait_final(first + later, timeout=30)
    assert_anchored_exactly_once(chain, proc, views, batches_before, opening)
    assert len({v["batchId"] for v in views.values()}) >= 3  # 13 orders, at most 4 a batch


def test_sigkill_under_load_anchors_every_accepted_order_once(chain, world, services):
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    proc = services("load").start()
    bind(world, proc)
    volunteers = [world.new_account(1) for _ in range(3)]
    elder = world.new_account(2, grant=100_000)
    opening = {elder: 100_000, **{v: 0 for v in volunteers}}
    batches_before = chain.batch_count()

    accepted: list[str] = []
    uncertain: list[str] = []  # the request failed: the order may or may not exist
    refused: list[tuple[int, str]] = []
    stop = threading.Event()
    terminal = world.terminal

    def poster() -> None:
        with httpx.Client(base_url=proc.url, timeout=5) as client:
            i = 0
            while not stop.is_set():
                body = terminal.order(volunteers[i % 3], elder, elder, minutes=10)
                i += 1
                try:
                    response = client.post("/v1/orders", json=body)
                except httpx.TransportError:
                    uncertain.append(body["order"]["orderId"])
                    time.sleep(0.05)
                    continue
                if response.status_code == 201:
                    accepted.append(body["order"]["orderId"])
                elif response.status_code == 503:  # a process restarting: maybe stored, maybe not (checked below)
                    uncertain.append(body["order"]["orderId"])
                    time.sleep(0.05)
                    continue
                else:
                    refused.append((response.status_code, response.text))
                time.sleep(0.01)

    thread = threading.Thread(target=poster, daemon=True)
    thread.start()
    try:
        for _cycle in range(2):
            time.sleep(rng.uniform(0.3, 1.2))
            proc.kill()
            time.sleep(rng.uniform(0.0, 0.3))
            proc.start()
        deadline = time.time() + 30  # load goes on after the last restart until enough orders are in
        while len(accepted) <= 20 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(10)
    assert not refused, (seed, refused[:3])
    assert len(accepted) > 20, (seed, len(accepted))

    existing = list(accepted)
    for order_id in uncertain:
        response = proc.order(order_id)
        assert response.status_code in (200, 404), response.text
        if response.status_code == 200:
            existing.append(order_id)
    views = proc.wait_final(existing, timeout=40)
    assert_anchored_exactly_once(chain, proc, views, batches_before, opening, verify=20)


def test_relayer_out_of_funds_then_refunded_anchors_every_order(chain, world, services):
    """The node refuses the batch's transaction (the relayer cannot pay for gas); once the relayer is funded
    again, with no other activity on the chain, the batch goes out."""
    proc = services("funds").start()
    bind(world, proc)
    volunteer, elder = world.new_account(1), world.new_account(2, grant=1000)
    batches_before = chain.batch_count()
    funds = chain.w3.eth.get_balance(RELAYER.address)
    chain.w3.provider.make_request("anvil_setBalance", [RELAYER.address, hex(0)])
    try:
        ids = post_bulk(proc, [world.terminal.order(volunteer, elder, elder, minutes=15) for _ in range(3)])
        time.sleep(1.5)  # the batch is due; the node refuses its transaction
        assert {proc.order(o).json()["status"] for o in ids} == {"accepted"}
        assert chain.batch_count() == batches_before
    finally:
        chain.w3.provider.make_request("anvil_setBalance", [RELAYER.address, hex(funds)])
    views = proc.wait_final(ids, timeout=10)
    assert_anchored_exactly_once(chain, proc, views, batches_before, {volunteer: 0, elder: 1000})


def test_transaction_refused_when_resent_after_a_restart_is_sent_again(chain, world, services):
    """The process dies after recording the batch's transaction (`tx_recorded`); when it comes back the node
    refuses that transaction (the relayer cannot pay for gas just then). Once the relayer is funded again
    the batch must still go out: the refusal may not leave the batch `sent` forever, holding its nonce."""
    proc = services("refused-at-restart")
    proc.start(TIMEBANK_FAULT_POINT="tx_recorded")
    bind(world, proc)
    volunteer, elder = world.new_account(1), world.new_account(2, grant=1000)
    batches_before = chain.batch_count()
    ids = post_bulk(proc, [world.terminal.order(volunteer, elder, elder, minutes=25) for _ in range(4)])
    assert proc.wait_exit(20) == KILLED, proc.log_tail()
    funds = chain.w3.eth.get_balance(RELAYER.address)
    chain.w3.provider.make_request("anvil_setBalance", [RELAYER.address, hex(0)])
    try:
        proc.start()
        time.sleep(1.0)  # the restart has re-broadcast the recorded transaction, and the node refused it
        assert chain.batch_count() == batches_before
    finally:
        chain.w3.provider.make_request("anvil_setBalance", [RELAYER.address, hex(funds)])
    views = proc.wait_final(ids, timeout=10)
    assert_anchored_exactly_once(chain, proc, views, batches_before, {volunteer: 0, elder: 1000})


@pytest.mark.parametrize("reached_node", [False, True], ids=["lost-before-node", "answer-lost"])
def test_broadcast_lost_in_transit_anchors_the_batch_once(chain, world, services, reached_node):
    """The connection to the node breaks while the batch's transaction is broadcast: either the node never
    got it (the service must send it again, with no restart to help) or it got it and the answer was lost
    (the service must not anchor the orders a second time)."""
    proxy = RpcProxy(chain.url)
    proc = services("flaky-rpc", rpc_url=proxy.url)
    try:
        proc.start()
        bind(world, proc)
        volunteer, elder = world.new_account(1), world.new_account(2, grant=1000)
        batches_before = chain.batch_count()
        proxy.drop_next("eth_sendRawTransaction", deliver=reached_node)
        ids = post_bulk(proc, [world.terminal.order(volunteer, elder, elder, minutes=20) for _ in range(3)])
        views = proc.wait_final(ids, timeout=10)
        assert proxy.dropped == ["eth_sendRawTransaction"]
        assert_anchored_exactly_once(chain, proc, views, batches_before, {volunteer: 0, elder: 1000})
    finally:
        proc.close()
        proxy.close()


# ----- 2. the chain stops and comes back -------------------------------------------------------------


def test_chain_stopped_then_restarted_with_its_state(tmp_path, services):
    own = _deployed_chain(tmp_path / "anvil")
    try:
        proc = services("chain-stop", rpc_url=own.url, contract=own.contract.address).start()
        w = make_world(SimpleNamespace(client=proc.client))
        before = [w.terminal.post(w.terminal.order(w.volunteer, w.elder, w.elder, minutes=30)).json()["orderId"]]
        first = proc.wait_final(before)[before[0]]
        assert first["status"] == "anchored"
        root_1 = own.contract.functions.getBatch(first["batchId"]).call()[0]
        opening = {w.elder: own.balance(w.elder), w.volunteer2: own.balance(w.volunteer2)}
        batches_before = own.batch_count()

        stop_anvil(own.handle)
        deadline = time.monotonic() + 10
        while proc.health()["chainOk"]:
            assert time.monotonic() < deadline, "health still says chainOk with the chain stopped"
            time.sleep(0.1)
        health = proc.health()
        assert health["chainOk"] is False and health["databaseOk"] is True and health["latestBlock"] is None

        during = []
        for _ in range(5):
            response = w.terminal.post(w.terminal.order(w.volunteer2, w.elder, w.elder, minutes=20))
            assert response.status_code == 201, response.text
            during.append(response.json()["orderId"])
        time.sleep(1.0)  # the batcher is due and finds no chain
        assert {proc.order(o).json()["status"] for o in during} == {"accepted"}
        assert proc.health()["ordersWaiting"] == 5

        own.handle = start_anvil(own.handle.port, own.handle.state_dir, block_time=0)
        # the state came back: the contract, its first batch
        assert len(own.w3.eth.get_code(own.contract.address)) > 0
        assert own.contract.functions.getBatch(first["batchId"]).call()[0] == root_1
        assert own.batch_count() == batches_before

        views = proc.wait_final(during, timeout=30)
        assert proc.health()["chainOk"] is True
        assert_anchored_exactly_once(own, proc, views, batches_before, opening)
        old = verify_bundle(proc.client.get(f"/v1/orders/{before[0]}/proof").json(), own.url)
        assert old.ok, [c for c in old.checks if not c.ok]
    finally:
        stop_anvil(own.handle)


def test_follower_starting_before_its_first_confirmed_block_follows(chain, world, services):
    """The service starts from the deployment block N of its deployment record, with more confirmations
    than blocks mined since N (the first step has nothing confirmed to apply). Once enough blocks are
    mined, the mirror must follow them, not take its own fresh cursor for a chain reset at every step."""
    deployment = chain.deployment
    head = chain.w3.eth.block_number
    confirmations = head - deployment["blockNumber"] + 2  # the first confirmed block is N - 1
    proc = services("confirmations", TIMEBANK_CONFIRMATIONS=confirmations)
    records = proc.workdir / "deployments"
    records.mkdir(parents=True, exist_ok=True)
    (records / "31337.json").write_text(json.dumps({
        "chainId": 31337, "address": chain.contract.address, "blockNumber": deployment["blockNumber"],
        "txHash": deployment["transactionHash"].to_0x_hex(),
    }))
    proc.start()
    time.sleep(0.3)  # a few follower steps with nothing confirmed yet
    chain.w3.provider.make_request("anvil_mine", [hex(confirmations + 2)])
    wanted = chain.w3.eth.block_number - (confirmations - 1)
    try:
        proc.wait_followed(wanted, timeout=5)
    finally:
        resets = proc.log_tail(400).count("chain reset detected")
    assert resets == 0, f"{resets} chain resets reported on an untouched chain"


def test_more_confirmations_after_a_restart_is_not_a_chain_reset(chain, world, services):
    """Restarted with a higher TIMEBANK_CONFIRMATIONS, the service finds its cursor ahead of the newly
    confirmed head, on blocks the chain still has: it must wait for the chain, not wipe its mirror and
    replay the contract's history (meanwhile refusing every order for want of stations and accounts)."""
    proc = services("more-confirmations").start()
    head = chain.w3.eth.block_number
    proc.wait_followed(head)
    proc.stop()
    proc.start(TIMEBANK_CONFIRMATIONS=4)
    time.sleep(0.5)
    resets = proc.log_tail(400).count("chain reset detected")
    assert resets == 0, f"{resets} chain resets reported on an untouched chain"
    assert proc.health()["followedBlock"] >= head


# ----- 3. a batch the chain would refuse is split ----------------------------------------------------


def test_account_frozen_before_the_batch_rejects_only_its_orders(chain, world, services):
    proc = services("freeze", TIMEBANK_BATCH_MAX_WAIT_SECONDS=3).start()
    bind(world, proc)
    v1, v2 = world.new_account(1), world.new_account(1)
    p1, p2 = world.new_account(2, grant=500), world.new_account(2, grant=500)
    batches_before = chain.batch_count()

    started = time.monotonic()
    frozen_orders = post_bulk(proc, [world.terminal.order(v1, p1, p1, minutes=40) for _ in range(2)])
    other_orders = post_bulk(proc, [world.terminal.order(v2, p2, p2, minutes=50) for _ in range(2)])
    world.admin.ok("SetAccountStatus", account=p1, status=FROZEN, reason=1)
    assert time.monotonic() - started < 2.5, "the freeze came too late to test the batch split"
    assert chain.batch_count() == batches_before  # no batch yet: the freeze came first

    views = proc.wait_final(frozen_orders + other_orders, timeout=20)
    for order_id in frozen_orders:
        assert views[order_id]["status"] == "rejected", views[order_id]
        assert "account_not_active" in views[order_id]["reason"]
        assert proc.client.get(f"/v1/orders/{order_id}/proof").status_code == 409
    assert_anchored_exactly_once(
        chain, proc, {o: views[o] for o in other_orders}, batches_before, {p1: 500, v1: 0, p2: 500, v2: 0}
    )


def test_payer_spent_by_another_service_rejects_one_side(chain, world, services):
    a = services("a", TIMEBANK_BATCH_MAX_WAIT_SECONDS=3).start()
    bind(world, a)
    tx = chain.contract.functions.grantRole(
        chain.contract.functions.RELAYER_ROLE().call(), SECOND_RELAYER.address
    ).transact({"from": CITY.address})
    assert chain.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    payer = world.new_account(2, grant=100)
    va, vb = world.new_account(1), world.new_account(1)
    b = services("b", TIMEBANK_BATCH_MAX_WAIT_SECONDS=3, TIMEBANK_RELAYER_KEY=SECOND_RELAYER.key.to_0x_hex()).start()
    b.wait_followed(chain.w3.eth.block_number)
    # the elderly person's registered location is off chain, in each service's own database: b learns it too
    set_location(bind(world, b).admin, payer, HOME)
    bind(world, a)
    batches_before = chain.batch_count()

    (on_a,) = post_bulk(a, [world.terminal.order(va, payer, payer, minutes=70)])
    (on_b,) = post_bulk(b, [world.terminal.order(vb, payer, payer, minutes=70)])
    view_a = a.wait_final([on_a], timeout=20)[on_a]
    view_b = b.wait_final([on_b], timeout=20)[on_b]

    statuses = sorted([view_a["status"], view_b["status"]])
    assert statuses == ["anchored", "rejected"], (view_a, view_b)
    loser = view_a if view_a["status"] == "rejected" else view_b
    assert "insufficient_balance" in loser["reason"], loser
    winner_side, winner = (a, view_a) if view_a["status"] == "anchored" else (b, view_b)
    assert chain.batch_count() == batches_before + 1
    assert chain.balance(payer) == 30
    assert chain.balance(winner["order"]["volunteer"]) == 70
    assert chain.balance(loser["order"]["volunteer"]) == 0
    result = verify_bundle(winner_side.client.get(f"/v1/orders/{winner['orderId']}/proof").json(), chain.url)
    assert result.ok, [c for c in result.checks if not c.ok]
    for side in (a, b):  # both services agree, nothing negative, nothing left promised
        account = side.client.get(f"/v1/accounts/{payer}").json()
        assert account["balanceMinutes"] == 30 and account["pendingDebitMinutes"] == 0
