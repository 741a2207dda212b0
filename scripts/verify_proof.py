"""timebank-verify: an auditor's check of one proof bundle (PROTOCOL.md section 7), trusting nothing but
its own Ethereum JSON-RPC endpoint.

    timebank-verify BUNDLE.json --rpc-url http://127.0.0.1:8545 [--contract 0x...] [--json] [--timeout S]
    curl -s .../v1/orders/0x.../proof | timebank-verify - --rpc-url URL

It uses the protocol module (`api.protocol`: EIP-712 digest, signature recovery, Merkle leaf and fold)
and the bundle module (`api.bundles`: the bundle and listing parsed, steps 1 and 2 recomputed), and
nothing else of the service: no server, database or configuration. The chain is read through a tiny
JSON-RPC client (five methods) with calldata encoded by eth_abi.

Steps, each recomputing a value and then comparing it (a failure says what it got and what it wanted):

  0. the bundle is well formed (format, fields, hex lengths); the RPC's chain id is `domain.chainId` and
     there is code at `domain.verifyingContract` (which must be `--contract` when given: pin the city's
     published TimeBank address, or a bundle may point at a look-alike contract with its own stations);
  1. the EIP-712 digest recomputed from `domain` and `order` is `digest`; `signature` recovers `station`;
  2. the leaf recomputed from that digest and `station` is `leaf`; `proof` folds it to `batch.root`;
  3. `getBatch(batch.id)` returns `batch.root`, `batch.count` and `batch.blockNumber`; the receipt of
     `batch.txHash` succeeded in block `batch.blockNumber` / `batch.blockHash` and holds the contract's
     `BatchAnchored(batch.id, batch.root, batch.count)` log; the chain's block `batch.blockNumber` is
     still `batch.blockHash`;
  4. `getStation(station)` shows the station registered for `order.district` and active at
     `batch.blockNumber` (activeFrom <= block, and until = 0 or block < until);
  5. `isRevoked(order.orderId)` is false.

A failure at step 0 stops there (nothing else means anything); otherwise every step runs, so the report
shows everything that is wrong, and the exit status names the first failed step:

  0 verified; 1..5 the first failed step; 6 malformed bundle or unusable RPC (step 0, or the RPC failing
  midway); 64 bad command line.

Batch mode: a whole batch, as the service lists it (`GET /v1/batches/{id}`, format `timebank-batch/1`),
recomputed and compared with the chain, so that minutes moved without an order that justifies them are
caught:

    timebank-verify --batch ID --api http://service:8000 --rpc-url http://your-node:8545 [--contract 0x...]

  0. the listing is well formed; the RPC's chain id is the listing's `domain.chainId`; the contract (which
     must be `--contract` when given) has code;
  1. every order: the EIP-712 digest recomputed from domain and order is the listed `digest`, and its
     `signature` recovers the listed `station`;
  2. every order's leaf recomputed is the listed `leaf`; the standard Merkle tree over the recomputed leaves
     has the listed `root`, and `count` is the number of orders;
  3. `getBatch(id)` returns the recomputed root, the count and `blockNumber`; the receipt of `txHash`
     succeeded in `blockNumber` / `blockHash` and holds `BatchAnchored(id, root, count)`;
  4. the anchoring transaction's calldata (`eth_getTransactionByHash` input) is
     `anchorBatch(bytes32 root, uint32 count, bytes deltas)` to the contract with the recomputed root and
     count, and its `deltas` are canonical (PROTOCOL.md section 9: 16 bytes per account, `index ‖ earned ‖
     received ‖ spent`, uint32 each, ascending by index; each index read back with the contract's
     `accountAt`) and move, per account, exactly the minutes the orders justify: the volunteer credited
     `earned` (`received` for a transfer, service type 100) and the payer debited `spent`. The listing's
     own `amounts` must say the same.

Exit status as for a bundle: 0 verified, 1..4 the first failed step, 6 unusable listing, API or RPC.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_hash.auto import keccak

from api import protocol
from api.bundles import BATCH_FORMAT, Bundle, Listing, amounts_of, parse_bundle, parse_listing, recompute_inclusion, recompute_signer
from api.protocol import DELTA_SIZE, Amounts, ProtocolError, unpack_deltas
from scripts.rpc import Rpc as BaseRpc
from scripts.rpc import RpcError, RpcUnavailable

EXIT_MALFORMED = 6
EXIT_USAGE = 64

BATCH_ANCHORED_TOPIC = keccak(b"BatchAnchored(uint64,bytes32,uint32)")
ORDER_REVOKED_TOPIC = keccak(b"OrderRevoked(bytes32,uint64,uint16)")

STEP_NAMES = {
    0: "bundle and RPC",
    1: "signature",
    2: "Merkle inclusion",
    3: "anchored on chain",
    4: "station registered",
    5: "not revoked",
}


# ----- results ------------------------------------------------------------------------------------


class Check(NamedTuple):
    """One comparison. `got` is what was recomputed or read from the chain, `want` what the bundle says."""

    step: int
    name: str
    ok: bool
    got: str | None = None
    want: str | None = None
    message: str = ""

    def line(self, marks: tuple[str, str] = ("✓", "✗")) -> str:
        mark = marks[0] if self.ok else marks[1]
        if self.message:
            detail = self.message
        elif self.ok:
            detail = f"{self.got}" if self.got == self.want else f"got {self.got}, want {self.want}"
        else:
            detail = f"got {self.got}, want {self.want}"
        return f"{mark} [{self.step}] {self.name}: {detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "name": self.name,
            "ok": self.ok,
            "got": self.got,
            "want": self.want,
            "message": self.message,
        }


class Result(NamedTuple):
    ok: bool
    failed_step: int | None
    checks: list[Check]

    @property
    def exit_code(self) -> int:
        if self.failed_step is None:
            return 0
        return EXIT_MALFORMED if self.failed_step == 0 else self.failed_step

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "failedStep": self.failed_step, "checks": [c.to_json() for c in self.checks]}


class _Report:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def compare(self, step: int, name: str, got: Any, want: Any) -> bool:
        ok = got == want
        self.checks.append(Check(step, name, ok, _show(got), _show(want)))
        return ok

    def fail(self, step: int, name: str, message: str, got: Any = None, want: Any = None) -> None:
        self.checks.append(Check(step, name, False, _show(got), _show(want), message))

    def passed(self, step: int, name: str, message: str, got: Any = None, want: Any = None) -> None:
        self.checks.append(Check(step, name, True, _show(got), _show(want), message))

    def result(self) -> Result:
        failed = [c.step for c in self.checks if not c.ok]
        return Result(not failed, failed[0] if failed else None, self.checks)


def _show(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return protocol.checksum(value) if len(value) == 20 else protocol.to_hex(value)
    return str(value)


# ----- JSON-RPC -----------------------------------------------------------------------------------


class Rpc(BaseRpc):
    """The few JSON-RPC calls the verifier needs (`scripts/rpc.py`), and views decoded."""

    def eth_call(self, to: bytes, signature: str, arg_types: Sequence[str], args: Sequence[Any],
                 out_types: Sequence[str]) -> tuple:
        """Calls view `signature` (e.g. "getBatch(uint64)") at the latest block and decodes its outputs."""
        data = keccak(signature.encode())[:4] + abi_encode(list(arg_types), list(args))
        raw = self.call("eth_call", {"to": protocol.to_hex(to), "data": protocol.to_hex(data)}, "latest")
        try:
            return abi_decode(list(out_types), _hex_bytes(raw))
        except Exception as exc:  # eth_abi raises several decoding errors
            raise RpcError(f"{signature}: cannot decode {str(raw)[:80]!r} as {list(out_types)}: {exc}") from None


def _hex_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcError(f"expected hex from the RPC, got {value!r:.80}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise RpcError(f"expected hex from the RPC, got {value!r:.80}") from None


def _hex_int(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcError(f"expected a hex quantity from the RPC, got {value!r:.80}")
    return int(value, 16)


# ----- the steps ----------------------------------------------------------------------------------


def _step0_rpc(report: _Report, rpc: Rpc, b: Bundle, contract: bytes | None) -> bool:
    if contract is not None and not report.compare(0, "domain.verifyingContract equals --contract", b.contract,
                                                   contract):
        return False
    try:
        chain_id = _hex_int(rpc.call("eth_chainId"))
    except RpcError as exc:
        report.fail(0, "eth_chainId", str(exc))
        return False
    if not report.compare(0, "RPC chain id equals domain.chainId", chain_id, b.chain_id):
        return False
    code = _hex_bytes(rpc.call("eth_getCode", protocol.to_hex(b.contract), "latest"))
    if not code:
        report.fail(0, "contract code", f"no code at domain.verifyingContract {_show(b.contract)}")
        return False
    report.passed(0, "contract code", f"{len(code)} bytes of code at {_show(b.contract)}")
    return True


def _step1_signature(report: _Report, b: Bundle) -> bytes:
    signed = recompute_signer(b.chain_id, b.contract, b.order, b.signature)
    report.compare(1, "digest recomputed from domain and order equals bundle.digest", signed.digest, b.digest)
    if signed.signer is None:
        report.fail(1, "signer of the recomputed digest equals bundle.station", signed.error, want=b.station)
    else:
        report.compare(1, "signer of the recomputed digest equals bundle.station", signed.signer, b.station)
    return signed.digest


def _step2_inclusion(report: _Report, b: Bundle, digest: bytes) -> None:
    included = recompute_inclusion(digest, b.station, b.proof)
    report.compare(2, "leaf recomputed from digest and station equals bundle.leaf", included.leaf, b.leaf)
    report.compare(2, f"proof ({len(b.proof)} nodes) folds the leaf to batch.root", included.root, b.batch.root)


def _step3_anchor(report: _Report, rpc: Rpc, b: Bundle) -> None:
    batch = b.batch
    try:
        root, count, at_block = rpc.eth_call(b.contract, "getBatch(uint64)", ["uint64"], [batch.id],
                                             ["bytes32", "uint32", "uint64"])
    except RpcError as exc:
        report.fail(3, f"getBatch({batch.id})", str(exc))
    else:
        if root == b"\x00" * 32:
            report.fail(3, f"getBatch({batch.id}).root equals batch.root",
                        f"no batch {batch.id} on chain", got=root, want=batch.root)
        else:
            report.compare(3, f"getBatch({batch.id}).root equals batch.root", root, batch.root)
            report.compare(3, f"getBatch({batch.id}).count equals batch.count", count, batch.count)
            report.compare(3, f"getBatch({batch.id}).anchoredAtBlock equals batch.blockNumber", at_block,
                           batch.block_number)

    receipt = rpc.call("eth_getTransactionReceipt", protocol.to_hex(batch.tx_hash))
    if not isinstance(receipt, dict):
        report.fail(3, "receipt of batch.txHash", f"no receipt for {_show(batch.tx_hash)} on this chain")
    else:
        report.compare(3, "receipt status", _hex_int(receipt.get("status")), 1)
        report.compare(3, "receipt blockNumber equals batch.blockNumber", _hex_int(receipt.get("blockNumber")),
                       batch.block_number)
        report.compare(3, "receipt blockHash equals batch.blockHash", _hex_bytes(receipt.get("blockHash")),
                       batch.block_hash)
        want = f"BatchAnchored({batch.id}, {_show(batch.root)}, {batch.count}) from {_show(b.contract)}"
        logs = [_batch_anchored(log, b.contract) for log in receipt.get("logs") or []]
        found = [f"BatchAnchored({i}, {_show(r)}, {c})" for i, r, c in filter(None, logs)]
        if (batch.id, batch.root, batch.count) in logs:
            report.passed(3, "BatchAnchored log in batch.txHash", want, got=want, want=want)
        else:
            report.fail(3, "BatchAnchored log in batch.txHash",
                        f"got {found or 'no BatchAnchored log from the contract'}, want {want}",
                        got="; ".join(found) or None, want=want)

    block = rpc.call("eth_getBlockByNumber", hex(batch.block_number), False)
    if not isinstance(block, dict):
        report.fail(3, "block batch.blockNumber is canonical", f"no block {batch.block_number} on this chain",
                    want=batch.block_hash)
    else:
        report.compare(3, f"hash of canonical block {batch.block_number} equals batch.blockHash",
                       _hex_bytes(block.get("hash")), batch.block_hash)


def _batch_anchored(log: Any, contract: bytes) -> tuple[int, bytes, int] | None:
    """(batchId, root, count) of a BatchAnchored log emitted by `contract`, else None."""
    try:
        if _hex_bytes(log["address"]) != contract:
            return None
        topics = [_hex_bytes(t) for t in log["topics"]]
        if len(topics) != 2 or topics[0] != BATCH_ANCHORED_TOPIC:
            return None
        (batch_id,) = abi_decode(["uint64"], topics[1])
        root, count = abi_decode(["bytes32", "uint32"], _hex_bytes(log["data"]))
        return batch_id, root, count
    except Exception:  # a log that is not ours, or not well formed
        return None


def _step4_station(report: _Report, rpc: Rpc, b: Bundle) -> None:
    block = b.batch.block_number
    try:
        district, active_from, active_until = rpc.eth_call(b.contract, "getStation(address)", ["address"],
                                                           [protocol.checksum(b.station)],
                                                           ["uint32", "uint64", "uint64"])
    except RpcError as exc:
        report.fail(4, "getStation", str(exc))
        return
    if district == 0:
        report.fail(4, "station registered for order.district",
                    f"{_show(b.station)} was never registered", got=0, want=b.order.district)
        return
    report.compare(4, "getStation(station).district equals order.district", district, b.order.district)
    window = f"[{active_from}, {active_until or '∞'})"
    if active_from <= block and (active_until == 0 or block < active_until):
        report.passed(4, "station active at batch.blockNumber", f"block {block} in {window}",
                      got=block, want=window)
    else:
        report.fail(4, "station active at batch.blockNumber",
                    f"got block {block}, want a block in the station's active window {window}", got=block, want=window)


def _step5_revocation(report: _Report, rpc: Rpc, b: Bundle) -> None:
    order_id = b.order.orderId
    try:
        (revoked,) = rpc.eth_call(b.contract, "isRevoked(bytes32)", ["bytes32"], [order_id], ["bool"])
    except RpcError as exc:
        report.fail(5, "isRevoked", str(exc))
        return
    if not revoked:
        report.passed(5, "order not revoked", f"isRevoked({_show(order_id)}) is false", got=False, want=False)
        return
    report.fail(5, "order not revoked", f"order {_show(order_id)} was revoked{_revocation(rpc, b)}",
                got=True, want=False)


def _revocation(rpc: Rpc, b: Bundle) -> str:
    """Where and why the order was revoked, from its OrderRevoked log (best effort)."""
    try:
        logs = rpc.call("eth_getLogs", {
            "address": protocol.to_hex(b.contract),
            "fromBlock": hex(b.batch.block_number),
            "toBlock": "latest",
            "topics": [protocol.to_hex(ORDER_REVOKED_TOPIC), protocol.to_hex(b.order.orderId)],
        })
        log = logs[-1]
        (batch_id,) = abi_decode(["uint64"], _hex_bytes(log["topics"][2]))
        (reason,) = abi_decode(["uint16"], _hex_bytes(log["data"]))
        return f" in block {_hex_int(log['blockNumber'])} (batch {batch_id}, reason {reason})"
    except Exception:  # the flag is what counts; the log only adds detail
        return ""


# ----- a whole batch (batch mode) ----------------------------------------------------------------

ANCHOR_BATCH_SELECTOR = keccak(b"anchorBatch(bytes32,uint32,bytes)")[:4]

BATCH_STEP_NAMES = {
    0: "listing and RPC",
    1: "signatures",
    2: "Merkle root",
    3: "anchored on chain",
    4: "amounts moved",
}


def decode_anchor_call(calldata: bytes) -> tuple[bytes, int, bytes]:
    """(root, count, deltas) of `anchorBatch(bytes32,uint32,bytes)` calldata."""
    if calldata[:4] != ANCHOR_BATCH_SELECTOR:
        raise ProtocolError("not_anchor_batch",
                            f"calldata selector {_show(calldata[:4])} is not anchorBatch(bytes32,uint32,bytes) "
                            f"({_show(ANCHOR_BATCH_SELECTOR)})")
    try:
        root, count, deltas = abi_decode(["bytes32", "uint32", "bytes"], calldata[4:])
    except Exception as exc:  # eth_abi raises several decoding errors
        raise ProtocolError("malformed_calldata", f"calldata does not decode as anchorBatch: {exc}") from None
    return root, count, deltas


def _triple(t: tuple[int, int, int]) -> str:
    return f"earned {t[0]}, received {t[1]}, spent {t[2]}"


def compare_amounts(justified: Amounts, moved: Amounts) -> list[Check]:
    """One failed check per account whose minutes moved on chain differ from what the orders justify
    (order-independent); a single passed check when every account agrees."""
    zero = (0, 0, 0)
    failures = []
    for account in list(justified) + [a for a in moved if a not in justified]:
        want, got = justified.get(account, zero), moved.get(account, zero)
        if want == got:
            continue
        if account not in justified:
            message = f"account {_show(account)}: moved {_triple(got)} that no order of the batch justifies"
        elif account not in moved:
            message = f"account {_show(account)}: the orders justify {_triple(want)}, nothing moved"
        else:
            message = f"account {_show(account)}: moved {_triple(got)}, the orders justify {_triple(want)}"
        failures.append(Check(4, "amounts moved equal the orders' amounts", False, _triple(got), _triple(want), message))
    if failures:
        return failures
    return [Check(4, "amounts moved equal the orders' amounts", True, str(len(moved)), str(len(justified)),
                  f"{len(justified)} accounts, every one moved exactly what the orders justify")]


def index_lookup(rpc: Rpc, contract: bytes) -> Any:
    """`accountAt(index)` of the contract, asked once per index: the account of a canonical delta entry."""
    cache: dict[int, bytes] = {}

    def account_at(index: int) -> bytes:
        if index not in cache:
            (cache[index],) = rpc.eth_call(contract, "accountAt(uint32)", ["uint32"], [index], ["bytes32"])
        return cache[index]

    return account_at


def calldata_checks(
    orders: Sequence[protocol.ServiceOrder], root: bytes, calldata: bytes, account_at: Any
) -> list[Check]:
    """Compares the calldata of a batch's anchoring transaction with the batch recomputed from its orders:
    the call is `anchorBatch`, with the recomputed `root`, the number of orders, and canonical deltas
    (PROTOCOL.md section 9) whose per-account amounts the orders justify; `account_at(index)` gives the
    account of an index (the contract's `accountAt`). Every check is step 4; the failed ones say what
    differs."""
    try:
        got_root, got_count, deltas = decode_anchor_call(calldata)
        moved = {}
        for index, value in unpack_deltas(deltas).items():
            account = account_at(index)
            # an index no account holds is shown as the index itself
            moved[account if any(account) else index.to_bytes(32, "big")] = value
    except ProtocolError as exc:
        return [Check(4, "calldata is anchorBatch(bytes32,uint32,bytes)", False, message=exc.message)]
    checks = [
        Check(4, "calldata is anchorBatch(bytes32,uint32,bytes)", True, message=f"{len(deltas) // DELTA_SIZE} delta entries"),
        Check(4, "calldata root equals the recomputed root", got_root == root, _show(got_root), _show(root)),
        Check(4, "calldata count equals the number of orders", got_count == len(orders), str(got_count), str(len(orders))),
    ]
    return checks + compare_amounts(amounts_of(orders), moved)


def _batch_step1(report: _Report, listing: Listing) -> list[bytes]:
    digests, bad = [], 0
    for i, item in enumerate(listing.orders):
        digest, signer, error = recompute_signer(listing.chain_id, listing.contract, item.order, item.signature)
        digests.append(digest)
        where = f"orders[{i}] {_show(item.order.orderId)}"
        if digest != item.digest:
            bad += 1
            report.fail(1, f"{where}: digest recomputed from domain and order equals its digest",
                        f"got {_show(digest)}, want {_show(item.digest)}", got=digest, want=item.digest)
        if signer is None:
            bad += 1
            report.fail(1, f"{where}: signer of the recomputed digest equals its station", error, want=item.station)
            continue
        if signer != item.station:
            bad += 1
            report.fail(1, f"{where}: signer of the recomputed digest equals its station",
                        f"got {_show(signer)}, want {_show(item.station)}", got=signer, want=item.station)
    if not bad:
        report.passed(1, "every order's digest recomputed and its signature recovers its station",
                      f"{len(listing.orders)} orders")
    return digests


def _batch_step2(report: _Report, listing: Listing, digests: list[bytes]) -> bytes:
    leaves = []
    bad = 0
    for i, (item, digest) in enumerate(zip(listing.orders, digests)):
        leaf = protocol.leaf(digest, item.station)
        leaves.append(leaf)
        if leaf != item.leaf:
            bad += 1
            report.fail(2, f"orders[{i}] {_show(item.order.orderId)}: leaf recomputed equals its leaf",
                        f"got {_show(leaf)}, want {_show(item.leaf)}", got=leaf, want=item.leaf)
    if not bad:
        report.passed(2, "every order's leaf recomputed equals its leaf", f"{len(leaves)} leaves")
    if len(set(leaves)) != len(leaves):
        report.fail(2, "leaves are distinct", "an order is listed twice")
    root = protocol.MerkleTree(leaves).root
    report.compare(2, "root of the standard Merkle tree over the recomputed leaves equals the listed root", root,
                   listing.batch.root)
    report.compare(2, "listed count equals the number of orders", listing.batch.count, len(listing.orders))
    return root


def _batch_step3(report: _Report, rpc: Rpc, listing: Listing, root: bytes) -> None:
    b = listing.batch
    try:
        chain_root, chain_count, at_block = rpc.eth_call(listing.contract, "getBatch(uint64)", ["uint64"], [b.id],
                                                         ["bytes32", "uint32", "uint64"])
    except RpcError as exc:
        report.fail(3, f"getBatch({b.id})", str(exc))
        return
    if chain_root == b"\x00" * 32:
        report.fail(3, f"getBatch({b.id}).root equals the recomputed root", f"no batch {b.id} on chain",
                    got=chain_root, want=root)
        return
    report.compare(3, f"getBatch({b.id}).root equals the recomputed root", chain_root, root)
    report.compare(3, f"getBatch({b.id}).count equals the number of orders", chain_count, len(listing.orders))
    report.compare(3, f"getBatch({b.id}).anchoredAtBlock equals blockNumber", at_block, b.block_number)
    receipt = rpc.call("eth_getTransactionReceipt", protocol.to_hex(b.tx_hash))
    if not isinstance(receipt, dict):
        report.fail(3, "receipt of txHash", f"no receipt for {_show(b.tx_hash)} on this chain")
        return
    report.compare(3, "receipt status", _hex_int(receipt.get("status")), 1)
    report.compare(3, "receipt blockNumber equals blockNumber", _hex_int(receipt.get("blockNumber")), b.block_number)
    report.compare(3, "receipt blockHash equals blockHash", _hex_bytes(receipt.get("blockHash")), b.block_hash)
    want = (b.id, chain_root, chain_count)
    logs = [_batch_anchored(log, listing.contract) for log in receipt.get("logs") or []]
    if want in logs:
        report.passed(3, "BatchAnchored log in txHash", f"BatchAnchored({b.id}, {_show(chain_root)}, {chain_count})")
    else:
        found = [f"BatchAnchored({i}, {_show(r)}, {c})" for i, r, c in filter(None, logs)]
        report.fail(3, "BatchAnchored log in txHash",
                    f"got {found or 'no BatchAnchored log from the contract'}, want BatchAnchored({b.id}, ...)")


def _batch_step4(report: _Report, rpc: Rpc, listing: Listing, root: bytes) -> None:
    b = listing.batch
    orders = [item.order for item in listing.orders]
    justified = amounts_of(orders)
    listed = listing.amounts
    listed_checks = compare_amounts(justified, listed)
    for check in listed_checks:
        name = "the listing's amounts equal the orders' amounts"
        report.checks.append(check._replace(name=name, message=check.message.replace("moved", "listed")))
    tx = rpc.call("eth_getTransactionByHash", protocol.to_hex(b.tx_hash))
    if not isinstance(tx, dict):
        report.fail(4, "anchoring transaction", f"no transaction {_show(b.tx_hash)} on this chain")
        return
    to = tx.get("to")
    report.compare(4, "anchoring transaction is sent to the contract", _hex_bytes(to) if to else None, listing.contract)
    report.checks.extend(calldata_checks(orders, root, _hex_bytes(tx.get("input")), index_lookup(rpc, listing.contract)))


def fetch_listing(api_url: str, batch_id: int, timeout: float = 10.0) -> Any:
    """The service's listing of a batch (`GET {api}/v1/batches/{id}`), decoded JSON."""
    url = f"{api_url.rstrip('/')}/v1/batches/{batch_id}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                    timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RpcUnavailable(f"GET {url}: HTTP {exc.code} {exc.read()[:200].decode('utf-8', 'replace')}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RpcUnavailable(f"GET {url}: {exc}") from None


def _pinned(report: _Report, contract: str | None) -> bytes | None | bool:
    """The contract address the auditor pins (None: the bundle's own), or False after reporting it
    malformed."""
    try:
        return None if contract is None else protocol.parse_address(contract, "--contract")
    except ProtocolError as exc:
        report.fail(0, "--contract", exc.message)
        return False


def _start(report: _Report, contract: str | None, parse: Callable[[Any], Any], value: Any, what: str) -> tuple[bytes | None, Any] | None:
    """Step 0 before the chain: the pinned contract and the parsed `what`; None once a failure is reported."""
    pinned = _pinned(report, contract)
    if pinned is False:
        return None
    try:
        return pinned, parse(value)
    except ProtocolError as exc:
        report.fail(0, f"{what} well formed", exc.message)
        return None


def verify_batch(listing: Any, rpc_url: str, *, contract: str | None = None, timeout: float = 10.0) -> Result:
    """Recomputes a batch from its listing (signatures, leaves, root, per-account amounts) and compares it
    with the chain behind `rpc_url`: `getBatch`, the anchoring receipt and the anchoring calldata."""
    report = _Report()
    start = _start(report, contract, parse_listing, listing, "listing")
    if start is None:
        return report.result()
    pinned, parsed = start
    report.passed(0, "listing well formed", f"{BATCH_FORMAT}, batch {parsed.batch.id}, {len(parsed.orders)} orders, "
                  f"{len(parsed.amounts)} accounts")
    rpc = Rpc(rpc_url, timeout)
    try:
        probe = Bundle(parsed.chain_id, parsed.contract, parsed.orders[0].order, b"", b"", b"", b"", [], parsed.batch)
        if not _step0_rpc(report, rpc, probe, pinned):
            return report.result()
        digests = _batch_step1(report, parsed)
        root = _batch_step2(report, parsed, digests)
        _batch_step3(report, rpc, parsed, root)
        _batch_step4(report, rpc, parsed, root)
    except (RpcUnavailable, RpcError) as exc:
        report.fail(0, "RPC", str(exc))
    return report.result()


# ----- entry points -------------------------------------------------------------------------------


def verify_bundle(bundle: Any, rpc_url: str, *, contract: str | None = None, timeout: float = 10.0) -> Result:
    """Runs PROTOCOL.md section 7's checks on a decoded bundle against the chain behind `rpc_url`;
    `contract`, when given, is the TimeBank address the auditor trusts (else the bundle's is taken)."""
    report = _Report()
    start = _start(report, contract, parse_bundle, bundle, "bundle")
    if start is None:
        return report.result()
    pinned, b = start
    report.passed(0, "bundle well formed", f"{protocol.PROOF_FORMAT}, order {_show(b.order.orderId)}, "
                  f"batch {b.batch.id}")
    rpc = Rpc(rpc_url, timeout)
    try:
        if not _step0_rpc(report, rpc, b, pinned):
            return report.result()
        digest = _step1_signature(report, b)
        _step2_inclusion(report, b, digest)
        _step3_anchor(report, rpc, b)
        _step4_station(report, rpc, b)
        _step5_revocation(report, rpc, b)
    except (RpcUnavailable, RpcError) as exc:
        report.fail(0, "RPC", str(exc))
    return report.result()


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2, which would read as "step 2 failed"
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _ArgumentParser(
        prog="timebank-verify",
        description="Verify a time-bank proof bundle (timebank-proof/1), or a whole anchored batch as the service "
        "lists it (timebank-batch/1), against your own Ethereum RPC.",
        epilog="Exit status: 0 verified; 1-5 the first failed step; 6 malformed bundle or listing, unusable API or "
        "RPC; 64 bad command line.",
    )
    parser.add_argument("bundle", nargs="?", help="proof bundle JSON file, or - for stdin (not with --batch)")
    parser.add_argument("--batch", type=int, metavar="ID", help="verify the anchored batch ID (the contract's batch id)")
    parser.add_argument("--api", metavar="URL", help="with --batch: the service to fetch the batch's listing from")
    parser.add_argument("--rpc-url", required=True, help="Ethereum JSON-RPC endpoint you trust")
    parser.add_argument("--contract", help="the TimeBank address you trust; the domain's verifyingContract must be it")
    parser.add_argument("--json", action="store_true", help="print {ok, failedStep, checks} as JSON")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per RPC request (default 10)")
    args = parser.parse_args(argv)
    if args.batch is None and args.bundle is None:
        parser.error("give a bundle file (or -), or --batch ID --api URL")
    if args.batch is not None and (args.bundle is not None or args.api is None):
        parser.error("--batch takes --api URL and no bundle file")
    if args.batch is None and args.api is not None:
        parser.error("--api goes with --batch")

    names = STEP_NAMES
    if args.batch is not None:
        names = BATCH_STEP_NAMES
        try:
            listing = fetch_listing(args.api, args.batch, args.timeout)
        except RpcUnavailable as exc:
            report = _Report()
            report.fail(0, "listing fetched from the API", str(exc))
            result = report.result()
        else:
            result = verify_batch(listing, args.rpc_url, contract=args.contract, timeout=args.timeout)
    else:
        try:
            text = sys.stdin.read() if args.bundle == "-" else Path(args.bundle).read_text(encoding="utf-8")
            bundle = json.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            report = _Report()
            report.fail(0, "bundle readable", f"{args.bundle}: {exc}")
            result = report.result()
        else:
            result = verify_bundle(bundle, args.rpc_url, contract=args.contract, timeout=args.timeout)

    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        marks = ("✓", "✗") if _can_print("✓✗∞") else ("OK  ", "FAIL")
        for check in result.checks:
            line = check.line(marks)
            print(line if _can_print(line) else line.replace("∞", "inf"))
        if result.ok:
            what = f"batch {args.batch}, " if args.batch is not None else ""
            print(f"verified: {what}all {len(names) - 1} steps passed")
        else:
            step = result.failed_step
            print(f"NOT verified: step {step} ({names[step]}) failed", file=sys.stderr)
    return result.exit_code


def _can_print(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


if __name__ == "__main__":
    sys.exit(main())
