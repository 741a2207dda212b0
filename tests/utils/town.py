"""The contract tests' small registered town: two districts with their admins and stations, a few
accounts, some granted minutes. conftest.py's `town_setup` registers it once per test module (inside an
evm snapshot reverted when the module ends), and `town` hands it to one test inside `chain_snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.utils import chain as C

D1 = 320102  # Xuanwu
D2 = 320104  # Qinhuai
D_UNKNOWN = 320199
ELDER_GRANT = 600
POOL_GRANT = 10_000


@dataclass
class Town:
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


def build_town(bank: C.Bank, keys) -> Town:
    town = Town(
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
    C.register_district(bank, D1, C.address(town.admin1))
    C.register_district(bank, D2, C.address(town.admin2))
    C.register_station(bank, C.address(town.station1), D1, key=town.admin1)
    C.register_station(bank, C.address(town.station2), D2, key=town.admin2)
    for account, kind in [
        (town.vol1, C.KIND_VOLUNTEER),
        (town.vol2, C.KIND_VOLUNTEER),
        (town.vol3, C.KIND_VOLUNTEER),
        (town.elder1, C.KIND_RECIPIENT),
        (town.elder2, C.KIND_RECIPIENT),
        (town.pool, C.KIND_POOL),
    ]:
        C.register_account(bank, account, D1, kind, key=town.admin1)
    C.register_account(bank, town.vol_d2, D2, C.KIND_VOLUNTEER, key=town.admin2)
    C.grant(bank, town.elder1, ELDER_GRANT, key=town.admin1)
    C.grant(bank, town.elder2, ELDER_GRANT, key=town.admin1)
    C.grant(bank, town.pool, POOL_GRANT, key=town.admin1)
    return town
