"""The store: SQLAlchemy 2 tables, the engine (SQLite WAL with full synchronous commits, or PostgreSQL
by URL) and migrations (Alembic, `api/migrations`). Bytes are kept as 0x-prefixed lower-case hex."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

log = logging.getLogger(__name__)

HEX32 = String(66)
HEX20 = String(42)


class Base(DeclarativeBase):
    pass


class Order(Base):
    """A signed service order, as received. `status`: accepted, anchored, revoked, rejected."""

    __tablename__ = "orders"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(HEX32, unique=True)
    district: Mapped[int] = mapped_column(BigInteger)
    volunteer: Mapped[str] = mapped_column(HEX32)
    payer: Mapped[str] = mapped_column(HEX32)
    recipient: Mapped[str] = mapped_column(HEX32)
    service_type: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int] = mapped_column(BigInteger)
    minutes: Mapped[int] = mapped_column(BigInteger)
    details_hash: Mapped[str] = mapped_column(HEX32)
    details: Mapped[str] = mapped_column(Text)  # the details object as received (JSON)
    signature: Mapped[str] = mapped_column(String(132))
    digest: Mapped[str] = mapped_column(HEX32)
    station: Mapped[str] = mapped_column(HEX20)
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why the order was rejected
    revoke_reason: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the RevokeOrder command's reason
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), nullable=True)
    leaf_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    accepted_at: Mapped[float] = mapped_column(Float)
    anchored_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_orders_status_batch", "status", "batch_id", "seq"),
        Index("ix_orders_volunteer_time", "volunteer", "start_time"),
        Index("ix_orders_payer_status", "payer", "status"),
        Index("ix_orders_batch", "batch_id"),
        Index("ix_orders_station_accepted", "station", "accepted_at"),
    )


class Batch(Base):
    """A batch of orders: recorded (`pending`) before its transaction is sent; `anchored` once the chain
    shows its root; `failed` when its transaction reverted (its orders go back to be batched again)."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    root: Mapped[str] = mapped_column(HEX32, unique=True)
    count: Mapped[int] = mapped_column(Integer)
    deltas: Mapped[str] = mapped_column(Text)  # the packed per-account amounts sent to anchorBatch (hex)
    tree: Mapped[str] = mapped_column(Text)  # the tree's nodes as a JSON array of hex, leaves last
    status: Mapped[str] = mapped_column(String(16), default="pending")
    tx_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"), nullable=True)
    chain_batch_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(HEX32, nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    block_hash: Mapped[str | None] = mapped_column(HEX32, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    anchored_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_batches_status", "status"),)


class Transaction(Base):
    """Every transaction the relayer signed, recorded before it is broadcast, so that a restart
    re-broadcasts exactly it (same nonce) and never signs another for the same purpose."""

    __tablename__ = "transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sender: Mapped[str] = mapped_column(HEX20)
    nonce: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(HEX32, unique=True)
    raw: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="sent")  # sent, mined, reverted, refused, dropped (lost with a chain reset)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)

    # not unique: a transaction the node refused keeps its record, and its nonce is used again
    __table_args__ = (Index("ix_transactions_sender_nonce", "sender", "nonce"),)


class Command(Base):
    """An administrative command the service relayed: the signed command itself (so it can be sent
    again: the administrator's signature and nonce hold on any chain that has not used the nonce) and
    its current transaction. `tx_hash` is the first transaction's hash, the one the administrator was
    answered with. `status`: relayed (its transaction's status tells the rest), resending (the chain
    lost it in a rollback; it is sent again), lost (lost, and the chain now refuses it: `reason`)."""

    __tablename__ = "commands"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(32))
    signer: Mapped[str] = mapped_column(HEX20)
    message: Mapped[str] = mapped_column(Text)  # the parsed message as JSON (bytes as hex)
    signature: Mapped[str] = mapped_column(String(132))
    tx_hash: Mapped[str] = mapped_column(HEX32, unique=True)
    tx_id: Mapped[int] = mapped_column(ForeignKey("transactions.id"))
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)  # answered 200 with tx_hash
    status: Mapped[str] = mapped_column(String(16), default="relayed")
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    resends: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_commands_status", "status"),)


class Account(Base):
    """The chain's accounts as the follower last saw them, plus off-chain profile data used by the checks."""

    __tablename__ = "accounts"

    account: Mapped[str] = mapped_column(HEX32, primary_key=True)
    district: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[int] = mapped_column(Integer)
    status: Mapped[int] = mapped_column(Integer)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    earned: Mapped[int] = mapped_column(BigInteger, default=0)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    qualified: Mapped[bool] = mapped_column(Boolean, default=False)
    # the account's index in canonical deltas (PROTOCOL.md section 9), from its AccountRegistered event
    chain_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)


class Station(Base):
    __tablename__ = "stations"

    station: Mapped[str] = mapped_column(HEX20, primary_key=True)
    district: Mapped[int] = mapped_column(BigInteger)
    active_from: Mapped[int] = mapped_column(BigInteger)
    active_until: Mapped[int] = mapped_column(BigInteger, default=0)


class District(Base):
    __tablename__ = "districts"

    district: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    admin: Mapped[str] = mapped_column(HEX20)


class Auditor(Base):
    __tablename__ = "auditors"

    auditor: Mapped[str] = mapped_column(HEX20, primary_key=True)
    district: Mapped[int] = mapped_column(BigInteger)


class FollowerState(Base):
    """Where the chain follower stands: the last block it applied, and that block's hash."""

    __tablename__ = "follower_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract: Mapped[str] = mapped_column(HEX20)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(HEX32)


class RequestNonce(Base):
    """A signed request's nonce, kept until its timestamp leaves the window: a nonce is taken once
    (api/auth.py)."""

    __tablename__ = "request_nonces"

    nonce: Mapped[str] = mapped_column(HEX32, primary_key=True)
    signer: Mapped[str] = mapped_column(HEX20)
    expires_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_request_nonces_expires", "expires_at"),)


class AccountLink(Base):
    """A family link as the chain holds it (`LinkAccounts`, event `AccountsLinked`): `beneficiary` may be
    served on `payer`'s hours, or given them in a transfer, while `linked`."""

    __tablename__ = "account_links"

    payer: Mapped[str] = mapped_column(HEX32, primary_key=True)
    beneficiary: Mapped[str] = mapped_column(HEX32, primary_key=True)
    linked: Mapped[bool] = mapped_column(Boolean)


class LocationExemption(Base):
    """An administrator's recorded exemption: a recipient with no registered location may be served
    (api/intake.py, `recipient_no_location`). Recorded by a signed request of the administrator of the
    recipient's district (or the city's), with the reason."""

    __tablename__ = "location_exemptions"

    account: Mapped[str] = mapped_column(HEX32, primary_key=True)
    admin: Mapped[str] = mapped_column(HEX20)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class IssuedCertificate(Base):
    """Every service-record certificate issued (api/certificates.py), as the public part of it (no
    `holder`) in its RFC 8785 canonical JSON, keyed by that JSON's keccak256 digest: what a printed
    certificate's QR code names (`GET /v1/certificates/{digest}`), so an auditor loads exactly the
    certificate that was printed."""

    __tablename__ = "issued_certificates"

    digest: Mapped[str] = mapped_column(HEX32, primary_key=True)
    account: Mapped[str] = mapped_column(HEX32, index=True)
    issued_at: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[bytes] = mapped_column(LargeBinary)


# ----- people and supervision (off chain; the chain knows only account ids) ------------------------


class Person(Base):
    """A person behind an account: personal data stays here, never on chain. The ID number is kept only
    as a salted hash (`salt$sha256`). `category` is the eligibility of an elderly person for monthly
    grants (`80_alone`, `60_79_low_income`, `60_79_disabled`, `60_79_alone`, `rural_left_behind`), or null."""

    __tablename__ = "persons"

    account: Mapped[str] = mapped_column(HEX32, primary_key=True)
    card_number: Mapped[str] = mapped_column(String(64), unique=True)
    district: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(200))
    id_number_hash: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40), nullable=True)
    address: Mapped[str | None] = mapped_column(Text, nullable=True)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    qualifications: Mapped[str] = mapped_column(Text, default="[]")  # JSON list: doctor, nurse, care_worker, lawyer
    # the card check code (卡片校验码) as `scrypt$n$r$p$salt$hash`: shown once, never stored in clear
    check_code_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_persons_district_category", "district", "category"),)


class GroupMember(Base):
    """A member of a group volunteer account (团体志愿者)."""

    __tablename__ = "group_members"

    group_account: Mapped[str] = mapped_column(HEX32, primary_key=True)
    member_account: Mapped[str] = mapped_column(HEX32, primary_key=True)


class MonthlyGrant(Base):
    """One monthly grant to an eligible person: at most one per account and month (`YYYY-MM`)."""

    __tablename__ = "monthly_grants"

    account: Mapped[str] = mapped_column(HEX32, primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    minutes: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(HEX32)
    granted_at: Mapped[float] = mapped_column(Float)


class HomeCareVisit(Base):
    """A subsidised home-care visit imported from the home-care system, for the comparison (居家服务订单比对)."""

    __tablename__ = "homecare_visits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    import_id: Mapped[str] = mapped_column(String(64))
    recipient_card: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(HEX32)
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int] = mapped_column(BigInteger)
    provider: Mapped[str] = mapped_column(String(200))
    imported_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_homecare_recipient_time", "recipient", "start_time"),)


class Recording(Base):
    """The voice confirmation (语音确认) of an order: the recording whose keccak256 the order's details
    name (`confirmation.recording.keccak256`). Personal data: served only to signed requests of the
    administrators and auditors of the order's district (or the city)."""

    __tablename__ = "recordings"

    order_id: Mapped[str] = mapped_column(HEX32, primary_key=True)
    keccak: Mapped[str] = mapped_column(HEX32)
    mime_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_at: Mapped[float] = mapped_column(Float)


def make_engine(url: str, *, writer: bool = True) -> Engine:
    """An engine for `url`. On SQLite, a writer engine begins its transactions with BEGIN IMMEDIATE
    (the write lock is taken up front, so a read-then-write transaction never fails to upgrade); a reader
    engine (`writer=False`) begins deferred and never blocks writers under WAL."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            if writer:  # the WAL is copied into the database by the Checkpointer's thread, not by a commit
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()

        if writer:
            # The service's writers (order writer, batcher, follower, sender, relays) take turns through
            # this lock before SQLite's own: a waiting writer wakes as soon as the lock is free instead of
            # polling in SQLite's busy handler (sleeps of up to 100 ms).
            turn = threading.RLock()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(connection):
                turn.acquire()
                connection.info["timebank_turns"] = connection.info.get("timebank_turns", 0) + 1
                try:
                    connection.exec_driver_sql(begin)
                except BaseException:
                    _end_turn(connection)
                    raise

            def _end_turn(connection, *_args):
                for _ in range(connection.info.pop("timebank_turns", 0)):
                    turn.release()

            event.listen(engine, "commit", _end_turn)
            event.listen(engine, "rollback", _end_turn)
        else:

            @event.listens_for(engine, "begin")
            def _sqlite_begin(connection):
                connection.exec_driver_sql(begin)

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


class Checkpointer:
    """Copies SQLite's write-ahead log into the database from a thread of its own (PASSIVE: it never
    blocks a writer nor waits for one), every `interval` seconds. The
    service's writer connections do not checkpoint (`wal_autocheckpoint=0`): otherwise the commit that
    crosses SQLite's threshold copies a thousand pages and syncs the database before it answers, and the
    orders waiting behind it wait for that. Nothing for PostgreSQL."""

    def __init__(self, url: str, interval: float = 0.5):
        self.path = url.split("///", 1)[-1] if url.startswith("sqlite") else None
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.path and self.path != ":memory:":
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        import sqlite3

        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint failed: %s", exc)
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            connection.close()


def migrate(url: str) -> None:
    """Brings the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
