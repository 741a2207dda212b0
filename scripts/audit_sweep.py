"""The audit sweep: is every stored order and batch still what was anchored?

    python -m scripts.audit_sweep [--database-url URL] [--rpc-url URL] [--contract 0x...] [--json] [--no-progress]

Defaults come from the service's settings (`TIMEBANK_DATABASE_URL`, `TIMEBANK_RPC_URL`,
`TIMEBANK_CONTRACT_ADDRESS` or the deployment record). The database is only read.

For every stored order: the EIP-712 digest recomputed from its stored fields is its stored `digest`; its
stored `signature` recovers its stored `station`; its stored `details` hash to its `detailsHash`.
For every anchored batch, against the chain: `getBatch(id)` holds the stored root, count and block; the
stored tree rebuilds to that root (so its leaves are what was anchored) and each of the batch's orders,
recomputed, is one of those leaves; the batch has as many orders as the chain counted; the anchoring
transaction's calldata is `anchorBatch` with that root, count and the stored `deltas`, and moves per
account exactly the minutes the stored orders justify (the comparison of `timebank-verify --batch`).

A difference is reported on the row that causes it: an order whose content changed (its recomputed leaf
is not among the anchored leaves, and the amounts of the accounts it touches no longer add up), or a batch
whose own columns changed.

The chain's batches the database does not hold (another service's sharing the contract, or a relayer's
anchored outside any service) are named; each is checked with `timebank-verify --batch` against the listing
of the first service given with `--api` that lists it, and one a challenge proved faulty on chain is a
finding. Exit status: 0 every row matches and every batch of the chain was checked, 1 some rows differ or a
foreign batch fails its check (each is printed), 2 the database or the RPC could not be used, 3 every row
matches but some of the chain's batches are listed by no service given, so nobody here checked them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from sqlalchemy import func, select
from tqdm import tqdm

from api import db, protocol
from api.protocol import ProtocolError
from api.bundles import order_json
from scripts.verify_proof import (
    Rpc,
    RpcError,
    RpcUnavailable,
    _hex_bytes,
    _hex_int,
    calldata_checks,
    index_lookup,
    decode_anchor_call,
)

EXIT_CLEAN, EXIT_DIFFERS, EXIT_UNUSABLE, EXIT_UNCHECKED = 0, 1, 2, 3
PAGE = 2000
_ACCOUNT = re.compile(r"account (0x[0-9a-f]{64})")


@dataclass(frozen=True)
class Finding:
    """One stored row that no longer matches what was anchored: `table` and `row` (its key: an order id, or
    a batch's row id), which `check` failed and how."""

    table: str
    row: str
    check: str
    message: str

    def line(self) -> str:
        return f"{self.table} {self.row}: {self.check}: {self.message}"


@dataclass
class _Order:
    row: db.Order
    order: protocol.ServiceOrder | None
    leaf: bytes | None
    findings: list[Finding]


def check_order(row: db.Order, separator: bytes) -> _Order:
    """Recomputes one stored order: digest from its fields, signer of its signature, hash of its details."""
    found: list[Finding] = []

    def finding(check: str, message: str) -> None:
        found.append(Finding("orders", row.order_id, check, message))

    try:
        order = protocol.ServiceOrder.from_json(order_json(row))
    except ProtocolError as exc:
        finding("fields", exc.message)
        return _Order(row, None, None, found)
    digest = order.digest(separator)
    if protocol.to_hex(digest) != row.digest:
        finding("digest", f"recomputed from the stored fields {protocol.to_hex(digest)}, stored {row.digest}")
    try:
        signer = protocol.to_hex(protocol.recover(digest, bytes.fromhex(row.signature[2:])))
    except (ProtocolError, ValueError) as exc:
        finding("signature", f"recovers no signer: {exc}")
    else:
        if signer != row.station:
            finding("signature", f"the stored signature of the recomputed digest recovers {signer}, not the stored "
                    f"station {row.station}")
    try:
        details_hash = protocol.to_hex(protocol.details_hash(json.loads(row.details)))
    except (ValueError, ProtocolError) as exc:
        finding("details", f"the stored details do not parse: {exc}")
    else:
        if details_hash != row.details_hash:
            finding("details", f"the stored details hash to {details_hash}, detailsHash is {row.details_hash}")
    station = bytes.fromhex(row.station[2:]) if len(row.station) == 42 else b"\x00" * 20
    return _Order(row, order, protocol.leaf(digest, station), found)


def _anchored_leaves(tree_json: str, count: int) -> list[bytes] | None:
    try:
        nodes = [bytes.fromhex(n) for n in json.loads(tree_json)]
    except (ValueError, TypeError):
        return None
    if count < 1 or len(nodes) != 2 * count - 1:
        return None
    return nodes[count - 1 :]


def check_batch(batch: db.Batch, orders: list[_Order], rpc: Rpc, contract: bytes) -> list[Finding]:
    """Compares an anchored batch and its (already recomputed) orders with the chain; adds the orders'
    findings about the anchoring to `orders` and returns the batch's own."""
    found: list[Finding] = []
    label = f"chain batch {batch.chain_batch_id}"

    def finding(check: str, message: str) -> None:
        found.append(Finding("batches", str(batch.id), check, f"{label}: {message}"))

    if batch.chain_batch_id is None:
        finding("anchored", "marked anchored without a chain batch id")
        return found
    try:
        root_raw, count, at_block = rpc.eth_call(contract, "getBatch(uint64)", ["uint64"], [batch.chain_batch_id],
                                                 ["bytes32", "uint32", "uint64"])
    except RpcError as exc:
        finding("getBatch", str(exc))
        return found
    if root_raw == b"\x00" * 32:
        finding("getBatch", "no such batch on chain")
        return found
    root = protocol.to_hex(root_raw)
    if batch.root != root:
        finding("root", f"stored {batch.root}, on chain {root}")
    if batch.count != count:
        finding("count", f"stored {batch.count}, on chain {count}")
    if batch.block_number != at_block:
        finding("blockNumber", f"stored {batch.block_number}, anchored at block {at_block}")

    # the anchored leaves: the stored tree's, when it rebuilds to the chain's root
    leaves = _anchored_leaves(batch.tree, count)
    if leaves is None or protocol.MerkleTree(leaves).root != root_raw:
        finding("tree", "the stored tree does not rebuild to the root on chain")
        recomputed = [o.leaf for o in orders if o.leaf is not None]
        if not recomputed or protocol.MerkleTree(recomputed).root != root_raw:
            finding("orders", "the root recomputed from the batch's stored orders is not the root on chain")
    else:
        anchored = set(leaves)
        for o in orders:
            if o.leaf is not None and o.leaf not in anchored:
                o.findings.append(Finding("orders", o.row.order_id, "leaf",
                                          f"recomputed leaf {protocol.to_hex(o.leaf)} is not among the "
                                          f"{count} leaves anchored in {label}"))
    if len(orders) != count:
        finding("orders", f"{len(orders)} stored orders belong to the batch, the chain counted {count}")

    # the anchoring transaction: anchorBatch(root, count, deltas) moving what the orders justify
    tx = rpc.call("eth_getTransactionByHash", batch.tx_hash) if batch.tx_hash else None
    if not isinstance(tx, dict):
        finding("txHash", f"no transaction {batch.tx_hash} on this chain")
        return found
    if not tx.get("to") or _hex_bytes(tx["to"]) != contract:
        finding("txHash", f"transaction {batch.tx_hash} is not sent to the contract")
        return found
    calldata = _hex_bytes(tx.get("input"))
    try:
        _root, _count, deltas = decode_anchor_call(calldata)
    except ProtocolError as exc:
        finding("txHash", f"transaction {batch.tx_hash}: {exc.message}")
        return found
    if deltas.hex() != (batch.deltas or ""):
        finding("deltas", "the stored deltas are not those of the anchoring transaction")
    altered = [o for o in orders if o.findings]
    account_at = index_lookup(rpc, contract)
    for check in calldata_checks([o.order for o in orders if o.order is not None], root_raw, calldata, account_at):
        if check.ok:
            continue
        if check.name.startswith("amounts") and altered:
            # the stored orders no longer justify what moved: blame the altered orders touching the
            # account (all altered orders of the batch when none does, e.g. a payer replaced by another)
            match = _ACCOUNT.match(check.message)
            account = match.group(1) if match else None
            touching = [o for o in altered if o.order is not None
                        and account in (protocol.to_hex(o.order.volunteer), protocol.to_hex(o.order.payer))]
            for o in touching or altered:
                o.findings.append(Finding("orders", o.row.order_id, "amounts", check.message))
        elif check.name.startswith("amounts"):
            finding("amounts", check.message)
        elif check.name.startswith("calldata count"):
            if not any(f.check == "orders" for f in found):
                finding("orders", f"the anchoring transaction counted {check.got}, the batch has {check.want} orders")
        else:
            finding("txHash", f"transaction {batch.tx_hash}: {check.name}: {check.message or f'got {check.got}, want {check.want}'}")
    return found


def sweep(database_url: str, rpc_url: str, contract: str | None = None, *, progress: bool | None = None,
          timeout: float = 30.0) -> tuple[int, int, list[Finding]]:
    """(orders checked, anchored batches checked, findings). Raises RpcUnavailable / RpcError when the
    chain cannot be asked."""
    rpc = Rpc(rpc_url, timeout)
    chain_id = _hex_int(rpc.call("eth_chainId"))
    if contract is None:
        from api.settings import Settings

        contract = Settings().resolve_contract(chain_id)
    contract_raw = protocol.parse_address(contract.lower(), "contract")
    separator = protocol.domain_separator(chain_id, contract_raw)
    engine = db.make_engine(database_url, writer=False)
    sessions = db.session_factory(engine)
    findings: list[Finding] = []
    try:
        with sessions() as session:
            total = session.scalar(select(func.count()).select_from(db.Order))
            batches = session.scalars(select(db.Batch).where(db.Batch.status == "anchored").order_by(db.Batch.id)).all()
        bar = tqdm(total=total, unit="order", desc="audit sweep", disable=None if progress is None else not progress,
                   file=sys.stderr)
        in_anchored = set()
        for batch in batches:
            with sessions() as session:
                rows = session.scalars(select(db.Order).where(db.Order.batch_id == batch.id).order_by(db.Order.seq)).all()
            orders = [check_order(row, separator) for row in rows]
            findings.extend(check_batch(batch, orders, rpc, contract_raw))
            for o in orders:
                findings.extend(o.findings)
            in_anchored.add(batch.id)
            bar.update(len(rows))
        after = 0
        while True:
            with sessions() as session:
                rows = session.scalars(select(db.Order).where(db.Order.seq > after).order_by(db.Order.seq).limit(PAGE)).all()
            if not rows:
                break
            for row in rows:
                if row.batch_id in in_anchored:
                    continue
                findings.extend(check_order(row, separator).findings)
                bar.update(1)
            after = rows[-1].seq
        bar.close()
    finally:
        engine.dispose()
    return total, len(batches), findings


def foreign_batches(database_url: str, rpc_url: str, contract: str, apis: Sequence[str] = (), *,
                    timeout: float = 30.0) -> tuple[list[int], list[Finding], list[int]]:
    """The chain's batches this database does not hold (another service's, or a relayer's own), checked
    when a service given in `apis` lists them (`timebank-verify --batch`): (their ids, findings of those that
    fail the check, and of every batch, this service's too, a challenge proved faulty on chain; ids no service
    listed: unchecked)."""
    rpc = Rpc(rpc_url, timeout)
    contract_raw = protocol.parse_address(contract.lower(), "contract")
    (count,) = rpc.eth_call(contract_raw, "batchCount()", [], [], ["uint64"])
    engine = db.make_engine(database_url, writer=False)
    try:
        with db.session_factory(engine)() as session:
            known = set(session.scalars(select(db.Batch.chain_batch_id).where(db.Batch.status == "anchored")).all())
    finally:
        engine.dispose()
    from scripts.verify_proof import fetch_listing, verify_batch

    foreign = [i for i in range(1, count + 1) if i not in known]
    findings: list[Finding] = []
    unlisted: list[int] = []
    for batch_id in range(1, count + 1):  # this service's own batches too
        (challenged,) = rpc.eth_call(contract_raw, "isBatchChallenged(uint64)", ["uint64"], [batch_id], ["bool"])
        if challenged:
            findings.append(Finding("chain", f"batch {batch_id}", "challenged", "a challenge proved this batch faulty on chain"))
    for batch_id in foreign:
        for api in apis:
            try:
                listing = fetch_listing(api, batch_id, timeout)
            except RpcUnavailable:
                continue
            result = verify_batch(listing, rpc_url, contract=contract, timeout=timeout)
            for check in result.checks:
                if not check.ok:
                    findings.append(Finding("chain", f"batch {batch_id}", check.name, check.line(("", "")).strip()))
            break
        else:
            unlisted.append(batch_id)
    return foreign, findings, unlisted


def rows_of(findings: Iterable[Finding]) -> list[tuple[str, str]]:
    """The distinct (table, row) pairs the findings name, in order."""
    return list(dict.fromkeys((f.table, f.row) for f in findings))


def main(argv: Sequence[str] | None = None) -> int:
    from api.settings import Settings

    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m scripts.audit_sweep",
        description="Recompute every stored order and anchored batch and compare them with the chain.",
        epilog="Exit status: 0 every row matches; 1 some rows differ from what was anchored, or a foreign batch "
        "fails its check; 2 unusable database or RPC, or a bad command line; 3 the chain holds batches no "
        "service given lists (unchecked).",
    )
    parser.add_argument("--database-url", default=settings.database_url, help="the service's database (read only)")
    parser.add_argument("--rpc-url", default=settings.rpc_url, help="Ethereum JSON-RPC endpoint you trust")
    parser.add_argument("--contract", default=settings.contract_address,
                        help="the TimeBank address (default: TIMEBANK_CONTRACT_ADDRESS or the deployment record)")
    parser.add_argument("--json", action="store_true", help="print {orders, batches, findings} as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--api", action="append", default=[],
                        help="another service's base URL, whose listings check the chain's batches this database does not hold")
    args = parser.parse_args(argv)
    try:
        orders, batches, findings = sweep(args.database_url, args.rpc_url, args.contract,
                                          progress=False if args.no_progress else None)
        contract = args.contract
        if contract is None:
            contract = settings.resolve_contract(_hex_int(Rpc(args.rpc_url).call("eth_chainId")))
        foreign, foreign_findings, unlisted = foreign_batches(args.database_url, args.rpc_url, contract, args.api)
        findings.extend(foreign_findings)
    except (RpcUnavailable, RpcError, ProtocolError, RuntimeError) as exc:
        print(f"audit sweep: cannot run: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except Exception as exc:  # the database (SQLAlchemy's errors) and anything else unexpected
        print(f"audit sweep: cannot run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    rows = rows_of(findings)
    if args.json:
        report: dict[str, Any] = {"orders": orders, "batches": batches, "rows": [list(r) for r in rows],
                                  "findings": [asdict(f) for f in findings], "foreignBatches": foreign,
                                  "unlistedBatches": unlisted}
        print(json.dumps(report, indent=2))
    else:
        for f in findings:
            print(f.line())
        if foreign:
            print(f"the chain holds {len(foreign)} batches this database does not: {_ids(foreign)}; "
                  + (f"{len(unlisted)} listed by no service given (--api), not checked: {_ids(unlisted)}" if unlisted
                     else "each checked against its service's listing"))
        if not rows:
            verdict = ("every row matches what was anchored" if not foreign else
                       f"the rows of this database match what was anchored, but the chain holds {len(foreign)} batches it does not")
        else:
            verdict = f"{len(rows)} rows differ from what was anchored"
        print(f"{orders} orders and {batches} anchored batches checked: {verdict}")
    if rows:
        return EXIT_DIFFERS
    return EXIT_UNCHECKED if unlisted else EXIT_CLEAN


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(map(str, ids[:20])) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")


if __name__ == "__main__":
    sys.exit(main())
