"""The service: wires the store, the chain connector, the order writer, the follower and the batcher,
and holds the flows the routes call (order lookups, proofs, admin command relay)."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from sqlalchemy import func, select, text
from starlette.concurrency import run_in_threadpool

from . import bundles, db, people, protocol
from .batcher import Batcher
from .chain import BroadcastRefused, Call, Chain, ChainUnavailable, ContractRevert
from .commands import Commands
from .errors import ApiError
from .follower import Follower
from .intake import Outcome, Writer, prepare
from .settings import Settings
from .transactions import TxSender

log = logging.getLogger(__name__)

def sees_details(caller, district: int) -> bool:
    """Whether a signed caller may read personal data of `district`: its administrator or the city's, an
    auditor of it or a city-wide one (PROTOCOL.md v1.1 section 6). Unsigned requests (None) never."""
    return caller is not None and (caller.administers(district) or caller.audits(district))


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
        self.id_hash_key = settings.id_hash_key_bytes(self.chain_id)
        self.sender = TxSender(self.chain, settings.relayer_private_key(self.chain_id), self.sessions)
        self.city_admin = self.chain.city_admin()
        self.follower = Follower(self.chain, self.sessions, self._deployment_block(), settings.confirmations, reads=self.reads)
        self.writer = Writer(self.sessions, settings)
        self.batcher = Batcher(self.chain, self.sender, self.sessions, settings, reads=self.reads)
        self.writer.on_commit = self.batcher.accepted
        self.follower.on_change = self.writer.cache.invalidate
        # payer_not_linked needs the contract's family links (PROTOCOL.md v1.1 LinkAccounts)
        self.writer.cache.links_enforced = any(e.get("name") == "AccountsLinked" for e in self.chain.abi)
        self.commands = Commands(self)
        self.follower.on_reset = self.commands.chain_lost_blocks
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
            try:
                self.commands.resend_due()
            except Exception:
                log.exception("sending lost commands again failed")
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
                commands = self.commands.health(session)
            database_ok = True
        except Exception:
            database_ok, waiting, commands = False, None, {}
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
            **commands,
        }

    # ----- orders ---------------------------------------------------------------------------------

    async def submit_order(self, body: Any) -> Outcome:
        """One signed order: checked (`intake.prepare`, then the writer's checks against the stored state)
        and, when accepted, durable before this returns. Refusals of the stateless checks raise `ApiError`."""
        item = prepare(body, separator=self.separator, settings=self.settings)
        (outcome,) = await self.writer.submit([item])
        return outcome

    async def submit_bulk(self, body: Any) -> list[Outcome]:
        """Up to `bulk_max_items` orders, each answered as `submit_order` would, in order."""
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ApiError("invalid_request", "expected an object with items")
        if len(items) > self.settings.bulk_max_items:
            raise ApiError("too_many_items", f"{len(items)} items, at most {self.settings.bulk_max_items}")
        prepared = await run_in_threadpool(self._prepare_all, items)  # about 0.1 ms an item: off the event loop
        return await self.writer.submit(prepared) if prepared else []

    def _prepare_all(self, items: list) -> list:
        """`prepare` of every bulk item, a refusal in its place."""
        prepared: list = []
        for item in items:
            try:
                prepared.append(prepare(item, separator=self.separator, settings=self.settings))
            except ApiError as exc:
                prepared.append(exc)
        return prepared

    def order_view(self, order_id: str, caller=None) -> dict[str, Any]:
        """The order and its status. Its `details` (locations, notes, confirmation: personal data, PROTOCOL.md
        v1.1 section 6) only for a signed request of an administrator or auditor of the order's district
        or of the city (`caller`); `details` is null otherwise."""
        with self.reads() as session:
            row = session.scalar(select(db.Order).where(db.Order.order_id == order_id))
            if row is None:
                raise ApiError("not_found", f"no order {order_id}")
            batch = session.get(db.Batch, row.batch_id) if row.batch_id else None
        view = {
            "orderId": row.order_id,
            "status": row.status,
            "order": bundles.order_json(row),
            "signature": row.signature,
            "digest": row.digest,
            "station": row.station,
            "details": json.loads(row.details) if sees_details(caller, row.district) else None,
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

    def _anchored(self, order_id: str) -> tuple[db.Order, db.Batch, list[str]]:
        """An anchored (or since revoked) order, its batch and the batch's stored tree; `not_found`,
        `order_not_anchored` otherwise."""
        with self.reads() as session:
            row = session.scalar(select(db.Order).where(db.Order.order_id == order_id))
            if row is None:
                raise ApiError("not_found", f"no order {order_id}")
            batch = session.get(db.Batch, row.batch_id) if row.batch_id else None
        if batch is None or batch.status != "anchored" or row.status not in ("anchored", "revoked"):
            raise ApiError("order_not_anchored", f"order {order_id} is {row.status}, not anchored yet")
        return row, batch, json.loads(batch.tree)

    def domain(self) -> dict[str, Any]:
        return protocol.domain(self.chain_id, self.contract_address)

    def proof_bundle(self, order_id: str) -> dict[str, Any]:
        """The proof bundle of PROTOCOL.md section 7 of one order (`api/bundles.py`)."""
        row, batch, tree = self._anchored(order_id)
        return bundles.build_bundle(self.domain(), row, batch, tree)

    def proof_bundles(self, order_ids: list[str], *, revoked: bool = True) -> list[dict[str, Any]]:
        """The proof bundles of the anchored orders among `order_ids`, in their order (the others are left
        out; revoked ones too unless `revoked`): a read per 500 orders, each batch's tree parsed once."""
        statuses = ("anchored", "revoked") if revoked else ("anchored",)
        found: dict[str, dict[str, Any]] = {}
        trees: dict[int, list[str]] = {}
        domain = self.domain()
        for start in range(0, len(order_ids), 500):
            with self.reads() as session:
                rows = session.execute(
                    select(db.Order, db.Batch)
                    .join(db.Batch, db.Order.batch_id == db.Batch.id)
                    .where(
                        db.Order.order_id.in_(order_ids[start : start + 500]),
                        db.Order.status.in_(statuses),
                        db.Batch.status == "anchored",
                    )
                ).all()
            for row, batch in rows:
                tree = trees.get(batch.id)
                if tree is None:
                    tree = trees[batch.id] = json.loads(batch.tree)
                found[row.order_id] = bundles.build_bundle(domain, row, batch, tree)
        return [found[i] for i in order_ids if i in found]

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
        if not (caller.city_admin or caller.district is not None):  # before anything is looked up
            raise ApiError("forbidden", f"{caller.address} is not an administrator")
        with self.sessions() as session, session.begin():
            row = session.get(db.Account, account)
            if row is None or row.status == 0:
                raise ApiError("not_found", f"no account {account}")
            if not caller.administers(row.district):
                raise ApiError("forbidden", f"{caller.address} does not administer district {row.district}")
            self.write_profile(session, account, location=location, qualified=qualified)
        self.writer.cache.invalidate(accounts=[account])
        return {"account": account, "location": location, "qualified": qualified}

    def set_location_exemption(self, caller, account: str, body: Any | None) -> dict[str, Any]:
        """Records (`body` {reason}) or ends (`body` None) an administrator's exemption: a recipient with no
        registered location may be served (intake's `recipient_no_location`). Signed request of the
        administrator of the account's district, or the city's; the exemption names who recorded it."""
        if not (caller.city_admin or caller.district is not None):
            raise ApiError("forbidden", f"{caller.address} is not an administrator")
        reason = None
        if body is not None:
            reason = body.get("reason") if isinstance(body, dict) and set(body) == {"reason"} else None
            if not isinstance(reason, str) or not reason.strip() or len(reason) > 500 or "\x00" in reason:
                raise ApiError("invalid_request", "expected {reason}: why this person is served without a registered location (1 to 500 characters)")
        with self.sessions() as session, session.begin():
            row = session.get(db.Account, account)
            if row is None or row.status == 0:
                raise ApiError("not_found", f"no account {account}")
            if not caller.administers(row.district):
                raise ApiError("forbidden", f"{caller.address} does not administer district {row.district}")
            exemption = session.get(db.LocationExemption, account)
            if reason is None:
                if exemption is not None:
                    session.delete(exemption)
                answer = {"account": account, "exempt": False}
            else:
                exemption = session.merge(db.LocationExemption(account=account, admin=caller.address, reason=reason, created_at=time.time()))
                answer = {"account": account, "exempt": True, "admin": caller.address, "reason": reason, "createdAt": exemption.created_at}
        self.writer.cache.invalidate(accounts=[account])
        return answer

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
            raise ApiError("invalid_request", "expected an object with type, message and signature (and cardNumber for RegisterAccount)")
        kind = body["type"]
        if not isinstance(kind, str) or kind not in protocol.COMMAND_FUNCTIONS:
            raise ApiError("unknown_type", f"unknown command type {str(kind)[:40]!r}")
        try:
            message = protocol.parse_message(kind, body["message"])
            signature = protocol.parse_bytes(body["signature"], 65, "signature")
            signer = protocol.to_hex(protocol.recover(protocol.typed_digest(self.separator, kind, message), signature))
        except protocol.ProtocolError as exc:
            raise ApiError(exc.code, exc.message) from None
        self.require_command_role(kind, message, signer)
        if kind == "RegisterAccount":
            self.require_card_district(message, body.get("cardNumber"))
        call = self.command_call(kind, message, signer, signature)
        # a monthly grant (api/people.py) is refused when the period's grant is recorded, and recorded after
        with people.monthly_grant_claim(self, kind, message) as claim:
            answer = self._relay(kind, call, message, signature, signer)
            claim.record(answer["txHash"])
        return answer

    def require_command_role(self, kind: str, message: dict[str, Any], signer: str) -> None:
        """The signer's role, checked against the mirror before anything else is looked up: a signer who
        is not the city administrator nor the administrator of the district the command acts in is refused
        `unauthorized` with a message that names no card, person, account or order (the command's target
        is not looked up for it). The contract checks the role again when the command is relayed."""
        if signer == self.city_admin:
            return
        if kind in ("RegisterDistrict", "RegisterAuditor"):
            raise ApiError("unauthorized", f"{signer} is not the city administrator")
        with self.reads() as session:
            own = session.scalar(select(db.District.district).where(db.District.admin == signer))
            if own is None:
                raise ApiError("unauthorized", f"{signer} is not the administrator of a district")
            if kind in ("RegisterStation", "RegisterAccount"):
                district = message["district"]
            elif kind == "RemoveStation":
                district = session.scalar(select(db.Station.district).where(db.Station.station == message["station"]))
            elif kind in ("SetAccountStatus", "Grant"):
                district = session.scalar(select(db.Account.district).where(db.Account.account == message["account"]))
            elif kind == "LinkAccounts":
                district = session.scalar(select(db.Account.district).where(db.Account.account == message["payer"]))
            elif kind == "RevokeOrder":
                district = session.scalar(select(db.Order.district).where(db.Order.order_id == message["orderId"]))
            else:
                district = None
        if district is not None and district != own:
            raise ApiError("unauthorized", f"{signer} is not the administrator of the district this command acts in")

    def require_card_district(self, message: dict[str, Any], card_number: Any) -> None:
        """A RegisterAccount's card must carry the command's district code (`card_other_district`). The
        chain sees only keccak256(cardNumber): the card number is the registered person's
        (POST /v1/people), or the `cardNumber` given beside the command (which must hash to the account)."""
        account = message["account"]
        if card_number is not None:
            card_number = people.parse_card_number(card_number)
            if people.account_of(card_number) != account:
                raise ApiError("account_mismatch", "cardNumber: its keccak256 is not the command's account")
        else:
            with self.reads() as session:
                person = session.get(db.Person, account)
            card_number = person.card_number if person is not None else None
        if card_number is not None:
            people.require_card_of(card_number, message["district"])

    def command_call(self, kind: str, message: dict[str, Any], signer: str, signature: bytes) -> Call:
        """The contract call of a checked command (raises `ApiError` when it cannot be made)."""
        args = self._command_args(kind, message, signer)
        return self.chain.command(kind, args[0], signature, *args[1:])

    def _relay(self, kind: str, call: Call, message: dict[str, Any], signature: bytes, signer: str) -> dict[str, Any]:
        """Simulates, sends and waits for a checked command's transaction, then for the mirror to apply it.
        The command is recorded with its transaction (`api/commands.py`), so a chain rollback cannot lose it."""
        try:
            gas = self.sender.simulate(call)
        except ContractRevert as revert:
            if revert.name == "TimeBankUnauthorized":
                district = revert.args_by_name.get("district")
                raise ApiError("unauthorized", f"{signer} is not the administrator of district {district}") from None
            raise ApiError(revert.code, f"the contract refused: {revert}") from None
        except ChainUnavailable:
            raise ApiError("chain_unavailable") from None
        try:
            with self.sessions() as session:
                row = self.sender.record(session, call, f"command:{kind}", int(gas * 1.3) + 20_000)
                try:
                    self.commands.record(session, kind, message, signature, signer, row)
                    session.commit()
                except BaseException:
                    self.sender.abandoned()
                    raise
            self.sender.committed(row)
            receipt = self.sender.wait(row.tx_hash, self.settings.tx_timeout_seconds)
        except ChainUnavailable:
            raise ApiError("chain_unavailable") from None
        except BroadcastRefused as exc:
            raise ApiError("chain_refused", str(exc)[:300]) from None
        except TimeoutError:
            raise ApiError("chain_timeout", f"transaction {row.tx_hash} not mined yet") from None
        if receipt["status"] != 1:
            raise ApiError("command_refused", f"transaction {row.tx_hash} reverted")
        self.commands.acknowledged(row.tx_hash)
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
            row, batch, tree = self._anchored(m["orderId"])
            order = protocol.ServiceOrder.from_json(bundles.order_json(row))
            proof = bundles.proof_path(tree, row.leaf_index)
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
