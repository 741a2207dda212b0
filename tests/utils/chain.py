"""Contract test helpers: sign administrative commands, relay calls, assert exact custom errors and
events, register districts/stations/accounts, and build and anchor batches of service orders.

Conventions: addresses are EIP-55 strings (as web3 returns them), bytes32 values are ``bytes``, private
keys are 32 ``bytes``. Signing and hashing go through ``api.protocol`` only, so these tests check the
contract against the same code the service and the verifier use.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError

from api import protocol as P

#: The contract function that executes each command of PROTOCOL.md section 4.
COMMAND_FUNCTIONS = P.COMMAND_FUNCTIONS

KIND_VOLUNTEER, KIND_RECIPIENT, KIND_GROUP, KIND_POOL = 1, 2, 3, 4
ACTIVE, FROZEN, CANCELLED = 1, 2, 3
TRANSFER = P.TRANSFER_SERVICE_TYPE
#: Gas given to transactions that are expected to revert (so that no estimate is made first).
REVERT_GAS = 5_000_000


# ----- keys, ids ----------------------------------------------------------------------------------


def key_bytes(key: bytes | str) -> bytes:
    return key if isinstance(key, bytes) else bytes.fromhex(key.removeprefix("0x"))


def address(key: bytes | str) -> str:
    """The EIP-55 address of a private key."""
    return to_checksum_address(P.address_of(key_bytes(key)))


def addr_bytes(addr: str | bytes) -> bytes:
    return addr if isinstance(addr, bytes) else bytes.fromhex(addr.removeprefix("0x"))


def new_key() -> bytes:
    """A fresh private key (stations, auditors, district admins that never send a transaction)."""
    return secrets.token_bytes(32)


def new_nonce() -> int:
    return secrets.randbits(63)


def new_account_id() -> bytes:
    return P.account_id(f"NJ-TEST-{secrets.token_hex(8)}")


# ----- the deployed contract ----------------------------------------------------------------------


@dataclass
class Bank:
    """The deployed TimeBank with who may sign and who relays."""

    w3: Web3
    contract: Contract
    city_key: bytes
    relayer: str

    @functools.cached_property
    def separator(self) -> bytes:
        return P.domain_separator(self.w3.eth.chain_id, self.contract.address)

    @property
    def city_admin(self) -> str:
        return address(self.city_key)

    @property
    def fns(self):
        return self.contract.functions


# ----- values as the ABI takes them ---------------------------------------------------------------


def _abi_value(kind: str, value: Any) -> Any:
    if kind == "address":
        return to_checksum_address(value)
    if kind == "bytes32":
        return addr_bytes(value)
    return value


def struct_args(name: str, message: dict[str, Any]) -> tuple:
    """`message` as the contract's ABI tuple for struct `name` (fields in type-string order)."""
    return tuple(_abi_value(kind, message[field]) for field, kind in P.TYPES[name])


# ----- commands -----------------------------------------------------------------------------------


def sign_command(bank: Bank, name: str, message: dict[str, Any], key: bytes) -> bytes:
    """The administrator's EIP-712 signature of a command, made with api.protocol."""
    return P.sign(P.typed_digest(bank.separator, name, message), key_bytes(key))


def command_fn(bank: Bank, name: str, message: dict[str, Any], signature: bytes, *extra: Any) -> ContractFunction:
    """The contract call that executes a signed command (`extra`: revokeOrder's order, station, batch, proof)."""
    return bank.fns[COMMAND_FUNCTIONS[name]](struct_args(name, message), signature, *extra)


def relay(bank: Bank, fn: ContractFunction, sender: str | None = None, gas: int | None = None):
    """Send `fn` as a transaction (from the relayer unless told); return the receipt, which must succeed."""
    tx: dict[str, Any] = {"from": sender or bank.relayer}
    if gas is not None:
        tx["gas"] = gas
    receipt = bank.w3.eth.wait_for_transaction_receipt(fn.transact(tx))
    assert receipt["status"] == 1, f"{fn.fn_name} failed: {receipt}"
    return receipt


def send_command(bank: Bank, name: str, message: dict[str, Any], key: bytes, *extra: Any, sender: str | None = None):
    """Sign `message` with `key` and relay it; the receipt."""
    return relay(bank, command_fn(bank, name, message, sign_command(bank, name, message, key), *extra), sender)


# ----- reverts ------------------------------------------------------------------------------------


_ERROR_TABLES: dict[int, tuple[list[dict], dict[bytes, tuple[str, list[str]]]]] = {}


def _error_table(abi: list[dict]) -> dict[bytes, tuple[str, list[str]]]:
    """{selector: (error name, argument types)} of the ABI's custom errors."""
    cached = _ERROR_TABLES.get(id(abi))
    if cached is not None and cached[0] is abi:
        return cached[1]
    table = {}
    for entry in abi:
        if entry.get("type") == "error":
            types = [_canonical_type(i) for i in entry["inputs"]]
            table[keccak(text=f"{entry['name']}({','.join(types)})")[:4]] = (entry["name"], types)
    _ERROR_TABLES[id(abi)] = (abi, table)  # keeps `abi` alive, so its id is not reused
    return table


def _canonical_type(param: dict) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return param["type"]


def _normalise(kind: str, value: Any) -> Any:
    if kind == "address":
        return to_checksum_address(value)
    if kind.startswith("bytes") and kind != "bytes":
        return addr_bytes(value)
    return value


def decode_error(abi: list[dict], data: bytes | str) -> tuple[str, tuple]:
    """(error name, args) of revert data, by the ABI's error selectors. Unknown selectors raise."""
    raw = addr_bytes(data)
    table = _error_table(abi)
    if len(raw) < 4 or raw[:4] not in table:
        raise AssertionError(f"revert data {raw.hex() or '(empty)'} is no custom error of the ABI")
    name, types = table[raw[:4]]
    values = abi_decode(types, raw[4:])
    return name, tuple(_normalise(t, v) for t, v in zip(types, values))


def revert_data(bank: Bank, fn: ContractFunction, sender: str | None = None) -> bytes:
    """The revert data of `fn` called as `sender`; fails if the call does not revert."""
    try:
        fn.call({"from": sender or bank.relayer})
    except ContractLogicError as exc:
        data = exc.data
        if isinstance(data, dict):
            data = data.get("data", "")
        return addr_bytes(data or "0x")
    raise AssertionError(f"{fn.fn_name} did not revert")


def expect_revert(
    bank: Bank, fn: ContractFunction, error: str, *args: Any, sender: str | None = None, mine: bool = True
):
    """Assert that `fn`, called as `sender` (the relayer by default), reverts with exactly custom error
    `error(args)`. With `mine`, the transaction is also sent and mined, and its receipt must show the
    failure; that receipt is returned (so a test can check that the failed transaction changed nothing)."""
    got_name, got_args = decode_error(bank.contract.abi, revert_data(bank, fn, sender))
    types = next(
        [_canonical_type(i) for i in e["inputs"]]
        for e in bank.contract.abi
        if e.get("type") == "error" and e["name"] == error
    )
    assert len(args) == len(types), f"{error} takes {len(types)} arguments, test gave {len(args)}"
    want = tuple(_normalise(t, a) for t, a in zip(types, args))
    assert (got_name, got_args) == (error, want), f"reverted with {got_name}{got_args}, want {error}{want}"
    if not mine:
        return None
    tx_hash = fn.transact({"from": sender or bank.relayer, "gas": REVERT_GAS})
    receipt = bank.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 0, f"{fn.fn_name} was mined successfully, but its call reverted"
    assert receipt["logs"] == [], "a failed transaction left logs"
    return receipt


# ----- events -------------------------------------------------------------------------------------


def events(bank: Bank, receipt) -> list[tuple[str, dict[str, Any]]]:
    """Every event the contract emitted in `receipt`, in order, as (name, {arg: value})."""
    topics = {}
    for entry in bank.contract.abi:
        if entry.get("type") == "event":
            signature = f"{entry['name']}({','.join(_canonical_type(i) for i in entry['inputs'])})"
            topics[keccak(text=signature)] = entry["name"]
    out = []
    for log in receipt["logs"]:
        if log["address"] != bank.contract.address:
            continue
        name = topics[bytes(log["topics"][0])]
        decoded = bank.contract.events[name]().process_log(log)
        out.append((name, {k: (bytes(v) if isinstance(v, bytes) else v) for k, v in decoded["args"].items()}))
    return out


def nonce_event(signer: str, nonce: int) -> tuple[str, dict[str, Any]]:
    return ("NonceUsed", {"signer": to_checksum_address(signer), "nonce": nonce})


# ----- views --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountView:
    district: int
    kind: int
    status: int
    balance: int
    earned: int


def get_account(bank: Bank, account: bytes) -> AccountView:
    return AccountView(*bank.fns.getAccount(account).call())


def balances(bank: Bank, accounts: Iterable[bytes]) -> dict[bytes, tuple[int, int]]:
    """{account: (balance, earned)}."""
    out = {}
    for a in accounts:
        view = get_account(bank, a)
        out[a] = (view.balance, view.earned)
    return out


VERIFICATION_FIELDS = ("digest", "signer", "signedByStation", "included", "stationActive", "revoked", "valid")


def verify_order(bank: Bank, order: P.ServiceOrder, signature: bytes, station: str, batch_id: int, proof) -> dict:
    result = bank.fns.verifyOrder(order.as_tuple(), signature, station, batch_id, list(proof)).call()
    return dict(zip(VERIFICATION_FIELDS, result))


# ----- registration -------------------------------------------------------------------------------


def register_district(bank: Bank, district: int, admin: str, *, key: bytes | None = None, nonce: int | None = None):
    message = {"district": district, "admin": admin, "nonce": new_nonce() if nonce is None else nonce}
    return send_command(bank, "RegisterDistrict", message, key or bank.city_key)


def register_station(bank: Bank, station: str, district: int, *, key: bytes | None = None, nonce: int | None = None):
    message = {"station": station, "district": district, "nonce": new_nonce() if nonce is None else nonce}
    return send_command(bank, "RegisterStation", message, key or bank.city_key)


def remove_station(bank: Bank, station: str, *, key: bytes | None = None, nonce: int | None = None):
    message = {"station": station, "nonce": new_nonce() if nonce is None else nonce}
    return send_command(bank, "RemoveStation", message, key or bank.city_key)


def register_account(
    bank: Bank,
    account: bytes,
    district: int,
    kind: int = KIND_VOLUNTEER,
    *,
    key: bytes | None = None,
    nonce: int | None = None,
):
    message = {"account": account, "district": district, "kind": kind, "nonce": new_nonce() if nonce is None else nonce}
    return send_command(bank, "RegisterAccount", message, key or bank.city_key)


def set_status(
    bank: Bank, account: bytes, status: int, *, reason: int = 1, key: bytes | None = None, nonce: int | None = None
):
    message = {"account": account, "status": status, "reason": reason, "nonce": new_nonce() if nonce is None else nonce}
    return send_command(bank, "SetAccountStatus", message, key or bank.city_key)


def grant(
    bank: Bank, account: bytes, minutes: int, *, reason: int = 1, key: bytes | None = None, nonce: int | None = None
):
    message = {
        "account": account,
        "minutes": minutes,
        "reason": reason,
        "nonce": new_nonce() if nonce is None else nonce,
    }
    return send_command(bank, "Grant", message, key or bank.city_key)


def register_auditor(bank: Bank, auditor: str, district: int, *, key: bytes | None = None, nonce: int | None = None):
    message = {"auditor": auditor, "district": district, "nonce": new_nonce() if nonce is None else nonce}
    return send_command(bank, "RegisterAuditor", message, key or bank.city_key)


# ----- orders and batches -------------------------------------------------------------------------


def make_order(
    *,
    district: int,
    volunteer: bytes,
    payer: bytes,
    minutes: int,
    service_type: int = 1,
    recipient: bytes | None = None,
    order_id: bytes | None = None,
    start: int = 1_750_000_000,
) -> P.ServiceOrder:
    return P.ServiceOrder(
        orderId=order_id or secrets.token_bytes(32),
        district=district,
        volunteer=volunteer,
        payer=payer,
        recipient=recipient or payer,
        serviceType=service_type,
        startTime=start,
        endTime=start + 60 * minutes,
        minutes=minutes,
        detailsHash=secrets.token_bytes(32),
    )


def account_deltas(orders: Iterable[P.ServiceOrder]) -> dict[bytes, list[int]]:
    """{account: [earned, received, spent]}, accounts in order of first appearance: a service order
    credits `earned` to the volunteer, a transfer (service type 100) credits `received`; the payer is
    debited `spent`."""
    totals: dict[bytes, list[int]] = {}
    for o in orders:
        credit = totals.setdefault(o.volunteer, [0, 0, 0])
        credit[1 if o.serviceType == TRANSFER else 0] += o.minutes
        totals.setdefault(o.payer, [0, 0, 0])[2] += o.minutes
    return totals


def account_index(bank: Bank, account: bytes) -> int:
    """The account's index in canonical deltas (0: not registered)."""
    return bank.fns.accountIndex(account).call()


def pack_deltas(bank: Bank, totals: dict[bytes, Sequence[int]]) -> bytes:
    """Canonical deltas (PROTOCOL.md section 9) of per-account totals, indices read from the contract:
    16 bytes per account, index ‖ earned ‖ received ‖ spent (uint32 each), ascending by index."""
    return P.canonical_deltas({a: tuple(v) for a, v in totals.items()}, lambda a: account_index(bank, a))


def raw_entry(index: int, earned: int = 0, received: int = 0, spent: int = 0) -> bytes:
    """One 16-byte delta entry as given, canonical or not (for refusal tests)."""
    return b"".join(v.to_bytes(4, "big") for v in (index, earned, received, spent))


@dataclass
class Batch:
    orders: list[P.ServiceOrder]
    stations: list[str]
    signatures: list[bytes]
    digests: list[bytes]
    leaves: list[bytes]
    tree: P.MerkleTree
    deltas: bytes
    batch_id: int | None = field(default=None)

    @property
    def root(self) -> bytes:
        return self.tree.root

    @property
    def count(self) -> int:
        return len(self.orders)

    def proof(self, index: int) -> list[bytes]:
        return self.tree.proof(index)


def build_batch(
    bank: Bank, orders: Sequence[P.ServiceOrder], station_keys: bytes | Sequence[bytes], deltas: bytes | None = None
) -> Batch:
    """Sign each order with its station's key (one key for all, or one per order), build the standard
    Merkle tree over `[digest, station]` leaves and pack the per-account deltas (unless given)."""
    keys = [station_keys] * len(orders) if isinstance(station_keys, bytes) else list(station_keys)
    assert len(keys) == len(orders)
    digests = [o.digest(bank.separator) for o in orders]
    stations = [address(k) for k in keys]
    signatures = [P.sign(d, k) for d, k in zip(digests, keys)]
    leaves = [P.leaf(d, addr_bytes(s)) for d, s in zip(digests, stations)]
    return Batch(
        orders=list(orders),
        stations=stations,
        signatures=signatures,
        digests=digests,
        leaves=leaves,
        tree=P.MerkleTree(leaves),
        deltas=pack_deltas(bank, account_deltas(orders)) if deltas is None else deltas,
    )


def anchor_fn(bank: Bank, batch: Batch) -> ContractFunction:
    return bank.fns.anchorBatch(batch.root, batch.count, batch.deltas)


def anchor(bank: Bank, batch: Batch, sender: str | None = None):
    """Anchor `batch` as the relayer; sets and returns `batch.batch_id` with the receipt."""
    receipt = relay(bank, anchor_fn(bank, batch), sender)
    anchored = [args for name, args in events(bank, receipt) if name == "BatchAnchored"]
    assert len(anchored) == 1
    batch.batch_id = anchored[0]["batchId"]
    return batch.batch_id, receipt


# ----- revocation ---------------------------------------------------------------------------------


def revoke_fn(
    bank: Bank,
    batch: Batch,
    index: int,
    *,
    key: bytes | None = None,
    reason: int = 1,
    nonce: int | None = None,
    order: P.ServiceOrder | None = None,
    order_id: bytes | None = None,
    station: str | None = None,
    batch_id: int | None = None,
    proof: Sequence[bytes] | None = None,
    digest: bytes | None = None,
) -> ContractFunction:
    """revokeOrder for order `index` of `batch`; every part may be overridden to forge a bad call. The
    command's digest is the (possibly overridden) order's, unless given."""
    order = order or batch.orders[index]
    message = {
        "orderId": order_id or order.orderId,
        "digest": digest or order.digest(bank.separator),
        "reason": reason,
        "nonce": new_nonce() if nonce is None else nonce,
    }
    signature = sign_command(bank, "RevokeOrder", message, key or bank.city_key)
    return command_fn(
        bank,
        "RevokeOrder",
        message,
        signature,
        order.as_tuple(),
        station or batch.stations[index],
        batch.batch_id if batch_id is None else batch_id,
        list(batch.proof(index) if proof is None else proof),
    )


def revoke(bank: Bank, batch: Batch, index: int, **kwargs: Any):
    return relay(bank, revoke_fn(bank, batch, index, **kwargs))


# ----- challenges (PROTOCOL.md section 9) ---------------------------------------------------------


def sorted_positions(batch: Batch) -> list[int]:
    """The batch's order positions in ascending order of leaf hash (the order challengeBatch takes)."""
    return sorted(range(batch.count), key=lambda i: batch.leaves[i])


def challenge_fn(
    bank: Bank,
    batch: Batch,
    *,
    relayer: str | None = None,
    deltas: bytes | None = None,
    orders: Sequence[P.ServiceOrder] | None = None,
    stations: Sequence[str] | None = None,
    signatures: Sequence[bytes] | None = None,
    batch_id: int | None = None,
) -> ContractFunction:
    """challengeBatch of `batch` with its own orders sorted by leaf; every part may be overridden."""
    order = sorted_positions(batch)
    return bank.fns.challengeBatch(
        batch.batch_id if batch_id is None else batch_id,
        relayer or bank.relayer,
        batch.deltas if deltas is None else deltas,
        [o.as_tuple() for o in (orders if orders is not None else [batch.orders[i] for i in order])],
        list(stations if stations is not None else [batch.stations[i] for i in order]),
        list(signatures if signatures is not None else [batch.signatures[i] for i in order]),
    )


def duplicate_fn(
    bank: Bank,
    batch_a: Batch,
    index_a: int,
    batch_b: Batch,
    index_b: int,
    *,
    relayer: str | None = None,
    deltas: bytes | None = None,
    proof_a: Sequence[bytes] | None = None,
    proof_b: Sequence[bytes] | None = None,
) -> ContractFunction:
    """challengeDuplicate of order `index_a` of `batch_a` and order `index_b` of `batch_b`."""
    return bank.fns.challengeDuplicate(
        batch_a.batch_id,
        batch_a.orders[index_a].as_tuple(),
        batch_a.stations[index_a],
        list(batch_a.proof(index_a) if proof_a is None else proof_a),
        batch_b.batch_id,
        batch_b.orders[index_b].as_tuple(),
        batch_b.stations[index_b],
        list(batch_b.proof(index_b) if proof_b is None else proof_b),
        relayer or bank.relayer,
        batch_b.deltas if deltas is None else deltas,
    )
