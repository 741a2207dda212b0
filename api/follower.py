"""The chain follower: applies the contract's events, in block order, to the local mirror of districts,
stations, accounts and balances that the order checks read, and marks this service's batches and orders
anchored or revoked. It also sees what other services sharing the contract do. Each step commits the
events of a block range together with the new cursor, so a restart resumes exactly where it stopped."""

from __future__ import annotations

import logging
import time

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from . import db, protocol
from .chain import Chain

log = logging.getLogger(__name__)

MAX_RANGE = 2000
TRANSFER = 100


class Follower:
    def __init__(self, chain: Chain, sessions: sessionmaker, start_block: int, confirmations: int = 1):
        self.chain = chain
        self.sessions = sessions
        self.start_block = start_block
        self.confirmations = confirmations
        self.on_change = lambda: None  # called after a step that changed the mirror

    def cursor(self, session: Session) -> db.FollowerState | None:
        return session.get(db.FollowerState, 1)

    def applied_block(self) -> int:
        with self.sessions() as session:
            state = self.cursor(session)
            return state.block_number if state else self.start_block - 1

    def step(self) -> int:
        """Applies the next range of confirmed blocks; returns how many blocks it applied."""
        self._changed = False
        try:
            return self._step()
        finally:
            if self._changed:
                self.on_change()

    def _step(self) -> int:
        head = self.chain.block_number()
        target = head - (self.confirmations - 1)
        with self.sessions() as session, session.begin():
            state = self.cursor(session)
            if state is None:
                state = db.FollowerState(id=1, contract=self.chain.address.lower(), block_number=self.start_block - 1, block_hash="0x")
                session.add(state)
            elif state.block_number > head or (
                state.block_hash != "0x" and self.chain.block_hash(state.block_number) != state.block_hash
            ):
                self._chain_reset(session, state)
                self._changed = True
                return 0
            if target <= state.block_number:
                return 0
            to_block = min(target, state.block_number + MAX_RANGE)
            for entry in self.chain.logs(state.block_number + 1, to_block):
                event = self.chain.event(entry)
                if event is not None:
                    self._apply(session, entry, *event)
                    self._changed = True
            applied = to_block - state.block_number
            state.block_number = to_block
            state.block_hash = self.chain.block_hash(to_block)
            return applied

    def _chain_reset(self, session: Session, state: db.FollowerState) -> None:
        """The chain no longer has the block the mirror was built to (a reset or a deep reorg): rebuild
        the mirror from the deployment block, and put back into the queue the batches whose roots the
        chain no longer knows, so they are anchored again."""
        log.error("chain reset detected at block %s: rebuilding the mirror", state.block_number)
        for table in (db.Station, db.District, db.Auditor):
            session.execute(table.__table__.delete())
        # accounts keep their off-chain profile; the chain's part is rebuilt from the events
        session.execute(update(db.Account).values(status=0, balance=0, earned=0))
        state.block_number = self.start_block - 1
        state.block_hash = "0x"
        lost = session.scalars(select(db.Batch).where(db.Batch.status.in_(("anchored", "sent", "mined")))).all()
        for batch in lost:
            if self.chain.batch_id_of_root(bytes.fromhex(batch.root[2:])) == 0:
                batch.status = "failed"
                batch.error = "the chain no longer holds this batch (chain reset); anchored again"
                session.execute(
                    update(db.Order)
                    .where(db.Order.batch_id == batch.id, db.Order.status.in_(("accepted", "anchored")))
                    .values(status="accepted", batch_id=None, leaf_index=None, anchored_at=None)
                )

    # ----- events ---------------------------------------------------------------------------------

    def _apply(self, session: Session, entry: dict, name: str, args: dict) -> None:
        handler = getattr(self, f"_on_{name}", None)
        if handler is not None:
            handler(session, entry, args)

    def _on_DistrictRegistered(self, session: Session, entry: dict, a: dict) -> None:
        session.merge(db.District(district=a["district"], admin=a["admin"]))

    def _on_StationRegistered(self, session: Session, entry: dict, a: dict) -> None:
        session.merge(
            db.Station(station=a["station"], district=a["district"], active_from=a["activeFromBlock"], active_until=0)
        )

    def _on_StationRemoved(self, session: Session, entry: dict, a: dict) -> None:
        station = session.get(db.Station, a["station"])
        if station is not None:
            station.active_until = a["activeUntilBlock"]

    def _on_AccountRegistered(self, session: Session, entry: dict, a: dict) -> None:
        account = session.get(db.Account, a["account"])
        if account is None:
            session.add(db.Account(account=a["account"], district=a["district"], kind=a["kind"], status=1, balance=0, earned=0, qualified=False))
        else:  # a profile written before the chain registered the account
            account.district, account.kind, account.status = a["district"], a["kind"], 1

    def _on_AccountStatusChanged(self, session: Session, entry: dict, a: dict) -> None:
        account = session.get(db.Account, a["account"])
        if account is not None:
            account.status = a["status"]

    def _on_Granted(self, session: Session, entry: dict, a: dict) -> None:
        account = session.get(db.Account, a["account"])
        if account is not None:
            account.balance = a["balanceMinutes"]

    def _on_AuditorRegistered(self, session: Session, entry: dict, a: dict) -> None:
        session.merge(db.Auditor(auditor=a["auditor"], district=a["district"]))

    def _on_BatchAnchored(self, session: Session, entry: dict, a: dict) -> None:
        tx_hash = "0x" + bytes(entry["transactionHash"]).hex()
        _fn, call = self.chain.call_input(tx_hash)
        for account_id, (earned, received, spent) in protocol.unpack_deltas(call["deltas"]).items():
            account = session.get(db.Account, protocol.to_hex(account_id))
            if account is not None:
                account.balance += earned + received - spent
                account.earned += earned
        batch = session.scalar(select(db.Batch).where(db.Batch.root == a["root"]))
        if batch is None:
            return  # another service's batch: its amounts are applied above
        now = time.time()
        batch.status = "anchored"
        batch.chain_batch_id = a["batchId"]
        batch.tx_hash = tx_hash
        batch.block_number = entry["blockNumber"]
        batch.block_hash = "0x" + bytes(entry["blockHash"]).hex()
        batch.anchored_at = now
        session.execute(
            update(db.Order)
            .where(db.Order.batch_id == batch.id, db.Order.status == "accepted")
            .values(status="anchored", anchored_at=now)
        )

    def _on_OrderRevoked(self, session: Session, entry: dict, a: dict) -> None:
        _fn, call = self.chain.call_input("0x" + bytes(entry["transactionHash"]).hex())
        order = call["order"]
        if isinstance(order, dict):
            order = [order[k] for k in ("orderId", "district", "volunteer", "payer", "recipient", "serviceType", "startTime", "endTime", "minutes_", "detailsHash")]
        volunteer_id, payer_id = "0x" + bytes(order[2]).hex(), "0x" + bytes(order[3]).hex()
        service_type, minutes = order[5], order[8]
        volunteer = session.get(db.Account, volunteer_id)
        if volunteer is not None:
            volunteer.balance -= minutes
            if service_type != TRANSFER:
                volunteer.earned = max(0, volunteer.earned - minutes)
        payer = session.get(db.Account, payer_id)
        if payer is not None:
            payer.balance += minutes
        session.execute(
            update(db.Order)
            .where(db.Order.order_id == a["orderId"])
            .values(status="revoked", reason=f"revoked on chain, reason {a['reason']}")
        )
