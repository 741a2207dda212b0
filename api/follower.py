"""The chain follower: applies the contract's events, in block order, to the local mirror of districts,
stations, accounts and balances that the order checks read, and marks this service's batches and orders
anchored or revoked. It also sees what other services sharing the contract do. Each step commits the
events of a block range together with the new cursor, so a restart resumes exactly where it stopped."""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from . import db, protocol
from .chain import Chain, ChainUnavailable
from .transactions import TxSender
from .vocabulary import TX_IN_BLOCK, BatchStatus, OrderStatus, TxStatus

log = logging.getLogger(__name__)

MAX_RANGE = 2000
RELAYER_ROLE = protocol.to_hex(protocol.keccak(b"RELAYER_ROLE"))


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
        # after a reset, the block the mirror is being rebuilt up to (None when not rebuilding): until it
        # is reached the mirror lacks stations, accounts, links and balances the chain holds, so intake
        # answers 503 mirror_rebuilding and the batcher waits (both read `rebuilding`)
        self.rebuilding_to: int | None = None
        # this service's relayer: a challenge or the city administrator taking or granting its role is told
        # to on_role(holds, why)
        self.relayer: str | None = None
        self.on_role = lambda holds, why: None
        # what the chain held that the mirror could not apply (newest last): the follower records it and goes on
        self.problems: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self.problem_count = 0

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

    @property
    def rebuilding(self) -> bool:
        return self.rebuilding_to is not None

    def chain_moved_back(self) -> bool:
        """Whether the chain no longer holds the block the mirror followed to: it lost blocks (a restart
        from a snapshot, a reorganisation) and this follower has not handled it yet."""
        cursor, cursor_hash = self._followed_to()
        return self._lost(cursor, cursor_hash, self.chain.block_number())

    def _followed_to(self) -> tuple[int, str]:
        """The block the mirror has applied, and its hash ("0x" before the first)."""
        with self.reads() as session:
            state = self.cursor(session)
            return (state.block_number, state.block_hash) if state else (self.start_block - 1, "0x")

    def _lost(self, cursor: int, cursor_hash: str, head: int) -> bool:
        return cursor > head or (cursor_hash != "0x" and self.chain.block_hash(cursor) != cursor_hash) or self._lost_ahead(cursor, head)

    def _lost_ahead(self, cursor: int, head: int) -> bool:
        """Whether the chain lost, with a block beyond the followed one, the relayer's newest transaction
        seen mined there, and the node no longer has it at all (a restart from a snapshot taken before the
        mirror followed that block, its pool lost): the followed block is still there, yet the record of
        that transaction holds a nonce the chain no longer used, a gap before every later transaction, and
        its batch or command is gone. The newest is enough: a chain loses its blocks from the tip."""
        with self.reads() as session:
            newest = session.execute(
                select(db.Transaction.tx_hash, db.Transaction.block_number)
                .where(db.Transaction.status.in_(TX_IN_BLOCK))
                .order_by(db.Transaction.id.desc())
                .limit(1)
            ).first()
        if newest is None or newest.block_number is None or newest.block_number <= cursor:
            return False
        # mined in another block (a reorganisation) or back in the pool, the node still has it: no gap, and
        # the follower applies it once confirmed; a node not yet at that block (lagging) has no receipt
        return head >= newest.block_number and not self.chain.transaction_known(newest.tx_hash)

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
        cursor, cursor_hash = self._followed_to()
        if self._lost(cursor, cursor_hash, head):
            self.rebuilding_to = target
            self.on_reset()
            with self.sessions() as session, session.begin():
                self._chain_reset(session, self.cursor(session))
            self.on_change(everything=True)
            return 0
        if self.rebuilding_to is not None and cursor >= self.rebuilding_to:
            log.warning("mirror rebuilt up to block %s", cursor)
            self.rebuilding_to = None
            self.on_change(everything=True)
        if target <= cursor:
            return 0
        to_block = min(target, cursor + MAX_RANGE)
        events = []
        for entry in self.chain.logs(cursor + 1, to_block):
            try:
                event = self.chain.event(entry)
            except ChainUnavailable:
                raise
            except Exception as exc:  # a log of this contract that does not decode: recorded, skipped
                self._problem(entry, "?", f"the log does not decode: {exc}")
                continue
            if event is not None:
                name, args = event
                call = None
                if name in ("BatchAnchored", "OrderRevoked", "BatchChallenged"):  # their amounts are in the calldata
                    call = self._call_of(entry, name)
                if name == "BatchChallenged" and call is not None:
                    call["_balances"] = self._balances_after(entry, call)
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
                if handler is None:
                    continue
                try:
                    with session.begin_nested():  # a handler that fails leaves nothing half written
                        handler(session, entry, args, call)
                except Exception as exc:
                    log.exception("follower: %s at block %s not applied", name, entry["blockNumber"])
                    self._problem(entry, name, f"not applied: {type(exc).__name__}: {exc}")
            state.block_number, state.block_hash = to_block, to_hash
        if self._accounts or self._balances or self._stations:
            self.on_change(accounts=self._accounts, balances=self._balances, stations=self._stations)
        return to_block - cursor

    # ----- what the chain holds, whatever it is -------------------------------------------------------

    def _problem(self, entry: dict, name: str, problem: str) -> None:
        """Records an event the mirror could not apply as the chain holds it, and goes on."""
        record = {
            "blockNumber": int(entry["blockNumber"]),
            "txHash": "0x" + bytes(entry["transactionHash"]).hex(),
            "event": name,
            "problem": problem,
        }
        log.error("follower: %s in %s at block %s: %s", name, record["txHash"], record["blockNumber"], problem)
        self.problems.append(record)
        self.problem_count += 1

    def _call_of(self, entry: dict, name: str) -> dict | None:
        """The contract call of the event's transaction (`_fn` its function), or None when the transaction
        is not a direct call of the contract (another contract calling it): recorded."""
        try:
            fn, args = self.chain.call_input("0x" + bytes(entry["transactionHash"]).hex())
        except ChainUnavailable:
            raise
        except Exception as exc:
            self._problem(entry, name, f"its transaction is not a call of the contract ({exc}); balances read back from the chain")
            return None
        return {"_fn": fn, **args}

    @staticmethod
    def _orders_of(call: dict) -> list[tuple]:
        """The ServiceOrder tuples a call carries (revokeOrder, challengeBatch, challengeDuplicate)."""
        found = []
        for key in ("order", "orders", "orderA", "orderB"):
            value = call.get(key)
            if value is None:
                continue
            for order in value if key == "orders" else [value]:
                if isinstance(order, dict):
                    order = tuple(order[k] for k in ("orderId", "district", "volunteer", "payer", "recipient", "serviceType", "startTime", "endTime", "minutes_", "detailsHash"))
                found.append(tuple(order))
        return found

    def _balances_after(self, entry: dict, call: dict) -> dict[str, tuple[int, int]]:
        """A challenge's accounts (its orders' and its anchored deltas') as the chain holds them after the
        challenge's block: the mirror takes them as they are instead of recomputing the correction."""
        accounts: set[bytes] = set()
        for order in self._orders_of(call):
            accounts.update((bytes(order[2]), bytes(order[3])))
        for key in ("anchoredDeltas", "anchoredDeltasB"):
            if call.get(key):
                try:
                    indexed = protocol.unpack_deltas(bytes(call[key]))
                except Exception:
                    continue
                for index in indexed:
                    accounts.add(self.chain.account_at(index, int(entry["blockNumber"])))
        block = int(entry["blockNumber"])
        out = {}
        for account in accounts:
            view = self.chain.get_account(account, block)
            if view.district:  # registered
                out[protocol.to_hex(account)] = (view.balance, view.earned)
        return out

    def _chain_reset(self, session: Session, state: db.FollowerState) -> None:
        """The chain no longer has the block the mirror was built to (a reset or a deep reorg): rebuild
        the mirror from the deployment block, and put back into the queue the batches whose roots the
        chain no longer knows, so they are anchored again."""
        log.error("chain reset detected at block %s: rebuilding the mirror", state.block_number)
        # transactions mined in the lost blocks are no longer mined: their nonces are free again
        TxSender.dropped(session, self.chain.block_number())
        for table in (db.Station, db.District, db.Auditor, db.AccountLink):
            session.execute(table.__table__.delete())
        # accounts keep their off-chain profile; the chain's part is rebuilt from the events, the account
        # index too: an account the chain lost has none, and its old index may now be another account's
        session.execute(update(db.Account).values(status=0, balance=0, earned=0, chain_index=None))
        state.block_number = self.start_block - 1
        state.block_hash = "0x"
        lost = session.scalars(select(db.Batch).where(db.Batch.status.in_((BatchStatus.ANCHORED, BatchStatus.SENT)))).all()
        for batch in lost:
            tx = session.get(db.Transaction, batch.tx_id) if batch.tx_id is not None else None
            on_chain = self.chain.batch_id_of_root(bytes.fromhex(batch.root[2:])) != 0
            if tx is not None and tx.status == TxStatus.SENT:
                # its transaction is still at the node (`give_up_lost_batches`, `keep_batches_still_known`):
                # the batch stays in flight, and mined, that transaction anchors it, once
                if batch.status == BatchStatus.ANCHORED and not on_chain:
                    batch.status = BatchStatus.SENT
                    batch.chain_batch_id = batch.block_number = batch.block_hash = batch.anchored_at = None
                    session.execute(
                        update(db.Order)
                        .where(db.Order.batch_id == batch.id, db.Order.status.in_((OrderStatus.ANCHORED, OrderStatus.REVOKED)))
                        .values(status=OrderStatus.ACCEPTED, anchored_at=None, revoke_reason=None)
                    )
                continue
            if not on_chain:
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

    def _on_AccountsLinked(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        session.merge(db.AccountLink(payer=a["payer"], beneficiary=a["beneficiary"], linked=bool(a["linked"])))
        self._accounts.add(a["payer"])

    def _on_AuditorRegistered(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        session.merge(db.Auditor(auditor=a["auditor"], district=a["district"]))

    def _on_BatchAnchored(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        batch = session.scalar(select(db.Batch).where(db.Batch.root == a["root"]))
        if call is None or call.get("_fn") != "anchorBatch":
            indexed = {}  # not a direct anchorBatch call: its amounts are unknown here (recorded by _call_of)
        else:
            indexed = protocol.unpack_deltas(bytes(call["deltas"]))  # canonical: the contract refused anything else
        session.flush()  # the reads and the statement below go around the session's objects
        ids = dict(
            session.execute(
                select(db.Account.chain_index, db.Account.account).where(db.Account.chain_index.in_(list(indexed)))
            ).all()
        ) if indexed else {}
        moved = {bytes.fromhex(ids[i][2:]): v for i, v in indexed.items() if i in ids}
        if len(moved) != len(indexed):
            self._problem(entry, "BatchAnchored", f"batch {a['batchId']} moves accounts the mirror does not know: indices {sorted(set(indexed) - set(ids))}")
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

    def _on_OrderRevoked(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        session.execute(
            update(db.Order)
            .where(db.Order.order_id == a["orderId"])
            .values(status=OrderStatus.REVOKED, revoke_reason=int(a["reason"]))
        )
        if call is None or call.get("_fn") != "revokeOrder":
            # a challenge revoked it: BatchChallenged (same transaction) takes the balances from the chain
            if call is None:
                self._problem(entry, "OrderRevoked", "balances of the order's accounts not known here")
            return
        order = self._orders_of(call)[0]
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
        self._accounts.add(volunteer_id)  # the revoked order no longer holds the volunteer's time
        self._balances.add(payer_id)

    def _on_BatchChallenged(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        """A proven fault: the chain corrected the balances (read back after the challenge's block), revoked
        the bad orders (their own OrderRevoked events) and took the relayer's role (RoleRevoked)."""
        for account, (balance, earned) in ((call or {}).get("_balances") or {}).items():
            row = session.get(db.Account, account)
            if row is not None:
                row.balance, row.earned = balance, earned
                self._accounts.add(account)
                self._balances.add(account)
        batch = session.scalar(select(db.Batch).where(db.Batch.chain_batch_id == a["batchId"], db.Batch.status == BatchStatus.ANCHORED))
        if batch is not None:
            why = f"challenged on chain (reason {a['reason']}) in {'0x' + bytes(entry['transactionHash']).hex()}"
            batch.error = why if not batch.error else f"{batch.error}; {why}"
        log.error("batch %s of relayer %s challenged: reason %s, order %s", a["batchId"], a["relayer"], a["reason"], a["orderId"])

    def _role_event(self, entry: dict, a: dict, holds: bool) -> None:
        if self.relayer is None or a["role"] != RELAYER_ROLE or a["account"].lower() != self.relayer.lower():
            return
        why = None if holds else f"RELAYER_ROLE taken from {self.relayer} at block {entry['blockNumber']} by {a['sender']}"
        self.on_role(holds, why)

    def _on_RoleRevoked(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        self._role_event(entry, a, False)

    def _on_RoleGranted(self, session: Session, entry: dict, a: dict, call: dict | None) -> None:
        self._role_event(entry, a, True)
