"""TimeBank's administrative commands (PROTOCOL.md section 4), against Anvil and the compiled contract:
for each command the happy path with its exact events, and every refusal by its exact custom error.
RevokeOrder is in test_contract_revocation.py. Also: the EIP-712 type strings and domain."""

from __future__ import annotations

import re

import pytest

from api import protocol as P
from tests.utils import chain as C
from tests.utils.town import D1, D2, D_UNKNOWN

ZERO = "0x0000000000000000000000000000000000000000"


def block_of(receipt) -> int:
    return receipt["blockNumber"]


# ----- type strings and domain --------------------------------------------------------------------


#: The structs the contract verifies: api.protocol.TYPES (off-chain ones, such as SignedRequest, live apart).
ON_CHAIN_TYPES = tuple(P.TYPES)


def constant_name(struct: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", struct).upper() + "_TYPEHASH"


@pytest.mark.parametrize("struct", ON_CHAIN_TYPES)
def test_typehash_equals_protocol_type_string(bank, struct):
    on_chain = bank.fns[constant_name(struct)]().call()
    assert on_chain == P.TYPE_HASHES[struct]
    assert on_chain == C.keccak(text=P.type_string(struct))


def test_every_contract_typehash_is_a_protocol_type(bank):
    constants = {
        e["name"] for e in bank.contract.abi if e.get("type") == "function" and e["name"].endswith("_TYPEHASH")
    }
    assert constants == {constant_name(s) for s in ON_CHAIN_TYPES}
    assert set(ON_CHAIN_TYPES) == {"ServiceOrder", *C.COMMAND_FUNCTIONS}


def test_eip712_domain_matches_protocol(bank, w3):
    fields, name, version, chain_id, contract, salt, extensions = bank.fns.eip712Domain().call()
    assert fields == b"\x0f"  # name, version, chainId, verifyingContract
    assert (name, version) == (P.DOMAIN_NAME, P.DOMAIN_VERSION)
    assert chain_id == w3.eth.chain_id
    assert contract == bank.contract.address
    assert salt == b"\x00" * 32 and extensions == []
    assert P.domain_separator(chain_id, contract) == bank.separator


def test_contract_order_digest_equals_protocol_digest(bank):
    order = C.make_order(district=D1, volunteer=C.new_account_id(), payer=C.new_account_id(), minutes=90)
    assert bank.fns.hashServiceOrder(order.as_tuple()).call() == order.digest(bank.separator)


# ----- RegisterDistrict ---------------------------------------------------------------------------


def test_register_district(town):
    bank = town.bank
    admin = C.address(C.new_key())
    message = {"district": 320105, "admin": admin, "nonce": 7}
    receipt = C.send_command(bank, "RegisterDistrict", message, bank.city_key)
    assert C.events(bank, receipt) == [
        C.nonce_event(bank.city_admin, 7),
        ("DistrictRegistered", {"district": 320105, "previousAdmin": ZERO, "admin": admin}),
    ]
    assert bank.fns.districtAdmin(320105).call() == admin
    assert bank.fns.nonceUsed(bank.city_admin, 7).call() is True


def test_register_district_replaces_admin(town):
    bank = town.bank
    new_admin = C.new_key()
    receipt = C.register_district(bank, D1, C.address(new_admin), nonce=8)
    assert C.events(bank, receipt) == [
        C.nonce_event(bank.city_admin, 8),
        (
            "DistrictRegistered",
            {"district": D1, "previousAdmin": C.address(town.admin1), "admin": C.address(new_admin)},
        ),
    ]
    assert bank.fns.districtAdmin(D1).call() == C.address(new_admin)
    # The old admin no longer speaks for D1, and is free to administer another district.
    account = C.new_account_id()
    message = {"account": account, "district": D1, "kind": C.KIND_VOLUNTEER, "nonce": 1}
    fn = C.command_fn(bank, "RegisterAccount", message, C.sign_command(bank, "RegisterAccount", message, town.admin1))
    C.expect_revert(bank, fn, "TimeBankUnauthorized", C.address(town.admin1), D1)
    C.register_account(bank, account, D1, key=new_admin)
    C.register_district(bank, 320105, C.address(town.admin1))


def test_register_district_same_admin_is_a_no_op(town):
    bank = town.bank
    receipt = C.register_district(bank, D1, C.address(town.admin1), nonce=9)
    assert C.events(bank, receipt) == [C.nonce_event(bank.city_admin, 9)]
    assert bank.fns.districtAdmin(D1).call() == C.address(town.admin1)


def test_register_district_refusals(town):
    bank = town.bank

    def fn(district, admin, nonce=None, key=None):
        message = {"district": district, "admin": admin, "nonce": C.new_nonce() if nonce is None else nonce}
        return C.command_fn(
            bank, "RegisterDistrict", message, C.sign_command(bank, "RegisterDistrict", message, key or bank.city_key)
        )

    fresh = C.address(C.new_key())
    # Only the city admin: a district admin, even for its own district, is refused with district 0.
    C.expect_revert(bank, fn(320105, fresh, key=town.admin1), "TimeBankUnauthorized", C.address(town.admin1), 0)
    C.expect_revert(bank, fn(D1, fresh, key=town.admin1), "TimeBankUnauthorized", C.address(town.admin1), 0)
    C.expect_revert(bank, fn(0, fresh), "TimeBankInvalidDistrict", 0)
    C.expect_revert(bank, fn(320105, ZERO), "TimeBankZeroAddress")
    C.expect_revert(bank, fn(320105, bank.city_admin), "TimeBankCityAdminAsDistrictAdmin", bank.city_admin)
    C.expect_revert(bank, fn(320105, C.address(town.admin2)), "TimeBankAdminInUse", C.address(town.admin2), D2)
    C.relay(bank, fn(320105, fresh, nonce=11))
    C.expect_revert(bank, fn(320106, C.address(C.new_key()), nonce=11), "TimeBankNonceUsed", bank.city_admin, 11)
    assert bank.fns.districtAdmin(320106).call() == ZERO
    assert bank.fns.districtAdmin(D2).call() == C.address(town.admin2)


# ----- RegisterStation ----------------------------------------------------------------------------


@pytest.mark.parametrize("signer", ["district", "city"])
def test_register_station(town, signer):
    bank = town.bank
    key = town.admin1 if signer == "district" else bank.city_key
    station = C.address(C.new_key())
    receipt = C.register_station(bank, station, D1, key=key, nonce=21)
    assert C.events(bank, receipt) == [
        C.nonce_event(C.address(key), 21),
        ("StationRegistered", {"station": station, "district": D1, "activeFromBlock": block_of(receipt)}),
    ]
    assert bank.fns.getStation(station).call() == [D1, block_of(receipt), 0]


def station_fn(bank, station, district, key, nonce=None):
    message = {"station": station, "district": district, "nonce": C.new_nonce() if nonce is None else nonce}
    return C.command_fn(bank, "RegisterStation", message, C.sign_command(bank, "RegisterStation", message, key))


def test_register_station_refusals(town):
    bank = town.bank
    station = C.address(C.new_key())
    stranger = C.address(town.stranger)
    C.expect_revert(bank, station_fn(bank, station, D1, town.stranger), "TimeBankUnauthorized", stranger, D1)
    # D2's admin cannot register a station in D1.
    C.expect_revert(
        bank, station_fn(bank, station, D1, town.admin2), "TimeBankUnauthorized", C.address(town.admin2), D1
    )
    # An unknown district: its (missing) admin check fails first for a district admin; the city gets UnknownDistrict.
    C.expect_revert(
        bank,
        station_fn(bank, station, D_UNKNOWN, town.admin1),
        "TimeBankUnauthorized",
        C.address(town.admin1),
        D_UNKNOWN,
    )
    C.expect_revert(bank, station_fn(bank, station, D_UNKNOWN, bank.city_key), "TimeBankUnknownDistrict", D_UNKNOWN)
    C.expect_revert(bank, station_fn(bank, ZERO, D1, town.admin1), "TimeBankZeroAddress")
    existing = C.address(town.station1)
    C.expect_revert(bank, station_fn(bank, existing, D1, town.admin1), "TimeBankStationExists", existing, D1)
    C.expect_revert(bank, station_fn(bank, existing, D2, town.admin2), "TimeBankStationExists", existing, D1)
    assert bank.fns.getStation(station).call() == [0, 0, 0]
    C.relay(bank, station_fn(bank, station, D1, town.admin1, nonce=5))
    other = C.address(C.new_key())
    C.expect_revert(
        bank, station_fn(bank, other, D1, town.admin1, nonce=5), "TimeBankNonceUsed", C.address(town.admin1), 5
    )
    # Nonces are per signer: D2's admin may use 5 too.
    C.relay(bank, station_fn(bank, other, D2, town.admin2, nonce=5))


def test_removed_station_key_is_not_reused(town):
    bank = town.bank
    station = C.address(town.station1)
    C.remove_station(bank, station, key=town.admin1)
    C.expect_revert(bank, station_fn(bank, station, D1, town.admin1), "TimeBankStationExists", station, D1)


# ----- RemoveStation ------------------------------------------------------------------------------


@pytest.mark.parametrize("signer", ["district", "city"])
def test_remove_station(town, signer):
    bank = town.bank
    key = town.admin1 if signer == "district" else bank.city_key
    station = C.address(town.station1)
    active_from = bank.fns.getStation(station).call()[1]
    receipt = C.remove_station(bank, station, key=key, nonce=31)
    assert C.events(bank, receipt) == [
        C.nonce_event(C.address(key), 31),
        ("StationRemoved", {"station": station, "district": D1, "activeUntilBlock": block_of(receipt)}),
    ]
    assert bank.fns.getStation(station).call() == [D1, active_from, block_of(receipt)]


def remove_fn(bank, station, key, nonce=None):
    message = {"station": station, "nonce": C.new_nonce() if nonce is None else nonce}
    return C.command_fn(bank, "RemoveStation", message, C.sign_command(bank, "RemoveStation", message, key))


def test_remove_station_refusals(town):
    bank = town.bank
    station = C.address(town.station1)
    C.expect_revert(bank, remove_fn(bank, station, town.stranger), "TimeBankUnauthorized", C.address(town.stranger), D1)
    C.expect_revert(bank, remove_fn(bank, station, town.admin2), "TimeBankUnauthorized", C.address(town.admin2), D1)
    unknown = C.address(C.new_key())
    C.expect_revert(bank, remove_fn(bank, unknown, town.admin1), "TimeBankUnauthorized", C.address(town.admin1), 0)
    C.expect_revert(bank, remove_fn(bank, unknown, bank.city_key), "TimeBankUnknownStation", unknown)
    assert bank.fns.getStation(station).call()[2] == 0
    receipt = C.relay(bank, remove_fn(bank, station, town.admin1, nonce=3))
    C.expect_revert(bank, remove_fn(bank, station, town.admin1), "TimeBankStationRemoved", station, block_of(receipt))
    # The nonce is checked before the station: a used nonce is refused even on a valid removal.
    C.relay(bank, remove_fn(bank, C.address(town.station2), town.admin2, nonce=3))
    other = C.address(C.new_key())
    C.register_station(bank, other, D2, key=town.admin2)
    C.expect_revert(bank, remove_fn(bank, other, town.admin2, nonce=3), "TimeBankNonceUsed", C.address(town.admin2), 3)
    assert bank.fns.getStation(other).call()[2] == 0


# ----- RegisterAccount ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [C.KIND_VOLUNTEER, C.KIND_RECIPIENT, C.KIND_GROUP, C.KIND_POOL])
def test_register_account(town, kind):
    bank = town.bank
    account = C.new_account_id()
    index = bank.fns.accountCount().call() + 1
    receipt = C.register_account(bank, account, D1, kind, key=town.admin1, nonce=41)
    assert C.events(bank, receipt) == [
        C.nonce_event(C.address(town.admin1), 41),
        ("AccountRegistered", {"account": account, "district": D1, "kind": kind, "index": index}),
    ]
    assert bank.fns.accountIndex(account).call() == index and bank.fns.accountAt(index).call() == account
    assert C.get_account(bank, account) == C.AccountView(D1, kind, C.ACTIVE, 0, 0)


def test_register_account_by_city_admin(town):
    bank = town.bank
    account = C.new_account_id()
    index = bank.fns.accountCount().call() + 1
    receipt = C.register_account(bank, account, D2, C.KIND_GROUP, nonce=42)
    assert C.events(bank, receipt)[1] == (
        "AccountRegistered",
        {"account": account, "district": D2, "kind": C.KIND_GROUP, "index": index},
    )
    assert C.get_account(bank, account) == C.AccountView(D2, C.KIND_GROUP, C.ACTIVE, 0, 0)


def account_fn(bank, account, district, kind, key, nonce=None):
    message = {
        "account": account,
        "district": district,
        "kind": kind,
        "nonce": C.new_nonce() if nonce is None else nonce,
    }
    return C.command_fn(bank, "RegisterAccount", message, C.sign_command(bank, "RegisterAccount", message, key))


def test_register_account_refusals(town):
    bank = town.bank
    account = C.new_account_id()
    admin1 = C.address(town.admin1)
    C.expect_revert(
        bank, account_fn(bank, account, D1, 1, town.stranger), "TimeBankUnauthorized", C.address(town.stranger), D1
    )
    C.expect_revert(
        bank, account_fn(bank, account, D1, 1, town.admin2), "TimeBankUnauthorized", C.address(town.admin2), D1
    )
    C.expect_revert(
        bank, account_fn(bank, account, D_UNKNOWN, 1, town.admin1), "TimeBankUnauthorized", admin1, D_UNKNOWN
    )
    C.expect_revert(bank, account_fn(bank, account, D_UNKNOWN, 1, bank.city_key), "TimeBankUnknownDistrict", D_UNKNOWN)
    C.expect_revert(bank, account_fn(bank, account, 0, 1, bank.city_key), "TimeBankUnknownDistrict", 0)
    for kind in (0, 5, 255):
        C.expect_revert(bank, account_fn(bank, account, D1, kind, town.admin1), "TimeBankInvalidKind", kind)
    C.expect_revert(bank, account_fn(bank, town.vol1, D1, 1, town.admin1), "TimeBankAccountExists", town.vol1)
    C.expect_revert(bank, account_fn(bank, town.vol1, D2, 2, bank.city_key), "TimeBankAccountExists", town.vol1)
    assert C.get_account(bank, account) == C.AccountView(0, 0, 0, 0, 0)
    C.relay(bank, account_fn(bank, account, D1, 1, town.admin1, nonce=43))
    C.expect_revert(
        bank, account_fn(bank, C.new_account_id(), D1, 1, town.admin1, nonce=43), "TimeBankNonceUsed", admin1, 43
    )


def test_cancelled_account_cannot_be_registered_again(town):
    bank = town.bank
    C.set_status(bank, town.vol1, C.CANCELLED, key=town.admin1)
    C.expect_revert(bank, account_fn(bank, town.vol1, D1, 1, town.admin1), "TimeBankAccountExists", town.vol1)


# ----- SetAccountStatus ---------------------------------------------------------------------------


def status_fn(bank, account, status, key, reason=1, nonce=None):
    message = {
        "account": account,
        "status": status,
        "reason": reason,
        "nonce": C.new_nonce() if nonce is None else nonce,
    }
    return C.command_fn(bank, "SetAccountStatus", message, C.sign_command(bank, "SetAccountStatus", message, key))


def test_set_account_status_transitions(town):
    bank = town.bank
    admin1 = C.address(town.admin1)
    steps = [(C.ACTIVE, C.FROZEN, 11), (C.FROZEN, C.ACTIVE, 12), (C.ACTIVE, C.FROZEN, 13), (C.FROZEN, C.CANCELLED, 14)]
    for n, (before, after, reason) in enumerate(steps):
        receipt = C.set_status(bank, town.elder1, after, reason=reason, key=town.admin1, nonce=50 + n)
        assert C.events(bank, receipt) == [
            C.nonce_event(admin1, 50 + n),
            (
                "AccountStatusChanged",
                {"account": town.elder1, "previousStatus": before, "status": after, "reason": reason},
            ),
        ]
        assert C.get_account(bank, town.elder1) == C.AccountView(D1, C.KIND_RECIPIENT, after, 600, 0)


def test_active_to_cancelled_by_city(town):
    bank = town.bank
    receipt = C.set_status(bank, town.vol_d2, C.CANCELLED, reason=9, nonce=60)
    assert C.events(bank, receipt) == [
        C.nonce_event(bank.city_admin, 60),
        (
            "AccountStatusChanged",
            {"account": town.vol_d2, "previousStatus": C.ACTIVE, "status": C.CANCELLED, "reason": 9},
        ),
    ]


@pytest.mark.parametrize("status", [C.ACTIVE, C.FROZEN])
def test_set_same_status_emits_no_status_change(town, status):
    bank = town.bank
    if status == C.FROZEN:
        C.set_status(bank, town.vol1, C.FROZEN, key=town.admin1)
    receipt = C.set_status(bank, town.vol1, status, key=town.admin1, nonce=61)
    assert C.events(bank, receipt) == [C.nonce_event(C.address(town.admin1), 61)]
    assert "AccountStatusChanged" not in [name for name, _ in C.events(bank, receipt)]
    assert C.get_account(bank, town.vol1).status == status


def test_set_account_status_refusals(town):
    bank = town.bank
    admin1 = C.address(town.admin1)
    C.expect_revert(
        bank, status_fn(bank, town.vol1, 2, town.stranger), "TimeBankUnauthorized", C.address(town.stranger), D1
    )
    C.expect_revert(
        bank, status_fn(bank, town.vol1, 2, town.admin2), "TimeBankUnauthorized", C.address(town.admin2), D1
    )
    C.expect_revert(bank, status_fn(bank, town.vol_d2, 2, town.admin1), "TimeBankUnauthorized", admin1, D2)
    for status in (0, 4, 255):
        C.expect_revert(bank, status_fn(bank, town.vol1, status, town.admin1), "TimeBankInvalidStatus", status)
    unknown = C.new_account_id()
    C.expect_revert(bank, status_fn(bank, unknown, 2, town.admin1), "TimeBankUnauthorized", admin1, 0)
    C.expect_revert(bank, status_fn(bank, unknown, 2, bank.city_key), "TimeBankUnknownAccount", unknown)
    assert C.get_account(bank, town.vol1).status == C.ACTIVE
    C.relay(bank, status_fn(bank, town.vol1, 2, town.admin1, nonce=62))
    C.expect_revert(bank, status_fn(bank, town.vol2, 2, town.admin1, nonce=62), "TimeBankNonceUsed", admin1, 62)
    assert C.get_account(bank, town.vol2).status == C.ACTIVE


@pytest.mark.parametrize("status", [C.ACTIVE, C.FROZEN, C.CANCELLED])
def test_cancelled_is_final(town, status):
    bank = town.bank
    C.set_status(bank, town.vol1, C.CANCELLED, key=town.admin1)
    for key in (town.admin1, bank.city_key):
        C.expect_revert(bank, status_fn(bank, town.vol1, status, key), "TimeBankAccountCancelled", town.vol1)
    assert C.get_account(bank, town.vol1).status == C.CANCELLED


# ----- Grant --------------------------------------------------------------------------------------


def grant_fn(bank, account, minutes, key, reason=1, nonce=None):
    message = {
        "account": account,
        "minutes": minutes,
        "reason": reason,
        "nonce": C.new_nonce() if nonce is None else nonce,
    }
    return C.command_fn(bank, "Grant", message, C.sign_command(bank, "Grant", message, key))


def test_grant(town):
    bank = town.bank
    account = C.new_account_id()
    C.register_account(bank, account, D1, C.KIND_RECIPIENT, key=town.admin1)
    receipt = C.grant(bank, account, 120, reason=3, key=town.admin1, nonce=71)
    assert C.events(bank, receipt) == [
        C.nonce_event(C.address(town.admin1), 71),
        ("Granted", {"account": account, "minutes_": 120, "reason": 3, "balanceMinutes": 120}),
    ]
    receipt = C.grant(bank, account, 2**32 - 1, reason=4, nonce=72)  # by the city; the largest grant
    assert C.events(bank, receipt) == [
        C.nonce_event(bank.city_admin, 72),
        ("Granted", {"account": account, "minutes_": 2**32 - 1, "reason": 4, "balanceMinutes": 120 + 2**32 - 1}),
    ]
    # A grant adds to the balance, never to the earned minutes.
    assert C.get_account(bank, account) == C.AccountView(D1, C.KIND_RECIPIENT, C.ACTIVE, 120 + 2**32 - 1, 0)


def test_grant_refusals(town):
    bank = town.bank
    admin1 = C.address(town.admin1)
    C.expect_revert(
        bank, grant_fn(bank, town.elder1, 60, town.stranger), "TimeBankUnauthorized", C.address(town.stranger), D1
    )
    C.expect_revert(
        bank, grant_fn(bank, town.elder1, 60, town.admin2), "TimeBankUnauthorized", C.address(town.admin2), D1
    )
    unknown = C.new_account_id()
    C.expect_revert(bank, grant_fn(bank, unknown, 60, town.admin1), "TimeBankUnauthorized", admin1, 0)
    C.expect_revert(bank, grant_fn(bank, unknown, 60, bank.city_key), "TimeBankUnknownAccount", unknown)
    C.expect_revert(bank, grant_fn(bank, town.elder1, 0, town.admin1), "TimeBankZeroMinutes")
    C.set_status(bank, town.elder1, C.FROZEN, key=town.admin1)
    C.expect_revert(
        bank, grant_fn(bank, town.elder1, 60, town.admin1), "TimeBankAccountNotActive", town.elder1, C.FROZEN
    )
    C.set_status(bank, town.elder1, C.CANCELLED, key=town.admin1)
    C.expect_revert(
        bank, grant_fn(bank, town.elder1, 60, bank.city_key), "TimeBankAccountNotActive", town.elder1, C.CANCELLED
    )
    assert C.get_account(bank, town.elder1).balance == 600
    C.relay(bank, grant_fn(bank, town.elder2, 60, town.admin1, nonce=73))
    C.expect_revert(bank, grant_fn(bank, town.elder2, 60, town.admin1, nonce=73), "TimeBankNonceUsed", admin1, 73)
    assert C.get_account(bank, town.elder2).balance == 660


# ----- RegisterAuditor ----------------------------------------------------------------------------


def auditor_fn(bank, auditor, district, key, nonce=None):
    message = {"auditor": auditor, "district": district, "nonce": C.new_nonce() if nonce is None else nonce}
    return C.command_fn(bank, "RegisterAuditor", message, C.sign_command(bank, "RegisterAuditor", message, key))


def test_register_auditor(town):
    bank = town.bank
    auditor = C.address(C.new_key())
    assert bank.fns.getAuditor(auditor).call() == [False, 0]
    receipt = C.register_auditor(bank, auditor, D1, nonce=81)
    assert C.events(bank, receipt) == [
        C.nonce_event(bank.city_admin, 81),
        ("AuditorRegistered", {"auditor": auditor, "previousDistrict": 0, "district": D1}),
    ]
    assert bank.fns.getAuditor(auditor).call() == [True, D1]
    # Moving to another district, then city-wide (district 0).
    receipt = C.register_auditor(bank, auditor, D2, nonce=82)
    assert C.events(bank, receipt)[1] == (
        "AuditorRegistered",
        {"auditor": auditor, "previousDistrict": D1, "district": D2},
    )
    receipt = C.register_auditor(bank, auditor, 0, nonce=83)
    assert C.events(bank, receipt)[1] == (
        "AuditorRegistered",
        {"auditor": auditor, "previousDistrict": D2, "district": 0},
    )
    assert bank.fns.getAuditor(auditor).call() == [True, 0]
    # The same registration again changes nothing and emits nothing but the nonce.
    receipt = C.register_auditor(bank, auditor, 0, nonce=84)
    assert C.events(bank, receipt) == [C.nonce_event(bank.city_admin, 84)]


def test_register_city_wide_auditor(town):
    bank = town.bank
    auditor = C.address(C.new_key())
    receipt = C.register_auditor(bank, auditor, 0)
    assert C.events(bank, receipt)[1] == (
        "AuditorRegistered",
        {"auditor": auditor, "previousDistrict": 0, "district": 0},
    )
    assert bank.fns.getAuditor(auditor).call() == [True, 0]


def test_register_auditor_refusals(town):
    bank = town.bank
    auditor = C.address(C.new_key())
    # City admin only: a district admin is refused even for its own district.
    C.expect_revert(bank, auditor_fn(bank, auditor, D1, town.admin1), "TimeBankUnauthorized", C.address(town.admin1), 0)
    C.expect_revert(bank, auditor_fn(bank, auditor, D2, town.admin1), "TimeBankUnauthorized", C.address(town.admin1), 0)
    C.expect_revert(
        bank, auditor_fn(bank, auditor, 0, town.stranger), "TimeBankUnauthorized", C.address(town.stranger), 0
    )
    C.expect_revert(bank, auditor_fn(bank, auditor, D_UNKNOWN, bank.city_key), "TimeBankUnknownDistrict", D_UNKNOWN)
    C.expect_revert(bank, auditor_fn(bank, ZERO, D1, bank.city_key), "TimeBankZeroAddress")
    assert bank.fns.getAuditor(auditor).call() == [False, 0]
    C.relay(bank, auditor_fn(bank, auditor, D1, bank.city_key, nonce=85))
    other = C.address(C.new_key())
    C.expect_revert(
        bank, auditor_fn(bank, other, D1, bank.city_key, nonce=85), "TimeBankNonceUsed", bank.city_admin, 85
    )
    assert bank.fns.getAuditor(other).call() == [False, 0]


# ----- signatures: the relayer cannot forge or alter a command ------------------------------------


ALTERATIONS = [
    # (struct, message builder, field, altered value, district the contract checks the signer against)
    (
        "RegisterDistrict",
        lambda w: {"district": 320105, "admin": C.address(C.new_key()), "nonce": 1},
        "admin",
        lambda w: C.address(w.admin1),
        0,
    ),
    (
        "RegisterDistrict",
        lambda w: {"district": 320105, "admin": C.address(C.new_key()), "nonce": 1},
        "district",
        lambda w: 320106,
        0,
    ),
    (
        "RegisterStation",
        lambda w: {"station": C.address(C.new_key()), "district": D1, "nonce": 1},
        "station",
        lambda w: C.address(C.new_key()),
        D1,
    ),
    ("RemoveStation", lambda w: {"station": C.address(w.station1), "nonce": 1}, "nonce", lambda w: 2, D1),
    (
        "RegisterAccount",
        lambda w: {"account": C.new_account_id(), "district": D1, "kind": 1, "nonce": 1},
        "kind",
        lambda w: 4,
        D1,
    ),
    (
        "SetAccountStatus",
        lambda w: {"account": w.vol1, "status": 2, "reason": 1, "nonce": 1},
        "status",
        lambda w: 3,
        D1,
    ),
    ("Grant", lambda w: {"account": w.elder1, "minutes": 60, "reason": 1, "nonce": 1}, "minutes", lambda w: 6000, D1),
    ("Grant", lambda w: {"account": w.elder1, "minutes": 60, "reason": 1, "nonce": 1}, "reason", lambda w: 2, D1),
    (
        "Grant",
        lambda w: {"account": w.elder1, "minutes": 60, "reason": 1, "nonce": 1},
        "account",
        lambda w: w.elder2,
        D1,
    ),
    (
        "RegisterAuditor",
        lambda w: {"auditor": C.address(C.new_key()), "district": D1, "nonce": 1},
        "district",
        lambda w: 0,
        0,
    ),
]


@pytest.mark.parametrize(
    "struct, make, field, altered, district", ALTERATIONS, ids=[f"{a[0]}.{a[2]}" for a in ALTERATIONS]
)
def test_altered_command_is_refused(town, struct, make, field, altered, district):
    """Changing one field of a signed command after signing makes the contract recover another signer,
    who is not an administrator: TimeBankUnauthorized(that signer)."""
    bank = town.bank
    key = bank.city_key if struct in ("RegisterDistrict", "RegisterAuditor") else town.admin1
    message = make(town)
    signature = C.sign_command(bank, struct, message, key)
    forged = {**message, field: altered(town)}
    recovered = C.to_checksum_address(P.recover(P.typed_digest(bank.separator, struct, forged), signature))
    assert recovered != C.address(key)
    C.expect_revert(bank, C.command_fn(bank, struct, forged, signature), "TimeBankUnauthorized", recovered, district)
    # The untouched command goes through.
    C.relay(bank, C.command_fn(bank, struct, message, signature))


def test_signature_of_another_domain_is_refused(town, w3):
    """A command signed for another chain id (or contract) recovers to a stranger."""
    bank = town.bank
    message = {"account": town.elder1, "minutes": 60, "reason": 1, "nonce": 99}
    other_separator = P.domain_separator(w3.eth.chain_id + 1, bank.contract.address)
    digest = P.typed_digest(other_separator, "Grant", message)
    signature = P.sign(digest, town.admin1)
    recovered = C.to_checksum_address(P.recover(P.typed_digest(bank.separator, "Grant", message), signature))
    C.expect_revert(bank, C.command_fn(bank, "Grant", message, signature), "TimeBankUnauthorized", recovered, D1)


def test_malformed_signatures_are_refused(town):
    bank = town.bank
    message = {"account": town.elder1, "minutes": 60, "reason": 1, "nonce": 98}
    good = C.sign_command(bank, "Grant", message, town.admin1)
    C.expect_revert(bank, C.command_fn(bank, "Grant", message, good[:64]), "ECDSAInvalidSignatureLength", 64)
    high_s = (P._SECP256K1_N - int.from_bytes(good[32:64], "big")).to_bytes(32, "big")
    flipped = good[:32] + high_s + bytes([55 - good[64]])  # the same signature, malleated
    C.expect_revert(bank, C.command_fn(bank, "Grant", message, flipped), "ECDSAInvalidSignatureS", high_s)
    # v 0 or 1 (the recovery id without its 27): ecrecover answers no address, OpenZeppelin's ECDSA
    # refuses it; so does the service (api.protocol.recover), which accepts exactly what the contract does
    low_v = good[:64] + bytes([good[64] - 27])
    C.expect_revert(bank, C.command_fn(bank, "Grant", message, low_v), "ECDSAInvalidSignature")
    with pytest.raises(P.ProtocolError):
        P.recover(P.typed_digest(bank.separator, "Grant", message), low_v)
    assert C.get_account(bank, town.elder1).balance == 600


def test_commands_may_be_relayed_by_anyone(town, keys):
    """The signature, not the sender, authorises a command."""
    bank = town.bank
    message = {"account": town.elder1, "minutes": 60, "reason": 1, "nonce": 97}
    signature = C.sign_command(bank, "Grant", message, town.admin1)
    C.relay(bank, C.command_fn(bank, "Grant", message, signature), sender=keys.others[5].address)
    assert C.get_account(bank, town.elder1).balance == 660
