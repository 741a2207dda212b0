"""Properties of the ledger over random sequences of grants, batches and revocations (hypothesis),
checked against a plain Python model after every step, on Anvil with the compiled contract:

- minutes are conserved: the sum of all balances equals the minutes granted;
- an account's earned minutes never exceed the service minutes credited to it;
- every balance and earned total is exactly the model's, and a batch that must overdraw reverts whole
  with the exact TimeBankInsufficientBalance the model predicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.utils import chain as C
from tests.utils.town import D1, ELDER_GRANT, POOL_GRANT

PLAYERS = 5  # vol1, vol2, vol3, elder1, elder2

order_spec = st.tuples(
    st.integers(0, PLAYERS - 1),  # volunteer
    st.integers(0, PLAYERS - 1),  # payer
    st.integers(1, 400),  # minutes
    st.booleans(),  # a transfer?
)
step = st.one_of(
    st.tuples(st.just("grant"), st.integers(0, PLAYERS - 1), st.integers(1, 500)),
    st.tuples(st.just("batch"), st.lists(order_spec, min_size=1, max_size=6)),
    st.tuples(st.just("revoke"), st.integers(0, 1_000)),
)


@dataclass
class Model:
    balance: dict[bytes, int]
    earned: dict[bytes, int]
    credited: dict[bytes, int] = field(default_factory=dict)  # service minutes ever credited
    granted: int = 0
    live: list[tuple[C.Batch, int]] = field(default_factory=list)  # anchored, not revoked

    def expected_failure(self, deltas: dict[bytes, list[int]]):
        """The TimeBankInsufficientBalance args the contract must revert with, or None."""
        balance = dict(self.balance)
        for account, (earned, received, spent) in deltas.items():
            available = balance[account] + earned + received
            if spent and available < spent:
                return account, available, spent
            balance[account] = available - spent
        return None

    def apply(self, deltas: dict[bytes, list[int]]) -> None:
        for account, (earned, received, spent) in deltas.items():
            self.balance[account] += earned + received - spent
            self.earned[account] += earned
            self.credited[account] = self.credited.get(account, 0) + earned

    def revoke(self, order) -> None:
        self.balance[order.volunteer] -= order.minutes
        if order.serviceType != C.TRANSFER:
            self.earned[order.volunteer] = max(0, self.earned[order.volunteer] - order.minutes)
        self.balance[order.payer] += order.minutes


def check(bank, town, model: Model) -> None:
    on_chain = C.balances(bank, town.accounts)
    assert sum(b for b, _ in on_chain.values()) == model.granted, "minutes were created or destroyed"
    for account, (balance, earned) in on_chain.items():
        assert earned <= model.credited.get(account, 0), "earned more than was credited"
        assert (balance, earned) == (model.balance[account], model.earned[account])


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=10))
def test_random_ledger_sequences(w3, town_setup, steps):
    town = town_setup
    bank = town.bank
    players = [town.vol1, town.vol2, town.vol3, town.elder1, town.elder2]
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        start = C.balances(bank, town.accounts)
        model = Model(
            balance={a: b for a, (b, _) in start.items()},
            earned={a: e for a, (_, e) in start.items()},
            granted=2 * ELDER_GRANT + POOL_GRANT,
        )
        check(bank, town, model)
        for kind, *args in steps:
            if kind == "grant":
                account, minutes = players[args[0]], args[1]
                C.grant(bank, account, minutes, key=town.admin1)
                model.balance[account] += minutes
                model.granted += minutes
            elif kind == "batch":
                orders = [
                    C.make_order(
                        district=D1,
                        volunteer=players[v],
                        payer=players[p],
                        minutes=m,
                        service_type=C.TRANSFER if transfer else 1 + m % 9,
                    )
                    for v, p, m, transfer in args[0]
                ]
                batch = C.build_batch(bank, orders, town.station1)
                # the contract applies canonical deltas in ascending order of account index
                deltas = dict(sorted(C.account_deltas(orders).items(), key=lambda kv: C.account_index(bank, kv[0])))
                failure = model.expected_failure(deltas)
                event("batch refused for overdraft" if failure else "batch anchored")
                if failure is None:
                    C.anchor(bank, batch)
                    model.apply(deltas)
                    model.live.extend((batch, i) for i in range(batch.count))
                else:
                    count = bank.fns.batchCount().call()
                    C.expect_revert(bank, C.anchor_fn(bank, batch), "TimeBankInsufficientBalance", *failure, mine=False)
                    assert bank.fns.batchCount().call() == count
            elif model.live:
                batch, index = model.live.pop(args[0] % len(model.live))
                C.revoke(bank, batch, index, key=town.admin1)
                event("order revoked")
                model.revoke(batch.orders[index])
            check(bank, town, model)
    finally:
        assert w3.provider.make_request("evm_revert", [snapshot]).get("result") is True


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_every_leaf_of_a_batch_verifies_on_chain(town, size):
    """The protocol's standard Merkle tree and proofs are what the contract's MerkleProof accepts, for
    trees of any shape."""
    bank = town.bank
    orders = [C.make_order(district=D1, volunteer=town.vol1, payer=town.pool, minutes=1 + i) for i in range(size)]
    batch = C.build_batch(bank, orders, town.station1)
    C.anchor(bank, batch)
    for i in range(size):
        result = C.verify_order(bank, orders[i], batch.signatures[i], batch.stations[i], batch.batch_id, batch.proof(i))
        assert result["valid"], (size, i, result)
