"""Batch commitments and challenges (PROTOCOL.md section 9), against Anvil and the compiled contract.

A relayer that cheats is the test's relayer key anchoring what it likes: orders with a forged signature
(reason 1), orders of a removed station or of another district's station (reason 2), amounts no order
backs (reason 3), one order in two batches or twice in one batch (reason 4). Each challenge must correct
every balance to what the valid orders make, revoke exactly the bad orders, take `RELAYER_ROLE` and emit
exactly its events; a challenge of an honest batch, or with the wrong orders, deltas or relayer, reverts
and changes nothing.
"""

from __future__ import annotations

import json
import random
import secrets
import subprocess
from pathlib import Path

import pytest
from web3 import Web3

from api import protocol as P
from tests.utils import chain as C
from tests.utils.town import D1, D2, ELDER_GRANT, POOL_GRANT

RELAYER_ROLE = Web3.keccak(text="RELAYER_ROLE")
ROOT = Path(__file__).resolve().parent.parent
ZERO32 = b"\x00" * 32


def order(volunteer, payer, minutes, service_type=1, district=D1, order_id=None):
    return C.make_order(
        district=district, volunteer=volunteer, payer=payer, minutes=minutes, service_type=service_type, order_id=order_id
    )


def state(town, extra=()):
    """Everything a challenge may change: balances and earned minutes, and the relayer's role."""
    bank = town.bank
    return C.balances(bank, [*town.accounts, *extra]), bank.fns.hasRole(RELAYER_ROLE, bank.relayer).call()


def expected(before: dict, orders) -> dict:
    """Balances and earned minutes after `orders`, from `before` (the honest outcome)."""
    out = dict(before)
    for account, (e, r, s) in C.account_deltas(orders).items():
        balance, earned = out[account]
        out[account] = (balance + e + r - s, earned + e)
    return out


def role_revoked(town) -> tuple[str, dict]:
    """OpenZeppelin's event of the role taken from the relayer by a challenge sent by `town.stranger`."""
    return ("RoleRevoked", {"role": RELAYER_ROLE, "account": town.bank.relayer, "sender": C.address(town.stranger)})


def challenged(batch_id, bank, reason, order_id=ZERO32) -> tuple[str, dict]:
    return ("BatchChallenged", {"batchId": batch_id, "relayer": bank.relayer, "reason": reason, "orderId": order_id})


def revoked(order_id, batch_id, reason) -> tuple[str, dict]:
    return ("OrderRevoked", {"orderId": order_id, "batchId": batch_id, "reason": 1000 + reason})


def honest_orders(town):
    return [
        order(town.vol1, town.elder1, 60),
        order(town.vol2, town.elder1, 45, service_type=9),
        order(town.vol1, town.pool, 30, service_type=2),
        order(town.elder2, town.pool, 20, service_type=C.TRANSFER),
    ]


# ----- the account index and canonical deltas ---------------------------------------------------------


def test_account_index_given_from_one_for_good(town):
    bank = town.bank
    count = bank.fns.accountCount().call()
    indices = [bank.fns.accountIndex(a).call() for a in town.accounts]
    assert sorted(indices) == indices and len(set(indices)) == len(indices) and indices[0] >= 1
    assert indices[-1] == count
    for account, index in zip(town.accounts, indices):
        assert bank.fns.accountAt(index).call() == account
    assert bank.fns.accountIndex(C.new_account_id()).call() == 0
    assert bank.fns.accountAt(count + 1).call() == ZERO32
    account = C.new_account_id()
    receipt = C.register_account(bank, account, D1, C.KIND_VOLUNTEER, key=town.admin1)
    assert ("AccountRegistered", {"account": account, "district": D1, "kind": 1, "index": count + 1}) in C.events(bank, receipt)
    assert bank.fns.accountIndex(account).call() == count + 1


def test_anchor_refuses_non_canonical_deltas(town):
    bank = town.bank
    before = state(town)
    batches = bank.fns.batchCount().call()
    i1, i2 = C.account_index(bank, town.vol1), C.account_index(bank, town.pool)
    root = secrets.token_bytes(32)
    cases = {
        "descending": (C.raw_entry(i2, 0, 0, 10) + C.raw_entry(i1, 10), 1),
        "twice": (C.raw_entry(i1, 5) + C.raw_entry(i1, 5) + C.raw_entry(i2, 0, 0, 10), 1),
        "all zero": (C.raw_entry(i1, 10) + C.raw_entry(i2 + 0, 0, 0, 0), 1),
        "index zero": (C.raw_entry(0, 10) + C.raw_entry(i1, 0, 0, 0), 0),
    }
    for name, (deltas, entry) in cases.items():
        C.expect_revert(bank, bank.fns.anchorBatch(root, 1, deltas), "TimeBankNonCanonicalDeltas", entry)
    unknown = bank.fns.accountCount().call() + 1
    C.expect_revert(bank, bank.fns.anchorBatch(root, 1, C.raw_entry(unknown, 10)), "TimeBankUnknownAccountIndex", unknown)
    C.expect_revert(bank, bank.fns.anchorBatch(root, 1, C.raw_entry(i1, 10)[:15]), "TimeBankMalformedDeltas", 15)
    assert state(town) == before and bank.fns.batchCount().call() == batches


def test_commitment_and_relayer_stored(town):
    bank = town.bank
    batch = C.build_batch(bank, honest_orders(town), town.station1)
    assert len(batch.deltas) % 16 == 0 and P.unpack_deltas(batch.deltas)  # canonical, 16 bytes an account
    batch_id, _ = C.anchor(bank, batch)
    commitment = Web3.keccak(C.addr_bytes(bank.relayer) + batch.deltas)
    assert bank.fns.getBatchCommitment(batch_id).call() == commitment
    assert bank.fns.getBatchRelayer(batch_id).call() == bank.relayer
    assert bank.fns.isBatchChallenged(batch_id).call() is False
    assert bank.fns.getBatchCommitment(batch_id + 1).call() == ZERO32
    assert bank.fns.getBatchRelayer(batch_id + 1).call() == "0x" + "00" * 20


def test_anchor_with_no_deltas_is_a_commitment_too(town):
    """A relayer may anchor a root with no amounts (b""); the batch is then open to a challenge that its
    orders moved minutes."""
    bank = town.bank
    before = state(town)[0]
    orders = honest_orders(town)
    batch = C.build_batch(bank, orders, town.station1, deltas=b"")
    batch_id, _ = C.anchor(bank, batch)
    assert state(town)[0] == before
    receipt = C.relay(bank, C.challenge_fn(bank, batch), sender=C.address(town.stranger))
    assert C.events(bank, receipt) == [challenged(batch_id, bank, 3), role_revoked(town)]
    assert state(town) == (expected(before, orders), False)


# ----- an honest batch; challenges about another batch -------------------------------------------------


def test_honest_batch_cannot_be_challenged(town):
    bank = town.bank
    batch = C.build_batch(bank, honest_orders(town), town.station1)
    C.anchor(bank, batch)
    before = state(town)
    C.expect_revert(bank, C.challenge_fn(bank, batch), "TimeBankNoFault", batch.batch_id, sender=C.address(town.stranger))
    assert state(town) == before
    assert bank.fns.isBatchChallenged(batch.batch_id).call() is False


def test_challenge_about_another_batch_reverts(town):
    bank = town.bank
    orders = honest_orders(town)
    inflated = C.account_deltas(orders)
    inflated[town.vol1][0] += 1_000
    batch = C.build_batch(bank, orders, town.station1, deltas=C.pack_deltas(bank, inflated))
    C.anchor(bank, batch)
    other = C.build_batch(bank, [order(town.vol3, town.pool, 15)], town.station1)
    C.anchor(bank, other)
    before = state(town)
    stranger = C.address(town.stranger)
    bid = batch.batch_id

    def refused(fn, error, *args):
        C.expect_revert(bank, fn, error, *args, sender=stranger)

    refused(C.challenge_fn(bank, batch, relayer=stranger), "TimeBankCommitmentMismatch", bid, stranger)
    refused(C.challenge_fn(bank, batch, deltas=other.deltas), "TimeBankCommitmentMismatch", bid, bank.relayer)
    refused(C.challenge_fn(bank, batch, deltas=C.pack_deltas(bank, C.account_deltas(orders))), "TimeBankCommitmentMismatch", bid, bank.relayer)
    refused(C.challenge_fn(bank, batch, batch_id=bid + 5), "TimeBankUnknownBatch", bid + 5)
    ranked = [batch.orders[i] for i in C.sorted_positions(batch)]
    stations = [batch.stations[i] for i in C.sorted_positions(batch)]
    signatures = [batch.signatures[i] for i in C.sorted_positions(batch)]
    # an order left out, or one too many
    refused(C.challenge_fn(bank, batch, orders=ranked[:-1], stations=stations[:-1], signatures=signatures[:-1]), "TimeBankLeafCountMismatch", bid, 4, 3)
    refused(C.challenge_fn(bank, batch, signatures=signatures[:-1]), "TimeBankLeafCountMismatch", bid, 4, 4)
    # the batch's leaves in another order
    swapped = [ranked[1], ranked[0], *ranked[2:]]
    leaf0, leaf1 = (P.leaf(o.digest(bank.separator), C.addr_bytes(stations[0])) for o in swapped[:2])
    assert leaf0 > leaf1
    refused(C.challenge_fn(bank, batch, orders=swapped), "TimeBankLeavesNotSorted", 1)
    # an order that is not the batch's: the tree has another root
    altered = ranked[-1]._replace(minutes=ranked[-1].minutes + 1)
    fn = C.challenge_fn(bank, batch, orders=[*ranked[:-1], altered])
    got = C.decode_error(bank.contract.abi, C.revert_data(bank, fn, stranger))
    if got[0] == "TimeBankRootMismatch":
        assert got[1][:2] == (bid, batch.root) and got[1][2] != batch.root
    else:  # the altered leaf may also sort elsewhere
        assert got[0] == "TimeBankLeavesNotSorted"
    other_station = [*stations[:-1], C.address(town.station2)]
    got = C.decode_error(bank.contract.abi, C.revert_data(bank, C.challenge_fn(bank, batch, stations=other_station), stranger))
    assert got[0] in ("TimeBankRootMismatch", "TimeBankLeavesNotSorted")
    assert state(town) == before
    # the right challenge goes through, once
    C.relay(bank, C.challenge_fn(bank, batch), sender=stranger)
    C.relay(bank, bank.contract.functions.grantRole(RELAYER_ROLE, bank.relayer), sender=bank.city_admin)
    refused(C.challenge_fn(bank, batch), "TimeBankBatchAlreadyChallenged", bid)


# ----- reason 3: amounts no order backs -------------------------------------------------------------------


def test_reason_3_inflated_amounts_corrected(town):
    """The issue's attack: one volunteer credited 100,000 earned minutes, an elderly person of another
    district (not in any order) debited 100; the challenge puts every balance where the orders put it."""
    bank = town.bank
    before = state(town)[0]
    orders = honest_orders(town)
    forged = C.account_deltas(orders)
    forged[town.vol3] = [100_000, 0, 0]
    forged[town.elder2][2] += 100
    forged[town.vol2][0] -= 5  # and one credited less than its orders
    batch = C.build_batch(bank, orders, town.station1, deltas=C.pack_deltas(bank, forged))
    batch_id, _ = C.anchor(bank, batch)
    assert C.balances(bank, [town.vol3])[town.vol3] == (100_000, 100_000)
    receipt = C.relay(bank, C.challenge_fn(bank, batch), sender=C.address(town.stranger))
    assert C.events(bank, receipt) == [challenged(batch_id, bank, 3), role_revoked(town)]
    assert state(town) == (expected(before, orders), False)
    assert bank.fns.isBatchChallenged(batch_id).call() is True
    assert not any(bank.fns.isRevoked(o.orderId).call() for o in orders)  # every order is valid
    # the relayer can no longer anchor; the city may grant the role again after an inquiry
    C.expect_revert(
        bank, C.anchor_fn(bank, C.build_batch(bank, [order(town.vol1, town.pool, 5)], town.station1)),
        "AccessControlUnauthorizedAccount", bank.relayer, RELAYER_ROLE,
    )
    C.expect_revert(bank, C.challenge_fn(bank, batch), "TimeBankBatchAlreadyChallenged", batch_id, sender=C.address(town.stranger))
    C.relay(bank, bank.contract.functions.grantRole(RELAYER_ROLE, bank.relayer), sender=bank.city_admin)
    assert state(town)[1] is True


# ----- reasons 1 and 2: orders no station signed --------------------------------------------------------


def test_reason_1_forged_signature(town):
    bank = town.bank
    before = state(town)[0]
    good = honest_orders(town)
    bad = order(town.vol3, town.pool, 700)
    orders = [*good, bad]
    batch = C.build_batch(bank, orders, town.station1)
    batch.signatures[-1] = P.sign(batch.digests[-1], town.stranger)  # the leaf names station1; a stranger signed
    batch_id, _ = C.anchor(bank, batch)
    receipt = C.relay(bank, C.challenge_fn(bank, batch), sender=C.address(town.stranger))
    assert C.events(bank, receipt) == [
        revoked(bad.orderId, batch_id, 1),
        challenged(batch_id, bank, 1, bad.orderId),
        challenged(batch_id, bank, 3),
        role_revoked(town),
    ]
    assert state(town) == (expected(before, good), False)
    assert [bank.fns.isRevoked(o.orderId).call() for o in orders] == [False] * 4 + [True]


def test_reason_1_malformed_signature(town):
    bank = town.bank
    before = state(town)[0]
    good = honest_orders(town)[:2]
    bad = order(town.vol3, town.elder2, 50)
    batch = C.build_batch(bank, [*good, bad], town.station1)
    batch.signatures[-1] = b"\x01" * 64  # no signature at all
    batch_id, _ = C.anchor(bank, batch)
    receipt = C.relay(bank, C.challenge_fn(bank, batch), sender=C.address(town.stranger))
    assert C.events(bank, receipt) == [
        revoked(bad.orderId, batch_id, 1),
        challenged(batch_id, bank, 1, bad.orderId),
        challenged(batch_id, bank, 3),
        role_revoked(town),
    ]
    assert state(town) == (expected(before, good), False)


def test_reason_2_removed_and_foreign_stations(town):
    bank = town.bank
    removed = C.new_key()
    C.register_station(bank, C.address(removed), D1, key=town.admin1)
    before = state(town)[0]
    good = [order(town.vol1, town.elder1, 60)]
    by_removed = order(town.vol2, town.pool, 90)
    by_foreign = order(town.vol3, town.pool, 30)  # a D1 order signed by D2's station
    orders = [*good, by_removed, by_foreign]
    signed_before = P.sign(by_removed.digest(bank.separator), removed)  # signed while the station was active
    C.remove_station(bank, C.address(removed), key=town.admin1)
    batch = C.build_batch(bank, orders, [town.station1, removed, town.station2])
    assert batch.signatures[1] == signed_before
    batch_id, _ = C.anchor(bank, batch)
    receipt = C.relay(bank, C.challenge_fn(bank, batch), sender=C.address(town.stranger))
    ranked = [batch.orders[i].orderId for i in C.sorted_positions(batch)]
    faulty = [oid for oid in ranked if oid in (by_removed.orderId, by_foreign.orderId)]
    want = []
    for oid in faulty:
        want += [revoked(oid, batch_id, 2), challenged(batch_id, bank, 2, oid)]
    assert C.events(bank, receipt) == [*want, challenged(batch_id, bank, 3), role_revoked(town)]
    assert state(town) == (expected(before, good), False)
    assert [bank.fns.isRevoked(o.orderId).call() for o in orders] == [False, True, True]


def test_faulty_order_left_out_of_the_amounts_is_still_revoked(town):
    """A forged order whose minutes the relayer did not move: a fault (reason 1), no amounts to correct."""
    bank = town.bank
    good = honest_orders(town)
    bad = order(town.vol3, town.pool, 700)
    batch = C.build_batch(bank, [*good, bad], town.station1, deltas=C.pack_deltas(bank, C.account_deltas(good)))
    batch.signatures[-1] = P.sign(batch.digests[-1], town.stranger)
    batch_id, _ = C.anchor(bank, batch)
    before = state(town)[0]
    receipt = C.relay(bank, C.challenge_fn(bank, batch), sender=C.address(town.stranger))
    assert C.events(bank, receipt) == [
        revoked(bad.orderId, batch_id, 1),
        challenged(batch_id, bank, 1, bad.orderId),
        role_revoked(town),
    ]
    assert state(town) == (before, False)
    assert bank.fns.isRevoked(bad.orderId).call()


def test_order_revoked_by_its_administrator_before_is_not_reversed_twice(town):
    bank = town.bank
    before = state(town)[0]
    good = honest_orders(town)
    bad = order(town.vol3, town.pool, 700)
    orders = [*good, bad]
    inflated = C.account_deltas(orders)
    inflated[town.vol2][0] += 30
    batch = C.build_batch(bank, orders, town.station1, deltas=C.pack_deltas(bank, inflated))
    batch.signatures[-1] = P.sign(batch.digests[-1], town.stranger)
    batch_id, _ = C.anchor(bank, batch)
    # the administrator revokes the false order and a genuine one first: each reversed once
    C.revoke(bank, batch, 4, key=town.admin1)
    C.revoke(bank, batch, 0, key=town.admin1)
    receipt = C.relay(bank, C.challenge_fn(bank, batch), sender=C.address(town.stranger))
    # the false order is still a fault (reason 1), but not revoked or reversed again; the 30 minutes are
    assert C.events(bank, receipt) == [challenged(batch_id, bank, 1, bad.orderId), challenged(batch_id, bank, 3), role_revoked(town)]
    assert state(town) == (expected(before, good[1:]), False)


# ----- reason 4: one order anchored twice -----------------------------------------------------------------


def test_reason_4_same_order_in_two_batches(town):
    bank = town.bank
    before = state(town)[0]
    twice = order(town.vol1, town.pool, 120)
    first = C.build_batch(bank, [twice, order(town.vol2, town.elder1, 30)], town.station1)
    C.anchor(bank, first)
    second = C.build_batch(bank, [order(town.vol3, town.elder2, 40), twice], town.station1)
    C.anchor(bank, second)
    assert C.balances(bank, [town.vol1])[town.vol1] == (240, 240)
    stranger = C.address(town.stranger)
    # the later batch's commitment must be given; batches in the wrong order prove nothing
    C.expect_revert(bank, C.duplicate_fn(bank, first, 0, second, 1, relayer=stranger), "TimeBankCommitmentMismatch", second.batch_id, stranger, sender=stranger)
    C.expect_revert(bank, C.duplicate_fn(bank, second, 1, first, 0), "TimeBankDuplicateNotProven", second.batch_id, first.batch_id, sender=stranger)
    C.expect_revert(bank, C.duplicate_fn(bank, first, 1, second, 1), "TimeBankOrderMismatch", first.orders[1].orderId, twice.orderId, sender=stranger)
    leaf = second.leaves[1]
    C.expect_revert(bank, C.duplicate_fn(bank, first, 0, second, 1, proof_b=second.proof(0)), "TimeBankInvalidProof", second.batch_id, leaf, sender=stranger)
    receipt = C.relay(bank, C.duplicate_fn(bank, first, 0, second, 1), sender=stranger)
    assert C.events(bank, receipt) == [
        revoked(twice.orderId, first.batch_id, 4),
        revoked(twice.orderId, second.batch_id, 4),
        role_revoked(town),
        challenged(second.batch_id, bank, 4, twice.orderId),
    ]
    # every copy reversed: the order id is revoked, so no copy verifies
    assert state(town) == (expected(before, [first.orders[1], second.orders[0]]), False)
    assert bank.fns.isRevoked(twice.orderId).call()
    C.relay(bank, bank.contract.functions.grantRole(RELAYER_ROLE, bank.relayer), sender=bank.city_admin)
    C.expect_revert(bank, C.duplicate_fn(bank, first, 0, second, 1), "TimeBankNothingToReverse", twice.orderId, sender=stranger)


def test_reason_4_revoked_copy_not_reversed_twice(town):
    bank = town.bank
    before = state(town)[0]
    twice = order(town.vol1, town.pool, 120)
    first = C.build_batch(bank, [twice], town.station1)
    C.anchor(bank, first)
    second = C.build_batch(bank, [twice, order(town.vol2, town.elder1, 10)], town.station1)
    C.anchor(bank, second)
    C.revoke(bank, first, 0, key=town.admin1)  # the administrator reversed the first copy
    receipt = C.relay(bank, C.duplicate_fn(bank, first, 0, second, 0), sender=C.address(town.stranger))
    assert C.events(bank, receipt) == [
        revoked(twice.orderId, second.batch_id, 4),
        role_revoked(town),
        challenged(second.batch_id, bank, 4, twice.orderId),
    ]
    assert state(town) == (expected(before, [second.orders[1]]), False)


def test_reason_4_same_id_other_content(town):
    """The relayer anchors a made-up order reusing a genuine order's id (the v1.1 attack on RevokeOrder)."""
    bank = town.bank
    before = state(town)[0]
    genuine = order(town.vol1, town.elder1, 60)
    made_up = order(town.vol2, town.pool, 400, order_id=genuine.orderId)
    batch = C.build_batch(bank, [genuine, made_up], town.station1)
    C.anchor(bank, batch)
    receipt = C.relay(bank, C.duplicate_fn(bank, batch, 0, batch, 1), sender=C.address(town.stranger))
    assert C.events(bank, receipt) == [
        revoked(genuine.orderId, batch.batch_id, 4),
        revoked(genuine.orderId, batch.batch_id, 4),
        role_revoked(town),
        challenged(batch.batch_id, bank, 4, genuine.orderId),
    ]
    assert state(town) == (before, False)


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_reason_4_twice_in_one_batch(town, size):
    """The same leaf twice in one batch: two positions, proven by two different proofs or, when the two
    copies are siblings, by a proof whose first element is the leaf itself."""
    bank = town.bank
    before = state(town)[0]
    twice = order(town.vol1, town.pool, 120)
    others = [order(town.vol2, town.elder1, 10 + k) for k in range(size - 2)]
    batch = C.build_batch(bank, [twice, *others, twice], town.station1)
    C.anchor(bank, batch)
    assert C.balances(bank, [town.vol1])[town.vol1] == (240, 240)
    stranger = C.address(town.stranger)
    # one position given twice proves nothing (unless the copies are siblings, where the proof shows both)
    p0, p1 = batch.proof(0), batch.proof(size - 1)
    siblings = p0[0] == batch.leaves[0]
    if not siblings:
        C.expect_revert(bank, C.duplicate_fn(bank, batch, 0, batch, 0), "TimeBankDuplicateNotProven", batch.batch_id, batch.batch_id, sender=stranger)
    else:
        assert p0 == p1
    receipt = C.relay(bank, C.duplicate_fn(bank, batch, 0, batch, size - 1), sender=stranger)
    assert C.events(bank, receipt) == [
        revoked(twice.orderId, batch.batch_id, 4),
        revoked(twice.orderId, batch.batch_id, 4),
        role_revoked(town),
        challenged(batch.batch_id, bank, 4, twice.orderId),
    ]
    assert state(town) == (expected(before, others), False)


# ----- the tree the contract builds: OpenZeppelin's StandardMerkleTree -------------------------------------

SIZES = [*range(1, 34), 64, 100, 255, 256, 257, 511, 1000, 1024]


def test_on_chain_tree_matches_openzeppelin_merkle_tree(town):
    """`standardMerkleRoot` (the build challengeBatch uses) against `@openzeppelin/merkle-tree` in node,
    for random `[digest, station]` leaves of sizes 1 to 1,024, odd ones among them."""
    bank = town.bank
    rng = random.Random(9)
    cases = []
    for n in SIZES:
        values = [["0x" + rng.randbytes(32).hex(), "0x" + rng.randbytes(20).hex()] for _ in range(n)]
        cases.append(values)
    script = ROOT / "tests" / "node" / "standard_roots.mjs"
    out = subprocess.run(
        ["node", str(script)], input=json.dumps(cases), capture_output=True, text=True, check=True, cwd=ROOT, timeout=120
    )
    roots = json.loads(out.stdout)
    assert len(roots) == len(SIZES)
    for values, root in zip(cases, roots):
        leaves = sorted(P.leaf(bytes.fromhex(d[2:]), bytes.fromhex(s[2:])) for d, s in values)
        assert P.MerkleTree(leaves).root.hex() == root[2:]
        assert bank.fns.standardMerkleRoot(leaves).call() == bytes.fromhex(root[2:]), f"{len(values)} leaves"
    C.expect_revert(bank, bank.fns.standardMerkleRoot([b"\x02" * 32, b"\x01" * 32]), "TimeBankLeavesNotSorted", 1, mine=False)
    C.expect_revert(bank, bank.fns.standardMerkleRoot([]), "TimeBankEmptyBatch", mine=False)
