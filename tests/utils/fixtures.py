"""Fixtures of the contract tests: a `Bank` over the session's TimeBank, and a small registered world
(two districts with their admins and stations, a few accounts, some granted minutes).

Test modules import them by name (`from tests.utils.fixtures import bank, world_setup, world`). The
world is registered once per module (inside its own evm snapshot, reverted when the module ends); each
test requesting `world` runs inside conftest's `chain_snapshot`, so it starts from that same state.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.utils import chain as C

D1 = 320102  # Xuanwu
D2 = 320104  # Qinhuai
D_UNKNOWN = 320199
ELDER_GRANT = 600
POOL_GRANT = 10_000


@dataclass
class World:
    bank: C.Bank
    admin1: bytes  # private key of D1's administrator
    admin2: bytes  # private key of D2's administrator
    stranger: bytes  # a key that administers nothing
    station1: bytes  # private key of a station of D1
    station2: bytes  # private key of a station of D2
    vol1: bytes
    vol2: bytes
    vol3: bytes
    elder1: bytes  # recipient, granted ELDER_GRANT
    elder2: bytes  # recipient, granted ELDER_GRANT
    pool: bytes  # D1's pool, granted POOL_GRANT
    vol_d2: bytes  # a volunteer of D2

    @property
    def accounts(self) -> list[bytes]:
        return [self.vol1, self.vol2, self.vol3, self.elder1, self.elder2, self.pool, self.vol_d2]


@pytest.fixture(scope="session")
def bank(w3, timebank, keys) -> C.Bank:
    return C.Bank(w3=w3, contract=timebank, city_key=bytes(keys.city_admin.key), relayer=keys.relayer.address)


def build_world(bank: C.Bank, keys) -> World:
    world = World(
        bank=bank,
        admin1=bytes(keys.others[0].key),
        admin2=bytes(keys.others[1].key),
        stranger=bytes(keys.others[2].key),
        station1=C.new_key(),
        station2=C.new_key(),
        vol1=C.new_account_id(),
        vol2=C.new_account_id(),
        vol3=C.new_account_id(),
        elder1=C.new_account_id(),
        elder2=C.new_account_id(),
        pool=C.new_account_id(),
        vol_d2=C.new_account_id(),
    )
    C.register_district(bank, D1, C.address(world.admin1))
    C.register_district(bank, D2, C.address(world.admin2))
    C.register_station(bank, C.address(world.station1), D1, key=world.admin1)
    C.register_station(bank, C.address(world.station2), D2, key=world.admin2)
    for account, kind in [
        (world.vol1, C.KIND_VOLUNTEER),
        (world.vol2, C.KIND_VOLUNTEER),
        (world.vol3, C.KIND_VOLUNTEER),
        (world.elder1, C.KIND_RECIPIENT),
        (world.elder2, C.KIND_RECIPIENT),
        (world.pool, C.KIND_POOL),
    ]:
        C.register_account(bank, account, D1, kind, key=world.admin1)
    C.register_account(bank, world.vol_d2, D2, C.KIND_VOLUNTEER, key=world.admin2)
    C.grant(bank, world.elder1, ELDER_GRANT, key=world.admin1)
    C.grant(bank, world.elder2, ELDER_GRANT, key=world.admin1)
    C.grant(bank, world.pool, POOL_GRANT, key=world.admin1)
    return world


@pytest.fixture(scope="module")
def world_setup(w3, bank, keys):
    """The world, registered once for the module and reverted when the module ends."""
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    yield build_world(bank, keys)
    assert w3.provider.make_request("evm_revert", [snapshot]).get("result") is True


@pytest.fixture
def world(world_setup, chain_snapshot) -> World:
    """The module's world, for one test whose chain changes are reverted after it."""
    return world_setup
