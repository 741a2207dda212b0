"""The batcher: groups accepted orders into batches, builds each batch's Merkle tree and per-account
amounts, records the batch and its signed transaction together, then sends it.

- A batch is simulated (against the pending state) before it is recorded. When the contract would refuse
  it because the chain changed under it (an account frozen, a payer spent elsewhere), the orders that
  cause the refusal are marked `rejected` with the reason and the batch is built again without them.
- A batch whose transaction reverts anyway is marked `failed`; its orders go back to the queue.
- After a crash, batches recorded but not yet seen on chain are checked with `batchIdOfRoot`: one that
  landed is adopted (the follower marks it anchored from its event), one that did not is sent again with
  the transaction recorded for it (same nonce), so nothing is anchored twice or lost.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import sessionmaker

from . import bundles, db, protocol
from .chain import BroadcastRefused, Chain, ChainUnavailable, ContractRevert
from .settings import Settings
from .transactions import TxSender
from .vocabulary import BatchStatus, OrderStatus, TxStatus

log = logging.getLogger(__name__)

# Fault injection for the crash-safety tests: the process dies at the named point, as with SIGKILL.
FAULT_POINT = os.environ.get("TIMEBANK_FAULT_POINT")


def _fault(point: str) -> None:
    if FAULT_POINT == point:
        log.critical("fault injection: dying at %s", point)
        os._exit(137)


IN_FLIGHT = (BatchStatus.PENDING, BatchStatus.SENT)
# what making a batch reads of its orders (rows with these attributes, as db.Order has them)
BATCH_COLUMNS = (db.Order.seq, db.Order.digest, db.Order.station, db.Order.volunteer, db.Order.payer, db.Order.service_type, db.Order.minutes)
RESEND_AFTER_SECONDS = 3.0


def account_indexes(session, orders: list[db.Order]) -> dict[bytes, int]:
    """{account: its index in canonical deltas} of the orders' accounts, as the mirror holds them."""
    accounts = {o.volunteer for o in orders} | {o.payer for o in orders}
    rows = session.execute(
        select(db.Account.account, db.Account.chain_index).where(
            db.Account.account.in_(accounts), db.Account.chain_index.is_not(None)
        )
    ).all()
    return {bytes.fromhex(account[2:]): index for account, index in rows}


def build(orders: list[db.Order], index_of: dict[bytes, int]) -> tuple[protocol.MerkleTree, bytes]:
    """A batch's Merkle tree and its canonical deltas (PROTOCOL.md section 9), as `anchorBatch` takes them."""
    leaves = [protocol.leaf(bytes.fromhex(o.digest[2:]), bytes.fromhex(o.station[2:])) for o in orders]
    return protocol.MerkleTree(leaves), protocol.canonical_deltas(bundles.amounts_of_rows(orders), index_of)


def culprits(revert: ContractRevert, orders: list[db.Order]) -> list[tuple[db.Order, str]]:
    """The orders that make the contract refuse the batch, with the reason each is rejected."""
    account = revert.args_by_name.get("account")
    if revert.name == "TimeBankInsufficientBalance":
        available = int(revert.args_by_name["availableMinutes"])
        paying = sorted((o for o in orders if o.payer == account), key=lambda o: o.seq)
        total = sum(o.minutes for o in paying)
        out = []
        while paying and total > available:  # the newest orders go first
            o = paying.pop()
            total -= o.minutes
            out.append((o, f"{revert.order_code}: payer {account} could not cover the order when anchored"))
        return out
    if revert.name in ("TimeBankAccountNotActive", "TimeBankUnknownAccount"):
        state = "frozen or cancelled" if revert.name == "TimeBankAccountNotActive" else "unknown"
        return [
            (o, f"{revert.order_code}: account {account} was {state} on chain before the order was anchored")
            for o in orders
            if account in (o.volunteer, o.payer)
        ]
    return []


class Batcher:
    def __init__(self, chain: Chain, sender: TxSender, sessions: sessionmaker, settings: Settings, reads: sessionmaker | None = None):
        self.chain = chain
        self.sender = sender
        self.sessions = sessions
        self.reads = reads or sessions  # for what only reads: no write lock taken
        self.settings = settings
        self.wake = threading.Event()
        self._queued = 0  # orders accepted since the last batch, as the writer reported them (a hint)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.max_in_flight = settings.batch_max_in_flight
        self._last_sent: dict[int, float] = {}  # transaction id -> when it was last broadcast
        self._settled_at = 0.0  # when the transactions in flight were last looked at (settle)
        self.on_change = lambda **changed: None  # told the accounts whose orders were rejected
        self.paused: str | None = None  # why no batch is made (the relayer lost RELAYER_ROLE), else None
        self.rebuilding = lambda: False  # whether the mirror is being rebuilt after a chain reset (no batch meanwhile)
        self.chain_moved_back = lambda: False  # whether the chain lost blocks the follower has not handled yet

    # ----- loop -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run(self) -> None:
        recovered = False
        while not self._stop.is_set():
            try:
                if not recovered:
                    self.recover()
                    recovered = True
                # the receipts at most every poll interval: the batcher also wakes as orders come in
                if time.monotonic() - self._settled_at >= self.settings.poll_interval_seconds:
                    self._settled_at = time.monotonic()
                    self.settle()
                    self.send_lonely()
                made = self.step()
            except ChainUnavailable as exc:
                log.warning("chain unavailable (%s); retrying", exc)
                made = False
                self._stop.wait(1.0)
            except Exception:
                log.exception("batcher step failed")
                made = False
                self._stop.wait(1.0)
            if not made:
                self.wake.wait(self.settings.poll_interval_seconds)
                self.wake.clear()

    def accepted(self, count: int) -> None:
        """The writer committed `count` new orders: wake up early only when they fill a batch (else the
        batch is made when its oldest order has waited long enough)."""
        before, self._queued = self._queued, self._queued + count
        if before < self.settings.batch_max_orders <= self._queued:  # once, as they fill it: not at each commit
            self.wake.set()

    # ----- steps ----------------------------------------------------------------------------------

    def recover(self) -> None:
        """After a restart: the commands' transactions recorded and not mined are sent again as recorded
        (the batches' ones are, by `settle`), then the batches recorded without a transaction."""
        for row in self.sender.unmined():
            if not row.purpose.startswith("batch:") and self.chain.receipt(row.tx_hash) is None:
                try:
                    self.sender.resend(row)
                except BroadcastRefused as exc:
                    log.error("the node refuses command transaction %s: %s", row.tx_hash, exc)
        self.send_lonely()

    def send_lonely(self) -> None:
        """Sends the batches recorded without a transaction (a crash between the two commits, or a
        transaction the node refused), unless the chain already holds their root."""
        with self.reads() as session:
            lonely = session.scalars(select(db.Batch).where(db.Batch.status == BatchStatus.PENDING, db.Batch.tx_id.is_(None))).all()
        for batch in lonely:
            if self.chain.batch_id_of_root(bytes.fromhex(batch.root[2:])) != 0:
                continue  # it landed: the follower marks it anchored
            try:
                self._send(batch.id)
            except ContractRevert as revert:  # the chain changed since it was recorded: make it anew
                log.warning("recorded batch %s is refused now (%s); its orders are batched again", batch.id, revert)
                self._fail(batch.id, f"refused before sending: {revert}")

    def settle(self) -> None:
        """Looks at the transactions of batches in flight. Not mined after a while: sent again as recorded
        (the node may never have had it); refused by the node: the batch goes back to be sent anew.
        Reverted: the batch is failed and its orders are batched again."""
        with self.reads() as session:
            rows = session.execute(
                select(db.Batch.id, db.Transaction)
                .join(db.Transaction, db.Batch.tx_id == db.Transaction.id)
                .where(db.Batch.status == BatchStatus.SENT, db.Transaction.status == TxStatus.SENT)
            ).all()  # a transaction given up after a chain loss is never sent again: its batch is made anew
        for batch_id, tx in rows:
            receipt = self.chain.receipt(tx.tx_hash)
            if receipt is None:
                if time.monotonic() - self._last_sent.get(tx.id, 0.0) > RESEND_AFTER_SECONDS:
                    self._last_sent[tx.id] = time.monotonic()
                    try:
                        self.sender.resend(tx)
                    except BroadcastRefused as exc:
                        log.error("the node refuses batch %s's transaction (%s); it is sent anew", batch_id, exc)
                        self._unsend(batch_id)
                continue
            self._last_sent.pop(tx.id, None)
            self.sender.settled(tx.id, receipt)
            if receipt["status"] == 1:
                continue  # the follower marks the batch anchored once confirmed
            self._fail(batch_id, f"transaction {tx.tx_hash} reverted")
            log.warning("batch %s reverted on chain; its orders are batched again", batch_id)

    def _fail(self, batch_id: int, error: str) -> None:
        """The batch will not be anchored as recorded: its orders go back to the queue."""
        with self.sessions() as session, session.begin():
            session.execute(
                update(db.Batch)
                .where(db.Batch.id == batch_id, db.Batch.status.in_(IN_FLIGHT))
                .values(status=BatchStatus.FAILED, error=error)
            )
            session.execute(
                update(db.Order)
                .where(db.Order.batch_id == batch_id, db.Order.status == OrderStatus.ACCEPTED)
                .values(batch_id=None, leaf_index=None)
            )

    def _unsend(self, batch_id: int) -> None:
        with self.sessions() as session, session.begin():
            session.execute(update(db.Batch).where(db.Batch.id == batch_id).values(tx_id=None, status=BatchStatus.PENDING))

    def step(self) -> bool:
        """Makes and sends one batch when one is due; returns whether it did."""
        if self.paused is not None:
            return False  # orders stay accepted until the role is granted again
        if self.rebuilding():
            return False  # the mirror lacks the chain's accounts and their indexes until it is rebuilt
        queued = (db.Order.status == OrderStatus.ACCEPTED, db.Order.batch_id.is_(None))
        with self.reads() as session:
            in_flight = session.scalar(
                select(db.Batch.id).where(db.Batch.status.in_(IN_FLIGHT)).offset(self.max_in_flight - 1).limit(1)
            )
            if in_flight is not None:
                return False
            # whether a batch is due, without loading the orders: a full one, or the oldest waited enough
            waiting, oldest = session.execute(select(func.count(), func.min(db.Order.accepted_at)).where(*queued)).one()
            self._queued = waiting  # the hint set right (`accepted` wakes the batcher as it crosses a batch)
            if not waiting:
                return False
            if waiting < self.settings.batch_max_orders and time.time() - oldest < self.settings.batch_max_wait_seconds:
                due = oldest + self.settings.batch_max_wait_seconds - time.time()
            else:
                due = 0
                orders = session.execute(  # rows of the columns a batch needs (ORM objects cost the writer's GIL)
                    select(*BATCH_COLUMNS).where(*queued).order_by(db.Order.seq).limit(self.settings.batch_max_orders)
                ).all()
                index_of = account_indexes(session, orders)
        if due > 0:
            self.wake.wait(due)
            self.wake.clear()
            return True
        self._queued = max(0, self._queued - len(orders))
        unindexed = [o for o in orders if bytes.fromhex(o.volunteer[2:]) not in index_of or bytes.fromhex(o.payer[2:]) not in index_of]
        if unindexed:
            self._reject([(o, "account_not_active: an account of the order has no account index on chain") for o in unindexed])
            orders = [o for o in orders if o not in unindexed]
        while orders:
            tree, deltas = build(orders, index_of)
            call = self.chain.anchor_batch(tree.root, len(orders), deltas)
            try:
                gas = self.sender.simulate(call)
            except ContractRevert as revert:
                if revert.name == "TimeBankRootAlreadyAnchored" and self._relink(orders, tree):
                    return True
                rejected = culprits(revert, orders)
                if rejected and self.chain_moved_back():
                    # a chain that lost blocks refuses what it lost (a grant, a registration): the follower
                    # sends those commands again first; no order is rejected on its word meanwhile
                    log.warning("batch refused (%s) by a chain that lost blocks: waiting for the follower", revert.name)
                    return False
                if not rejected:
                    log.error("batch refused by the contract: %s", revert)
                    return False
                self._reject(rejected)
                ids = {o.seq for o, _ in rejected}
                orders = [o for o in orders if o.seq not in ids]
                continue
            self._record_and_send(orders, tree, deltas, gas)
            return True
        return True

    def _relink(self, orders: list[db.Order], tree: protocol.MerkleTree) -> bool:
        """The chain already holds this root: a batch of ours that a chain reset had given up (its orders
        queued again) whose transaction was mined after all (broadcast before the reset, mined once the
        nonces before it were filled). The orders go back to that batch, anchored if the follower has
        seen it already, else when it does. False when the root is not one of our batches."""
        root = protocol.to_hex(tree.root)
        with self.sessions() as session, session.begin():
            batch = session.scalar(select(db.Batch).where(db.Batch.root == root))
            if batch is None:
                return False
            anchored = batch.status == BatchStatus.ANCHORED
            session.connection().execute(
                update(db.Order.__table__)
                .where(db.Order.__table__.c.seq == bindparam("o_seq"), db.Order.__table__.c.status == OrderStatus.ACCEPTED)
                .values(
                    batch_id=batch.id,
                    leaf_index=bindparam("o_leaf"),
                    status=OrderStatus.ANCHORED if anchored else OrderStatus.ACCEPTED,
                    anchored_at=time.time() if anchored else None,
                ),
                [{"o_seq": o.seq, "o_leaf": tree.tree_index[i]} for i, o in enumerate(orders)],
            )
        log.warning("batch %s (root %s) was anchored after all: its %d orders are back in it", batch.id, root, len(orders))
        self.on_change(everything=True)
        return True

    def _reject(self, rejected: list[tuple[db.Order, str]]) -> None:
        with self.sessions() as session, session.begin():
            for order, reason in rejected:
                session.execute(
                    update(db.Order)
                    .where(db.Order.seq == order.seq, db.Order.status == OrderStatus.ACCEPTED)
                    .values(status=OrderStatus.REJECTED, reason=reason)
                )
        self.on_change(accounts={o.volunteer for o, _ in rejected}, balances={o.payer for o, _ in rejected})
        log.warning("rejected %d orders the chain no longer allows", len(rejected))

    def _record_and_send(self, orders: list[db.Order], tree: protocol.MerkleTree, deltas: bytes, gas: int) -> None:
        with self.sessions() as session:
            with session.begin():
                root = protocol.to_hex(tree.root)
                batch = session.scalar(select(db.Batch).where(db.Batch.root == root, db.Batch.status == BatchStatus.FAILED))
                if batch is None:
                    batch = db.Batch(root=root)
                    session.add(batch)
                # a failed batch made again of the same orders has the same root: its record is reused
                batch.count = len(orders)
                batch.deltas = deltas.hex()
                batch.tree = json.dumps([node.hex() for node in tree.tree])
                batch.status = BatchStatus.PENDING
                batch.tx_id = batch.chain_batch_id = batch.tx_hash = batch.block_number = batch.block_hash = None
                batch.created_at = time.time()
                session.flush()
                session.connection().execute(
                    update(db.Order.__table__)
                    .where(db.Order.__table__.c.seq == bindparam("o_seq"))
                    .values(batch_id=batch.id, leaf_index=bindparam("o_leaf")),
                    [{"o_seq": o.seq, "o_leaf": tree.tree_index[i]} for i, o in enumerate(orders)],
                )
            batch_id = batch.id
        _fault("batch_recorded")
        self._send(batch_id, gas)

    def _send(self, batch_id: int, gas: int | None = None) -> None:
        """Signs and records the batch's transaction in the same commit that marks it sent, then
        broadcasts it."""
        with self.reads() as session:
            root, count, deltas = session.execute(
                select(db.Batch.root, db.Batch.count, db.Batch.deltas).where(db.Batch.id == batch_id)
            ).one()
        call = self.chain.anchor_batch(bytes.fromhex(root[2:]), count, bytes.fromhex(deltas))
        if gas is None:
            gas = self.sender.simulate(call)
        # the sender's lock is taken before the database's (as the command relay does): no deadlock
        with self.sessions() as session:
            row = self.sender.record(session, call, f"batch:{batch_id}", int(gas * 1.2) + 20_000)
            try:
                session.execute(update(db.Batch).where(db.Batch.id == batch_id).values(tx_id=row.id, status=BatchStatus.SENT))
                session.commit()
            except BaseException:
                self.sender.abandoned()
                raise
        _fault("tx_recorded")
        try:
            self.sender.committed(row)
        except BroadcastRefused as exc:
            log.error("the node refused batch %s's transaction (%s); it is sent again later", batch_id, exc)
            self._unsend(batch_id)
            return
        self._last_sent[row.id] = time.monotonic()
        _fault("tx_broadcast")
