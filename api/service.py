"""The service: wires the store, the chain connector, the sender, the order writer, the follower, the
batcher and the command relay (`api/commands.py`), and holds the order flows the routes call (submit,
look up, proof bundles). Accounts are `api/accounts.py`, people `api/people.py`."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from sqlalchemy import func, select, text
from starlette.concurrency import run_in_threadpool

from . import bundles, db, protocol
from .batcher import Batcher
from .chain import Chain, ChainUnavailable
from .commands import Commands
from .errors import ApiError
from .follower import Follower
from .intake import Outcome, Writer, prepare, prepare_bulk
from .settings import Settings
from .transactions import TxSender
from .vocabulary import BatchStatus, OrderStatus

log = logging.getLogger(__name__)

def sees_details(caller, district: int) -> bool:
    """Whether a signed caller may read personal data of `district`: its administrator or the city's, an
    auditor of it or a city-wide one (PROTOCOL.md v1.1 section 6). Unsigned requests (None) never."""
    return caller is not None and (caller.administers(district) or caller.audits(district))


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
        self.checkpointer = db.Checkpointer(settings.database_url)
        self.sessions = db.session_factory(self.engine)
        self.reads = db.session_factory(self.read_engine)
        self.id_hash_key = settings.id_hash_key_bytes(self.chain_id)
        self.sender = TxSender(self.chain, settings.relayer_private_key(self.chain_id), self.sessions)
        self.city_admin = self.chain.city_admin()
        self.follower = Follower(
            self.chain, self.sessions, self._deployment_block(), settings.confirmations, reads=self.reads, poll_interval=settings.poll_interval_seconds
        )
        self.writer = Writer(self.sessions, settings)
        self.batcher = Batcher(self.chain, self.sender, self.sessions, settings, reads=self.reads)
        self.writer.on_commit = self.batcher.accepted
        self.follower.on_change = self.writer.cache.invalidate
        # payer_not_linked needs the contract's family links (PROTOCOL.md v1.1 LinkAccounts)
        self.writer.cache.links_enforced = any(e.get("name") == "AccountsLinked" for e in self.chain.abi)
        self.commands = Commands(self)
        self.follower.on_reset = self.commands.chain_lost_blocks
        self.writer.rebuilding = self.batcher.rebuilding = lambda: self.follower.rebuilding
        self.batcher.chain_moved_back = self.follower.chain_moved_back
        self.batcher.on_change = self.writer.cache.invalidate
        self.follower.after_step = self._followed
        self.follower.relayer = self.sender.address
        self.follower.on_role = self._relayer_role

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

    def _relayer_role(self, holds: bool, why: str | None) -> None:
        """The relayer lost RELAYER_ROLE (a proven fault, or the city administrator) or got it back: the
        batcher stops anchoring, and /v1/health says why, until the role is granted again."""
        if holds:
            if self.batcher.paused:
                log.warning("relayer %s holds RELAYER_ROLE again: anchoring resumes", self.sender.address)
            self.batcher.paused = None
            self.batcher.wake.set()
        else:
            log.error("relayer lost its role, anchoring stopped: %s", why)
            self.batcher.paused = why

    def start(self) -> None:
        """Brings the mirror up to the chain's head (when the chain answers), then starts the workers."""
        try:
            if not self.chain.has_role("RELAYER_ROLE", self.sender.address):
                self._relayer_role(False, f"the relayer {self.sender.address} does not hold RELAYER_ROLE")
        except ChainUnavailable:
            pass
        try:
            while self.follower.step():
                pass
        except ChainUnavailable as exc:
            log.warning("chain unavailable at start (%s): the mirror catches up when it returns", exc)
        self.checkpointer.start()
        self.writer.start()
        self.follower.start()
        self.batcher.start()

    def stop(self) -> None:
        self.follower.stop()
        self.batcher.stop()
        self.writer.stop()
        self.checkpointer.stop()
        self.engine.dispose()
        self.read_engine.dispose()

    def _followed(self, applied: int) -> None:
        """After each step of the follower: lost commands sent again when due, the batcher woken when
        blocks were applied (a batch anchored frees room for the next)."""
        try:
            self.commands.resend_due()
            self.commands.rebroadcast()
        except ChainUnavailable:
            pass
        except Exception:
            log.exception("sending lost commands again failed")
        if applied:
            self.batcher.wake.set()

    # ----- reads ----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        try:
            with self.reads() as session:
                session.execute(text("SELECT 1"))
                waiting = session.scalar(select(func.count()).select_from(db.Order).where(db.Order.status == OrderStatus.ACCEPTED))
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
            "mirrorRebuilding": self.follower.rebuilding,
            "anchoring": self.batcher.paused is None,
            "anchoringStopped": self.batcher.paused,
            "followerProblems": self.follower.problem_count,
            "recentFollowerProblems": list(self.follower.problems),
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
        prepared = await run_in_threadpool(
            functools.partial(prepare_bulk, body, separator=self.separator, settings=self.settings)
        )
        return await self.writer.submit(prepared) if prepared else []

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
            "reason": row.reason if row.revoke_reason is None else f"revoked on chain, reason {row.revoke_reason}",
            "acceptedAt": row.accepted_at,
            "anchoredAt": row.anchored_at,
            "batchId": None,
            "txHash": None,
            "blockNumber": None,
        }
        if batch is not None and batch.status == BatchStatus.ANCHORED:
            view.update(batchId=batch.chain_batch_id, txHash=batch.tx_hash, blockNumber=batch.block_number)
        return view

    def anchored_order(self, order_id: str) -> tuple[db.Order, db.Batch, list[str]]:
        """An anchored (or since revoked) order, its batch and the batch's stored tree; `not_found`,
        `order_not_anchored` otherwise."""
        with self.reads() as session:
            row = session.scalar(select(db.Order).where(db.Order.order_id == order_id))
            if row is None:
                raise ApiError("not_found", f"no order {order_id}")
            batch = session.get(db.Batch, row.batch_id) if row.batch_id else None
        if batch is None or batch.status != BatchStatus.ANCHORED or row.status not in (OrderStatus.ANCHORED, OrderStatus.REVOKED):
            raise ApiError("order_not_anchored", f"order {order_id} is {row.status}, not anchored yet")
        return row, batch, json.loads(batch.tree)

    def domain(self) -> dict[str, Any]:
        return protocol.domain(self.chain_id, self.contract_address)

    def proof_bundle(self, order_id: str) -> dict[str, Any]:
        """The proof bundle of PROTOCOL.md section 7 of one order (`api/bundles.py`)."""
        row, batch, tree = self.anchored_order(order_id)
        return bundles.build_bundle(self.domain(), row, batch, tree)

    def proof_bundles(self, order_ids: list[str], *, revoked: bool = True) -> list[dict[str, Any]]:
        """The proof bundles of the anchored orders among `order_ids`, in their order (the others are left
        out; revoked ones too unless `revoked`): a read per 500 orders, each batch's tree parsed once."""
        statuses = (OrderStatus.ANCHORED, OrderStatus.REVOKED) if revoked else (OrderStatus.ANCHORED,)
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
                        db.Batch.status == BatchStatus.ANCHORED,
                    )
                ).all()
            for row, batch in rows:
                tree = trees.get(batch.id)
                if tree is None:
                    tree = trees[batch.id] = json.loads(batch.tree)
                found[row.order_id] = bundles.build_bundle(domain, row, batch, tree)
        return [found[i] for i in order_ids if i in found]
