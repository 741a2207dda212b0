"""The service's follower and challenges (PROTOCOL.md section 9): a relayer of another service sharing the
contract anchors a batch whose amounts no order backs; the follower applies it as the chain did, and once
anyone challenges the batch it takes the balances back from the chain, so the service shows what the chain
holds. Runs against the service's own Anvil and contract."""

from __future__ import annotations

from web3 import Web3

from api import protocol as P
from tests.utils import chain as C
from tests.utils.api import CITY_KEY, wait_for
from tests.utils.api_world import DISTRICT

RELAYER_ROLE = Web3.keccak(text="RELAYER_ROLE")


def account_view(api, account: str) -> tuple[int, int]:
    view = api.client.get(f"/v1/accounts/{account}").json()
    return view["balanceMinutes"], view["earnedMinutes"]


def test_follower_takes_a_challenge_s_balances_from_the_chain(api, world, api_anvil_url, api_contract, artifact, keys):
    w3 = Web3(Web3.HTTPProvider(api_anvil_url, request_kwargs={"timeout": 30}))
    cheat = keys.others[5].address  # another service's relayer, which cheats
    bank = C.Bank(w3, w3.eth.contract(address=api_contract, abi=artifact["abi"]), CITY_KEY, cheat)
    C.relay(bank, bank.fns.grantRole(RELAYER_ROLE, cheat), sender=bank.city_admin)
    volunteer, elder = world.new_account(1), world.new_account(2, grant=600)
    accounts = [bytes.fromhex(volunteer[2:]), bytes.fromhex(elder[2:])]
    orders = [C.make_order(district=DISTRICT, volunteer=accounts[0], payer=accounts[1], minutes=60)]
    forged = C.account_deltas(orders)
    forged[accounts[0]][0] += 100_000
    batch = C.build_batch(bank, orders, world.terminal.key, deltas=C.pack_deltas(bank, forged))
    C.anchor(bank, batch)
    wait_for(lambda: account_view(api, volunteer) == (100_060, 100_060))
    C.relay(bank, C.challenge_fn(bank, batch), sender=keys.others[6].address)
    assert C.balances(bank, accounts)[accounts[0]] == (60, 60)
    wait_for(lambda: account_view(api, volunteer) == (60, 60))
    assert account_view(api, elder) == (540, 0)
    assert bank.fns.hasRole(RELAYER_ROLE, cheat).call() is False
    assert api.client.get("/v1/health").status_code == 200  # the service follows on
    assert P.unpack_deltas(batch.deltas)
