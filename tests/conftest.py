"""Shared fixtures.

Chain: one Anvil per test session (free loopback port, one block per transaction,
state in a temp dir), a TimeBank deployed on it once, and `chain_snapshot` for
tests that must not leak chain state into the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract

from scripts.chain import DEV_KEYS, AnvilHandle, free_port, start_anvil, stop_anvil
from scripts.compile import load_artifact
from scripts.deploy import deploy

# ---------------------------------------------------------------------------
# Chain
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DevKeys:
    """Anvil's ten development accounts: `accounts[0]` is the city admin, `accounts[1]` the relayer."""

    accounts: tuple[LocalAccount, ...]

    @property
    def city_admin(self) -> LocalAccount:
        return self.accounts[0]

    @property
    def relayer(self) -> LocalAccount:
        return self.accounts[1]

    @property
    def others(self) -> tuple[LocalAccount, ...]:
        """Accounts 2..9, free for tests (district admins, stations, strangers)."""
        return self.accounts[2:]

    @property
    def private_keys(self) -> tuple[str, ...]:
        return tuple(a.key.to_0x_hex() for a in self.accounts)


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> AnvilHandle:
    handle = start_anvil(free_port(), Path(tmp_path_factory.mktemp("anvil")), block_time=0)
    yield handle
    stop_anvil(handle)


@pytest.fixture(scope="session")
def w3(anvil: AnvilHandle) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))


@pytest.fixture(scope="session")
def artifact() -> dict:
    return load_artifact("TimeBank")


@pytest.fixture(scope="session")
def keys() -> DevKeys:
    return DevKeys(tuple(Account.from_key(k) for k in DEV_KEYS))


@pytest.fixture(scope="session")
def timebank(w3: Web3, artifact: dict, keys: DevKeys) -> Contract:
    """TimeBank(cityAdmin=keys.city_admin, relayer=keys.relayer), deployed once per session by the city admin."""
    address, _ = deploy(w3, artifact, keys.city_admin.key, keys.city_admin.address, keys.relayer.address)
    return w3.eth.contract(address=address, abi=artifact["abi"])


@pytest.fixture
def chain_snapshot(w3: Web3, timebank: Contract):
    """Revert the chain after the test to its state before it (evm_snapshot / evm_revert).

    Depends on `timebank` so the session's deployment happens before the
    snapshot and survives the revert; a session fixture of yours that writes to
    the chain must be requested here for the same reason.
    """
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    yield
    reverted = w3.provider.make_request("evm_revert", [snapshot])
    assert reverted.get("result") is True, f"evm_revert({snapshot}) answered {reverted}"


# ---------------------------------------------------------------------------
# API: a service on its own Anvil (the contract tests' snapshots and reverts
# would look like chain resets to its follower), the real contract, SQLite.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def api_anvil(tmp_path_factory: pytest.TempPathFactory) -> AnvilHandle:
    handle = start_anvil(free_port(), Path(tmp_path_factory.mktemp("api-anvil")), block_time=0)
    yield handle
    stop_anvil(handle)


@pytest.fixture(scope="session")
def api_anvil_url(api_anvil: AnvilHandle) -> str:
    return api_anvil.url


@pytest.fixture(scope="session")
def api_contract(api_anvil: AnvilHandle, artifact: dict, keys: DevKeys) -> str:
    w3_api = Web3(Web3.HTTPProvider(api_anvil.url, request_kwargs={"timeout": 30}))
    address, _ = deploy(w3_api, artifact, keys.city_admin.key, keys.city_admin.address, keys.relayer.address)
    return address


@pytest.fixture(scope="session")
def api(api_anvil: AnvilHandle, api_contract: str, tmp_path_factory: pytest.TempPathFactory):
    from tests.utils.api import ApiServer, settings_for

    database = tmp_path_factory.mktemp("api-db") / "timebank.sqlite3"
    server = ApiServer(settings_for(api_anvil.url, api_contract, f"sqlite:///{database}"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def world(api):
    from tests.utils.api_world import make_world

    return make_world(api)


# ---------------------------------------------------------------------------
# Store: every store test runs on SQLite (the embedded default) and on a real
# PostgreSQL server, one throwaway cluster per session (scripts/postgres.py).
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The session's PostgreSQL cluster (started on first use, stopped at the end): its `timebank`
    database's URL. The cluster lives under /tmp, not in pytest's tmp dir, which the `postgres` system user
    (who runs the server when the tests run as root) cannot enter."""
    import shutil
    import tempfile

    from scripts.postgres import start_postgres, stop_postgres

    directory = Path(tempfile.mkdtemp(prefix="timebank-pg-"))
    try:
        handle = start_postgres(directory, throwaway=True)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    yield handle.url
    stop_postgres(handle, mode="immediate")  # no shutdown checkpoint: the cluster is deleted next
    shutil.rmtree(directory, ignore_errors=True)


def _postgres_database(cluster_url: str, template: str = "template1") -> str:
    """A new database on the cluster, copied from `template`; its URL. Tests leave theirs behind (the
    cluster goes at the end of the session): dropping one forces a checkpoint, a second per test."""
    import secrets

    import psycopg
    from sqlalchemy.engine import make_url

    cluster = make_url(cluster_url)
    name = f"test_{secrets.token_hex(6)}"
    admin = cluster.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return cluster.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_migrated_template(postgres_url: str) -> str:
    """A database migrated once per session, that each test's migrated database is copied from."""
    import psycopg
    from sqlalchemy.engine import make_url

    from api.db import migrate

    url = make_url(_postgres_database(postgres_url))
    migrate(url.render_as_string(hide_password=False))
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{url.database}" IS_TEMPLATE true ALLOW_CONNECTIONS false')
    return url.database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database per test: a new SQLite file, or a new database on the session's cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'timebank.sqlite3'}"
    return _postgres_database(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database per test at the newest schema (`api.db.migrate`), on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        from api.db import migrate

        url = f"sqlite:///{tmp_path / 'timebank.sqlite3'}"
        migrate(url)
        return url
    template = request.getfixturevalue("postgres_migrated_template")
    return _postgres_database(request.getfixturevalue("postgres_url"), template)


# ---------------------------------------------------------------------------
# Contract tests (tests/test_contract_*.py): a `Bank` over the session's
# TimeBank and a small registered town (tests/utils/town.py), set up once per
# module inside its own evm snapshot; each test gets it inside `chain_snapshot`.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bank(w3: Web3, timebank: Contract, keys: DevKeys):
    from tests.utils.chain import Bank

    return Bank(w3=w3, contract=timebank, city_key=bytes(keys.city_admin.key), relayer=keys.relayer.address)


@pytest.fixture(scope="module")
def town_setup(w3: Web3, bank, keys: DevKeys):
    """The town, registered once for the module and reverted when the module ends."""
    from tests.utils.town import build_town

    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    yield build_town(bank, keys)
    reverted = w3.provider.make_request("evm_revert", [snapshot])
    assert reverted.get("result") is True, f"evm_revert({snapshot}) answered {reverted}"


@pytest.fixture
def town(town_setup, chain_snapshot):
    """The module's town, for one test whose chain changes are reverted after it."""
    return town_setup
