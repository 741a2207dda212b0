"""timebank-watchtower: an auditor office's watch over every batch anchored on the city's TimeBank contract
(PROTOCOL.md section 9), trusting nothing but its own JSON-RPC endpoint and the contract address the city
publishes.

    timebank-watchtower --rpc-url http://your-node:8545 --contract 0x... --api http://service-a:8000 \\
        [--api http://service-b:8000 ...] --state watch.json [--from-block N] [--listing-timeout 600] [--once]

It follows the contract's `BatchAnchored` logs from `--from-block` (then from where its state file says it
stopped), and for each new batch:

  - reads the anchoring transaction (its sender, the relayer; its calldata, the anchored canonical deltas)
    and checks them against the batch's commitment (`getBatchCommitment`);
  - fetches the batch's listing (`GET /v1/batches/{id}`) from the services given (the one that anchored it
    answers; the others say 404) and keeps the one whose orders' leaves build the anchored root;
  - judges it as the contract does: every signature recovers its station (fault 1), every station is
    registered for its order's district and active at the batch's block (fault 2), the canonical deltas of
    the valid orders equal the anchored ones (fault 3), and no order id was anchored before, in an earlier
    batch or twice in this one (fault 4);
  - on a fault, sends the challenge itself with its own key (`challengeBatch`, or `challengeDuplicate` with
    the earlier batch's listing fetched again), after simulating it: a challenge the chain would refuse is
    reported, never sent.

A listing that no service gives within `--listing-timeout` seconds of the batch's anchoring cannot be
challenged by anyone without the orders: the watchtower can only report it (`WITHHELD` log line, exit
status 2 with `--once`). It keeps its position (the next block, the order ids seen with their batch and
leaf, the batches still waiting for a listing) in its state file, written after every batch, so a restart
goes on where it stopped.

The key: `TIMEBANK_WATCHTOWER_KEY` (hex) or `--keystore FILE` with `TIMEBANK_WATCHTOWER_KEYSTORE_PASSWORD`;
without one it only reports. It imports `api/protocol.py`, `api/bundles.py` and the verifier's JSON-RPC
client, nothing of the service.

Exit status with `--once` (follow to the chain's head, then stop): 0 every batch checked and honest; 1 a
faulty batch found (challenged, or reported when no key); 2 a listing withheld past the timeout; 3 a
challenge that could not be sent or was refused; 6 unusable RPC; 64 bad command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_hash.auto import keccak

from api import protocol
from api.bundles import Listing, parse_listing, recompute_signer
from api.protocol import ProtocolError
from scripts.verify_proof import BATCH_ANCHORED_TOPIC, Rpc, RpcError, RpcUnavailable, decode_anchor_call, fetch_listing

log = logging.getLogger("timebank.watchtower")

EXIT_FAULT, EXIT_WITHHELD, EXIT_CHALLENGE_FAILED, EXIT_RPC, EXIT_USAGE = 1, 2, 3, 6, 64
ORDER_TUPLE = "(" + ",".join(kind for _, kind in protocol.TYPES["ServiceOrder"]) + ")"
CHALLENGE_BATCH = f"challengeBatch(uint64,address,bytes,{ORDER_TUPLE}[],address[],bytes[])"
CHALLENGE_DUPLICATE = (
    f"challengeDuplicate(uint64,{ORDER_TUPLE},address,bytes32[],uint64,{ORDER_TUPLE},address,bytes32[],address,bytes)"
)
FAULT_NAMES = {1: "forged signature", 2: "station not registered or not active", 3: "deltas differ", 4: "order anchored twice"}


# ----- what the watchtower remembers ------------------------------------------------------------------


@dataclass
class State:
    """The state file: the next block to read, every order id seen (batch id and leaf), the batches whose
    listing has not come yet (id -> when first seen, unix seconds), and what was found."""

    contract: str
    next_block: int
    seen: dict[str, list] = field(default_factory=dict)  # orderId -> [batchId, leaf]
    waiting: dict[str, float] = field(default_factory=dict)  # batchId -> first seen
    findings: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, contract: str, from_block: int) -> "State":
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("contract", "").lower() != contract.lower():
                raise SystemExit(f"{path} follows contract {data.get('contract')}, not {contract}")
            return cls(data["contract"], data["nextBlock"], data["seen"], data["waiting"], data.get("findings", []))
        return cls(contract.lower(), from_block)

    def save(self, path: Path) -> None:
        data = {"contract": self.contract, "nextBlock": self.next_block, "seen": self.seen, "waiting": self.waiting,
                "findings": self.findings[-1000:]}
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


# ----- judging a batch ------------------------------------------------------------------------------


@dataclass
class Anchored:
    """A batch as the chain holds it: id, root, count, block, its anchoring transaction's sender and deltas."""

    batch_id: int
    root: bytes
    count: int
    block: int
    tx_hash: str
    relayer: bytes
    deltas: bytes


@dataclass
class Judgement:
    faults: list[tuple[int, bytes]]  # (reason, orderId or zeros)
    ranked: list[int]  # listing positions in ascending order of leaf
    leaves: list[bytes]  # by listing position
    tree: protocol.MerkleTree


def canonical_of(rpc: Rpc, contract: bytes, orders: Sequence[protocol.ServiceOrder], cache: dict[bytes, int]) -> bytes | None:
    """The canonical deltas of `orders` (PROTOCOL.md section 9), indices read with `accountIndex`; None when
    an account has no index (the contract could not have moved it)."""
    amounts = protocol.amounts((o.volunteer, o.payer, o.serviceType, o.minutes) for o in orders)
    for account in amounts:
        if account not in cache:
            (cache[account],) = rpc.eth_call(contract, "accountIndex(bytes32)", ["bytes32"], [account], ["uint32"])
        if cache[account] == 0:
            return None
    return protocol.canonical_deltas(amounts, cache)


def judge(rpc: Rpc, contract: bytes, chain_id: int, batch: Anchored, listing: Listing,
          stations: dict[bytes, tuple[int, int, int]], indices: dict[bytes, int]) -> Judgement:
    """The contract's judgement of `challengeBatch` (faults 1 to 3), recomputed from the listing."""
    faults: list[tuple[int, bytes]] = []
    valid = []
    for item in listing.orders:
        signed = recompute_signer(chain_id, contract, item.order, item.signature)
        if signed.signer != item.station:
            faults.append((1, item.order.orderId))
            continue
        if item.station not in stations:
            stations[item.station] = rpc.eth_call(contract, "getStation(address)", ["address"],
                                                  [protocol.checksum(item.station)], ["uint32", "uint64", "uint64"])
        district, active_from, active_until = stations[item.station]
        if district != item.order.district or not (active_from <= batch.block and (active_until == 0 or batch.block < active_until)):
            faults.append((2, item.order.orderId))
            continue
        valid.append(item.order)
    canonical = canonical_of(rpc, contract, valid, indices) if valid else b""
    if canonical != batch.deltas:
        faults.append((3, b"\x00" * 32))
    leaves = [protocol.leaf(i.order.digest(protocol.domain_separator(chain_id, contract)), i.station) for i in listing.orders]
    tree = protocol.MerkleTree(leaves)
    ranked = sorted(range(len(leaves)), key=lambda i: leaves[i])
    return Judgement(faults, ranked, leaves, tree)


# ----- the watchtower ---------------------------------------------------------------------------------


class Watchtower:
    def __init__(self, rpc: Rpc, contract: str, apis: Sequence[str], state: State, state_path: Path, *,
                 key: bytes | None = None, listing_timeout: float = 600.0, confirmations: int = 1,
                 http_timeout: float = 10.0):
        self.rpc = rpc
        self.contract = protocol.parse_address(contract, "--contract")
        self.apis = list(apis)
        self.state = state
        self.state_path = state_path
        self.key = key
        self.listing_timeout = listing_timeout
        self.confirmations = confirmations
        self.http_timeout = http_timeout
        self.chain_id = int(rpc.call("eth_chainId"), 16)
        if rpc.call("eth_getCode", protocol.to_hex(self.contract), "latest") in ("0x", None):
            raise RpcError(f"no contract at {protocol.to_hex(self.contract)}")
        self.stations: dict[bytes, tuple[int, int, int]] = {}
        self.indices: dict[bytes, int] = {}
        self.worst = 0  # the exit status of what was found so far

    # ----- following ------------------------------------------------------------------------------

    def step(self) -> int:
        """Reads the next range of confirmed blocks, judges each new batch, retries the batches waiting
        for their listing; returns how many blocks it read."""
        head = int(self.rpc.call("eth_blockNumber"), 16) - (self.confirmations - 1)
        start = self.state.next_block
        read = 0
        if head >= start:
            to = min(head, start + 1999)
            logs = self.rpc.call("eth_getLogs", {"address": protocol.to_hex(self.contract), "fromBlock": hex(start),
                                                 "toBlock": hex(to), "topics": [protocol.to_hex(BATCH_ANCHORED_TOPIC)]})
            for entry in logs:
                (batch_id,) = abi_decode(["uint64"], bytes.fromhex(entry["topics"][1][2:]))
                self.state.waiting.setdefault(str(batch_id), time.time())
            self.state.next_block = to + 1
            read = to - start + 1
            self.state.save(self.state_path)
        for batch_id in sorted(self.state.waiting, key=int):
            self.check(int(batch_id))
        return read

    def check(self, batch_id: int) -> None:
        """Judges one batch once its listing comes; reports it withheld once the timeout passed."""
        batch = self.anchored(batch_id)
        listing = self.listing(batch)
        if listing is None:
            waited = time.time() - self.state.waiting[str(batch_id)]
            if waited >= self.listing_timeout:
                self.finding(batch_id, "withheld", EXIT_WITHHELD,
                             f"WITHHELD: no service gave the listing of batch {batch_id} (relayer "
                             f"{protocol.checksum(batch.relayer)}, tx {batch.tx_hash}) within {self.listing_timeout:.0f} s; "
                             "without its orders nobody can challenge it: report it to the city")
                del self.state.waiting[str(batch_id)]
                self.state.save(self.state_path)
            return
        judgement = judge(self.rpc, self.contract, self.chain_id, batch, listing, self.stations, self.indices)
        if judgement.faults:
            reasons = sorted({r for r, _ in judgement.faults})
            self.finding(batch_id, "faulty", EXIT_FAULT, f"FAULT: batch {batch_id}: " + ", ".join(FAULT_NAMES[r] for r in reasons))
            self.challenge_batch(batch, listing, judgement)
        # duplicates: against every order id seen before, and twice in this batch
        first: dict[bytes, int] = {}
        for position, item in enumerate(listing.orders):
            order_id = item.order.orderId
            key = protocol.to_hex(order_id)
            if order_id in first:
                self.challenge_duplicate(batch, listing, judgement, first[order_id], batch, listing, judgement, position)
            elif key in self.state.seen and self.state.seen[key][0] != batch_id:
                self.duplicate_of_earlier(key, batch, listing, judgement, position)
            first.setdefault(order_id, position)
        for position, item in enumerate(listing.orders):
            self.state.seen.setdefault(protocol.to_hex(item.order.orderId), [batch_id, protocol.to_hex(judgement.leaves[position])])
        if not judgement.faults:
            log.info("batch %s: %s orders checked, honest", batch_id, len(listing.orders))
        del self.state.waiting[str(batch_id)]
        self.state.save(self.state_path)

    def anchored(self, batch_id: int) -> Anchored:
        root, count, block = self.rpc.eth_call(self.contract, "getBatch(uint64)", ["uint64"], [batch_id],
                                               ["bytes32", "uint32", "uint64"])
        logs = self.rpc.call("eth_getLogs", {"address": protocol.to_hex(self.contract), "fromBlock": hex(block),
                                             "toBlock": hex(block), "topics": [protocol.to_hex(BATCH_ANCHORED_TOPIC),
                                                                               "0x" + batch_id.to_bytes(32, "big").hex()]})
        tx_hash = logs[0]["transactionHash"]
        tx = self.rpc.call("eth_getTransactionByHash", tx_hash)
        try:
            _root, _count, deltas = decode_anchor_call(bytes.fromhex(tx["input"][2:]))
        except ProtocolError:
            deltas = b""  # not a direct anchorBatch call: the commitment check below says so
        relayer = bytes.fromhex(tx["from"][2:])
        (commitment,) = self.rpc.eth_call(self.contract, "getBatchCommitment(uint64)", ["uint64"], [batch_id], ["bytes32"])
        if keccak(relayer + deltas) != commitment:
            (chain_relayer,) = self.rpc.eth_call(self.contract, "getBatchRelayer(uint64)", ["uint64"], [batch_id], ["address"])
            relayer = bytes.fromhex(chain_relayer[2:])
            log.warning("batch %s: the anchoring transaction is not a direct anchorBatch call; its deltas are "
                        "taken from the listing and checked against the commitment", batch_id)
            deltas = b""
        return Anchored(batch_id, root, count, block, tx_hash, relayer, deltas)

    def listing(self, batch: Anchored) -> Listing | None:
        """The first listing of the batch, from the services in turn, whose leaves build the anchored root,
        with the anchored deltas filled from it when the calldata did not give them."""
        for api in self.apis:
            try:
                raw = fetch_listing(api, batch.batch_id, timeout=self.http_timeout)
                listing = parse_listing(raw)
            except (RpcUnavailable, ProtocolError) as exc:
                log.debug("batch %s from %s: %s", batch.batch_id, api, exc)
                continue
            if listing.chain_id != self.chain_id or listing.contract != self.contract:
                continue
            separator = protocol.domain_separator(self.chain_id, self.contract)
            leaves = [protocol.leaf(i.order.digest(separator), i.station) for i in listing.orders]
            if protocol.MerkleTree(leaves).root != batch.root or len(leaves) != batch.count:
                log.warning("batch %s: the listing of %s does not build the anchored root", batch.batch_id, api)
                continue
            if not batch.deltas and isinstance(raw.get("deltas"), str):
                deltas = bytes.fromhex(raw["deltas"][2:])
                if keccak(batch.relayer + deltas) == self.rpc.eth_call(
                        self.contract, "getBatchCommitment(uint64)", ["uint64"], [batch.batch_id], ["bytes32"])[0]:
                    batch.deltas = deltas
            return listing
        return None

    # ----- challenges -----------------------------------------------------------------------------

    def challenge_batch(self, batch: Anchored, listing: Listing, j: Judgement) -> None:
        ranked = [listing.orders[i] for i in j.ranked]
        data = keccak(CHALLENGE_BATCH.encode())[:4] + abi_encode(
            ["uint64", "address", "bytes", f"{ORDER_TUPLE}[]", "address[]", "bytes[]"],
            [batch.batch_id, protocol.checksum(batch.relayer), batch.deltas, [tuple(i.order) for i in ranked],
             [protocol.checksum(i.station) for i in ranked], [i.signature for i in ranked]],
        )
        self.send(batch.batch_id, "challengeBatch", data)

    def duplicate_of_earlier(self, key: str, batch: Anchored, listing: Listing, j: Judgement, position: int) -> None:
        earlier_id = self.state.seen[key][0]
        earlier = self.anchored(earlier_id)
        earlier_listing = self.listing(earlier)
        if earlier_listing is None:
            self.finding(batch.batch_id, "duplicate-unprovable", EXIT_CHALLENGE_FAILED,
                         f"FAULT: order {key} of batch {batch.batch_id} was anchored in batch {earlier_id}, whose listing "
                         "no service gives any more: the duplicate cannot be proven")
            return
        ej = judge(self.rpc, self.contract, self.chain_id, earlier, earlier_listing, self.stations, self.indices)
        leaf = bytes.fromhex(self.state.seen[key][1][2:])
        at = next((i for i, l in enumerate(ej.leaves) if l == leaf), None)
        if at is None:
            at = next(i for i, item in enumerate(earlier_listing.orders) if protocol.to_hex(item.order.orderId) == key)
        self.challenge_duplicate(earlier, earlier_listing, ej, at, batch, listing, j, position)

    def challenge_duplicate(self, a: Anchored, la: Listing, ja: Judgement, pa: int,
                            b: Anchored, lb: Listing, jb: Judgement, pb: int) -> None:
        key = protocol.to_hex(lb.orders[pb].order.orderId)
        self.finding(b.batch_id, "faulty", EXIT_FAULT,
                     f"FAULT: batch {b.batch_id}: order {key} anchored twice (batch {a.batch_id} and batch {b.batch_id})")
        oa, ob = la.orders[pa], lb.orders[pb]
        data = keccak(CHALLENGE_DUPLICATE.encode())[:4] + abi_encode(
            ["uint64", ORDER_TUPLE, "address", "bytes32[]", "uint64", ORDER_TUPLE, "address", "bytes32[]", "address", "bytes"],
            [a.batch_id, tuple(oa.order), protocol.checksum(oa.station), ja.tree.proof(pa),
             b.batch_id, tuple(ob.order), protocol.checksum(ob.station), jb.tree.proof(pb),
             protocol.checksum(b.relayer), b.deltas],
        )
        self.send(b.batch_id, "challengeDuplicate", data)

    def send(self, batch_id: int, what: str, data: bytes) -> None:
        """Simulates the challenge, then signs and sends it with the watchtower's key and waits for it."""
        if self.key is None:
            self.finding(batch_id, "not-challenged", EXIT_FAULT, f"{what} of batch {batch_id} not sent: no key given")
            return
        from eth_account import Account  # the signer only: the rest goes through the JSON-RPC client

        account = Account.from_key(self.key)
        tx = {"from": account.address, "to": protocol.checksum(self.contract), "data": protocol.to_hex(data)}
        try:
            gas = int(self.rpc.call("eth_estimateGas", tx), 16)
        except RpcError as exc:
            self.finding(batch_id, "challenge-refused", EXIT_CHALLENGE_FAILED,
                         f"{what} of batch {batch_id} would revert, not sent: {exc}")
            return
        base = int(self.rpc.call("eth_getBlockByNumber", "latest", False).get("baseFeePerGas") or "0x0", 16)
        tip = 10**9
        signed = account.sign_transaction({
            "to": tx["to"], "data": tx["data"], "gas": gas + gas // 5, "chainId": self.chain_id, "value": 0,
            "nonce": int(self.rpc.call("eth_getTransactionCount", account.address, "pending"), 16),
            "maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip,
        })
        raw = getattr(signed, "raw_transaction", None) or signed.rawTransaction
        tx_hash = self.rpc.call("eth_sendRawTransaction", protocol.to_hex(bytes(raw)))
        for _ in range(600):
            receipt = self.rpc.call("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                break
            time.sleep(0.1)
        else:
            self.finding(batch_id, "challenge-unmined", EXIT_CHALLENGE_FAILED, f"{what} {tx_hash} not mined within 60 s")
            return
        if int(receipt["status"], 16) != 1:
            self.finding(batch_id, "challenge-reverted", EXIT_CHALLENGE_FAILED, f"{what} {tx_hash} reverted")
            return
        self.finding(batch_id, "challenged", 0, f"CHALLENGED: batch {batch_id} by {what} in {tx_hash}", tx=tx_hash)

    def finding(self, batch_id: int, kind: str, status: int, message: str, **extra: Any) -> None:
        (log.error if status else log.warning)("%s", message)
        self.state.findings.append({"batchId": batch_id, "kind": kind, "message": message, "at": time.time(), **extra})
        self.worst = self.worst or status


# ----- command line -----------------------------------------------------------------------------------


def _key(args: argparse.Namespace) -> bytes | None:
    if args.keystore:
        from eth_account import Account

        password = os.environ.get("TIMEBANK_WATCHTOWER_KEYSTORE_PASSWORD")
        if password is None:
            raise SystemExit("--keystore needs TIMEBANK_WATCHTOWER_KEYSTORE_PASSWORD")
        return bytes(Account.decrypt(json.loads(Path(args.keystore).read_text()), password))
    value = os.environ.get("TIMEBANK_WATCHTOWER_KEY")
    return bytes.fromhex(value.removeprefix("0x")) if value else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="timebank-watchtower", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--contract", required=True, help="the TimeBank address the city publishes")
    parser.add_argument("--api", action="append", default=[], help="a service's base URL (repeat for several)")
    parser.add_argument("--state", required=True, help="the state file (created at the first run)")
    parser.add_argument("--from-block", type=int, default=0, help="where to start when there is no state file")
    parser.add_argument("--listing-timeout", type=float, default=600.0, help="seconds a listing may take to come")
    parser.add_argument("--confirmations", type=int, default=1)
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the chain")
    parser.add_argument("--keystore", help="the watchtower's encrypted keystore (else TIMEBANK_WATCHTOWER_KEY)")
    parser.add_argument("--once", action="store_true", help="follow to the head and stop; the exit status says what was found")
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    path = Path(args.state)
    try:
        tower = Watchtower(Rpc(args.rpc_url), args.contract, args.api, State.load(path, args.contract, args.from_block),
                           path, key=_key(args), listing_timeout=args.listing_timeout, confirmations=args.confirmations)
        if args.once:
            while tower.step():
                pass
            if tower.state.waiting:
                log.warning("%s batches still waiting for their listing: %s", len(tower.state.waiting), sorted(tower.state.waiting, key=int))
            return tower.worst
        while True:
            if not tower.step():
                time.sleep(args.poll)
    except (RpcUnavailable, RpcError) as exc:
        log.error("RPC: %s", exc)
        return EXIT_RPC
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
