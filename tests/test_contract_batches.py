"""TimeBank.anchorBatch, its views, verifyOrder and star levels, against Anvil and the compiled contract.

A batch's per-account amounts are packed as the service packs them, canonical deltas (tests/utils/chain.py:
16 bytes per account, its index, `earned` for services, `received` for transfers, `spent` for the payer,
ascending by index; PROTOCOL.md section 9), and every refusal must
revert the whole batch: no balance moved, no batch id taken, the root not anchored."""

from __future__ import annotations

import pytest
from web3 import Web3

from api import protocol as P
from scripts.deploy import deploy
from tests.utils import chain as C
from tests.utils.town import D1, D2, ELDER_GRANT, POOL_GRANT

RELAYER_ROLE = Web3.keccak(text="RELAYER_ROLE")


def order(town, volunteer, payer, minutes, service_type=1, district=D1):
    return C.make_order(district=district, volunteer=volunteer, payer=payer, minutes=minutes, service_type=service_type)


def snapshot_state(bank, town, extra=()):
    """Everything a batch may change: balances and earned minutes, batch count."""
    return C.balances(bank, [*town.accounts, *extra]), bank.fns.batchCount().call()


# ----- credits and debits -------------------------------------------------------------------------


def test_batch_moves_minutes(town):
    bank = town.bank
    before = C.balances(bank, town.accounts)
    orders = [
        order(town, town.vol1, town.elder1, 60),
        order(town, town.vol2, town.elder1, 45, service_type=9),
        order(town, town.vol1, town.elder2, 30, service_type=2),
        order(town, town.vol_d2, town.pool, 120),  # hours are city-wide: a D2 volunteer paid by D1's pool
    ]
    batch = C.build_batch(bank, orders, town.station1)
    count_before = bank.fns.batchCount().call()
    batch_id, receipt = C.anchor(bank, batch)
    assert batch_id == count_before + 1
    assert C.events(bank, receipt) == [("BatchAnchored", {"batchId": batch_id, "root": batch.root, "count": 4})]
    after = C.balances(bank, town.accounts)
    assert after[town.vol1] == (before[town.vol1][0] + 90, before[town.vol1][1] + 90)
    assert after[town.vol2] == (before[town.vol2][0] + 45, before[town.vol2][1] + 45)
    assert after[town.vol_d2] == (before[town.vol_d2][0] + 120, before[town.vol_d2][1] + 120)
    assert after[town.elder1] == (ELDER_GRANT - 105, 0)
    assert after[town.elder2] == (ELDER_GRANT - 30, 0)
    assert after[town.pool] == (POOL_GRANT - 120, 0)
    assert after[town.vol3] == before[town.vol3]
    assert bank.fns.getBatch(batch_id).call() == [batch.root, 4, receipt["blockNumber"]]
    assert bank.fns.batchIdOfRoot(batch.root).call() == batch_id
    assert bank.fns.batchCount().call() == batch_id


def test_transfer_credits_balance_not_earned(town):
    bank = town.bank
    C.anchor(bank, C.build_batch(bank, [order(town, town.vol1, town.pool, 200)], town.station1))
    assert C.balances(bank, [town.vol1])[town.vol1] == (200, 200)
    # vol1 gives 50 of its saved minutes to vol2, and the pool gives 30 to elder1: transfers.
    transfers = [
        order(town, town.vol2, town.vol1, 50, service_type=C.TRANSFER),
        order(town, town.elder1, town.pool, 30, service_type=C.TRANSFER),
    ]
    batch = C.build_batch(bank, transfers, town.station1)
    assert C.account_deltas(transfers)[town.vol2] == [0, 50, 0]
    C.anchor(bank, batch)
    got = C.balances(bank, [town.vol1, town.vol2, town.elder1, town.pool])
    assert got[town.vol1] == (150, 200)  # spending does not lower earned
    assert got[town.vol2] == (50, 0)
    assert got[town.elder1] == (ELDER_GRANT + 30, 0)
    assert got[town.pool] == (POOL_GRANT - 230, 0)


def test_credits_of_the_batch_count_before_its_debits(town):
    """An account that earns and spends in the same batch needs only the net amount."""
    bank = town.bank
    orders = [
        order(town, town.vol1, town.elder1, 100),
        order(town, town.vol2, town.vol1, 80, service_type=C.TRANSFER),
    ]
    C.anchor(bank, C.build_batch(bank, orders, town.station1))
    assert C.balances(bank, [town.vol1, town.vol2]) == {town.vol1: (20, 100), town.vol2: (80, 0)}


def test_spending_to_exactly_zero(town):
    bank = town.bank
    C.anchor(bank, C.build_batch(bank, [order(town, town.vol1, town.elder1, ELDER_GRANT)], town.station1))
    assert C.get_account(bank, town.elder1).balance == 0


def test_hand_packed_deltas(town):
    """The packing itself: index ‖ earned ‖ received ‖ spent, big-endian uint32s, ascending by index."""
    bank = town.bank
    index = {a: C.account_index(bank, a) for a in (town.vol1, town.vol2, town.pool)}
    assert index[town.vol1] < index[town.vol2] < index[town.pool]
    deltas = (
        index[town.vol1].to_bytes(4, "big") + (70).to_bytes(4, "big") + (5).to_bytes(4, "big") + (0).to_bytes(4, "big")
        + index[town.vol2].to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big") + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
        + index[town.pool].to_bytes(4, "big") + (0).to_bytes(4, "big") + (0).to_bytes(4, "big") + (75).to_bytes(4, "big")
    )  # fmt: skip
    assert deltas == C.pack_deltas(bank, {town.pool: (0, 0, 75), town.vol2: (2**32 - 1, 0, 0), town.vol1: (70, 5, 0)})
    batch = C.build_batch(bank, [order(town, town.vol1, town.pool, 75)], town.station1, deltas=deltas)
    C.anchor(bank, batch)
    got = C.balances(bank, [town.vol1, town.vol2, town.pool, town.elder1])
    assert got == {
        town.vol1: (75, 70),
        town.pool: (POOL_GRANT - 75, 0),
        town.vol2: (2**32 - 1, 2**32 - 1),
        town.elder1: (ELDER_GRANT, 0),
    }


# ----- refusals: the whole batch reverts ----------------------------------------------------------


def assert_refused(town, batch, error, *args, sender=None):
    bank = town.bank
    before = snapshot_state(bank, town), bank.fns.batchIdOfRoot(batch.root).call()
    C.expect_revert(bank, C.anchor_fn(bank, batch), error, *args, sender=sender)
    assert (snapshot_state(bank, town), bank.fns.batchIdOfRoot(batch.root).call()) == before


def test_overdraft_reverts_the_whole_batch(town):
    orders = [
        order(town, town.vol1, town.pool, 30),  # fine on its own
        order(town, town.vol2, town.elder1, 400),
        order(town, town.vol3, town.elder1, 201),  # elder1 has 600: 601 is one minute too many
    ]
    batch = C.build_batch(town.bank, orders, town.station1)
    assert_refused(town, batch, "TimeBankInsufficientBalance", town.elder1, ELDER_GRANT, 601)


def test_overdraft_counts_credits_of_the_batch(town):
    """vol1 has 0, earns 50 and spends 60 in the batch: available 50, debit 60."""
    orders = [
        order(town, town.vol1, town.pool, 50),
        order(town, town.vol2, town.vol1, 60, service_type=C.TRANSFER),
    ]
    batch = C.build_batch(town.bank, orders, town.station1)
    assert_refused(town, batch, "TimeBankInsufficientBalance", town.vol1, 50, 60)


def test_account_with_no_minutes_cannot_pay(town):
    batch = C.build_batch(town.bank, [order(town, town.vol2, town.vol3, 1)], town.station1)
    assert_refused(town, batch, "TimeBankInsufficientBalance", town.vol3, 0, 1)


@pytest.mark.parametrize("status", [C.FROZEN, C.CANCELLED])
@pytest.mark.parametrize("who", ["volunteer", "payer"])
def test_inactive_account_reverts_the_whole_batch(town, status, who):
    bank = town.bank
    target = town.vol2 if who == "volunteer" else town.elder2
    C.set_status(bank, target, status, key=town.admin1)
    orders = [order(town, town.vol1, town.elder1, 30), order(town, town.vol2, town.elder2, 30)]
    assert_refused(town, C.build_batch(bank, orders, town.station1), "TimeBankAccountNotActive", target, status)


def test_frozen_account_works_again_once_unfrozen(town):
    bank = town.bank
    C.set_status(bank, town.vol1, C.FROZEN, key=town.admin1)
    batch = C.build_batch(bank, [order(town, town.vol1, town.elder1, 30)], town.station1)
    assert_refused(town, batch, "TimeBankAccountNotActive", town.vol1, C.FROZEN)
    C.set_status(bank, town.vol1, C.ACTIVE, key=town.admin1)
    C.anchor(bank, batch)
    assert C.get_account(bank, town.vol1).balance == 30


@pytest.mark.parametrize("who", ["volunteer", "payer"])
def test_unknown_account_reverts_the_whole_batch(town, who):
    unknown = C.new_account_id()
    volunteer, payer = (unknown, town.elder1) if who == "volunteer" else (town.vol1, unknown)
    orders = [order(town, town.vol2, town.pool, 10), order(town, volunteer, payer, 10)]
    bank = town.bank
    # an account with no index cannot be put in canonical deltas; an index no account holds is refused
    with pytest.raises(P.ProtocolError, match="no account index"):
        C.build_batch(bank, orders, town.station1)
    free = bank.fns.accountCount().call() + 1
    known = sorted(C.account_index(bank, a) for a in (town.vol2, town.pool, volunteer, payer) if a != unknown)
    deltas = b"".join(C.raw_entry(i, 10) for i in known) + C.raw_entry(free, 10)
    assert_refused(town, C.build_batch(bank, orders, town.station1, deltas=deltas), "TimeBankUnknownAccountIndex", free)


def test_root_anchored_twice(town):
    bank = town.bank
    batch = C.build_batch(bank, [order(town, town.vol1, town.pool, 10)], town.station1)
    batch_id, _ = C.anchor(bank, batch)
    assert_refused(town, batch, "TimeBankRootAlreadyAnchored", batch.root, batch_id)
    assert bank.fns.batchIdOfRoot(batch.root).call() == batch_id
    # Same root with other deltas or count: refused all the same.
    again = C.build_batch(bank, batch.orders, town.station1, deltas=b"")
    assert again.root == batch.root
    C.expect_revert(bank, bank.fns.anchorBatch(batch.root, 7, b""), "TimeBankRootAlreadyAnchored", batch.root, batch_id)


def test_non_relayer_is_refused(town, keys):
    bank = town.bank
    batch = C.build_batch(bank, [order(town, town.vol1, town.pool, 10)], town.station1)
    for sender in (keys.others[0].address, bank.city_admin):
        assert_refused(town, batch, "AccessControlUnauthorizedAccount", sender, RELAYER_ROLE, sender=sender)


def test_city_admin_can_appoint_another_relayer(town, keys):
    bank = town.bank
    other = keys.others[4].address
    batch = C.build_batch(bank, [order(town, town.vol1, town.pool, 10)], town.station1)
    C.relay(bank, bank.fns.grantRole(RELAYER_ROLE, other), sender=bank.city_admin)
    C.anchor(bank, batch, sender=other)
    C.relay(bank, bank.fns.revokeRole(RELAYER_ROLE, bank.relayer), sender=bank.city_admin)
    batch2 = C.build_batch(bank, [order(town, town.vol1, town.pool, 10)], town.station1)
    assert_refused(town, batch2, "AccessControlUnauthorizedAccount", bank.relayer, RELAYER_ROLE)


@pytest.mark.parametrize("length", [1, 15, 17, 31, 33, 16 * 3 - 1])
def test_malformed_deltas(town, length):
    bank = town.bank
    good = C.pack_deltas(bank, {town.vol1: (10, 0, 0), town.pool: (0, 0, 10), town.vol2: (5, 0, 0)})
    deltas = (good + b"\x00" * 16)[:length]
    root = C.new_account_id()
    C.expect_revert(bank, bank.fns.anchorBatch(root, 1, deltas), "TimeBankMalformedDeltas", length)
    assert bank.fns.batchIdOfRoot(root).call() == 0


def test_empty_batch(town):
    bank = town.bank
    root = C.new_account_id()
    C.expect_revert(bank, bank.fns.anchorBatch(root, 0, b""), "TimeBankEmptyBatch")
    assert bank.fns.batchIdOfRoot(root).call() == 0


def test_batch_views_of_unknown_ids(town):
    bank = town.bank
    last = bank.fns.batchCount().call()
    assert bank.fns.getBatch(last + 1).call() == [b"\x00" * 32, 0, 0]
    assert bank.fns.getBatch(0).call() == [b"\x00" * 32, 0, 0]
    assert bank.fns.batchIdOfRoot(C.new_account_id()).call() == 0


def test_batch_ids_are_sequential_from_one(w3, artifact, keys, chain_snapshot):
    """On a fresh deployment the first batch is 1, and each next one the next integer; a refused
    batch takes no id."""
    city, relayer = keys.city_admin, keys.relayer
    address_, _ = deploy(w3, artifact, city.key, city.address, relayer.address)
    bank = C.Bank(
        w3=w3,
        contract=w3.eth.contract(address=address_, abi=artifact["abi"]),
        city_key=bytes(city.key),
        relayer=relayer.address,
    )
    assert bank.fns.batchCount().call() == 0
    assert bank.fns.getBatch(1).call() == [b"\x00" * 32, 0, 0]
    roots = []
    for expected in (1, 2, 3):
        root = C.new_account_id()
        receipt = C.relay(bank, bank.fns.anchorBatch(root, expected, b""))
        assert C.events(bank, receipt) == [("BatchAnchored", {"batchId": expected, "root": root, "count": expected})]
        roots.append((root, receipt["blockNumber"]))
        if expected == 2:
            C.expect_revert(bank, bank.fns.anchorBatch(root, 1, b""), "TimeBankRootAlreadyAnchored", root, 2)
    for batch_id, (root, block) in enumerate(roots, start=1):
        assert bank.fns.getBatch(batch_id).call() == [root, batch_id, block]
        assert bank.fns.batchIdOfRoot(root).call() == batch_id
    assert bank.fns.batchCount().call() == 3


# ----- verifyOrder --------------------------------------------------------------------------------

VALID = {"signedByStation": True, "included": True, "stationActive": True, "revoked": False, "valid": True}


def flags(result):
    return {k: result[k] for k in VALID}


def anchored_batch(town, station_key=None, district=D1, n=3):
    bank = town.bank
    orders = [order(town, town.vol1, town.pool, 10 + i, district=district) for i in range(n)]
    batch = C.build_batch(bank, orders, station_key or town.station1)
    C.anchor(bank, batch)
    return batch


def verify(town, batch, i, **override):
    args = {
        "order": batch.orders[i],
        "signature": batch.signatures[i],
        "station": batch.stations[i],
        "batch_id": batch.batch_id,
        "proof": batch.proof(i),
    }
    args.update(override)
    return C.verify_order(town.bank, **args)


def test_verify_valid_order(town):
    batch = anchored_batch(town)
    for i in range(batch.count):
        result = verify(town, batch, i)
        assert flags(result) == VALID
        assert result["digest"] == batch.digests[i]
        assert result["signer"] == C.address(town.station1)


def test_verify_bad_signature(town):
    batch = anchored_batch(town)
    stranger = C.new_key()
    forged = P.sign(batch.digests[0], stranger)
    result = verify(town, batch, 0, signature=forged)
    assert result["signer"] == C.address(stranger)
    assert flags(result) == {**VALID, "signedByStation": False, "valid": False}
    # A signature of another order of the same station, and a malformed one.
    result = verify(town, batch, 0, signature=batch.signatures[1])
    assert flags(result) == {**VALID, "signedByStation": False, "valid": False}
    result = verify(town, batch, 0, signature=batch.signatures[0][:64])
    assert result["signer"] == "0x0000000000000000000000000000000000000000"
    assert flags(result) == {**VALID, "signedByStation": False, "valid": False}


def test_verify_not_included(town):
    batch = anchored_batch(town)
    other = anchored_batch(town)
    not_included = {**VALID, "included": False, "stationActive": False, "valid": False}
    assert flags(verify(town, batch, 0, proof=batch.proof(1))) == not_included
    assert flags(verify(town, batch, 0, batch_id=other.batch_id)) == not_included
    assert flags(verify(town, batch, 0, batch_id=other.batch_id + 1)) == not_included  # no such batch
    assert flags(verify(town, batch, 0, proof=[])) == not_included
    # A signed order never anchored, claimed to be in the batch.
    stray = C.build_batch(town.bank, [order(town, town.vol1, town.pool, 10)], town.station1)
    result = C.verify_order(
        town.bank, stray.orders[0], stray.signatures[0], stray.stations[0], batch.batch_id, batch.proof(0)
    )
    assert flags(result) == not_included


def test_verify_altered_order_field(town):
    batch = anchored_batch(town)
    altered = batch.orders[0]._replace(minutes=batch.orders[0].minutes + 1)
    result = verify(town, batch, 0, order=altered)
    assert result["digest"] == altered.digest(town.bank.separator)
    assert flags(result) == {
        "signedByStation": False,
        "included": False,
        "stationActive": False,
        "revoked": False,
        "valid": False,
    }


def test_verify_station_of_another_district(town):
    """An order of district D1 signed by a station of D2, and anchored: signed and included, but the
    station is not D1's."""
    batch = anchored_batch(town, station_key=town.station2, district=D1)
    assert flags(verify(town, batch, 0)) == {**VALID, "stationActive": False, "valid": False}
    assert flags(verify(town, anchored_batch(town, town.station2, district=D2), 0)) == VALID


def test_verify_unregistered_station(town):
    batch = anchored_batch(town, station_key=C.new_key())
    assert flags(verify(town, batch, 0)) == {**VALID, "stationActive": False, "valid": False}


def test_verify_station_removed_before_the_batch(town):
    bank = town.bank
    C.remove_station(bank, C.address(town.station1), key=town.admin1)
    batch = anchored_batch(town)
    assert flags(verify(town, batch, 0)) == {**VALID, "stationActive": False, "valid": False}


def test_verify_station_removed_after_the_batch(town):
    bank = town.bank
    batch = anchored_batch(town)
    C.remove_station(bank, C.address(town.station1), key=town.admin1)
    assert flags(verify(town, batch, 0)) == VALID


def test_verify_station_registered_after_the_batch(town):
    bank = town.bank
    station = C.new_key()
    batch = anchored_batch(town, station_key=station)
    C.register_station(bank, C.address(station), D1, key=town.admin1)
    assert flags(verify(town, batch, 0)) == {**VALID, "stationActive": False, "valid": False}
    assert flags(verify(town, anchored_batch(town, station_key=station), 0)) == VALID


def test_verify_revoked(town):
    bank = town.bank
    batch = anchored_batch(town)
    C.revoke(bank, batch, 1, key=town.admin1)
    assert flags(verify(town, batch, 1)) == {**VALID, "revoked": True, "valid": False}
    assert flags(verify(town, batch, 0)) == VALID


# ----- star levels --------------------------------------------------------------------------------

THRESHOLD_HOURS = [100, 300, 600, 1000, 1500]


def test_star_levels_at_and_around_each_threshold(town):
    """One volunteer earns its way up through anchored batches: one minute short of each threshold
    (99h59m, ...), then the threshold itself, then beyond."""
    bank = town.bank
    volunteer = town.vol3
    C.grant(bank, town.pool, 1500 * 60 + 100, key=town.admin1)
    assert bank.fns.starLevel(volunteer).call() == 0
    earned = 0
    for level, hours in enumerate(THRESHOLD_HOURS, start=1):
        for target, want in ((hours * 60 - 1, level - 1), (hours * 60, level), (hours * 60 + 1, level)):
            batch = C.build_batch(bank, [order(town, volunteer, town.pool, target - earned)], town.station1)
            C.anchor(bank, batch)
            earned = target
            assert C.get_account(bank, volunteer).earned == earned
            assert bank.fns.starLevel(volunteer).call() == want, f"{earned} minutes"
    assert bank.fns.starLevel(town.vol1).call() == 0
    assert bank.fns.starLevel(C.new_account_id()).call() == 0


def test_transfers_earn_no_stars(town):
    bank = town.bank
    C.grant(bank, town.pool, 200 * 60, key=town.admin1)
    batch = C.build_batch(bank, [order(town, town.vol3, town.pool, 150 * 60, service_type=C.TRANSFER)], town.station1)
    C.anchor(bank, batch)
    assert C.get_account(bank, town.vol3).balance == 150 * 60
    assert bank.fns.starLevel(town.vol3).call() == 0


def test_star_level_falls_with_a_revocation(town):
    bank = town.bank
    C.grant(bank, town.pool, 200 * 60, key=town.admin1)
    orders = [order(town, town.vol3, town.pool, 99 * 60), order(town, town.vol3, town.pool, 60)]
    batch = C.build_batch(bank, orders, town.station1)
    C.anchor(bank, batch)
    assert bank.fns.starLevel(town.vol3).call() == 1
    C.revoke(bank, batch, 1)
    assert bank.fns.starLevel(town.vol3).call() == 0
