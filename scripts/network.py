"""A permissioned network of four Clique signers (go-ethereum 1.13.15) on loopback, with TimeBank on it.

    python -m scripts.network start|stop|status [--dir DIR]

`start` creates the network on first use under node/network-data/ (each signer's key in an encrypted
keystore with a generated password file, its p2p node key, the genesis naming the four signers, a
config.toml listing the other three as static nodes), starts the four `geth` processes (node/bin/geth,
built by `make geth`), waits until they are peered and sealing, deploys TimeBank with scripts/deploy.py
(node/deployments/<chainId>.json), gives the second district service's relayer RELAYER_ROLE, and prints
the four RPC URLs and the contract's address. `stop` stops the four nodes (SIGTERM; the chain stays in
their data directories). Nothing here is a secret worth keeping: it is a development network whose city
administrator and relayers are Anvil's well-known keys (on a city's network they come from keystores).

Ports: RPC $TIMEBANK_NETWORK_RPC_PORT + i (default 8646..8649), p2p $TIMEBANK_NETWORK_P2P_PORT + i
(30313..30316), the engine API's $TIMEBANK_NETWORK_AUTH_PORT + i (8656..8659, unused by Clique but opened
by geth), all on 127.0.0.1. Block period $TIMEBANK_NETWORK_PERIOD seconds (default 1).

Gas: London pricing, no market. The genesis starts the base fee at 7 wei (the floor EIP-1559 arithmetic
keeps on a quiet chain), the signers take tips from 1 wei (`--miner.gasprice 1`), and the city administrator
and the relayers are funded in the genesis (10^9 ether each of this chain's worthless ether). A zero base
fee would leave zero tips, which geth's transaction pool refuses from peers (its price limit is at least
1 wei), so a transaction would be sealed only by the node it was sent to.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_keys import keys as eth_keys
from web3 import Web3

from scripts.chain import DEV_KEYS, HOST

ROOT = Path(__file__).resolve().parent.parent
GETH = ROOT / "node" / "bin" / "geth"
GETH_VERSION = "1.13.15"
DATA_DIR = ROOT / "node" / "network-data"
CHAIN_ID = 31338
SIGNERS = 4
DEFAULT_RPC_PORT = 8646
DEFAULT_P2P_PORT = 30313
DEFAULT_AUTH_PORT = 8656
DEFAULT_PERIOD = 1
FUNDS = hex(10**9 * 10**18)
BASE_FEE = 7  # wei: where an idle London chain's base fee settles
KDF_N = 4096  # scrypt cost of the signers' keystores (geth's --lightkdf): four nodes unlock at once
# The development network's accounts: Anvil's key 0 deploys and is the city administrator, key 1 is the
# first district service's relayer, key 2 the second's.
CITY_KEY, RELAYER_KEY, SECOND_RELAYER_KEY = DEV_KEYS[0], DEV_KEYS[1], DEV_KEYS[2]


class NetworkError(RuntimeError):
    """geth is missing, a node did not start, or the network does not seal."""


@dataclass
class Node:
    index: int
    datadir: Path
    rpc_port: int
    p2p_port: int
    auth_port: int
    signer: str = ""  # the signer's address (checksummed)
    enode: str = ""
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.rpc_port}"

    @property
    def pid_file(self) -> Path:
        return self.datadir / "geth.pid"

    @property
    def log_file(self) -> Path:
        return self.datadir / "geth.log"

    def rpc(self, method: str, params: list | None = None, timeout: float = 5.0):
        return rpc(self.url, method, params, timeout)

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None


@dataclass
class Network:
    dir: Path
    chain_id: int
    period: int
    nodes: list[Node]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def rpc_url(self) -> str:
        """The value for TIMEBANK_RPC_URL: every node, the first preferred."""
        return ",".join(self.urls)


def rpc(url: str, method: str, params: list | None = None, timeout: float = 5.0):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise NetworkError(f"{method} at {url}: {answer['error']}")
    return answer["result"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def geth_version(geth: Path = GETH) -> str | None:
    """The version geth reports (e.g. "1.13.15-stable"), or None when it is not there."""
    if not geth.exists():
        return None
    out = subprocess.run([str(geth), "version"], capture_output=True, text=True, timeout=30).stdout
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return None


def layout(
    directory: Path = DATA_DIR,
    rpc_port: int | None = None,
    p2p_port: int | None = None,
    auth_port: int | None = None,
    ports: list[tuple[int, int, int]] | None = None,
) -> list[Node]:
    """The four nodes' directories and ports: consecutive from the base ports, or as `ports` lists them
    ((rpc, p2p, auth) per node, as tests take free ones)."""
    if ports is None:
        rpc_port = rpc_port or int(os.environ.get("TIMEBANK_NETWORK_RPC_PORT", DEFAULT_RPC_PORT))
        p2p_port = p2p_port or int(os.environ.get("TIMEBANK_NETWORK_P2P_PORT", DEFAULT_P2P_PORT))
        auth_port = auth_port or int(os.environ.get("TIMEBANK_NETWORK_AUTH_PORT", DEFAULT_AUTH_PORT))
        ports = [(rpc_port + i, p2p_port + i, auth_port + i) for i in range(SIGNERS)]
    return [Node(i, Path(directory) / f"node{i + 1}", *ports[i]) for i in range(SIGNERS)]


def genesis(signers: list[str], chain_id: int, period: int, funded: list[str]) -> dict:
    """A Clique genesis: every fork through London from block 0 (no merge, no Shanghai: contracts compiled
    for `paris` run unchanged), the signers in `extraData`, `funded` holding 10^9 ether each."""
    extra = "0x" + "00" * 32 + "".join(s.lower().removeprefix("0x") for s in sorted(signers, key=str.lower)) + "00" * 65
    forks = ["homestead", "eip150", "eip155", "eip158", "byzantium", "constantinople", "petersburg", "istanbul",
             "muirGlacier", "berlin", "london", "arrowGlacier", "grayGlacier"]
    return {
        "config": {"chainId": chain_id, **{f"{f}Block": 0 for f in forks}, "clique": {"period": period, "epoch": 30000}},
        "difficulty": "0x1",
        "gasLimit": hex(30_000_000),
        "baseFeePerGas": hex(BASE_FEE),
        "extraData": extra,
        "alloc": {a.lower().removeprefix("0x"): {"balance": FUNDS} for a in funded},
    }


def _static_nodes_toml(enodes: list[str]) -> str:
    listed = ", ".join(json.dumps(e) for e in enodes)
    return f"[Node.P2P]\nStaticNodes = [{listed}]\nTrustedNodes = []\n"


def init(nodes: list[Node], chain_id: int = CHAIN_ID, period: int = DEFAULT_PERIOD, geth: Path = GETH,
         funded: list[str] | None = None) -> None:
    """First start: keys, genesis, static node lists, `geth init`. Does nothing for a node already made,
    except rewriting its static node list (ports may have changed)."""
    funded = funded or [Account.from_key(k).address for k in (CITY_KEY, RELAYER_KEY, SECOND_RELAYER_KEY)]
    directory = nodes[0].datadir.parent
    directory.mkdir(parents=True, exist_ok=True)
    for node in nodes:
        node.datadir.mkdir(parents=True, exist_ok=True)
        keystore = node.datadir / "keystore"
        password = node.datadir / "password.txt"
        nodekey = node.datadir / "nodekey"
        if not list(keystore.glob("*.json")):
            keystore.mkdir(exist_ok=True)
            secret = secrets.token_urlsafe(24)
            password.write_text(secret + "\n")
            password.chmod(0o600)
            account = Account.create()
            encrypted = Account.encrypt(account.key, secret, kdf="scrypt", iterations=KDF_N)
            path = keystore / f"signer-{account.address.lower()[2:]}.json"
            path.write_text(json.dumps(encrypted))
            path.chmod(0o600)
        if not nodekey.exists():
            nodekey.write_text(secrets.token_hex(32))
            nodekey.chmod(0o600)
        _identify(node)
    for node in nodes:
        (node.datadir / "config.toml").write_text(_static_nodes_toml([n.enode for n in nodes if n is not node]))
    spec = directory / "genesis.json"
    if not spec.exists():
        spec.write_text(json.dumps(genesis([n.signer for n in nodes], chain_id, period, funded), indent=2))
    for node in nodes:
        if not (node.datadir / "geth" / "chaindata").exists():
            done = subprocess.run([str(geth), "init", "--datadir", str(node.datadir), str(spec)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise NetworkError(f"geth init of {node.datadir} failed:\n{done.stderr[-2000:]}")


def _identify(node: Node) -> None:
    """The node's signer address (from its keystore) and enode URL (from its node key)."""
    node.signer = Web3.to_checksum_address(json.loads(next((node.datadir / "keystore").glob("*.json")).read_text())["address"])
    public = eth_keys.PrivateKey(bytes.fromhex((node.datadir / "nodekey").read_text().strip())).public_key
    node.enode = f"enode://{public.to_bytes().hex()}@{HOST}:{node.p2p_port}"


def load(directory: Path = DATA_DIR, **ports) -> Network:
    nodes = layout(directory, **ports)
    spec = json.loads((Path(directory) / "genesis.json").read_text())
    for node in nodes:
        _identify(node)
    return Network(Path(directory), spec["config"]["chainId"], spec["config"]["clique"]["period"], nodes)


def command(node: Node, chain_id: int, geth: Path = GETH) -> list[str]:
    return [
        str(geth),
        "--datadir", str(node.datadir),
        "--config", str(node.datadir / "config.toml"),
        "--nodekey", str(node.datadir / "nodekey"),
        "--networkid", str(chain_id),
        "--syncmode", "full",
        "--gcmode", "archive",  # views at past blocks (the verifier's station check) stay answerable
        "--port", str(node.p2p_port),
        "--nodiscover", "--maxpeers", "8", "--netrestrict", "127.0.0.0/8",
        "--http", "--http.addr", HOST, "--http.port", str(node.rpc_port),
        "--http.api", "eth,net,web3,txpool,clique,admin,miner",
        "--authrpc.addr", HOST, "--authrpc.port", str(node.auth_port),
        "--ipcdisable",
        "--unlock", node.signer, "--password", str(node.datadir / "password.txt"), "--allow-insecure-unlock",
        "--mine", "--miner.etherbase", node.signer, "--miner.gasprice", "1",
        "--cache", "64",
        "--verbosity", "3",
    ]


def start_node(node: Node, chain_id: int, geth: Path = GETH, timeout: float = 60.0) -> None:
    """Starts one node (nothing when it runs) and waits until its RPC answers."""
    if node.running():
        return
    with open(node.log_file, "ab") as log:
        node.process = subprocess.Popen(command(node, chain_id, geth), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
    node.pid_file.write_text(str(node.process.pid))
    deadline = time.monotonic() + timeout
    while True:
        if node.process.poll() is not None:
            raise NetworkError(f"geth of {node.datadir} exited with {node.process.returncode}:\n{log_tail(node)}")
        try:
            node.rpc("eth_chainId", timeout=2)
            return
        except (OSError, NetworkError):
            pass
        if time.monotonic() > deadline:
            raise NetworkError(f"geth of {node.datadir} did not answer within {timeout}s:\n{log_tail(node)}")
        time.sleep(0.2)


def stop_node(node: Node, timeout: float = 30.0, kill: bool = False) -> None:
    """SIGTERM (or SIGKILL) and wait until the process is gone."""
    pid = node.pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if node.process is not None and node.process.pid == pid:
            node.process.poll()
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline += 10
        time.sleep(0.1)
    if node.process is not None:
        node.process.poll()
    node.pid_file.unlink(missing_ok=True)


def log_tail(node: Node, lines: int = 20) -> str:
    try:
        return "\n".join(node.log_file.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def peer_count(node: Node) -> int:
    return len(node.rpc("admin_peers"))


def block_number(node: Node) -> int:
    return int(node.rpc("eth_blockNumber"), 16)


def wait_peered(nodes: list[Node], timeout: float = 60.0) -> None:
    """Until every running node listed has every other one as a peer."""
    deadline = time.monotonic() + timeout
    while True:
        counts = [peer_count(n) for n in nodes]
        if all(c >= len(nodes) - 1 for c in counts):
            return
        if time.monotonic() > deadline:
            raise NetworkError(f"nodes not peered after {timeout}s: peers {counts}")
        time.sleep(0.2)


def wait_blocks(node: Node, count: int = 2, timeout: float = 60.0) -> int:
    """Until `count` new blocks are sealed, as `node` sees them; returns its head."""
    start = block_number(node)
    deadline = time.monotonic() + timeout
    while (head := block_number(node)) < start + count:
        if time.monotonic() > deadline:
            raise NetworkError(f"no {count} new blocks within {timeout}s (head {head})")
        time.sleep(0.1)
    return head


def _peer_ids(node: Node) -> set[str]:
    return {p["enode"].split("@")[0] for p in node.rpc("admin_peers")}


def partition(side_a: list[Node], side_b: list[Node], timeout: float = 30.0) -> None:
    """Cuts every peering between the two sides (admin_removePeer drops the static entry on both ends, so
    neither redials), and waits until no connection between them is left (a dial already under way when
    the entry was dropped may still connect once: it is cut again)."""
    deadline = time.monotonic() + timeout
    while True:
        for a in side_a:
            for b in side_b:
                a.rpc("admin_removePeer", [b.enode])
                b.rpc("admin_removePeer", [a.enode])
        time.sleep(0.5)
        left = [(a.url, b.url) for a in side_a for b in side_b if b.enode.split("@")[0] in _peer_ids(a)]
        if not left:
            return
        if time.monotonic() > deadline:
            raise NetworkError(f"still peered after {timeout}s: {left}")


def heal(nodes: list[Node], timeout: float = 120.0, full_mesh: float = 45.0) -> None:
    """Peers every node with every other one again (static entries restored) and waits until they are.
    geth does not redial a node it failed to reach or dropped for about 35 s, and after a partition one pair
    of nodes has been seen never to connect again (each syncing through the other two), so a pair still
    apart is asked again every 5 s, and after `full_mesh` seconds a network where every node has all but one
    of the others as peers (so the network is connected) is accepted."""
    start = time.monotonic()
    while True:
        ids = {n.url: _peer_ids(n) for n in nodes}
        apart = [(a, b) for a in nodes for b in nodes if a is not b and b.enode.split("@")[0] not in ids[a.url]]
        if not apart:
            return
        if time.monotonic() - start > full_mesh and all(len(ids[n.url]) >= len(nodes) - 2 for n in nodes):
            return
        if time.monotonic() - start > timeout:
            raise NetworkError(f"nodes not peered after {timeout}s: {[(a.url, b.url) for a, b in apart]}")
        for a, b in apart:
            a.rpc("admin_addPeer", [b.enode])
        time.sleep(5.0)


def id_hash_key(data_dir: Path = DATA_DIR) -> str:
    """The ID numbers' HMAC key of a service on this network (TIMEBANK_ID_HASH_KEY): generated on first use
    into the network's data directory (mode 0600, never committed), the same afterwards."""
    path = data_dir / "id-hash-key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def start(network: Network, geth: Path = GETH) -> None:
    for node in network.nodes:
        start_node(node, network.chain_id, geth)
    wait_peered(network.nodes)
    wait_blocks(network.nodes[0], 2)


def stop(network: Network) -> None:
    for node in network.nodes:
        stop_node(node)


def create(directory: Path = DATA_DIR, chain_id: int = CHAIN_ID, period: int | None = None, geth: Path = GETH,
           **ports) -> Network:
    """The network in `directory`, made on first use; its nodes not started."""
    if not geth.exists():
        raise NetworkError(f"{geth} is missing: run `make geth` (go install of go-ethereum v{GETH_VERSION})")
    period = period or int(os.environ.get("TIMEBANK_NETWORK_PERIOD", DEFAULT_PERIOD))
    nodes = layout(directory, **ports)
    init(nodes, chain_id, period, geth)
    return load(directory, **ports)


def deploy(network: Network, records_dir: Path | None = None, say=print) -> dict:
    """TimeBank through scripts/deploy.py (deployer and city administrator Anvil's key 0 unless the
    environment names others, relayer key 1), then RELAYER_ROLE for the second relayer (key 2)."""
    from web3 import Web3

    from scripts.compile import load_artifact
    from scripts import deploy as deployment

    w3 = Web3(Web3.HTTPProvider(network.urls[0], request_kwargs={"timeout": 60}))
    keys = deployment.DeploymentKeys(
        deployment.deployer_key_from_env() or CITY_KEY,
        os.environ.get("TIMEBANK_CITY_ADMIN") or Account.from_key(CITY_KEY).address,
        os.environ.get("TIMEBANK_RELAYER") or Account.from_key(RELAYER_KEY).address,
    )
    artifact = load_artifact("TimeBank")
    record, action = deployment.ensure_deployed(w3, artifact, keys, records_dir or deployment.DEPLOYMENTS_DIR, say=say)
    say(f"{action} TimeBank at {record['address']} on chain {record['chainId']} (block {record['blockNumber']})")
    grant_relayer(w3, artifact["abi"], record["address"], Account.from_key(SECOND_RELAYER_KEY).address, CITY_KEY, say)
    return record


def grant_relayer(w3, abi: list, address: str, relayer: str, admin_key: str, say=print) -> None:
    """RELAYER_ROLE for `relayer`, granted by the city administrator (the role's admin); once."""
    contract = w3.eth.contract(address=address, abi=abi)
    role = contract.functions.RELAYER_ROLE().call()
    if contract.functions.hasRole(role, relayer).call():
        return
    admin = Account.from_key(admin_key)
    tx = contract.functions.grantRole(role, relayer).build_transaction(
        {"from": admin.address, "nonce": w3.eth.get_transaction_count(admin.address, "pending"),
         "gasPrice": w3.eth.gas_price, "chainId": w3.eth.chain_id}
    )
    tx_hash = w3.eth.send_raw_transaction(admin.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise NetworkError(f"granting RELAYER_ROLE to {relayer} failed")
    say(f"granted RELAYER_ROLE to the second relayer {relayer}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.network", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=DATA_DIR, help="the network's directory (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.action == "stop":
        if not (args.dir / "genesis.json").exists():
            print("no network")
            return 0
        network = load(args.dir)
        running = [n for n in network.nodes if n.running()]
        stop(network)
        print(f"stopped {len(running)} node(s)")
        return 0
    if args.action == "status":
        if not (args.dir / "genesis.json").exists():
            print("no network")
            return 3
        network = load(args.dir)
        up = 0
        for node in network.nodes:
            try:
                print(f"node{node.index + 1} {node.url} signer {node.signer} block {block_number(node)} peers {peer_count(node)}")
                up += 1
            except (OSError, NetworkError):
                print(f"node{node.index + 1} {node.url} signer {node.signer} down")
        return 0 if up == SIGNERS else 3
    network = create(args.dir)
    start(network)
    record = deploy(network)
    print(f"chain {network.chain_id}, Clique, {SIGNERS} signers, a block every {network.period} s")
    for node in network.nodes:
        print(f"  node{node.index + 1} {node.url} signer {node.signer}")
    print(f"TimeBank at {record['address']}")
    print(f"TIMEBANK_RPC_URL={network.rpc_url}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NetworkError as exc:
        sys.exit(f"error: {exc}")
