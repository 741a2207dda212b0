"""Administrative commands (PROTOCOL.md section 4): checked, relayed to the contract with the monthly-grant
hook (api/people.py), and kept so that a chain that lost blocks gets them back.

`Commands.relay` recovers the signer, refuses the city-only commands of anyone else, simulates the call
against the chain (the contract checks the role and the nonce; its custom error becomes the answer's
code, `chain.CONTRACT_ERRORS`), sends it and answers once it is mined and the mirror has applied it.

Every command the service relays is recorded with its signed message and its transaction, in the commit
that records the transaction. When the follower finds that the chain lost blocks (a node restored from an
older snapshot, a deep reorg), `chain_lost_blocks` runs before the mirror is rebuilt: it asks the chain
for the receipt of each relayed command's transaction, newest first, down to the first one still in its
block, and sends each lost one again, in the order they were first relayed: the same signed command (the
administrator's signature and nonce still hold on a chain that has not used the nonce) in a new relayer
transaction. A command the chain now refuses (its nonce used meanwhile, a role lost with the blocks) is
marked `lost` with the reason, shown in its status and in `/v1/health`. A `RevokeOrder` waits until its
order is anchored again (its batch may have been lost with it)."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update

from . import bundles, db, people, protocol
from .chain import BroadcastRefused, Call, ChainUnavailable, ContractRevert
from .errors import ApiError
from .vocabulary import CommandStatus, OrderStatus, TxStatus

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)

RELAYED, RESENDING, LOST = CommandStatus.RELAYED, CommandStatus.RESENDING, CommandStatus.LOST


class _NotMinedYet(Exception):
    """A command sent again was not mined within the transaction timeout."""
LISTED_IN_HEALTH = 20
REBROADCAST_SECONDS = 5.0


def _bytes(hex_value: str) -> bytes:
    return bytes.fromhex(hex_value[2:])


class Commands:
    def __init__(self, service: Service):
        self.service = service
        self.waiting = True  # commands may be waiting to be sent again (looked up at the next `resend_due`)
        self._next_rebroadcast = 0.0

    # ----- the relay ------------------------------------------------------------------------------

    def record(self, session, kind: str, message: dict[str, Any], signature: bytes, signer: str, tx: db.Transaction) -> None:
        """Adds the command relayed by transaction `tx` to `session` (the caller commits both together)."""
        now = time.time()
        session.add(
            db.Command(
                type=kind,
                signer=signer,
                message=json.dumps(message, sort_keys=True),
                signature="0x" + bytes(signature).hex(),
                tx_hash=tx.tx_hash,
                tx_id=tx.id,
                acknowledged=False,
                status=RELAYED,
                resends=0,
                created_at=now,
                updated_at=now,
            )
        )

    def acknowledged(self, tx_hash: str) -> None:
        """The administrator is answered 200 with `tx_hash`: from now on the chain must keep the command."""
        with self.service.sessions() as session, session.begin():
            session.execute(update(db.Command).where(db.Command.tx_hash == tx_hash).values(acknowledged=True))

    def relay(self, body: Any) -> dict[str, Any]:
        """Checks a signed administrative command (signature and role), relays it to the contract, and
        answers once the chain has mined it and the mirror has applied it."""
        service = self.service
        if not isinstance(body, dict) or not {"type", "message", "signature"} <= body.keys():
            raise ApiError("invalid_request", "expected an object with type, message and signature (and cardNumber for RegisterAccount)")
        kind = body["type"]
        if not isinstance(kind, str) or kind not in protocol.COMMAND_FUNCTIONS:
            raise ApiError("unknown_type", f"unknown command type {str(kind)[:40]!r}")
        try:
            message = protocol.parse_message(kind, body["message"])
            signature = protocol.parse_bytes(body["signature"], 65, "signature")
            signer = protocol.to_hex(protocol.recover(protocol.typed_digest(service.separator, kind, message), signature))
        except protocol.ProtocolError as exc:
            raise ApiError(exc.code, exc.message) from None
        self.require_role(kind, message, signer)
        if kind == "RegisterAccount":
            self.require_card_district(message, body.get("cardNumber"))
        call = self.command_call(kind, message, signer, signature)
        # a monthly grant (api/people.py) is refused when the period's grant is recorded, and recorded after
        with people.monthly_grant_claim(service, kind, message) as claim:
            answer = self._relay(kind, call, message, signature, signer)
            claim.record(answer["txHash"])
        return answer

    def require_role(self, kind: str, message: dict[str, Any], signer: str) -> None:
        """The signer's role, checked against the mirror before anything else is looked up: a signer who
        is not the city administrator nor the administrator of the district the command acts in is refused
        `unauthorized` with a message that names no card, person, account or order (the command's target
        is not looked up for it). The contract checks the role again when the command is relayed."""
        service = self.service
        if signer == service.city_admin:
            return
        if kind in ("RegisterDistrict", "RegisterAuditor"):
            raise ApiError("unauthorized", f"{signer} is not the city administrator")
        with service.reads() as session:
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
            with self.service.reads() as session:
                person = session.get(db.Person, account)
            card_number = person.card_number if person is not None else None
        if card_number is not None:
            people.require_card_of(card_number, message["district"])

    def command_call(self, kind: str, message: dict[str, Any], signer: str, signature: bytes) -> Call:
        """The contract call of a checked command (raises `ApiError` when it cannot be made)."""
        args = self._command_args(kind, message, signer)
        return self.service.chain.command(kind, args[0], signature, *args[1:])

    def _relay(self, kind: str, call: Call, message: dict[str, Any], signature: bytes, signer: str) -> dict[str, Any]:
        """Simulates, sends and waits for a checked command's transaction, then for the mirror to apply it.
        The command is recorded with its transaction, so a chain rollback cannot lose it."""
        service = self.service
        try:
            gas = service.sender.simulate(call)
        except ContractRevert as revert:
            if revert.name == "TimeBankUnauthorized":
                district = revert.args_by_name.get("district")
                raise ApiError("unauthorized", f"{signer} is not the administrator of district {district}") from None
            raise ApiError(revert.code, f"the contract refused: {revert}") from None
        except ChainUnavailable:
            raise ApiError("chain_unavailable") from None
        try:
            with service.sessions() as session:
                row = service.sender.record(session, call, f"command:{kind}", int(gas * 1.3) + 20_000)
                try:
                    self.record(session, kind, message, signature, signer, row)
                    session.commit()
                except BaseException:
                    service.sender.abandoned()
                    raise
            service.sender.committed(row)
            receipt = service.sender.wait(row.tx_hash, service.settings.tx_timeout_seconds)
        except ChainUnavailable:
            raise ApiError("chain_unavailable") from None
        except BroadcastRefused as exc:
            raise ApiError("chain_refused", str(exc)[:300]) from None
        except TimeoutError:
            raise ApiError("chain_timeout", f"transaction {row.tx_hash} not mined yet") from None
        if receipt["status"] != 1:
            raise ApiError("command_refused", f"transaction {row.tx_hash} reverted")
        self.acknowledged(row.tx_hash)
        followed = service.follower.wait_followed(receipt["blockNumber"] + service.settings.confirmations - 1, service.settings.tx_timeout_seconds)
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
        if kind in ("RegisterDistrict", "RegisterAuditor") and signer != self.service.city_admin:
            raise ApiError("unauthorized", f"{signer} is not the city administrator")
        struct = tuple((_bytes(m[f]) if isinstance(m[f], str) else m[f]) for f, _ in protocol.TYPES[kind])
        if kind == "RevokeOrder":
            row, batch, tree = self.service.anchored_order(m["orderId"])
            if row.digest != m["digest"].lower():
                raise ApiError(
                    "command_refused",
                    f"RevokeOrder.digest {m['digest']} is not the digest of order {m['orderId']} ({row.digest})",
                )
            order = protocol.ServiceOrder.from_json(bundles.order_json(row))
            proof = bundles.proof_path(tree, row.leaf_index)
            return [struct, order.as_tuple(), _bytes(row.station), batch.chain_batch_id, proof]
        return [struct]

    # ----- after the chain lost blocks ------------------------------------------------------------

    def chain_lost_blocks(self) -> None:
        """The follower found the chain without the block it had followed to. Finds the relayed commands
        whose transactions the chain no longer has, marks them (and every relayer transaction whose nonce
        the chain has not reached) so, and sends them again before the mirror is rebuilt and the lost
        batches are queued again; `RevokeOrder` waits for its order's batch (`resend_due`)."""
        chain, sender = self.service.chain, self.service.sender
        with self.service.reads() as session:
            rows = session.execute(
                select(db.Command.id, db.Transaction.tx_hash, db.Transaction.block_number, db.Transaction.status)
                .join(db.Transaction, db.Command.tx_id == db.Transaction.id)
                .where(db.Command.status == RELAYED, db.Transaction.status.in_((TxStatus.MINED, TxStatus.DROPPED)))
                .order_by(db.Transaction.block_number.desc(), db.Command.id.desc())
            ).all()
        lost = []
        for command_id, tx_hash, block, status in rows:
            receipt = None if status == TxStatus.DROPPED else chain.receipt(tx_hash)
            if receipt is not None and receipt["blockNumber"] == block:
                break  # this block is still the chain's, and so are the ones before it
            if receipt is None:
                lost.append(command_id)
        nonce = chain.nonce(sender.address)
        kept = sender.keep_batches_still_known(chain.block_number(), nonce)  # before the lines below drop them
        if kept:
            log.warning("%d batch transactions of lost blocks are still at the node: their batches stay in flight", kept)
        with self.service.sessions() as session, session.begin():
            sender.not_mined_from(session, nonce)
            if lost:
                session.execute(
                    update(db.Command).where(db.Command.id.in_(lost)).values(status=RESENDING, updated_at=time.time())
                )
        given_up = sender.give_up_lost_batches()  # their nonces free: the batches are made anew
        if given_up:
            log.warning("%d batch transactions the chain lost are given up; their batches are made anew", given_up)
        sender.rebroadcast_unmined()  # the relayer's nonces the chain has not reached, filled first
        if lost:
            log.error("the chain lost %d relayed commands with its blocks: sending them again", len(lost))
            self.waiting = True
            self.resend_due(revocations=False)

    def rebroadcast(self) -> None:
        """Every few seconds: broadcasts again, as recorded, the command transactions not mined after a
        while (their requests may have ended with the chain down or restarted from a snapshot, which lost
        its pending transactions): each holds a nonce, and the relayer's later transactions wait for it. A
        transaction the node refuses gives its nonce back (`TxSender.resend`)."""
        if time.monotonic() < self._next_rebroadcast:
            return
        self._next_rebroadcast = time.monotonic() + REBROADCAST_SECONDS
        sender = self.service.sender
        with self.service.reads() as session:
            stale = session.scalars(
                select(db.Transaction)
                .join(db.Command, db.Command.tx_id == db.Transaction.id)
                .where(db.Transaction.status == TxStatus.SENT, db.Transaction.created_at < time.time() - REBROADCAST_SECONDS)
            ).all()
        for tx in stale:
            receipt = self.service.chain.receipt(tx.tx_hash)
            if receipt is not None:
                sender.settled(tx.id, receipt)
                continue
            try:
                sender.resend(tx)
            except BroadcastRefused as exc:
                log.error("the node refuses command transaction %s: %s", tx.tx_hash, exc)

    def resend_due(self, revocations: bool = True) -> None:
        """Sends again, oldest first, the commands waiting to be; each is mined before the next is sent (a
        station's registration needs its district's). Stops when the chain is unavailable (tried again on
        the next call)."""
        if not self.waiting:
            return
        with self.service.reads() as session:
            waiting = session.scalars(select(db.Command).where(db.Command.status == RESENDING).order_by(db.Command.id)).all()
            # a command sent again whose transaction is not mined yet (its wait timed out): the ones after
            # it wait for it, as a Grant waits for its account's registration
            unmined = session.scalar(
                select(func.min(db.Command.id))
                .join(db.Transaction, db.Command.tx_id == db.Transaction.id)
                .where(db.Command.status == RELAYED, db.Command.resends > 0, db.Transaction.status == TxStatus.SENT)
            )
        if waiting and unmined is not None and unmined < waiting[0].id:
            return
        held = False
        for command in waiting:
            if command.type == "RevokeOrder" and not revocations:
                held = True
                continue
            try:
                held |= not self._resend(command)
            except (ChainUnavailable, _NotMinedYet):
                return  # tried again at the next call, from the oldest still waiting
        self.waiting = held

    def _resend(self, command: db.Command) -> bool:
        """Sends `command` again; False when it must wait (its order not anchored again yet)."""
        service, sender = self.service, self.service.sender
        message = json.loads(command.message)
        signature = bytes.fromhex(command.signature[2:])
        try:
            call = self.command_call(command.type, message, command.signer, signature)
        except ApiError as exc:
            if exc.code == "order_not_anchored" and self._order_may_be_anchored(message):
                return False
            self._lose(command, f"{exc.code}: {exc.message}")
            return True
        try:
            gas = sender.simulate(call)
        except ContractRevert as revert:
            self._lose(command, f"the contract refuses it now: {revert}")
            return True
        with service.sessions() as session:
            row = sender.record(session, call, f"command:{command.type}", int(gas * 1.3) + 20_000)
            try:
                session.execute(
                    update(db.Command)
                    .where(db.Command.id == command.id)
                    .values(tx_id=row.id, status=RELAYED, resends=db.Command.resends + 1, updated_at=time.time())
                )
                session.commit()
            except BaseException:
                sender.abandoned()
                raise
        try:
            sender.committed(row)
            receipt = sender.wait(row.tx_hash, service.settings.tx_timeout_seconds)
        except BroadcastRefused as exc:
            self._lose(command, f"the node refused its transaction: {str(exc)[:200]}")
            return True
        except TimeoutError:
            log.warning("command %s sent again as %s, not mined yet: the commands after it wait", command.tx_hash, row.tx_hash)
            raise _NotMinedYet from None
        if receipt["status"] != 1:
            self._lose(command, f"its transaction {row.tx_hash} reverted")
        else:
            log.warning("command %s (%s) sent again: %s, block %s", command.tx_hash, command.type, row.tx_hash, receipt["blockNumber"])
        return True

    def _order_may_be_anchored(self, message: dict[str, Any]) -> bool:
        """The order of a `RevokeOrder` is queued to be anchored (again): its revocation waits for it."""
        with self.service.reads() as session:
            status = session.scalar(select(db.Order.status).where(db.Order.order_id == message["orderId"]))
        return status == OrderStatus.ACCEPTED

    def _lose(self, command: db.Command, reason: str) -> None:
        log.error("command %s (%s) lost with the chain's blocks: %s", command.tx_hash, command.type, reason)
        with self.service.sessions() as session, session.begin():
            session.execute(
                update(db.Command).where(db.Command.id == command.id).values(status=LOST, reason=reason, updated_at=time.time())
            )
            # a lost monthly grant is not recorded: it can be granted again
            session.execute(delete(db.MonthlyGrant).where(db.MonthlyGrant.tx_hash == command.tx_hash))

    # ----- views ----------------------------------------------------------------------------------

    def view(self, tx_hash: str) -> dict[str, Any]:
        """A relayed command by the transaction hash it was answered with (or a later one's)."""
        with self.service.reads() as session:
            row = session.execute(
                select(db.Command, db.Transaction)
                .join(db.Transaction, db.Command.tx_id == db.Transaction.id)
                .where((db.Command.tx_hash == tx_hash) | (db.Transaction.tx_hash == tx_hash))
            ).first()
        if row is None:
            raise ApiError("not_found", f"no command relayed with transaction {tx_hash}")
        command, tx = row
        status = command.status if command.status != RELAYED else tx.status
        return {
            "txHash": command.tx_hash,
            "type": command.type,
            "signer": command.signer,
            "message": json.loads(command.message),
            "status": status,
            "acknowledged": command.acknowledged,
            "currentTxHash": tx.tx_hash,
            "blockNumber": tx.block_number if tx.status == TxStatus.MINED else None,
            "resends": command.resends,
            "reason": command.reason,
        }

    def health(self, session) -> dict[str, Any]:
        counts = dict(
            session.execute(
                select(db.Command.status, func.count()).where(db.Command.status != RELAYED).group_by(db.Command.status)
            ).all()
        )
        lost = session.execute(
            select(db.Command.tx_hash, db.Command.type, db.Command.reason)
            .where(db.Command.status == LOST)
            .order_by(db.Command.id.desc())
            .limit(LISTED_IN_HEALTH)
        ).all()
        return {
            "commandsResending": counts.get(RESENDING, 0),
            "commandsLost": counts.get(LOST, 0),
            "lostCommands": [{"txHash": h, "type": t, "reason": r} for h, t, r in lost],
        }
