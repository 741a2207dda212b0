"""The chain connector: the only module of the service that imports web3. It speaks in the service's
intents (anchor a batch, relay a command, read a batch, an account, a receipt, the events), decodes the
contract's custom errors and translates them once (`CONTRACT_ERRORS`), and broadcasts signed
transactions. It writes nothing: the relayer's transactions are recorded by `api/transactions.py`.

The contract's ABI is the compiled artifact's (`build/TimeBank.json`, written by `make compile`); nothing
is compiled at run time."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from eth_abi import decode as abi_decode
from eth_utils import keccak
from web3 import Web3
from web3.middleware import ExtraDataToPOAMiddleware
from web3.providers.base import JSONBaseProvider
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound, Web3RPCError

from . import protocol

log = logging.getLogger(__name__)

ARTIFACT = Path(__file__).resolve().parent.parent / "build" / "TimeBank.json"

# What an unreachable node raises through the provider (`LeanHTTPProvider` raises ConnectionError).
CONNECTION_ERRORS = (ConnectionError, OSError, TimeoutError)


class ChainUnavailable(Exception):
    pass


class LeanHTTPProvider(JSONBaseProvider):
    """JSON-RPC over HTTP/1.1 keep-alive with the standard library's `http.client`, one connection per
    thread. web3's `HTTPProvider` (requests) spends 1.3-1.8 ms of CPU on a call here (the environment's
    proxies, certificate paths, adapters); this spends a fraction of it, taken from the GIL the order
    writer shares. A node that closed an idle connection is connected to again, once, before the request
    counts as failed; a failure after that is the caller's (`CONNECTION_ERRORS`)."""

    def __init__(self, url: str, timeout: float = 10.0):
        super().__init__()
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self.endpoint_uri = url
        self._connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._address = (parts.hostname, parts.port)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        self._local = threading.local()

    def _post(self, body: bytes) -> bytes:
        for attempt in (0, 1):
            connection = getattr(self._local, "connection", None)
            reused = connection is not None
            if connection is None:
                connection = self._local.connection = self._connection_class(*self._address, timeout=self._timeout)
            try:
                connection.request("POST", self._target, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                connection.close()
                self._local.connection = None
                if reused and attempt == 0:  # the node closed the idle connection: a new one, once
                    continue
                raise ConnectionError(str(exc)) from exc
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self._local.connection = None
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
            if response.status != 200:
                raise ConnectionError(f"the node answered HTTP {response.status}")
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                self._local.connection = None
            return raw
        raise AssertionError("unreachable")

    def make_request(self, method, params):
        return self.decode_rpc_response(self._post(self.encode_rpc_request(method, params)))


class BroadcastRefused(Exception):
    """The node refused a signed transaction (funds, gas price): nothing will be mined for it."""


# The contract's custom errors, translated once into the error catalogue (api/errors.py): the code a
# refused command answers with (any error not listed: `command_refused`), and the code an accepted order
# is rejected with when the batcher finds it is the cause (None: no order's doing).
CONTRACT_ERRORS: dict[str, tuple[str, str | None]] = {
    "TimeBankUnauthorized": ("unauthorized", None),
    "TimeBankNonceUsed": ("nonce_used", None),
    "ECDSAInvalidSignature": ("bad_signature", None),
    "ECDSAInvalidSignatureS": ("bad_signature", None),
    "ECDSAInvalidSignatureLength": ("bad_signature", None),
    "TimeBankInsufficientBalance": ("command_refused", "insufficient_balance"),
    "TimeBankAccountNotActive": ("command_refused", "account_not_active"),
    "TimeBankUnknownAccount": ("command_refused", "account_not_active"),
}


class ContractRevert(Exception):
    """A call the contract refused, with its custom error decoded (`name`, `args_by_name`) and translated
    (`code`, `order_code`: CONTRACT_ERRORS)."""

    def __init__(self, name: str, args: dict[str, Any], data: str):
        super().__init__(f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})")
        self.name = name
        self.args_by_name = args
        self.data = data

    @property
    def code(self) -> str:
        return CONTRACT_ERRORS.get(self.name, ("command_refused", None))[0]

    @property
    def order_code(self) -> str | None:
        return CONTRACT_ERRORS.get(self.name, ("command_refused", None))[1]


def load_abi() -> list[dict]:
    """The ABI of the compiled contract (`make compile` writes it)."""
    if not ARTIFACT.exists():
        raise RuntimeError(f"{ARTIFACT} is missing: compile the contract first (make compile)")
    return json.loads(ARTIFACT.read_text())["abi"]


class Call:
    """A contract call made ready by the connector (`anchor_batch`, `command`): simulated with
    `Chain.simulate`, signed through `Chain.transaction`. Opaque to the rest of the service."""

    def __init__(self, fn: Any, description: str):
        self._fn = fn
        self.description = description

    def __repr__(self) -> str:
        return f"Call({self.description})"


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value.lower() if isinstance(value, str) else value


@dataclass(frozen=True)
class OrderVerification:
    """What the contract's `verifyOrder` view found (ITimeBank.OrderVerification), check by check."""

    digest: str
    signer: str
    signed_by_station: bool
    included: bool
    station_active: bool
    revoked: bool
    valid: bool


@dataclass(frozen=True)
class ChainBatch:
    """`getBatch(batchId)`: all zero for an unknown id."""

    root: str
    count: int
    anchored_at_block: int


@dataclass(frozen=True)
class ChainAccount:
    district: int
    kind: int
    status: int
    balance: int
    earned: int


def rpc_urls(rpc_url: str) -> list[str]:
    """The nodes of `TIMEBANK_RPC_URL`: one URL, or several separated by commas, preferred first."""
    urls = [u.strip() for u in rpc_url.split(",") if u.strip()]
    if not urls:
        raise ValueError("no RPC URL given")
    return urls


class FailoverProvider(JSONBaseProvider):
    """JSON-RPC over several nodes of the same chain, in the order given. A request goes to the first node
    that answers; a node that did not answer (refused, reset, timed out, an HTTP error) is tried last for
    the next `retry_after` seconds, then first again, so the service returns to a preferred node once it
    is back. A node coming back is used only once it has caught up (its head at most `max_lag` blocks
    behind the highest head seen), so the service never reads an older chain than it already saw. Reads
    and sends alike: a signed transaction sent to two nodes has one hash, so a send that failed over is
    still one transaction."""

    def __init__(self, urls: list[str], timeout: float = 10.0, retry_after: float = 5.0, max_lag: int = 1):
        super().__init__()
        self.urls = list(urls)
        self.retry_after = retry_after
        self.max_lag = max_lag
        # no retries inside one node: the next node is the retry
        self._nodes = [LeanHTTPProvider(u, timeout) for u in urls]
        self._down_until = [0.0] * len(urls)
        self._failed = [False] * len(urls)
        self._head = 0  # the highest block number any node answered
        self.current = 0  # the node that answered last

    def _head_of(self, i: int) -> int:
        return int(self._nodes[i].make_request("eth_blockNumber", [])["result"], 16)

    def make_request(self, method, params):
        now = time.monotonic()
        order = sorted(range(len(self._nodes)), key=lambda i: (self._down_until[i] > now, i))
        failure: Exception | None = None
        for i in order:
            try:
                if self._failed[i] and self._down_until[i] <= now and i != order[-1]:
                    # back: is it up to date?
                    if (head := self._head_of(i)) < self._head - self.max_lag:
                        log.info("node %s answers again but is at block %s of %s; not used yet", self.urls[i], head, self._head)
                        self._down_until[i] = time.monotonic() + 1.0
                        continue
                response = self._nodes[i].make_request(method, params)
            except CONNECTION_ERRORS as exc:
                if not self._failed[i]:
                    log.warning("node %s does not answer (%s); trying the next", self.urls[i], type(exc).__name__)
                self._failed[i] = True
                self._down_until[i] = time.monotonic() + self.retry_after
                failure = exc
                continue
            self._failed[i] = False
            self._down_until[i] = 0.0
            if method == "eth_blockNumber" and isinstance(response.get("result"), str):
                self._head = max(self._head, int(response["result"], 16))
            if i != self.current:
                log.warning("now using node %s", self.urls[i])
                self.current = i
            return response
        if failure is None:  # every node answering is behind: the least bad is the one that answered last
            return self._nodes[self.current].make_request(method, params)
        raise failure

    def is_connected(self, show_traceback: bool = False) -> bool:
        return any(node.is_connected(show_traceback) for node in self._nodes)


class Chain:
    def __init__(self, rpc_url: str, contract_address: str | None = None, timeout: float = 10.0):
        urls = rpc_urls(rpc_url)
        if len(urls) == 1:
            self.w3 = Web3(LeanHTTPProvider(urls[0], timeout))
        else:
            self.w3 = Web3(FailoverProvider(urls, timeout))
        # proof-of-authority chains (Clique, QBFT) carry the signers' seals in a longer `extraData`
        self.w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        self.abi = load_abi()
        self.address = Web3.to_checksum_address(contract_address) if contract_address else None
        self.contract = self.w3.eth.contract(address=self.address, abi=self.abi) if self.address else None
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        self._chain_id: int | None = None
        for item in self.abi:
            if item["type"] == "error":
                types = [i["type"] for i in item["inputs"]]
                signature = f"{item['name']}({','.join(types)})"
                self._errors[keccak(text=signature)[:4]] = (item["name"], [i["name"] for i in item["inputs"]], types)
        self._events = {}
        for item in self.abi:
            if item["type"] == "event":
                types = ",".join(i["type"] for i in item["inputs"])
                self._events["0x" + keccak(text=f"{item['name']}({types})").hex()] = item["name"]

    def bind(self, contract_address: str) -> None:
        self.address = Web3.to_checksum_address(contract_address)
        self.contract = self.w3.eth.contract(address=self.address, abi=self.abi)

    # ----- plumbing -------------------------------------------------------------------------------

    def _rpc(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable(str(exc)) from exc

    def decode_error(self, data: str | bytes | None) -> ContractRevert | None:
        raw = bytes.fromhex(data[2:]) if isinstance(data, str) and data.startswith("0x") else data
        if not isinstance(raw, (bytes, bytearray)) or len(raw) < 4 or bytes(raw[:4]) not in self._errors:
            return None
        name, names, types = self._errors[bytes(raw[:4])]
        values = abi_decode(types, bytes(raw[4:]))
        return ContractRevert(name, {n: _hex(v) for n, v in zip(names, values)}, "0x" + bytes(raw).hex())

    def _revert_of(self, exc: Exception) -> ContractRevert | None:
        data = getattr(exc, "data", None)
        if isinstance(data, dict):
            data = data.get("data")
        revert = self.decode_error(data)
        if revert is None and exc.args and isinstance(exc.args[0], str):
            revert = self.decode_error(exc.args[0])
        return revert

    # ----- intents: the calls the relayer sends -----------------------------------------------------

    def anchor_batch(self, root: bytes, count: int, deltas: bytes) -> Call:
        """`anchorBatch(root, count, deltas)`: a batch's Merkle root and its per-account amounts."""
        return Call(self.contract.functions.anchorBatch(root, count, deltas), f"anchorBatch({protocol.to_hex(root)}, {count})")

    def command(self, kind: str, struct: tuple, signature: bytes, *extra: Any) -> Call:
        """The contract method of a signed administrative command (`protocol.COMMAND_FUNCTIONS`): the
        struct, the signature, then what the method takes besides (RevokeOrder: the order and its proof)."""
        fn = getattr(self.contract.functions, protocol.COMMAND_FUNCTIONS[kind])
        return Call(fn(struct, signature, *extra), kind)

    def simulate(self, call: Call, sender: str) -> int:
        """Estimates gas of a contract call against the pending state; raises `ContractRevert` with the
        decoded custom error when the contract would refuse it."""
        try:
            return self._rpc(lambda: call._fn.estimate_gas({"from": sender}, block_identifier="pending"))
        except (ContractCustomError, ContractLogicError, Web3RPCError) as exc:
            revert = self._revert_of(exc)
            if revert is None:
                raise ContractRevert("Unknown", {"message": str(exc)[:300]}, "") from exc
            raise revert from exc

    # ----- reads ----------------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        """The chain's id, asked once (a node answering another id is another chain: the service is
        started again for it)."""
        if self._chain_id is None:
            self._chain_id = self._rpc(lambda: self.w3.eth.chain_id)
        return self._chain_id

    def block_number(self) -> int:
        return self._rpc(lambda: self.w3.eth.block_number)

    def block_hash(self, number: int) -> str | None:
        block = self._rpc(lambda: self.w3.eth.get_block(number))
        return _hex(block["hash"]) if block else None

    def fees(self) -> dict[str, int]:
        """Fee fields for a new transaction: EIP-1559 with room for the base fee to double (a chain with
        free gas has base fee and tip 0), or the node's gas price on a chain without a base fee. Never
        derived from our own earlier prices, so they cannot ratchet up."""
        block = self._rpc(lambda: self.w3.eth.get_block("latest"))
        base = block.get("baseFeePerGas")
        if base is None:
            return {"gasPrice": self._rpc(lambda: self.w3.eth.gas_price)}
        tip = self._rpc(lambda: self.w3.eth.max_priority_fee) if base > 0 else 0
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    def city_admin(self) -> str:
        return self._rpc(lambda: self.contract.functions.cityAdmin().call()).lower()

    def get_account(self, account: bytes, block: int | str = "latest") -> ChainAccount:
        return ChainAccount(*self._rpc(lambda: self.contract.functions.getAccount(account).call(block_identifier=block)))

    def star_level(self, account: bytes, block: int | str = "latest") -> int:
        return self._rpc(lambda: self.contract.functions.starLevel(account).call(block_identifier=block))

    def get_batch(self, batch_id: int, block: int | str = "latest") -> ChainBatch:
        root, count, at_block = self._rpc(lambda: self.contract.functions.getBatch(batch_id).call(block_identifier=block))
        return ChainBatch(_hex(root), count, at_block)

    def verify_order(
        self,
        order: tuple,
        signature: bytes,
        station: bytes,
        batch_id: int,
        proof: list[bytes],
        block: int | str = "latest",
    ) -> OrderVerification:
        """The contract's `verifyOrder(order, signature, station, batchId, proof)` view (never reverts on
        bad input): `order` is the ServiceOrder ABI tuple, `station` 20 bytes, `proof` of 32-byte nodes."""
        call = self.contract.functions.verifyOrder(order, signature, Web3.to_checksum_address(station), batch_id, proof)
        v = self._rpc(lambda: call.call(block_identifier=block))
        digest, signer, signed, included, active, revoked, valid = v
        return OrderVerification(_hex(digest), signer.lower(), signed, included, active, revoked, valid)

    def has_role(self, role: str, account: str, block: int | str = "latest") -> bool:
        """`hasRole(keccak256(role), account)`: whether `account` holds the role (e.g. "RELAYER_ROLE")."""
        role_id = keccak(text=role)
        return self._rpc(
            lambda: self.contract.functions.hasRole(role_id, Web3.to_checksum_address(account)).call(block_identifier=block)
        )

    def batch_id_of_root(self, root: bytes) -> int:
        return self._rpc(lambda: self.contract.functions.batchIdOfRoot(root).call())

    def receipt(self, tx_hash: str) -> dict | None:
        try:
            return self._rpc(lambda: self.w3.eth.get_transaction_receipt(tx_hash))
        except TransactionNotFound:
            return None

    def logs(self, from_block: int, to_block: int) -> list[dict]:
        return self._rpc(
            lambda: self.w3.eth.get_logs({"address": self.address, "fromBlock": from_block, "toBlock": to_block})
        )

    def event(self, log_entry: dict) -> tuple[str, dict] | None:
        name = self._events.get(_hex(log_entry["topics"][0]))
        if name is None:
            return None
        decoded = getattr(self.contract.events, name)().process_log(log_entry)
        return name, {k: _hex(v) for k, v in decoded["args"].items()}

    def call_input(self, tx_hash: str) -> tuple[str, dict]:
        """The contract function and arguments of a transaction (the amounts of a batch live there)."""
        tx = self._rpc(lambda: self.w3.eth.get_transaction(tx_hash))
        fn, args = self.contract.decode_function_input(tx["input"])
        return fn.fn_name, args

    def account_at(self, index: int, block: int | str = "latest") -> bytes:
        """`accountAt(index)` (PROTOCOL.md section 9) at `block`: the account given that index (32 zero bytes
        when none)."""
        return bytes(self._rpc(lambda: self.contract.functions.accountAt(index).call(block_identifier=block)))

    # ----- the relayer's transactions (signed and recorded by api/transactions.py) -----------------

    def transaction(self, call: Call, sender: str, nonce: int, gas: int, fees: dict[str, int] | None = None) -> dict[str, Any]:
        """The unsigned transaction of `call` from `sender` with `nonce` and `gas`, at `fees` (today's when
        not given)."""
        return call._fn.build_transaction(
            {"from": Web3.to_checksum_address(sender), "nonce": nonce, "gas": gas, "chainId": self.chain_id, **(fees or self.fees())}
        )

    def nonce(self, sender: str) -> int:
        """How many transactions of `sender` the chain has mined."""
        return self._rpc(lambda: self.w3.eth.get_transaction_count(Web3.to_checksum_address(sender), "latest"))

    def broadcast(self, raw: str, tx_hash: str) -> str | None:
        """Sends a signed raw transaction; returns the node's refusal, or None when it has it (or is
        unreachable: then it is sent again later)."""
        try:
            self.w3.eth.send_raw_transaction(raw)
        except CONNECTION_ERRORS:
            log.warning("chain unavailable; transaction %s stays recorded and is re-broadcast later", tx_hash)
        except (ValueError, Web3RPCError) as exc:
            message = str(exc).lower()
            if "already" in message or "known" in message:
                return None  # the node has it
            if "nonce too low" in message and self.transaction_known(tx_hash):
                return None  # mined
            log.warning("broadcast of %s refused: %s", tx_hash, exc)
            return str(exc)
        return None

    def transaction_known(self, tx_hash: str) -> bool:
        try:
            return self.w3.eth.get_transaction(tx_hash) is not None
        except TransactionNotFound:
            return False
