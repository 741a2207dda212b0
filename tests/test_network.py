"""The service on a real permissioned network: four Clique signers (geth 1.13.15, node/bin/geth from `make
geth`) on loopback, started by scripts/network.py in a temporary directory on free ports, TimeBank deployed
by scripts/deploy.py, services run as processes (`python -m api`) with TIMEBANK_RPC_URL listing the four
nodes. The faults of a network:

1. one signer of four stopped for 30 s under order load: blocks keep coming, nothing is lost;
2. the node the service talks to stopped: the service fails over, nothing is lost or anchored twice; back
   again, it is used again;
3. two signers of four stopped: the chain stalls, intake keeps accepting; when they return every accepted
   order is anchored exactly once;
4. a short fork: a signer cut off from the others seals the service's batch in a block of its own, which the
   others' heavier chain replaces when the partition heals: the batch ends anchored exactly once, and no
   proof names a block off the final chain;
5. two district services (two relayer keys, two databases) on the same contract, both SIGKILLed at random
   moments under load and restarted: every accepted order of each anchored exactly once, balances on chain
   the sums; and a payer spending through both at once is never overdrawn on chain.

Every proof is checked with the standalone verifier against each of the four nodes.
"""

from __future__ import annotations

import random
import secrets
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from eth_account import Account
from web3 import Web3

from scripts import network as N
from scripts.chain import free_port

#: the ID numbers' HMAC key of the services on the network (required off the development chain 31337)
ID_HASH_KEY = secrets.token_hex(32)
from scripts.compile import load_artifact
from scripts.verify_proof import verify_bundle
from tests.utils.api_world import HOME, OTHER_DISTRICT, World, link, make_world, set_location
from tests.utils.process import ServiceProcess

pytestmark = pytest.mark.network

CONFIRMATIONS = 3  # the network's setting (README: Clique's short forks)
RELAYER_KEY, SECOND_RELAYER_KEY = N.RELAYER_KEY, N.SECOND_RELAYER_KEY


# ----- the network --------------------------------------------------------------------------------------


class Net(SimpleNamespace):
    """The running network: `network` (scripts.network.Network), `address`, `abi`."""

    def contract(self, node: N.Node | None = None):
        node = node or self.up()[0]
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 10}))
        return w3.eth.contract(address=self.address, abi=self.abi)

    def up(self) -> list[N.Node]:
        return [n for n in self.network.nodes if n.running()]

    def batch_count(self) -> int:
        return self.contract().functions.batchCount().call()

    def balance(self, account: str) -> int:
        return self.contract().functions.getAccount(bytes.fromhex(account[2:])).call()[3]

    def head(self, node: N.Node | None = None) -> int:
        return N.block_number(node or self.up()[0])

    def start_all(self) -> None:
        for node in self.network.nodes:
            N.start_node(node, self.network.chain_id)
        N.heal(self.network.nodes)

    def converged(self, timeout: float = 60) -> int:
        """Waits until the four nodes agree on a block a few below their heads; returns its number."""
        deadline = time.monotonic() + timeout
        while True:
            heads = [N.block_number(n) for n in self.network.nodes]
            number = min(heads) - 1
            hashes = {n.rpc("eth_getBlockByNumber", [hex(number), False])["hash"] for n in self.network.nodes}
            if len(hashes) == 1 and max(heads) - min(heads) <= 2:
                return number
            if time.monotonic() > deadline:
                raise AssertionError(f"nodes do not converge: heads {heads}")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    if not N.GETH.exists():
        pytest.fail(f"{N.GETH} is missing: `make geth` builds it (make test does)")
    directory = tmp_path_factory.mktemp("clique")
    ports = [(free_port(), free_port(), free_port()) for _ in range(N.SIGNERS)]
    network = N.create(directory / "network", period=1, ports=ports)
    try:
        N.start(network)
        record = N.deploy(network, records_dir=directory / "deployments", say=lambda *_: None)
        yield Net(network=network, address=record["address"], abi=load_artifact("TimeBank")["abi"], dir=directory)
    finally:
        N.stop(network)


@pytest.fixture(autouse=True)
def all_nodes_up(net):
    """Every test starts and ends with the four nodes running and peered."""
    net.start_all()
    yield
    net.start_all()


@pytest.fixture
def services(tmp_path, net):
    made: list[ServiceProcess] = []

    def make(name: str, key: str = RELAYER_KEY, rpc_url: str | None = None, **env) -> ServiceProcess:
        env.setdefault("TIMEBANK_CONFIRMATIONS", CONFIRMATIONS)
        env.setdefault("TIMEBANK_TX_TIMEOUT_SECONDS", 90)
        proc = ServiceProcess(rpc_url or net.network.rpc_url, net.address, tmp_path / name, name,
                              TIMEBANK_RELAYER_KEY=key, TIMEBANK_ID_HASH_KEY=ID_HASH_KEY, **env)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.close()


@pytest.fixture(scope="module")
def world(net, tmp_path_factory):
    """Two districts, their admins and stations, registered through a service that is then stopped (one
    relayer key is never used by two running services)."""
    proc = ServiceProcess(net.network.rpc_url, net.address, tmp_path_factory.mktemp("world"), "world",
                          TIMEBANK_RELAYER_KEY=RELAYER_KEY, TIMEBANK_CONFIRMATIONS=1,
                          TIMEBANK_ID_HASH_KEY=ID_HASH_KEY)
    try:
        proc.start(timeout=60)
        w = make_world(SimpleNamespace(client=proc.client))
    finally:
        proc.close()
    return w


def bind(world: World, proc: ServiceProcess) -> World:
    for party in (world.city, world.admin, world.other_admin, world.terminal, world.other_terminal):
        party.client = proc.client
    return world


def locate_in(proc: ServiceProcess, admin, account: str) -> None:
    """An elderly person's registered location is the service's own record, not the chain's: a service
    that takes orders for them must be told it too (here by `admin`, through `proc`)."""
    set_location(type(admin)(admin.key, proc.client, admin.domain), account, HOME)


# ----- load and checks ------------------------------------------------------------------------------------


class Load:
    """A terminal posting single orders to a service as fast as it answers (with a short pause), from a
    thread; what was accepted, what is uncertain (the request failed) and what was refused."""

    def __init__(self, proc: ServiceProcess, make_body, pause: float = 0.02):
        self.proc, self.make_body, self.pause = proc, make_body, pause
        self.accepted: list[str] = []
        self.uncertain: list[str] = []
        self.refused: list[tuple[int, str]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(15)

    def _run(self) -> None:
        with httpx.Client(base_url=self.proc.url, timeout=10) as client:
            i = 0
            while not self.stop_event.is_set():
                body = self.make_body(i)
                i += 1
                try:
                    response = client.post("/v1/orders", json=body)
                except httpx.TransportError:
                    self.uncertain.append(body["order"]["orderId"])
                    time.sleep(0.05)
                    continue
                if response.status_code == 201:
                    self.accepted.append(body["order"]["orderId"])
                elif response.status_code == 503:  # a process of the service restarting: "try again", as no answer
                    self.uncertain.append(body["order"]["orderId"])
                    time.sleep(0.05)
                    continue
                else:
                    self.refused.append((response.status_code, response.text))
                time.sleep(self.pause)

    def existing(self) -> list[str]:
        """The accepted orders, and those of the uncertain ones the service holds."""
        found = list(self.accepted)
        for order_id in self.uncertain:
            response = self.proc.order(order_id)
            assert response.status_code in (200, 404), response.text
            if response.status_code == 200:
                found.append(order_id)
        return found


def assert_anchored_exactly_once(net: Net, procs_views: list[tuple[ServiceProcess, dict[str, dict]]],
                                 batches_before: int, opening: dict[str, int], verify: int = 12) -> None:
    """`procs_views`: per service, every order of the test it holds; nothing else was anchored since
    `batches_before`. Each batch on chain has as many leaves as its orders; balances are the opening ones
    moved by the orders; proofs name blocks of the final chain and verify against every node."""
    converged = net.converged()
    per_batch: Counter = Counter()
    expected = dict(opening)
    for _proc, views in procs_views:
        assert {v["status"] for v in views.values()} == {"anchored"}, Counter(v["status"] for v in views.values())
        for v in views.values():
            per_batch[v["batchId"]] += 1
            o = v["order"]
            expected[o["volunteer"]] = expected.get(o["volunteer"], 0) + o["minutes"]
            expected[o["payer"]] = expected.get(o["payer"], 0) - o["minutes"]
    count = net.batch_count()
    assert count - batches_before == len(per_batch), f"{count - batches_before} batches on chain for {len(per_batch)}"
    assert set(per_batch) == set(range(batches_before + 1, count + 1))
    contract = net.contract()
    for batch_id, leaves in per_batch.items():
        _root, on_chain, _block = contract.functions.getBatch(batch_id).call()
        assert on_chain == leaves, f"batch {batch_id}: {on_chain} leaves on chain, {leaves} orders in it"
    assert {a: net.balance(a) for a in expected} == expected
    nodes = net.network.nodes
    for proc, views in procs_views:
        ids = random.sample(list(views), min(verify, len(views)))
        for k, order_id in enumerate(ids):
            bundle = proc.client.get(f"/v1/orders/{order_id}/proof").json()
            batch = bundle["batch"]
            assert batch["blockNumber"] <= converged
            for node in nodes:  # the block the proof names is the final chain's, on every node
                block = node.rpc("eth_getBlockByNumber", [hex(batch["blockNumber"]), False])
                assert block["hash"] == batch["blockHash"], (order_id, batch, node.url)
            node = nodes[k % len(nodes)]
            result = verify_bundle(bundle, node.url, contract=net.address)
            assert result.ok, (node.url, [c for c in result.checks if not c.ok])
        assert proc.health()["ordersWaiting"] == 0


def mirror_balance(proc: ServiceProcess, account: str) -> int:
    with sqlite3.connect(f"file:{proc.workdir / (proc.name + '.sqlite3')}?mode=ro", uri=True) as con:
        return con.execute("SELECT balance FROM accounts WHERE account = ?", (account,)).fetchone()[0]


def log_says(proc: ServiceProcess, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log_path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{proc.name} never logged {text!r}:\n{proc.log_tail()}")
        time.sleep(0.2)


def new_accounts(world: World, volunteers: int, grant: int, admin=None, district=None) -> tuple[list[str], str]:
    kw = {} if admin is None else {"admin": admin, "district": district}
    return [world.new_account(1, **kw) for _ in range(volunteers)], world.new_account(2, grant=grant, **kw)


# ----- 1. one signer of four down ---------------------------------------------------------------------------


def test_one_signer_stopped_30s_under_load_blocks_keep_coming(net, world, services):
    proc = services("one-down").start(timeout=60)
    bind(world, proc)
    volunteers, elder = new_accounts(world, 3, 100_000)
    proc.wait_followed(net.head() - CONFIRMATIONS)
    batches_before = net.batch_count()
    victim = net.network.nodes[3]  # a signer the service does not talk to
    with Load(proc, lambda i: world.terminal.order(volunteers[i % 3], elder, elder, minutes=5)) as load:
        time.sleep(3)
        N.stop_node(victim)
        head = net.head()
        time.sleep(30)
        sealed = net.head() - head
        N.start_node(victim, net.network.chain_id)
        time.sleep(3)
    assert not load.refused, load.refused[:3]
    assert sealed >= 15, f"{sealed} blocks in 30 s with three signers of four"
    assert len(load.accepted) > 50
    views = proc.wait_final(load.existing(), timeout=90)
    assert_anchored_exactly_once(net, [(proc, views)], batches_before, {elder: 100_000, **{v: 0 for v in volunteers}})


# ----- 2. the service's node down ---------------------------------------------------------------------------


def test_service_node_stopped_fails_over_and_comes_back(net, world, services):
    first, second = net.network.nodes[0], net.network.nodes[1]
    proc = services("failover").start(timeout=60)
    bind(world, proc)
    volunteers, elder = new_accounts(world, 2, 100_000)
    proc.wait_followed(net.head() - CONFIRMATIONS)
    batches_before = net.batch_count()
    with Load(proc, lambda i: world.terminal.order(volunteers[i % 2], elder, elder, minutes=5)) as load:
        time.sleep(3)
        N.stop_node(first, kill=True)  # its unsent transactions die with it
        log_says(proc, f"now using node {second.url}")
        during = len(load.accepted)
        time.sleep(12)
        assert len(load.accepted) > during  # intake goes on
        anchored_while_down = proc.wait_final(load.accepted[during:during + 5], timeout=60)
        N.start_node(first, net.network.chain_id)
        N.heal(net.network.nodes)
        log_says(proc, f"now using node {first.url}", timeout=60)
        time.sleep(3)
    assert not load.refused, load.refused[:3]
    assert {v["status"] for v in anchored_while_down.values()} == {"anchored"}
    views = proc.wait_final(load.existing(), timeout=90)
    assert_anchored_exactly_once(net, [(proc, views)], batches_before, {elder: 100_000, **{v: 0 for v in volunteers}})


# ----- 3. two of four down: the chain stalls ----------------------------------------------------------------


def test_two_signers_stopped_chain_stalls_intake_goes_on(net, world, services):
    proc = services("stall").start(timeout=60)
    bind(world, proc)
    volunteers, elder = new_accounts(world, 2, 100_000)
    proc.wait_followed(net.head() - CONFIRMATIONS)
    batches_before = net.batch_count()
    down = net.network.nodes[2:]
    with Load(proc, lambda i: world.terminal.order(volunteers[i % 2], elder, elder, minutes=5)) as load:
        time.sleep(2)
        for node in down:
            N.stop_node(node)
        time.sleep(8)  # the two left seal at most two blocks (a signer seals one block in three)
        stalled_at = net.head()
        accepted_at = len(load.accepted)
        time.sleep(10)
        assert net.head() == stalled_at, "two signers of four kept sealing"
        assert len(load.accepted) > accepted_at + 20, "intake stopped while the chain stalled"
        waiting = proc.health()["ordersWaiting"]
        assert waiting > 0
        for node in down:
            N.start_node(node, net.network.chain_id)
        N.heal(net.network.nodes)
        time.sleep(3)
    assert not load.refused, load.refused[:3]
    views = proc.wait_final(load.existing(), timeout=120)
    assert_anchored_exactly_once(net, [(proc, views)], batches_before, {elder: 100_000, **{v: 0 for v in volunteers}})


# ----- 4. a short fork --------------------------------------------------------------------------------------


def _wait_tx_pending(node: N.Node, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while int(node.rpc("txpool_status")["pending"], 16) == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"no transaction reached {node.url}'s pool")
        time.sleep(0.1)


def test_batch_in_a_replaced_block_is_anchored_once(net, world, services):
    """node1 alone (its sealing paused until the others have sealed past it, so that it may seal once): the
    service, talking to node1 only, sends its batch there; node1 seals it in a block of its own while the
    other three seal on; when the partition heals their heavier chain replaces node1's block, node1 puts the
    transaction back in its pool, and it is sealed again on the final chain. The service has seen the
    receipt in the replaced block; with three confirmations it never took that block for anchored.
    (With one confirmation it does, and the rebuild after the reorganisation can strand the orders: README,
    "Confirmations on Clique".)"""
    confirmations = CONFIRMATIONS
    lone, others = net.network.nodes[0], net.network.nodes[1:]
    proc = services("fork", rpc_url=lone.url).start(timeout=60)
    bind(world, proc)
    volunteer, elder = world.new_account(1), world.new_account(2, grant=1000)
    proc.wait_followed(net.head() - confirmations)
    batches_before = net.batch_count()
    lone.rpc("miner_stop")
    try:
        N.wait_blocks(others[0], 3)  # lone's last block is out of the signer window
        N.partition([lone], others)
        ids = [proc.client.post("/v1/orders", json=world.terminal.order(volunteer, elder, elder, minutes=7)).json()["orderId"]
               for _ in range(3)]
        _wait_tx_pending(lone)
        fork_head = N.block_number(lone)
        lone.rpc("miner_start")
        deadline = time.monotonic() + 30
        while N.block_number(lone) == fork_head:
            assert time.monotonic() < deadline, "the lone signer sealed nothing"
            time.sleep(0.1)
        replaced = lone.rpc("eth_getBlockByNumber", [hex(fork_head + 1), False])
        assert replaced["transactions"], "the lone block holds no transaction"
        tx_hash = replaced["transactions"][0]
        receipt = lone.rpc("eth_getTransactionReceipt", [tx_hash])
        assert receipt["status"] == "0x1" and receipt["blockHash"] == replaced["hash"]
        N.wait_blocks(others[0], 3)  # the others' chain grows past the lone block
        time.sleep(2)  # the service has seen its receipt in the lone block
    finally:
        lone.rpc("miner_start")
        N.heal(net.network.nodes)
    views = proc.wait_final(ids, timeout=90)
    assert {v["txHash"] for v in views.values()} == {tx_hash}  # the one transaction, sealed again
    net.converged()
    for node in net.network.nodes:
        block = node.rpc("eth_getBlockByNumber", [hex(fork_head + 1), False])
        assert block["hash"] != replaced["hash"], f"{node.url} kept the lone block"
    final = others[0].rpc("eth_getTransactionReceipt", [tx_hash])
    assert final is not None and final["blockHash"] != replaced["hash"]
    assert_anchored_exactly_once(net, [(proc, views)], batches_before, {elder: 1000, volunteer: 0})


# ----- 5. two district services -----------------------------------------------------------------------------


def test_two_district_services_killed_under_load_anchor_every_order_once(net, world, services):
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    a = services("district-a", RELAYER_KEY).start(timeout=60)
    b = services("district-b", SECOND_RELAYER_KEY).start(timeout=60)
    bind(world, a)
    vols_a, elder_a = new_accounts(world, 2, 100_000)
    vols_b, elder_b = new_accounts(world, 2, 100_000, admin=world.other_admin, district=OTHER_DISTRICT)
    followed = net.head()
    a.wait_followed(followed, timeout=30)
    b.wait_followed(followed, timeout=30)
    locate_in(b, world.other_admin, elder_b)
    batches_before = net.batch_count()
    terminal_b = world.other_terminal
    loads = {
        a: Load(a, lambda i: world.terminal.order(vols_a[i % 2], elder_a, elder_a, minutes=3)),
        b: Load(b, lambda i: terminal_b.order(vols_b[i % 2], elder_b, elder_b, minutes=4)),
    }
    for load in loads.values():
        load.__enter__()
    try:
        for _cycle in range(2):
            for proc in (a, b):
                time.sleep(rng.uniform(0.5, 2.0))
                proc.kill()
                time.sleep(rng.uniform(0.0, 0.5))
                proc.start(timeout=60)
        time.sleep(1)
    finally:
        for load in loads.values():
            load.__exit__()
    for proc, load in loads.items():
        assert not load.refused, (seed, proc.name, load.refused[:3])
        assert len(load.accepted) > 10, (seed, proc.name, len(load.accepted))
    views = [(proc, proc.wait_final(load.existing(), timeout=120)) for proc, load in loads.items()]
    opening = {elder_a: 100_000, elder_b: 100_000, **{v: 0 for v in vols_a + vols_b}}
    assert_anchored_exactly_once(net, views, batches_before, opening)
    # each follows the other's batches: its mirror (what its order checks read) holds the other's payer's
    # balance as the chain does
    for proc, account in ((a, elder_b), (b, elder_a)):
        proc.wait_followed(net.head() - CONFIRMATIONS)
        assert mirror_balance(proc, account) == net.balance(account) < 100_000


def test_payer_spending_through_both_services_is_never_overdrawn(net, world, services):
    """A payer of district A with 60 minutes pays orders in A (for itself) and, for a recipient of district
    B (hours are city-wide), in B, through both services at once: each accepts against what it knows, so together they
    accept more than 60 minutes; the contract refuses the batch that would overdraw it, and the service
    whose batch it was rejects the orders it cannot anchor."""
    a = services("spend-a", RELAYER_KEY).start(timeout=60)
    b = services("spend-b", SECOND_RELAYER_KEY).start(timeout=60)
    bind(world, a)
    payer = world.new_account(2, grant=60)
    vol_a = world.new_account(1)
    vol_b, recipient_b = new_accounts(world, 1, 0, admin=world.other_admin, district=OTHER_DISTRICT)
    followed = net.head()
    a.wait_followed(followed, timeout=30)
    b.wait_followed(followed, timeout=30)
    locate_in(b, world.other_admin, recipient_b)
    bodies_a = [world.terminal.order(vol_a, payer, payer, minutes=10) for _ in range(5)]
    link(world.admin, payer, recipient_b)  # served in district B on the payer's hours
    b.wait_followed(net.head(), timeout=30)  # the link is known to the service of district B too
    bodies_b = [world.other_terminal.order(vol_b[0], payer, recipient_b, minutes=10) for _ in range(5)]
    results = {}

    def post(proc, bodies):
        results[proc.name] = [proc.client.post("/v1/orders", json=body) for body in bodies]

    threads = [threading.Thread(target=post, args=(p, bs)) for p, bs in ((a, bodies_a), (b, bodies_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    accepted = {name: [r.json()["orderId"] for r in rs if r.status_code == 201] for name, rs in results.items()}
    assert sum(len(ids) for ids in accepted.values()) > 6, {n: [r.status_code for r in rs] for n, rs in results.items()}
    final = {**a.wait_final(accepted[a.name], timeout=90), **b.wait_final(accepted[b.name], timeout=90)}
    spent = sum(v["order"]["minutes"] for v in final.values() if v["status"] == "anchored")
    net.converged()
    assert net.balance(payer) == 60 - spent >= 0
    assert Counter(v["status"] for v in final.values())["rejected"] >= 1
