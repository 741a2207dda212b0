"""Relayed administrative commands, kept so that a chain that lost blocks gets them back.

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

from . import db
from .chain import BroadcastRefused, ChainUnavailable, ContractRevert
from .errors import ApiError

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)

RELAYED, RESENDING, LOST = "relayed", "resending", "lost"
LISTED_IN_HEALTH = 20


class Commands:
    def __init__(self, service: Service):
        self.service = service
        self.waiting = True  # commands may be waiting to be sent again (looked up at the next `resend_due`)

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
                .where(db.Command.status == RELAYED, db.Transaction.status.in_(("mined", "dropped")))
                .order_by(db.Transaction.block_number.desc(), db.Command.id.desc())
            ).all()
        lost = []
        for command_id, tx_hash, block, status in rows:
            receipt = None if status == "dropped" else chain.receipt(tx_hash)
            if receipt is not None and receipt["blockNumber"] == block:
                break  # this block is still the chain's, and so are the ones before it
            if receipt is None:
                lost.append(command_id)
        nonce = chain.nonce(sender.address)
        with self.service.sessions() as session, session.begin():
            sender.not_mined_from(session, nonce)
            if lost:
                session.execute(
                    update(db.Command).where(db.Command.id.in_(lost)).values(status=RESENDING, updated_at=time.time())
                )
        if lost:
            log.error("the chain lost %d relayed commands with its blocks: sending them again", len(lost))
            self.waiting = True
            self.resend_due(revocations=False)

    def resend_due(self, revocations: bool = True) -> None:
        """Sends again, oldest first, the commands waiting to be; each is mined before the next is sent (a
        station's registration needs its district's). Stops when the chain is unavailable (tried again on
        the next call)."""
        if not self.waiting:
            return
        with self.service.reads() as session:
            waiting = session.scalars(select(db.Command).where(db.Command.status == RESENDING).order_by(db.Command.id)).all()
        held = False
        for command in waiting:
            if command.type == "RevokeOrder" and not revocations:
                held = True
                continue
            try:
                held |= not self._resend(command)
            except ChainUnavailable:
                return
        self.waiting = held

    def _resend(self, command: db.Command) -> bool:
        """Sends `command` again; False when it must wait (its order not anchored again yet)."""
        service, sender = self.service, self.service.sender
        message = json.loads(command.message)
        signature = bytes.fromhex(command.signature[2:])
        try:
            call = service.command_call(command.type, message, command.signer, signature)
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
            log.warning("command %s sent again as %s, not mined yet", command.tx_hash, row.tx_hash)
            return True
        if receipt["status"] != 1:
            self._lose(command, f"its transaction {row.tx_hash} reverted")
        else:
            log.warning("command %s (%s) sent again: %s, block %s", command.tx_hash, command.type, row.tx_hash, receipt["blockNumber"])
        return True

    def _order_may_be_anchored(self, message: dict[str, Any]) -> bool:
        """The order of a `RevokeOrder` is queued to be anchored (again): its revocation waits for it."""
        with self.service.reads() as session:
            status = session.scalar(select(db.Order.status).where(db.Order.order_id == message["orderId"]))
        return status == "accepted"

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
            "blockNumber": tx.block_number if tx.status == "mined" else None,
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
