"""Proof bundles (PROTOCOL.md section 7) and batch listings (`timebank-batch/1`), in one place: built from
the stored rows, parsed (every field checked before any hashing), and the offline checks recomputed
(digest, signer, leaf, proof folded to the root).

The service builds bundles and listings here; certificates, the audit flows and the standalone verifier
(`scripts/verify_proof.py`) parse and check them here. Like `api/protocol.py`, which it builds on, this
module imports no server, database, chain or configuration code: an auditor reads these two files to know
what a bundle is and how it is checked. The chain's part of the checks (getBatch, receipts, stations,
revocations) is the verifier's and the certificates' own, each through its own connection.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Sequence

from . import protocol
from .protocol import Amounts, ProtocolError

PROOF_FORMAT = protocol.PROOF_FORMAT
BATCH_FORMAT = "timebank-batch/1"


# ----- building (from the store's rows: any object with the `orders` and `batches` column names) ------


def order_json(row: Any) -> dict[str, Any]:
    """A stored order's protocol fields (PROTOCOL.md section 3)."""
    return {
        "orderId": row.order_id,
        "district": row.district,
        "volunteer": row.volunteer,
        "payer": row.payer,
        "recipient": row.recipient,
        "serviceType": row.service_type,
        "startTime": row.start_time,
        "endTime": row.end_time,
        "minutes": row.minutes,
        "detailsHash": row.details_hash,
    }


def batch_json(batch: Any) -> dict[str, Any]:
    """An anchored batch as the proof bundle and the batch listing give it."""
    return {
        "id": batch.chain_batch_id,
        "root": batch.root,
        "count": batch.count,
        "txHash": batch.tx_hash,
        "blockNumber": batch.block_number,
        "blockHash": batch.block_hash,
    }


def leaf_hex(row: Any) -> str:
    """The Merkle leaf of a stored order, 0x hex."""
    return protocol.to_hex(protocol.leaf(bytes.fromhex(row.digest[2:]), bytes.fromhex(row.station[2:])))


def proof_path(tree: Sequence[str], index: int) -> list[bytes]:
    """The Merkle proof of the leaf at `index` of a stored tree (hex nodes in `MerkleTree`'s layout)."""
    return [bytes.fromhex(tree[i]) for i in protocol.sibling_indices(index)]


def build_bundle(domain: dict[str, Any], row: Any, batch: Any, tree: Sequence[str]) -> dict[str, Any]:
    """The proof bundle of a stored order in an anchored batch whose stored tree is `tree`."""
    return {
        "format": PROOF_FORMAT,
        "domain": domain,
        "order": order_json(row),
        "signature": row.signature,
        "digest": row.digest,
        "station": row.station,
        "leaf": leaf_hex(row),
        "proof": [protocol.to_hex(p) for p in proof_path(tree, row.leaf_index)],
        "batch": batch_json(batch),
    }


def amounts_of(orders: Iterable[protocol.ServiceOrder]) -> Amounts:
    """The minutes a batch of orders justifies moving, per account (`protocol.amounts`)."""
    return protocol.amounts((o.volunteer, o.payer, o.serviceType, o.minutes) for o in orders)


def amounts_of_rows(rows: Iterable[Any]) -> Amounts:
    """`amounts_of` for stored orders."""
    return protocol.amounts(
        (bytes.fromhex(o.volunteer[2:]), bytes.fromhex(o.payer[2:]), o.service_type, o.minutes) for o in rows
    )


def build_listing(
    domain: dict[str, Any], batch: Any, rows: Sequence[Any], *, revoked: Iterable[bool], relayer: str | None = None
) -> dict[str, Any]:
    """A batch listing: the batch, the relayer that anchored it and the canonical deltas it anchored (hex,
    as in its `anchorBatch` call: what a challenge names), every order (protocol fields, signature, digest,
    station, leaf and whether it was revoked; no details) and the per-account amounts recomputed from the
    orders."""
    return {
        "format": BATCH_FORMAT,
        "domain": domain,
        **batch_json(batch),
        "relayer": relayer,
        "deltas": "0x" + (batch.deltas or ""),
        "orders": [
            {
                "order": order_json(row),
                "signature": row.signature,
                "digest": row.digest,
                "station": row.station,
                "leaf": leaf_hex(row),
                "revoked": gone,
            }
            for row, gone in zip(rows, revoked)
        ],
        "amounts": [
            {"account": protocol.to_hex(account), "earned": e, "received": r, "spent": s}
            for account, (e, r, s) in amounts_of_rows(rows).items()
        ],
    }


# ----- parsing -------------------------------------------------------------------------------------


class Batch(NamedTuple):
    id: int
    root: bytes
    count: int
    tx_hash: bytes
    block_number: int
    block_hash: bytes


class Bundle(NamedTuple):
    chain_id: int
    contract: bytes
    order: protocol.ServiceOrder
    signature: bytes
    digest: bytes
    station: bytes
    leaf: bytes
    proof: list[bytes]
    batch: Batch


class ListedOrder(NamedTuple):
    order: protocol.ServiceOrder
    signature: bytes
    digest: bytes
    station: bytes
    leaf: bytes


class Listing(NamedTuple):
    chain_id: int
    contract: bytes
    batch: Batch
    orders: list[ListedOrder]
    amounts: Amounts


def _batch(value: dict[str, Any], prefix: str, code: str) -> Batch:
    missing = [f for f in ("id", "root", "count", "txHash", "blockNumber", "blockHash") if f not in value]
    if missing:
        raise ProtocolError(code, f"{prefix or 'batch'}: missing fields {missing}")
    p = f"{prefix}." if prefix else ""
    return Batch(
        id=protocol.parse_uint(value["id"], 64, f"{p}id"),
        root=protocol.parse_bytes(value["root"], 32, f"{p}root"),
        count=protocol.parse_uint(value["count"], 32, f"{p}count"),
        tx_hash=protocol.parse_bytes(value["txHash"], 32, f"{p}txHash"),
        block_number=protocol.parse_uint(value["blockNumber"], 64, f"{p}blockNumber"),
        block_hash=protocol.parse_bytes(value["blockHash"], 32, f"{p}blockHash"),
    )


def parse_bundle(value: Any) -> Bundle:
    """Validates every field of a proof bundle (lengths before any hashing); `ProtocolError` otherwise.
    Unknown extra top-level fields are allowed (a service may add fields); the order must be exactly a
    ServiceOrder."""
    if not isinstance(value, dict):
        raise ProtocolError("malformed_bundle", f"bundle: expected a JSON object, got {type(value).__name__}")
    fields = ("format", "domain", "order", "signature", "digest", "station", "leaf", "proof", "batch")
    missing = [f for f in fields if f not in value]
    if missing:
        raise ProtocolError("malformed_bundle", f"bundle: missing fields {missing}")
    if value["format"] != PROOF_FORMAT:
        raise ProtocolError("malformed_bundle", f"format: got {value['format']!r:.80}, want {PROOF_FORMAT!r}")
    chain_id, contract = protocol.parse_domain(value["domain"])
    order = protocol.ServiceOrder.from_json(value["order"])
    proof = value["proof"]
    if not isinstance(proof, list):
        raise ProtocolError("malformed_bundle", "proof: expected a list of 0x-hex strings")
    if not isinstance(value["batch"], dict):
        raise ProtocolError("malformed_bundle", "batch: expected an object")
    return Bundle(
        chain_id=chain_id,
        contract=contract,
        order=order,
        signature=protocol.parse_bytes(value["signature"], 65, "signature"),
        digest=protocol.parse_bytes(value["digest"], 32, "digest"),
        station=protocol.parse_address(value["station"], "station"),
        leaf=protocol.parse_bytes(value["leaf"], 32, "leaf"),
        proof=[protocol.parse_bytes(p, 32, f"proof[{i}]") for i, p in enumerate(proof)],
        batch=_batch(value["batch"], "batch", "malformed_bundle"),
    )


def parse_listing(value: Any) -> Listing:
    """Validates a batch listing (`GET /v1/batches/{id}`, format `timebank-batch/1`) before any hashing."""
    if not isinstance(value, dict):
        raise ProtocolError("malformed_listing", f"listing: expected a JSON object, got {type(value).__name__}")
    fields = ("format", "domain", "id", "root", "count", "txHash", "blockNumber", "blockHash", "orders", "amounts")
    missing = [f for f in fields if f not in value]
    if missing:
        raise ProtocolError("malformed_listing", f"listing: missing fields {missing}")
    if value["format"] != BATCH_FORMAT:
        raise ProtocolError("malformed_listing", f"format: got {value['format']!r:.80}, want {BATCH_FORMAT!r}")
    chain_id, contract = protocol.parse_domain(value["domain"])
    if not isinstance(value["orders"], list) or not value["orders"]:
        raise ProtocolError("malformed_listing", "orders: expected a non-empty list")
    if not isinstance(value["amounts"], list):
        raise ProtocolError("malformed_listing", "amounts: expected a list")
    orders = []
    for i, item in enumerate(value["orders"]):
        if not isinstance(item, dict) or not {"order", "signature", "digest", "station", "leaf"} <= item.keys():
            raise ProtocolError("malformed_listing", f"orders[{i}]: expected order, signature, digest, station, leaf")
        orders.append(
            ListedOrder(
                order=protocol.ServiceOrder.from_json(item["order"]),
                signature=protocol.parse_bytes(item["signature"], 65, f"orders[{i}].signature"),
                digest=protocol.parse_bytes(item["digest"], 32, f"orders[{i}].digest"),
                station=protocol.parse_address(item["station"], f"orders[{i}].station"),
                leaf=protocol.parse_bytes(item["leaf"], 32, f"orders[{i}].leaf"),
            )
        )
    amounts: Amounts = {}
    for i, item in enumerate(value["amounts"]):
        if not isinstance(item, dict) or not {"account", "earned", "received", "spent"} <= item.keys():
            raise ProtocolError("malformed_listing", f"amounts[{i}]: expected account, earned, received, spent")
        account = protocol.parse_bytes(item["account"], 32, f"amounts[{i}].account")
        if account in amounts:
            raise ProtocolError("malformed_listing", f"amounts[{i}]: account {protocol.to_hex(account)} listed twice")
        amounts[account] = tuple(protocol.parse_uint(item[k], 32, f"amounts[{i}].{k}") for k in ("earned", "received", "spent"))
    return Listing(chain_id, contract, _batch(value, "", "malformed_listing"), orders, amounts)


# ----- the offline steps (PROTOCOL.md section 7, steps 1 and 2) --------------------------------------


class Signed(NamedTuple):
    """Step 1 recomputed: the EIP-712 digest from domain and order, and its signer (None when the
    signature recovers no key; `error` says why)."""

    digest: bytes
    signer: bytes | None
    error: str | None = None


def recompute_signer(chain_id: int, contract: bytes, order: protocol.ServiceOrder, signature: bytes) -> Signed:
    digest = order.digest(protocol.domain_separator(chain_id, contract))
    try:
        return Signed(digest, protocol.recover(digest, signature))
    except ProtocolError as exc:
        return Signed(digest, None, exc.message)


class Included(NamedTuple):
    """Step 2 recomputed: the leaf from digest and station, and the root the proof folds it to."""

    leaf: bytes
    root: bytes


def recompute_inclusion(digest: bytes, station: bytes, proof: Sequence[bytes]) -> Included:
    leaf = protocol.leaf(digest, station)
    return Included(leaf, protocol.fold(leaf, proof))
