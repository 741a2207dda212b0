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
