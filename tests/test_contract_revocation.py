"""TimeBank.revokeOrder (the RevokeOrder command), against Anvil and the compiled contract: it reverses
exactly one anchored order's movement of minutes, once, for the order's district admin or the city."""

from __future__ import annotations

import pytest

from api import protocol as P
from tests.utils import chain as C
from tests.utils.town import D1, D2, ELDER_GRANT, POOL_GRANT


def anchored(town, specs, station_key=None):
    """Anchor a batch of orders given as (volunteer, payer, minutes, service type, district)."""
    bank = town.bank
    orders = [C.make_order(district=d, volunteer=v, payer=p, minutes=m, service_type=t) for v, p, m, t, d in specs]
    batch = C.build_batch(bank, orders, station_key or town.station1)
    C.anchor(bank, batch)
    return batch


@pytest.fixture
def batch(town):
    """vol1 served elder1 60 min; vol2 served elder1 45 min; the pool gave vol1 30 min; vol2 served elder2."""
    return anchored(
        town,
        [
            (town.vol1, town.elder1, 60, 1, D1),
            (town.vol2, town.elder1, 45, 4, D1),
            (town.vol1, town.pool, 30, C.TRANSFER, D1),
            (town.vol2, town.elder2, 20, 5, D1),
        ],
    )


def test_revoke_reverses_exactly_that_order(town, batch):
    bank = town.bank
    before = C.balances(bank, town.accounts)
    assert before[town.vol1] == (90, 60) and before[town.vol2] == (65, 65)
    order = batch.orders[0]
    receipt = C.revoke(bank, batch, 0, key=town.admin1, reason=7, nonce=101)
    assert C.events(bank, receipt) == [
        C.nonce_event(C.address(town.admin1), 101),
        ("OrderRevoked", {"orderId": order.orderId, "batchId": batch.batch_id, "reason": 7}),
    ]
    after = C.balances(bank, town.accounts)
    assert after[town.vol1] == (90 - 60, 60 - 60)
    assert after[town.elder1] == (before[town.elder1][0] + 60, 0)
    for account in town.accounts:
        if account not in (town.vol1, town.elder1):
            assert after[account] == before[account]
    assert bank.fns.isRevoked(order.orderId).call() is True
    for other in batch.orders[1:]:
        assert bank.fns.isRevoked(other.orderId).call() is False


def test_revoke_a_transfer_leaves_earned(town, batch):
    bank = town.bank
    C.revoke(bank, batch, 2, reason=2)  # by the city admin
    got = C.balances(bank, [town.vol1, town.pool])
    assert got[town.vol1] == (90 - 30, 60)
    assert got[town.pool] == (POOL_GRANT, 0)


def test_revoke_only_once(town, batch):
    bank = town.bank
    order_id = batch.orders[1].orderId
    C.revoke(bank, batch, 1, key=town.admin1)
    after_first = C.balances(bank, town.accounts)
    for key in (town.admin1, bank.city_key):
        C.expect_revert(bank, C.revoke_fn(bank, batch, 1, key=key), "TimeBankOrderAlreadyRevoked", order_id)
    assert C.balances(bank, town.accounts) == after_first


def test_revoke_may_leave_a_balance_negative(town, batch):
    """vol1 spends what it earned, then the order that paid it is found false: the clawback stands."""
    bank = town.bank
    spend = anchored(town, [(town.vol3, town.vol1, 90, C.TRANSFER, D1)])
    assert C.balances(bank, [town.vol1])[town.vol1] == (0, 60)
    C.revoke(bank, batch, 0)
    assert C.balances(bank, [town.vol1])[town.vol1] == (-60, 0)
    C.revoke(bank, batch, 2)
    assert C.balances(bank, [town.vol1])[town.vol1] == (-90, 0)
    # A negative balance cannot pay, and needs credits before it can.
    overdraft = C.build_batch(
        bank, [C.make_order(district=D1, volunteer=town.vol2, payer=town.vol1, minutes=1)], town.station1
    )
    C.expect_revert(bank, C.anchor_fn(bank, overdraft), "TimeBankInsufficientBalance", town.vol1, -90, 1)
    assert spend.batch_id == batch.batch_id + 1


def test_revoke_reaches_frozen_and_cancelled_accounts(town, batch):
    bank = town.bank
    C.set_status(bank, town.vol2, C.FROZEN, key=town.admin1)
    C.set_status(bank, town.elder1, C.CANCELLED, key=town.admin1)
    C.revoke(bank, batch, 1)
    got = C.balances(bank, [town.vol2, town.elder1])
    assert got[town.vol2] == (65 - 45, 65 - 45)
    assert got[town.elder1] == (ELDER_GRANT - 105 + 45, 0)


def test_revoke_an_order_of_an_older_batch(town, batch):
    bank = town.bank
    later = anchored(town, [(town.vol3, town.pool, 15, 1, D1)])
    receipt = C.revoke(bank, batch, 3)
    assert C.events(bank, receipt)[1][1]["batchId"] == batch.batch_id
    C.revoke(bank, later, 0)
    assert C.balances(bank, [town.vol3, town.vol2]) == {town.vol3: (0, 0), town.vol2: (45, 45)}


def test_revoke_in_a_one_order_batch(town):
    """The leaf is the root; the proof is empty."""
    bank = town.bank
    single = anchored(town, [(town.vol1, town.elder2, 25, 1, D1)])
    assert single.proof(0) == []
    C.revoke(bank, single, 0)
    assert C.balances(bank, [town.vol1, town.elder2]) == {town.vol1: (0, 0), town.elder2: (ELDER_GRANT, 0)}


# ----- refusals -----------------------------------------------------------------------------------


def refused(town, batch, fn, error, *args):
    bank = town.bank
    before = C.balances(bank, town.accounts)
    C.expect_revert(bank, fn, error, *args)
    assert C.balances(bank, town.accounts) == before
    assert not any(bank.fns.isRevoked(o.orderId).call() for o in batch.orders)


def test_revoke_authorisation(town, batch):
    bank = town.bank
    C.expect_revert(
        bank, C.revoke_fn(bank, batch, 0, key=town.stranger), "TimeBankUnauthorized", C.address(town.stranger), D1
    )
    # D2's admin cannot revoke a D1 order.
    refused(
        town, batch, C.revoke_fn(bank, batch, 0, key=town.admin2), "TimeBankUnauthorized", C.address(town.admin2), D1
    )


def test_district_admin_revokes_only_orders_of_its_district(town):
    """The order's district decides, not the volunteer's or the station's: a D1 volunteer's order in D2."""
    bank = town.bank
    batch = anchored(town, [(town.vol1, town.pool, 30, 1, D2)], station_key=town.station2)
    C.expect_revert(
        bank, C.revoke_fn(bank, batch, 0, key=town.admin1), "TimeBankUnauthorized", C.address(town.admin1), D2
    )
    C.revoke(bank, batch, 0, key=town.admin2)
    assert C.balances(bank, [town.vol1])[town.vol1] == (0, 0)


def test_revoke_nonce_reused(town, batch):
    bank = town.bank
    C.revoke(bank, batch, 0, key=town.admin1, nonce=5)
    refused_fn = C.revoke_fn(bank, batch, 1, key=town.admin1, nonce=5)
    C.expect_revert(bank, refused_fn, "TimeBankNonceUsed", C.address(town.admin1), 5)
    assert bank.fns.isRevoked(batch.orders[1].orderId).call() is False


def test_revoke_with_forged_proof(town, batch):
    bank = town.bank
    leaf = batch.leaves[0]
    proof = batch.proof(0)
    bad_first = [bytes(32 * [0xAB])] + proof[1:]
    refused(town, batch, C.revoke_fn(bank, batch, 0, proof=bad_first), "TimeBankInvalidProof", batch.batch_id, leaf)
    refused(
        town, batch, C.revoke_fn(bank, batch, 0, proof=batch.proof(1)), "TimeBankInvalidProof", batch.batch_id, leaf
    )
    refused(town, batch, C.revoke_fn(bank, batch, 0, proof=proof[:-1]), "TimeBankInvalidProof", batch.batch_id, leaf)
    refused(town, batch, C.revoke_fn(bank, batch, 0, proof=[]), "TimeBankInvalidProof", batch.batch_id, leaf)
    refused(
        town, batch, C.revoke_fn(bank, batch, 0, proof=proof + [leaf]), "TimeBankInvalidProof", batch.batch_id, leaf
    )


def test_revoke_an_order_that_was_never_anchored(town, batch):
    bank = town.bank
    stray = C.build_batch(
        bank, [C.make_order(district=D1, volunteer=town.vol1, payer=town.elder1, minutes=60)], town.station1
    )
    fn = C.revoke_fn(bank, stray, 0, batch_id=batch.batch_id, proof=batch.proof(0))
    refused(town, batch, fn, "TimeBankInvalidProof", batch.batch_id, stray.leaves[0])


def test_revoke_with_wrong_batch_id(town, batch):
    bank = town.bank
    other = anchored(town, [(town.vol3, town.pool, 10, 1, D1), (town.vol3, town.pool, 11, 1, D1)])
    leaf = batch.leaves[0]
    refused(
        town, batch, C.revoke_fn(bank, batch, 0, batch_id=other.batch_id), "TimeBankInvalidProof", other.batch_id, leaf
    )
    unknown = other.batch_id + 1
    refused(town, batch, C.revoke_fn(bank, batch, 0, batch_id=unknown), "TimeBankUnknownBatch", unknown)
    refused(town, batch, C.revoke_fn(bank, batch, 0, batch_id=0), "TimeBankUnknownBatch", 0)


def test_revoke_with_another_station(town, batch):
    bank = town.bank
    station = C.address(town.station2)
    leaf = P.leaf(batch.digests[0], C.addr_bytes(station))
    refused(town, batch, C.revoke_fn(bank, batch, 0, station=station), "TimeBankInvalidProof", batch.batch_id, leaf)


ALTERED_FIELDS = {
    "volunteer": lambda o, w: w.vol3,
    "payer": lambda o, w: w.pool,
    "recipient": lambda o, w: w.elder2,
    "serviceType": lambda o, w: C.TRANSFER,
    "startTime": lambda o, w: o.startTime - 1,
    "endTime": lambda o, w: o.endTime + 1,
    "minutes": lambda o, w: o.minutes + 600,
    "detailsHash": lambda o, w: bytes(32),
    "district": lambda o, w: D2,
    "orderId": lambda o, w: C.new_account_id(),
}


@pytest.mark.parametrize("field", list(ALTERED_FIELDS))
def test_revoke_with_an_altered_order_field(town, batch, field):
    """Any field changed from what the station signed gives another leaf, not in the batch. (The
    command's orderId follows the altered order's, so only the proof check can refuse it.)"""
    bank = town.bank
    original = batch.orders[0]
    altered = original._replace(**{field: ALTERED_FIELDS[field](original, town)})
    leaf = P.leaf(altered.digest(bank.separator), C.addr_bytes(batch.stations[0]))
    fn = C.revoke_fn(bank, batch, 0, order=altered)  # city admin: authorised for any district
    refused(town, batch, fn, "TimeBankInvalidProof", batch.batch_id, leaf)


def test_revoke_command_for_another_order(town, batch):
    """The administrator signed the revocation of one order; the relayer attaches another."""
    bank = town.bank
    signed_id = batch.orders[1].orderId
    fn = C.revoke_fn(bank, batch, 0, order_id=signed_id, key=town.admin1)
    refused(town, batch, fn, "TimeBankOrderMismatch", signed_id, batch.orders[0].orderId)


def test_altered_revoke_command_is_refused(town, batch):
    """Changing the reason of a signed RevokeOrder makes it another signer's command."""
    bank = town.bank
    message = {"orderId": batch.orders[0].orderId, "digest": batch.digests[0], "reason": 1, "nonce": 77}
    signature = C.sign_command(bank, "RevokeOrder", message, town.admin1)
    forged = {**message, "reason": 2}
    recovered = C.to_checksum_address(P.recover(P.typed_digest(bank.separator, "RevokeOrder", forged), signature))
    extra = (batch.orders[0].as_tuple(), batch.stations[0], batch.batch_id, batch.proof(0))
    fn = C.command_fn(bank, "RevokeOrder", forged, signature, *extra)
    refused(town, batch, fn, "TimeBankUnauthorized", recovered, D1)
    C.relay(bank, C.command_fn(bank, "RevokeOrder", message, signature, *extra))
    assert bank.fns.isRevoked(batch.orders[0].orderId).call() is True
