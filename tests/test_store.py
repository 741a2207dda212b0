"""The store, on SQLite and on a real PostgreSQL server (`store_url`): migrations, and the single writer of
orders (`api.intake.Writer`) fed from a mirror written straight into the tables.

What an answer promises is checked on a new engine after the call returns: an accepted order is committed
before its answer goes out, a refused one leaves nothing, a failed group leaves nothing half written.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from api import db, intake
from api import protocol as P
from api.errors import ApiError
from api.settings import Settings
from scripts.chain import DEV_KEYS
from tests.utils.api import Terminal

CHAIN_ID = 31337
CONTRACT = "0x" + "7b" * 20
DISTRICT = 320102
STATION_KEY = bytes.fromhex(DEV_KEYS[5][2:])
STRANGER_KEY = bytes.fromhex(DEV_KEYS[6][2:])  # signs, but is no registered station
VOLUNTEER, GROUP, RECIPIENT = 1, 3, 2
TABLES = {"orders", "batches", "transactions", "accounts", "stations", "districts", "auditors", "follower_state"}


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def new_account() -> str:
    return P.to_hex(P.account_id(f"NJ-320102-{secrets.randbelow(10**9):09d}"))


def stored_orders(url: str) -> dict[str, db.Order]:
    """Every stored order, read on an engine of its own (not the writer's connections)."""
    engine = db.make_engine(url, writer=False)
    try:
        with db.session_factory(engine)() as session:
            return {o.order_id: o for o in session.scalars(select(db.Order))}
    finally:
        engine.dispose()


@dataclass
class Ledger:
    """A store with a mirror of one district (a station; volunteers; elders who pay, 600 and 100 minutes),
    its running writer, and the station's terminal."""

    url: str
    sessions: sessionmaker
    settings: Settings
    writer: intake.Writer
    terminal: Terminal
    separator: bytes
    accounts: dict[str, str] = field(default_factory=dict)

    def order(self, volunteer: str, payer: str, minutes: int = 60, **kw) -> dict:
        return self.terminal.order(self.accounts[volunteer], self.accounts[payer], self.accounts[payer], minutes, **kw)

    def prepare(self, body: dict) -> intake.Prepared:
        return intake.prepare(body, separator=self.separator, settings=self.settings)

    def submit(self, *bodies: dict) -> list[intake.Outcome]:
        """One request (a bulk of `bodies`) through the running writer; returns once it has answered."""
        return asyncio.run(self.writer.submit([self.prepare(b) for b in bodies]))

    def submit_group(self, *requests: list[dict]) -> list[list[intake.Outcome] | BaseException]:
        """Several requests written by a writer as ONE group (one transaction): all are queued before it
        starts. Returns each request's outcomes, or the exception it got."""
        writer = intake.Writer(self.sessions, self.settings)
        results: list = [None] * len(requests)

        def request(index: int, items: list) -> None:
            try:
                results[index] = asyncio.run(writer.submit(items))
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                results[index] = exc

        threads = [
            threading.Thread(target=request, args=(i, [self.prepare(b) for b in bodies])) for i, bodies in enumerate(requests)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while writer._queue.qsize() < len(requests):
            assert time.monotonic() < deadline, "the requests were not queued"
            time.sleep(0.005)
        writer.start()
        for thread in threads:
            thread.join(timeout=30)
        writer.stop()
        return results


@pytest.fixture
def ledger(store_url: str) -> Ledger:
    settings = Settings(database_url=store_url)
    engine = db.make_engine(store_url)
    sessions = db.session_factory(engine)
    terminal = Terminal(STATION_KEY, None, {"chainId": CHAIN_ID, "verifyingContract": CONTRACT}, DISTRICT)
    accounts = {"volunteer": (VOLUNTEER, 0), "volunteer2": (GROUP, 0), "elder": (RECIPIENT, 600), "poor": (RECIPIENT, 100)}
    ids = {name: new_account() for name in accounts}
    with sessions.begin() as session:  # the mirror, as the chain follower would have written it
        session.add(db.Station(station=terminal.address, district=DISTRICT, active_from=1, active_until=0))
        for name, (kind, balance) in accounts.items():
            home = (32.05, 118.79) if kind == RECIPIENT else (None, None)  # where tests.utils.api.details checks in
            session.add(
                db.Account(account=ids[name], district=DISTRICT, kind=kind, status=P.ACTIVE, balance=balance, earned=0, lat=home[0], lon=home[1])
            )
    writer = intake.Writer(sessions, settings)
    writer.start()
    yield Ledger(store_url, sessions, settings, writer, terminal, terminal.separator, ids)
    writer.stop()
    engine.dispose()


def error_code(outcome: intake.Outcome) -> str:
    return outcome.body["error"]["code"]


# ----- schema and engine --------------------------------------------------------------------------


def test_migrations_apply_from_empty_and_again(empty_store_url: str):
    db.migrate(empty_store_url)
    db.migrate(empty_store_url)  # at head already: nothing to do, no error
    engine = db.make_engine(empty_store_url, writer=False)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            assert connection.scalars(text("SELECT version_num FROM alembic_version")).all() == [head_revision()]
    finally:
        engine.dispose()


def test_commits_are_durable_settings(store_url: str):
    """SQLite: WAL and synchronous=FULL on every connection; PostgreSQL: fsync and synchronous commits."""
    engine = db.make_engine(store_url)
    try:
        with engine.connect() as connection:
            if store_url.startswith("sqlite"):
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            else:
                assert connection.exec_driver_sql("SHOW fsync").scalar() == "on"
                assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    finally:
        engine.dispose()


# ----- the writer ---------------------------------------------------------------------------------


def test_accepted_order_is_stored_before_the_answer(ledger: Ledger):
    body = ledger.order("volunteer", "elder", 60)
    [outcome] = ledger.submit(body)
    assert outcome.http_status == 201
    assert outcome.body["status"] == "accepted"
    assert outcome.body["station"] == ledger.terminal.address

    row = stored_orders(ledger.url)[body["order"]["orderId"]]  # a new engine, after the answer
    assert row.status == "accepted"
    assert row.digest == outcome.body["digest"]
    assert row.signature == body["signature"]
    assert (row.volunteer, row.payer, row.minutes) == (ledger.accounts["volunteer"], ledger.accounts["elder"], 60)
    assert (row.start_time, row.end_time) == (body["order"]["startTime"], body["order"]["endTime"])
    assert P.details_hash(json.loads(row.details)) == P.parse_bytes(body["order"]["detailsHash"], 32, "h")


def test_refusals_store_nothing(ledger: Ledger):
    stranger = Terminal(STRANGER_KEY, None, {"chainId": CHAIN_ID, "verifyingContract": CONTRACT}, DISTRICT)
    unsigned = stranger.order(ledger.accounts["volunteer"], ledger.accounts["elder"], ledger.accounts["elder"])
    unknown_payer = ledger.terminal.order(ledger.accounts["volunteer"], new_account(), ledger.accounts["elder"])
    own_payer = ledger.order("volunteer", "volunteer")

    outcomes = asyncio.run(ledger.writer.submit(
        [ledger.prepare(unsigned), ledger.prepare(unknown_payer), ledger.prepare(own_payer), ApiError("bad_signature")]
    ))

    assert [(o.http_status, error_code(o)) for o in outcomes] == [
        (403, "station_unknown"),
        (422, "unknown_account"),
        (422, "payer_is_volunteer"),
        (400, "bad_signature"),
    ]
    assert stored_orders(ledger.url) == {}


def test_same_order_twice_answers_200_with_the_same_body(ledger: Ledger):
    body = ledger.order("volunteer", "elder")
    [first] = ledger.submit(body)
    [again] = ledger.submit(body)
    assert (first.http_status, again.http_status) == (201, 200)
    assert again.body == first.body
    assert list(stored_orders(ledger.url)) == [body["order"]["orderId"]]


def test_same_order_id_with_other_content_is_a_conflict(ledger: Ledger):
    body = ledger.order("volunteer", "elder", 60)
    [first] = ledger.submit(body)
    other = ledger.order("volunteer2", "elder", 30, orderId=body["order"]["orderId"])
    [conflict] = ledger.submit(other)
    assert first.http_status == 201
    assert (conflict.http_status, error_code(conflict)) == (409, "order_id_conflict")
    [row] = stored_orders(ledger.url).values()
    assert (row.digest, row.minutes) == (first.body["digest"], 60)


def test_same_order_twice_in_one_group(ledger: Ledger):
    body = ledger.order("volunteer", "elder")
    # two requests in one group (one transaction), then twice in one bulk request
    results = ledger.submit_group([body], [body])
    assert sorted(r[0].http_status for r in results) == [200, 201]
    assert results[0][0].body == results[1][0].body
    bulk = ledger.order("volunteer", "elder")
    assert [o.http_status for o in ledger.submit(bulk, bulk)] == [201, 200]
    assert set(stored_orders(ledger.url)) == {body["order"]["orderId"], bulk["order"]["orderId"]}


def test_accepted_orders_count_against_the_payers_balance(ledger: Ledger):
    """Orders accepted but not anchored are debits pending on the chain balance (100 minutes here)."""
    first = ledger.order("volunteer", "poor", 60)
    second = ledger.order("volunteer2", "poor", 60)  # fits the balance alone, not after the first
    [accepted] = ledger.submit(first)
    [refused] = ledger.submit(second)
    assert accepted.http_status == 201
    assert (refused.http_status, error_code(refused)) == (422, "insufficient_balance")
    # within one request the same holds: the second sees the first
    a, b = ledger.order("volunteer", "elder", 300), ledger.order("volunteer2", "elder", 301)
    assert [o.http_status for o in ledger.submit(a, b)] == [201, 422]
    assert set(stored_orders(ledger.url)) == {first["order"]["orderId"], a["order"]["orderId"]}


def test_a_volunteers_overlapping_order_is_refused(ledger: Ledger):
    start = int(time.time()) - 3 * 24 * 3600
    first = ledger.order("volunteer", "elder", 60, start=start)
    overlapping = ledger.order("volunteer", "elder", 60, start=start + 1800)
    someone_else = ledger.order("volunteer2", "elder", 60, start=start + 1800)
    [accepted] = ledger.submit(first)
    [refused] = ledger.submit(overlapping)
    [other] = ledger.submit(someone_else)
    assert accepted.http_status == 201
    assert (refused.http_status, error_code(refused)) == (409, "volunteer_overlap")
    assert other.http_status == 201
    assert set(stored_orders(ledger.url)) == {first["order"]["orderId"], someone_else["order"]["orderId"]}


def test_a_database_failure_mid_group_writes_nothing(ledger: Ledger, monkeypatch: pytest.MonkeyPatch):
    bodies = [ledger.order("volunteer", "elder", 10) for _ in range(4)]
    real_check = intake.check_state
    calls = []

    def failing_check(session, prepared, settings, current_block=None):
        calls.append(prepared)
        if len(calls) == 3:
            raise OperationalError("INSERT INTO orders ...", {}, OSError("disk I/O error"))
        return real_check(session, prepared, settings, current_block)

    monkeypatch.setattr(intake, "check_state", failing_check)
    results = ledger.submit_group([bodies[0]], [bodies[1]], [bodies[2], bodies[3]])

    assert len(calls) == 3  # the first two orders were checked and written (uncommitted) before the failure
    assert all(isinstance(r, OperationalError) for r in results), results
    assert stored_orders(ledger.url) == {}

    monkeypatch.setattr(intake, "check_state", real_check)
    assert [o.http_status for o in ledger.submit(*bodies)] == [201] * 4  # the writer goes on
    assert len(stored_orders(ledger.url)) == 4
