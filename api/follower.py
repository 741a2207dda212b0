"""The chain follower: applies the contract's events, in block order, to the local mirror of districts,
stations, accounts and balances that the order checks read, and marks this service's batches and orders
anchored or revoked. It also sees what other services sharing the contract do. Each step commits the
events of a block range together with the new cursor, so a restart resumes exactly where it stopped."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from . import db, protocol
from .chain import Chain, ChainUnavailable
from .transactions import TxSender
from .vocabulary import BatchStatus, OrderStatus

log = logging.getLogger(__name__)

MAX_RANGE = 2000


class Follower:
    def __init__(
        self,
        chain: Chain,
        sessions: sessionmaker,
        start_block: int,
        confirmations: int = 1,
        reads: sessionmaker | None = None,
        poll_interval: float = 0.2,
    ):
        self.chain = chain
        self.sessions = sessions
        self.reads = reads or sessions  # for what only reads: no write lock taken
        self.start_block = start_block
        self.confirmations = confirmations
        self.poll_interval = poll_interval
        self.followed = threading.Condition()  # notified after every step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # called after every step of the loop with the number of blocks it applied
        self.after_step = lambda applied: None
        # told what a step changed: on_change(accounts=..., balances=..., stations=..., everything=...)
        self.on_change = lambda **changed: None
        # called when the chain lost blocks, before the mirror is rebuilt (lost commands are sent again)
        self.on_reset = lambda: None

    # ----- loop -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run(self) -> None:
        """Steps until stopped: at once while there are blocks to apply, else every `poll_interval`."""
        while not self._stop.is_set():
            try:
                applied = self.step()
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
            self.after_step(applied)
            if not applied:
                self._stop.wait(self.poll_interval)

    def wait_followed(self, block: int, timeout: float) -> bool:
        """Waits until the mirror has applied `block`; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.followed:
            while self.applied_block() < block:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.followed.wait(min(left, 0.5))
        return True

    # ----- steps ----------------------------------------------------------------------------------

    def cursor(self, session: Session) -> db.FollowerState | None:
        return session.get(db.FollowerState, 1)

    def applied_block(self) -> int:
        with self.reads() as session:
            state = self.cursor(session)
            return state.block_number if state else self.start_block - 1

    def step(self) -> int:
        """Applies the next range of confirmed blocks; returns how many blocks it applied. Everything it
        asks the chain is asked before the write transaction opens, so the database's write lock is
        held only for the writes."""
        head = self.chain.block_number()
        target = head - (self.confirmations - 1)
        with self.reads() as session:
            state = self.cursor(session)
            cursor, cursor_hash = (state.block_number, state.block_hash) if state else (self.start_block - 1, "0x")
        if cursor > head or (cursor_hash != "0x" and self.chain.block_hash(cursor) != cursor_hash):
            self.on_reset()
            with self.sessions() as session, session.begin():
                self._chain_reset(session, self.cursor(session))
            self.on_change(everything=True)
            return 0
        if target <= cursor:
            return 0
        to_block = min(target, cursor + MAX_RANGE)
        events = []
        for entry in self.chain.logs(cursor + 1, to_block):
            event = self.chain.event(entry)
            if event is not None:
                name, args = event
                call = None
                if name in ("BatchAnchored", "OrderRevoked"):  # their amounts are in the calldata
                    call = self.chain.call_input("0x" + bytes(entry["transactionHash"]).hex())[1]
                events.append((entry, name, args, call))
        to_hash = self.chain.block_hash(to_block)
        self._accounts: set[str] = set()
        self._balances: set[str] = set()
        self._stations: set[str] = set()
        with self.sessions() as session, session.begin():
            state = self.cursor(session)
            if state is None:
                state = db.FollowerState(id=1, contract=self.chain.address.lower(), block_number=cursor, block_hash="0x")
                session.add(state)
            elif state.block_number != cursor:
                return 0  # another follower moved the cursor meanwhile: look again
            for entry, name, args, call in events:
                handler = getattr(self, f"_on_{name}", None)
                if handler is not None:
                    handler(session, entry, args, call)
            state.block_number, state.block_hash = to_block, to_hash
        if self._accounts or self._balances or self._stations:
            self.on_change(accounts=self._accounts, balances=self._balances, stations=self._stations)
        return to_block - cursor

    def _chain_reset(self, session: Session, state: db.FollowerState) -> None:
        """The chain no longer has the block the mirror was built to (a reset or a deep reorg): rebuild
        the mirror from the deployment block, and put back into the queue the batches whose roots the
        chain no longer knows, so they are anchored again."""
        log.error("chain reset detected at block %s: rebuilding the mirror", state.block_number)
        # transactions mined in the lost blocks are no longer mined: their nonces are free again
        TxSender.dropped(session, self.chain.block_number())
        for table in (db.Station, db.District, db.Auditor):
            session.execute(table.__table__.delete())
        # accounts keep their off-chain profile; the chain's part is rebuilt from the events
        session.execute(update(db.Account).values(status=0, balance=0, earned=0))
        state.block_number = self.start_block - 1
        state.block_hash = "0x"
        lost = session.scalars(select(db.Batch).where(db.Batch.status.in_((BatchStatus.ANCHORED, BatchStatus.SENT)))).all()
        for batch in lost:
            if self.chain.batch_id_of_root(bytes.fromhex(batch.root[2:])) == 0:
                batch.status = BatchStatus.FAILED
                batch.error = "the chain no longer holds this batch (chain reset); anchored again"
                session.execute(
                    update(db.Order)
                    .where(db.Order.batch_id == batch.id, db.Order.status.in_((OrderStatus.ACCEPTED, OrderStatus.ANCHORED, OrderStatus.REVOKED)))
                    .values(status=OrderStatus.ACCEPTED, batch_id=None, leaf_index=None, anchored_at=None, revoke_reason=None)
                )

    # ----- events (each handler writes only; the step fetched what they need) ----------------------

    def _on_DistrictRegistered(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        session.merge(db.District(district=a["district"], admin=a["admin"]))

    def _on_StationRegistered(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        session.merge(
            db.Station(station=a["station"], district=a["district"], active_from=a["activeFromBlock"], active_until=0)
        )
        self._stations.add(a["station"])

    def _on_StationRemoved(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        station = session.get(db.Station, a["station"])
        if station is not None:
            station.active_until = a["activeUntilBlock"]
        self._stations.add(a["station"])

    def _on_AccountRegistered(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        account = session.get(db.Account, a["account"])
        if account is None:
            session.add(
                db.Account(
                    account=a["account"], district=a["district"], kind=a["kind"], status=1, balance=0, earned=0,
                    qualified=False, chain_index=a["index"],
                )
            )
        else:  # a profile written before the chain registered the account
            account.district, account.kind, account.status, account.chain_index = a["district"], a["kind"], 1, a["index"]
        self._accounts.add(a["account"])

    def _on_AccountStatusChanged(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        account = session.get(db.Account, a["account"])
        if account is not None:
            account.status = a["status"]
        self._accounts.add(a["account"])

    def _on_Granted(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        account = session.get(db.Account, a["account"])
        if account is not None:
            account.balance = a["balanceMinutes"]
        self._balances.add(a["account"])

    def _on_AuditorRegistered(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        session.merge(db.Auditor(auditor=a["auditor"], district=a["district"]))

    def _on_BatchAnchored(self, session: Session, entry: dict, a: dict, call: dict) -> None:
        batch = session.scalar(select(db.Batch).where(db.Batch.root == a["root"]))
        indexed = protocol.unpack_deltas(call["deltas"])  # canonical: the contract refused anything else
        session.flush()  # the reads and the statement below go around the session's objects
        ids = dict(
            session.execute(
                select(db.Account.chain_index, db.Account.account).where(db.Account.chain_index.in_(list(indexed)))
            ).all()
        ) if indexed else {}
        moved = {bytes.fromhex(ids[i][2:]): v for i, v in indexed.items() if i in ids}
        if len(moved) != len(indexed):
            log.error("batch %s moves accounts the mirror does not know: indices %s", a["batchId"], sorted(set(indexed) - set(ids)))
        amounts = [
            {"a": protocol.to_hex(account), "delta": earned + received - spent, "earned": earned}
            for account, (earned, received, spent) in moved.items()
        ]
        accounts = db.Account.__table__
        if amounts:
            session.connection().execute(
                update(accounts)
                .where(accounts.c.account == bindparam("a"))
                .values(balance=accounts.c.balance + bindparam("delta"), earned=accounts.c.earned + bindparam("earned")),
                amounts,
            )
        # our own batch moves a payer's minutes from promised to spent: available stays the same
        self._balances.update(protocol.to_hex(a) for a, (e, r, _s) in moved.items() if batch is None or e or r)
        if batch is None:
            return  # another service's batch: its amounts are applied above
        now = time.time()
        batch.status = BatchStatus.ANCHORED
        batch.chain_batch_id = a["batchId"]
        batch.tx_hash = "0x" + bytes(entry["transactionHash"]).hex()
        batch.block_number = entry["blockNumber"]
        batch.block_hash = "0x" + bytes(entry["blockHash"]).hex()
        batch.anchored_at = now
        session.execute(
            update(db.Order)
            .where(db.Order.batch_id == batch.id, db.Order.status == OrderStatus.ACCEPTED)
            .values(status=OrderStatus.ANCHORED, anchored_at=now)
        )

    def _on_OrderRevoked(self, session: Session, entry: dict, a: dict, call: dict) -> None:
        order = call["order"]
        if isinstance(order, dict):
            order = [order[k] for k in ("orderId", "district", "volunteer", "payer", "recipient", "serviceType", "startTime", "endTime", "minutes_", "detailsHash")]
        volunteer_id, payer_id = "0x" + bytes(order[2]).hex(), "0x" + bytes(order[3]).hex()
        service_type, minutes = order[5], order[8]
        volunteer = session.get(db.Account, volunteer_id)
        if volunteer is not None:
            volunteer.balance -= minutes
            if service_type != protocol.TRANSFER_SERVICE_TYPE:
                volunteer.earned = max(0, volunteer.earned - minutes)
        payer = session.get(db.Account, payer_id)
        if payer is not None:
            payer.balance += minutes
        session.execute(
            update(db.Order)
            .where(db.Order.order_id == a["orderId"])
            .values(status=OrderStatus.REVOKED, revoke_reason=int(a["reason"]))
        )
        self._accounts.add(volunteer_id)  # the revoked order no longer holds the volunteer's time
        self._balances.add(payer_id)
