"""The relayer's transactions: the one sender, and the only writer of their records (`transactions`
table, `status`: sent, mined, reverted, refused, dropped).

Every transaction (batches and commands) is signed with the lowest free nonce and recorded in the
database (in the caller's transaction, so the record and the reason for it commit together) before it is
broadcast; what the chain has not mined is re-broadcast as recorded (same nonce, same hash), so nothing is
lost and nothing is sent twice. A transaction the node refuses outright is marked `refused` and its nonce
is the first one given out again, so no gap blocks the transactions after it. The chain is reached only
through the connector (`api/chain.py`)."""

from __future__ import annotations

import logging
import threading
import time

from eth_account import Account as EthAccount
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from . import db
from .chain import BroadcastRefused, Call, Chain
from .vocabulary import TX_IN_BLOCK, BatchStatus, TxStatus

log = logging.getLogger(__name__)


class TxSender:
    def __init__(self, chain: Chain, private_key: bytes, sessions: sessionmaker):
        self.chain = chain
        self.account = EthAccount.from_key(private_key)
        self.address = self.account.address.lower()
        self.sessions = sessions
        self._lock = threading.Lock()

    def _free_nonce(self, session: Session) -> int:
        """The lowest nonce the chain has not mined and no recorded, unrefused transaction holds."""
        mined = self.chain.nonce(self.address)
        held = set(
            session.scalars(
                select(db.Transaction.nonce).where(
                    db.Transaction.sender == self.address,
                    db.Transaction.status.in_((TxStatus.SENT, TxStatus.MINED)),  # mined: may be marked so since `mined` was read
                    db.Transaction.nonce >= mined,
                )
            )
        )
        nonce = mined
        while nonce in held:
            nonce += 1
        return nonce

    def simulate(self, call: Call) -> int:
        """The gas of `call` sent by the relayer, against the pending state (`ContractRevert` when the
        contract would refuse it)."""
        return self.chain.simulate(call, self.account.address)

    def record(self, session: Session, call: Call, purpose: str, gas: int) -> db.Transaction:
        """Signs `call` with the next free nonce and adds its record to `session`; the caller commits,
        then calls `committed` (or `abandoned` when it rolls back). Holds the nonce lock until then. The
        chain is asked (its nonce, the fees) before the database's write lock is taken."""
        fees = self.chain.fees()
        self._lock.acquire()
        try:
            nonce = self._free_nonce(session)
            signed = self.account.sign_transaction(self.chain.transaction(call, self.address, nonce, gas, fees))
            tx_hash = "0x" + bytes(signed.hash).hex()
            row = session.scalar(select(db.Transaction).where(db.Transaction.tx_hash == tx_hash))
            if row is not None:  # the same transaction, refused before: signing is deterministic
                row.status, row.purpose = TxStatus.SENT, purpose
            else:
                row = db.Transaction(
                    sender=self.address,
                    nonce=nonce,
                    tx_hash=tx_hash,
                    raw="0x" + bytes(signed.raw_transaction).hex(),
                    purpose=purpose,
                    status=TxStatus.SENT,
                    created_at=time.time(),
                )
                session.add(row)
            session.flush()
            return row
        except BaseException:
            self._lock.release()
            raise

    def committed(self, row: db.Transaction) -> None:
        """The record is durable: broadcast it, then release the nonce lock. Raises `BroadcastRefused`
        when the node refuses it outright (the record is then marked `refused`)."""
        try:
            self.resend(row)
        finally:
            self._lock.release()

    def abandoned(self) -> None:
        """The caller rolled back: nothing was recorded, the nonce stays free."""
        self._lock.release()

    def resend(self, row: db.Transaction) -> None:
        """Broadcasts a recorded transaction. An unreachable node is no error (it is sent again later);
        a refusal marks the record `refused` and raises `BroadcastRefused`."""
        refusal = self.chain.broadcast(row.raw, row.tx_hash)
        if refusal is not None:
            with self.sessions() as session, session.begin():
                session.execute(update(db.Transaction).where(db.Transaction.id == row.id).values(status=TxStatus.REFUSED))
            raise BroadcastRefused(refusal)

    def send(self, call: Call, purpose: str, gas: int) -> db.Transaction:
        """Records and broadcasts `call` in a transaction of its own (a command's)."""
        with self.sessions() as session:
            row = self.record(session, call, purpose, gas)
            try:
                session.commit()
            except BaseException:
                self.abandoned()
                raise
        self.committed(row)
        return row

    def unmined(self) -> list[db.Transaction]:
        """Recorded transactions still `sent` (not known mined)."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(db.Transaction).where(db.Transaction.sender == self.address, db.Transaction.status == TxStatus.SENT)
                )
            )

    def rebroadcast_unmined(self) -> None:
        """Broadcasts again, lowest nonce first, every recorded command transaction still `sent`: after the
        chain lost blocks, or restarted without its pool, the nonces they hold would otherwise leave a gap
        that stops the relayer's later transactions. Batches' transactions are not: the follower's reset
        gives their batches up and makes them anew (sent again as they were, one could anchor its orders
        a second time)."""
        for row in sorted((r for r in self.unmined() if not r.purpose.startswith("batch:")), key=lambda r: r.nonce):
            try:
                self.resend(row)
            except BroadcastRefused as exc:
                log.warning("transaction %s (%s) refused when broadcast again: %s", row.tx_hash, row.purpose, exc)

    def give_up_lost_batches(self) -> int:
        """After the chain lost blocks: the batches' transactions still `sent` that the node does not have
        (its pool went with the blocks: a restart from a snapshot) are given up, `dropped`, and their
        nonces are free again, taken by the next transactions: else the nonce each holds is a gap that
        stops every later transaction of the relayer. The follower's reset makes their batches anew. A
        batch's transaction the node still has is kept (mined, it anchors its batch). Done under the nonce
        lock, so no transaction is between its record and its broadcast meanwhile; returns how many."""
        with self._lock:
            batches = [r for r in self.unmined() if r.purpose.startswith("batch:")]
            gone = [r.id for r in batches if not self.chain.transaction_known(r.tx_hash)]
            if gone:
                with self.sessions() as session, session.begin():
                    session.execute(
                        update(db.Transaction)
                        .where(db.Transaction.id.in_(gone), db.Transaction.status == TxStatus.SENT)
                        .values(status=TxStatus.DROPPED)
                    )
        return len(gone)

    def keep_batches_still_known(self, head: int, nonce: int) -> int:
        """After the chain lost blocks (before they are marked not mined): a batch's transaction seen mined
        in a lost block (after `head`) or at a nonce the chain has not reached (`nonce`), whose batch is in
        flight or was anchored by it, and that the node still has (a reorganisation put it back in the
        pool, or mined it in another block), is `sent` again. It keeps its nonce, and the follower's reset
        keeps its batch in flight: mined again, it anchors the batch once. Made anew beside it with other
        orders, the batch would have another root, and both would be anchored. One mined in another block
        is recorded there instead. Returns how many were kept."""
        in_flight = (BatchStatus.SENT, BatchStatus.ANCHORED)
        with self._lock:
            with self.sessions() as session:
                candidates = session.execute(
                    select(db.Transaction.id, db.Transaction.tx_hash)
                    .join(db.Batch, db.Batch.tx_id == db.Transaction.id)
                    .where(
                        db.Transaction.sender == self.address,
                        db.Transaction.status == TxStatus.MINED,
                        or_(db.Transaction.block_number > head, db.Transaction.nonce >= nonce),
                        db.Batch.status.in_(in_flight),
                    )
                ).all()
            known = {tx_id: self.chain.receipt(tx_hash) for tx_id, tx_hash in candidates if self.chain.transaction_known(tx_hash)}
            if known:
                with self.sessions() as session, session.begin():
                    session.execute(
                        update(db.Transaction)
                        .where(db.Transaction.id.in_(list(known)), db.Transaction.status == TxStatus.MINED)
                        .values(status=TxStatus.SENT, block_number=None)
                    )
            for tx_id, receipt in known.items():
                if receipt is not None:
                    self.settled(tx_id, receipt)
        return sum(receipt is None for receipt in known.values())

    def settled(self, tx_id: int, receipt: dict) -> None:
        """The chain mined the recorded transaction `tx_id`: `mined`, or `reverted` when it failed."""
        with self.sessions() as session, session.begin():
            session.execute(
                update(db.Transaction)
                .where(db.Transaction.id == tx_id, db.Transaction.status == TxStatus.SENT)
                .values(status=TxStatus.MINED if receipt["status"] == 1 else TxStatus.REVERTED, block_number=receipt["blockNumber"])
            )

    @staticmethod
    def dropped(session: Session, head: int) -> None:
        """The chain lost the blocks after `head` (a reset or a deep reorganisation): the transactions
        mined in them (reverted ones too) are no longer mined, and their nonces are free again (in the
        caller's transaction)."""
        session.execute(
            update(db.Transaction)
            .where(db.Transaction.status.in_(TX_IN_BLOCK), db.Transaction.block_number > head)
            .values(status=TxStatus.DROPPED)
        )

    def not_mined_from(self, session: Session, nonce: int) -> None:
        """The chain has mined only the relayer's nonces below `nonce` (it lost blocks): what was marked
        mined from `nonce` on holds no nonce any more, so a transaction sent now takes the lowest free one
        (in the caller's transaction)."""
        session.execute(
            update(db.Transaction)
            .where(
                db.Transaction.sender == self.address,
                db.Transaction.status.in_(TX_IN_BLOCK),
                db.Transaction.nonce >= nonce,
            )
            .values(status=TxStatus.DROPPED)
        )

    def wait(self, tx_hash: str, timeout: float, poll: float = 0.1) -> dict:
        """The receipt of a recorded transaction once mined (its record settled), re-broadcast every 5 s
        meanwhile; `TimeoutError` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last_broadcast = time.monotonic()
        while True:
            receipt = self.chain.receipt(tx_hash)
            if receipt is not None:
                row = self._row(tx_hash)
                if row is not None:
                    self.settled(row.id, receipt)
                return receipt
            if time.monotonic() > deadline:
                raise TimeoutError(tx_hash)
            if time.monotonic() - last_broadcast > 5:
                row = self._row(tx_hash)
                if row is not None:
                    self.chain.broadcast(row.raw, row.tx_hash)
                last_broadcast = time.monotonic()
            time.sleep(poll)

    def _row(self, tx_hash: str) -> db.Transaction | None:
        with self.sessions() as session:
            return session.scalar(select(db.Transaction).where(db.Transaction.tx_hash == tx_hash))
