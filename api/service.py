"""The service: wires the store, the chain connector, the order writer, the follower and the batcher,
and holds the flows the routes call (order lookups, proofs, admin command relay)."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from sqlalchemy import func, select, text

from . import db, people, protocol
from .batcher import Batcher
from .chain import BroadcastRefused, Chain, ChainUnavailable, ContractRevert, TxSender
from .errors import ApiError
from .follower import Follower
from .intake import Writer
from .settings import Settings

log = logging.getLogger(__name__)

# contract custom errors -> our error codes (the rest are `command_refused`)
REVERT_CODES = {
    "TimeBankUnauthorized": "unauthorized",
    "TimeBankNonceUsed": "nonce_used",
    "ECDSAInvalidSignature": "bad_signature",
    "ECDSAInvalidSignatureS": "bad_signature",
    "ECDSAInvalidSignatureLength": "bad_signature",
}

def _b(hex_value: str) -> bytes:
    return bytes.fromhex(hex_value[2:])


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.chain = Chain(settings.rpc_url)
        self.chain_id = self.chain.chain_id
        self.chain.bind(settings.resolve_contract(self.chain_id))
        self.contract_address = self.chain.address
        self.separator = protocol.domain_separator(self.chain_id, self.contract_address)
        db.migrate(settings.database_url)
        self.engine = db.make_engine(settings.database_url)
        self.read_engine = db.make_engine(settings.database_url, writer=False)
        self.sessions = db.session_factory(self.engine)
        self.reads = db.session_factory(self.read_engine)
        self.sender = TxSender(self.chain, settings.relayer_private_key(self.chain_id), self.sessions)
        self.city_admin = self.chain.city_admin()
        self.follower = Follower(self.chain, self.sessions, self._deployment_block(), settings.confirmations, reads=self.reads)
        self.writer = Writer(self.sessions, settings)
        self.batcher = Batcher(self.chain, self.sender, self.sessions, settings, reads=self.reads)
        self.writer.on_commit = self.batcher.accepted
        self.follower.on_change = self.writer.cache.invalidate
        self.batcher.on_change = self.writer.cache.invalidate
        self._stop = threading.Event()
        self._follower_thread = threading.Thread(target=self._follow, name="follower", daemon=True)
        self.followed = threading.Condition()

    def _deployment_block(self) -> int:
        """Where the follower starts: the deployment's block when the deployment record names this
        contract and its transaction is on this chain; else the genesis."""
        record = self.settings.deployments_dir / f"{self.chain_id}.json"
        if record.exists():
            data = json.loads(record.read_text())
            if data.get("address", "").lower() == self.contract_address.lower() and data.get("txHash"):
                receipt = self.chain.receipt(data["txHash"])
                if receipt is not None and (receipt.get("contractAddress") or "").lower() == self.contract_address.lower():
                    return int(receipt["blockNumber"])
        return 0

    # ----- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Brings the mirror up to the chain's head (when the chain answers), then starts the workers."""
        try:
            while self.follower.step():
                pass
        except ChainUnavailable as exc:
            log.warning("chain unavailable at start (%s): the mirror catches up when it returns", exc)
        self.writer.start()
        self._follower_thread.start()
        self.batcher.start()

    def stop(self) -> None:
        self._stop.set()
        self.batcher.stop()
        self.writer.stop()
        self._follower_thread.join(timeout=10)
        self.engine.dispose()
        self.read_engine.dispose()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                applied = self.follower.step()
            except ChainUnavailable as exc:
                log.warning("follower: chain unavailable (%s)", exc)
                applied = 0
                self._stop.wait(1.0)
            except Exception:
                log.exception("follower step failed")
                applied = 0
                self._stop.wait(1.0)
            with self.followed:
                self.followed.notify_all()
            if applied:
                self.batcher.wake.set()
            else:
                self._stop.wait(self.settings.poll_interval_seconds)

    def wait_followed(self, block: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.followed:
            while self.follower.applied_block() < block:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.followed.wait(min(left, 0.5))
        return True

    # ----- reads ----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        try:
            with self.reads() as session:
                session.execute(text("SELECT 1"))
                waiting = session.scalar(select(func.count()).select_from(db.Order).where(db.Order.status == "accepted"))
            database_ok = True
        except Exception:
            database_ok, waiting = False, None
        try:
            latest = self.chain.block_number()
        except ChainUnavailable:
            latest = None
        return {
            "chainId": self.chain_id,
            "contract": self.contract_address,
            "latestBlock": latest,
            "chainOk": latest is not None,
            "databaseOk": database_ok,
            "ordersWaiting": waiting,
            "followedBlock": self.follower.applied_block(),
        }

    def order_view(self, order_id: str) -> dict[str, Any]:
        with self.reads() as session:
            row = session.scalar(select(db.Order).where(db.Order.order_id == order_id))
            if row is None:
                raise ApiError("not_found", f"no order {order_id}")
            batch = session.get(db.Batch, row.batch_id) if row.batch_id else None
        view = {
            "orderId": row.order_id,
            "status": row.status,
            "order": order_json(row),
            "signature": row.signature,
            "digest": row.digest,
            "station": row.station,
            "details": json.loads(row.details),
            "reason": row.reason,
            "acceptedAt": row.accepted_at,
            "anchoredAt": row.anchored_at,
            "batchId": None,
            "txHash": None,
            "blockNumber": None,
        }
        if batch is not None and batch.status == "anchored":
            view.update(batchId=batch.chain_batch_id, txHash=batch.tx_hash, blockNumber=batch.block_number)
        return view

    def _anchored(self, order_id: str) -> tuple[db.Order, db.Batch, list[bytes]]:
        with self.reads() as session:
            row = session.scalar(select(db.Order).where(db.Order.order_id == order_id))
            if row is None:
                raise ApiError("not_found", f"no order {order_id}")
            batch = session.get(db.Batch, row.batch_id) if row.batch_id else None
        if batch is None or batch.status != "anchored" or row.status not in ("anchored", "revoked"):
            raise ApiError("order_not_anchored", f"order {order_id} is {row.status}, not anchored yet")
        return row, batch, proof_path(json.loads(batch.tree), row.leaf_index)

    def proof_bundle(self, order_id: str) -> dict[str, Any]:
        row, batch, proof = self._anchored(order_id)
        return bundle(protocol.domain(self.chain_id, self.contract_address), row, batch, proof)

    def account_view(self, account: bytes) -> dict[str, Any]:
        a = self.chain.get_account(account)
        if a.status == 0:
            raise ApiError("not_found", f"no account {protocol.to_hex(account)}")
        with self.reads() as session:
            promised = session.scalar(
                select(func.coalesce(func.sum(db.Order.minutes), 0)).where(
                    db.Order.payer == protocol.to_hex(account), db.Order.status == "accepted"
                )
            )
        return {
            "account": protocol.to_hex(account),
            "district": a.district,
            "kind": a.kind,
            "status": a.status,
            "balanceMinutes": a.balance,
            "earnedMinutes": a.earned,
            "starLevel": self.chain.star_level(account),
            "pendingDebitMinutes": promised,
        }

    def set_profile(self, caller, account: str, body: Any) -> dict[str, Any]:
        """The off-chain data the order checks use: the registered location (check-in and check-out must
        be near it) and whether the person holds a professional qualification (service type 9)."""
        if not isinstance(body, dict) or set(body) - {"location", "qualified"}:
            raise ApiError("invalid_request", "expected an object with location {lat, lon} or null, and qualified")
        location, qualified = parse_location(body.get("location")), body.get("qualified", False)
        if not isinstance(qualified, bool):
            raise ApiError("invalid_request", "qualified: expected a boolean")
        with self.sessions() as session, session.begin():
            row = session.get(db.Account, account)
            if row is None or row.status == 0:
                raise ApiError("not_found", f"no account {account}")
            if not caller.administers(row.district):
                raise ApiError("forbidden", f"{caller.address} does not administer district {row.district}")
            self.write_profile(session, account, location=location, qualified=qualified)
        self.writer.cache.invalidate(accounts=[account])
        return {"account": account, "location": location, "qualified": qualified}

    def write_profile(self, session, account: str, *, location: dict | None, qualified: bool, district: int = 0, kind: int = 0) -> None:
        """Writes the profile the order checks read (`accounts.lat`, `lon`, `qualified`) in the caller's
        transaction. Before the chain registers the account, a row of status 0 holds it (with `district`
        and `kind`; the follower fills in the chain's part). The caller invalidates the writer's cache
        after its commit."""
        row = session.get(db.Account, account)
        if row is None:
            row = db.Account(account=account, district=district, kind=kind, status=0, balance=0, earned=0)
            session.add(row)
        row.lat = None if location is None else float(location["lat"])
        row.lon = None if location is None else float(location["lon"])
        row.qualified = qualified

    # ----- admin commands -------------------------------------------------------------------------

    def relay_command(self, body: Any) -> dict[str, Any]:
        """Checks a signed administrative command (signature and role), relays it to the contract, and
        answers once the chain has mined it and the mirror has applied it."""
        if not isinstance(body, dict) or not {"type", "message", "signature"} <= body.keys():
            raise ApiError("invalid_request", "expected an object with type, message and signature")
        kind = body["type"]
        if not isinstance(kind, str) or kind not in protocol.COMMAND_FUNCTIONS:
            raise ApiError("unknown_type", f"unknown command type {str(kind)[:40]!r}")
        try:
            message = protocol.parse_message(kind, body["message"])
            signature = protocol.parse_bytes(body["signature"], 65, "signature")
            signer = protocol.to_hex(protocol.recover(protocol.typed_digest(self.separator, kind, message), signature))
        except protocol.ProtocolError as exc:
            raise ApiError(exc.code, exc.message) from None
        args = self._command_args(kind, message, signer)
        # a monthly grant (api/people.py) is refused when the period's grant is recorded, and recorded after
        with people.monthly_grant_claim(self, kind, message) as claim:
            answer = self._relay(kind, args, signature, signer)
            claim.record(answer["txHash"])
        return answer

    def _relay(self, kind: str, args: list[Any], signature: bytes, signer: str) -> dict[str, Any]:
        """Simulates, sends and waits for a checked command's transaction, then for the mirror to apply it."""
        fn = getattr(self.chain.contract.functions, protocol.COMMAND_FUNCTIONS[kind])
        call = fn(*args[:1], signature, *args[1:])
        try:
            gas = self.chain.simulate(call, self.sender.account.address)
        except ContractRevert as revert:
            if revert.name == "TimeBankUnauthorized":
                district = revert.args_by_name.get("district")
                raise ApiError("unauthorized", f"{signer} is not the administrator of district {district}") from None
            raise ApiError(REVERT_CODES.get(revert.name, "command_refused"), f"the contract refused: {revert}") from None
        except ChainUnavailable:
            raise ApiError("chain_unavailable") from None
        try:
            row = self.sender.send(call, f"command:{kind}", int(gas * 1.3) + 20_000)
            receipt = self.sender.wait(row.tx_hash, self.settings.tx_timeout_seconds)
        except ChainUnavailable:
            raise ApiError("chain_unavailable") from None
        except BroadcastRefused as exc:
            raise ApiError("chain_refused", str(exc)[:300]) from None
        except TimeoutError:
            raise ApiError("chain_timeout", f"transaction {row.tx_hash} not mined yet") from None
        if receipt["status"] != 1:
            raise ApiError("command_refused", f"transaction {row.tx_hash} reverted")
        followed = self.wait_followed(receipt["blockNumber"] + self.settings.confirmations - 1, self.settings.tx_timeout_seconds)
        return {
            "txHash": row.tx_hash,
            "blockNumber": receipt["blockNumber"],
            "signer": signer,
            "type": kind,
            "applied": followed,
        }

    def _command_args(self, kind: str, m: dict[str, Any], signer: str) -> list[Any]:
        """The contract call's arguments (the struct first; the signature goes second). The city-only
        commands are refused here; a district's role is checked by simulating the call against the
        chain itself (the mirror may be a block behind)."""
        if kind in ("RegisterDistrict", "RegisterAuditor") and signer != self.city_admin:
            raise ApiError("unauthorized", f"{signer} is not the city administrator")
        struct = tuple((_b(m[f]) if isinstance(m[f], str) else m[f]) for f, _ in protocol.TYPES[kind])
        if kind == "RevokeOrder":
            row, batch, proof = self._anchored(m["orderId"])
            if row.digest != m["digest"].lower():
                raise ApiError(
                    "command_refused",
                    f"RevokeOrder.digest {m['digest']} is not the digest of order {m['orderId']} ({row.digest})",
                )
            order = protocol.ServiceOrder.from_json(order_json(row))
            return [struct, order.as_tuple(), _b(row.station), batch.chain_batch_id, proof]
        return [struct]


def parse_location(location: Any) -> dict | None:
    """A registered location `{lat, lon}` in range, or None."""
    if location is not None and (
        not isinstance(location, dict)
        or set(location) != {"lat", "lon"}
        or not all(isinstance(location[k], (int, float)) and not isinstance(location[k], bool) for k in ("lat", "lon"))
        or not (-90 <= location["lat"] <= 90 and -180 <= location["lon"] <= 180)
    ):
        raise ApiError("invalid_request", "location: expected {lat, lon} in range, or null")
    return location


def proof_path(tree: list[str], index: int) -> list[bytes]:
    """The Merkle proof of the leaf at `index` of a stored tree (hex nodes, leaves last)."""
    proof = []
    while index > 0:
        proof.append(bytes.fromhex(tree[index + 1 if index % 2 == 1 else index - 1]))
        index = (index - 1) // 2
    return proof


def bundle(domain: dict[str, Any], row: db.Order, batch: db.Batch, proof: list[bytes]) -> dict[str, Any]:
    """The proof bundle of PROTOCOL.md section 7."""
    return {
        "format": protocol.PROOF_FORMAT,
        "domain": domain,
        "order": order_json(row),
        "signature": row.signature,
        "digest": row.digest,
        "station": row.station,
        "leaf": protocol.to_hex(protocol.leaf(_b(row.digest), _b(row.station))),
        "proof": [protocol.to_hex(p) for p in proof],
        "batch": batch_json(batch),
    }


def batch_json(batch: db.Batch) -> dict[str, Any]:
    """An anchored batch as the proof bundle and the batch listing give it."""
    return {
        "id": batch.chain_batch_id,
        "root": batch.root,
        "count": batch.count,
        "txHash": batch.tx_hash,
        "blockNumber": batch.block_number,
        "blockHash": batch.block_hash,
    }


def order_json(row: db.Order) -> dict[str, Any]:
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
