"""The wire protocol of PROTOCOL.md, and nothing else: EIP-712 types and digests, signature recovery,
Merkle leaves, trees and proof folding, details hashing, account ids.

This module imports no server, database, chain or configuration code: the service and the standalone
verifier (`scripts/verify_proof.py`) both use it, so an auditor reads one small file to know what is
checked. Bytes values are Python ``bytes``; on the wire they are 0x-prefixed lower-case hex.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable, NamedTuple, Sequence

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")  # 3-4x faster keccak when safe-pysha3 is installed

import coincurve  # noqa: E402
import rfc8785  # noqa: E402
from eth_hash.auto import keccak  # noqa: E402

DOMAIN_NAME = "TimeBank"
DOMAIN_VERSION = "1"
PROOF_FORMAT = "timebank-proof/1"
LEAF_ENCODING = ("bytes32", "address")

# Account kinds, account statuses and service types (PROTOCOL.md section 1), written once.
KIND_VOLUNTEER, KIND_RECIPIENT, KIND_GROUP, KIND_POOL = 1, 2, 3, 4
ACCOUNT_KINDS = {KIND_VOLUNTEER: "volunteer", KIND_RECIPIENT: "recipient", KIND_GROUP: "group", KIND_POOL: "pool"}
VOLUNTEER_KINDS = frozenset({KIND_VOLUNTEER, KIND_GROUP})  # who may serve (and earn)
ACTIVE, FROZEN, CANCELLED = 1, 2, 3
TRANSFER_SERVICE_TYPE = 100  # hours given from payer to volunteer; no service delivered, nothing earned
PROFESSIONAL_SERVICE_TYPES = frozenset({9})  # the volunteer must hold a registered qualification
SERVICE_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, TRANSFER_SERVICE_TYPE})

# EIP-712 struct types, written once (PROTOCOL.md sections 3 and 4); a test checks them against the
# contract's type hashes.
TYPES: dict[str, list[tuple[str, str]]] = {
    "ServiceOrder": [
        ("orderId", "bytes32"),
        ("district", "uint32"),
        ("volunteer", "bytes32"),
        ("payer", "bytes32"),
        ("recipient", "bytes32"),
        ("serviceType", "uint16"),
        ("startTime", "uint64"),
        ("endTime", "uint64"),
        ("minutes", "uint32"),
        ("detailsHash", "bytes32"),
    ],
    "RegisterDistrict": [("district", "uint32"), ("admin", "address"), ("nonce", "uint64")],
    "RegisterStation": [("station", "address"), ("district", "uint32"), ("nonce", "uint64")],
    "RemoveStation": [("station", "address"), ("nonce", "uint64")],
    "RegisterAccount": [("account", "bytes32"), ("district", "uint32"), ("kind", "uint8"), ("nonce", "uint64")],
    "SetAccountStatus": [("account", "bytes32"), ("status", "uint8"), ("reason", "uint16"), ("nonce", "uint64")],
    "Grant": [("account", "bytes32"), ("minutes", "uint32"), ("reason", "uint16"), ("nonce", "uint64")],
    "RevokeOrder": [("orderId", "bytes32"), ("digest", "bytes32"), ("reason", "uint16"), ("nonce", "uint64")],
    "RegisterAuditor": [("auditor", "address"), ("district", "uint32"), ("nonce", "uint64")],
    "LinkAccounts": [("payer", "bytes32"), ("beneficiary", "bytes32"), ("linked", "bool"), ("nonce", "uint64")],
}
COMMAND_TYPES = tuple(name for name in TYPES if name != "ServiceOrder")
# The TimeBank method that executes each command: the struct's name, first letter lower-cased.
COMMAND_FUNCTIONS = {name: name[0].lower() + name[1:] for name in COMMAND_TYPES}
# An addition to the protocol, not a contract type: administrative and audit HTTP requests are signed as
# this struct, under the same domain (README, "Signed requests").
REQUEST_TYPES: dict[str, list[tuple[str, str]]] = {
    "SignedRequest": [
        ("method", "string"),
        ("host", "string"),
        ("path", "string"),
        ("bodyHash", "bytes32"),
        ("timestamp", "uint64"),
        ("nonce", "bytes32"),
    ],
}
ALL_TYPES = {**TYPES, **REQUEST_TYPES}
DOMAIN_TYPE = [
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
]

_HEX = re.compile(r"[0-9a-fA-F]*")
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class ProtocolError(ValueError):
    """A value that does not follow the protocol. `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def type_string(name: str) -> str:
    return f"{name}(" + ",".join(f"{t} {n}" for n, t in ALL_TYPES[name]) + ")"


TYPE_HASHES = {name: keccak(type_string(name).encode()) for name in ALL_TYPES}


# ----- hex and field values -----------------------------------------------------------------------


def to_hex(value: bytes) -> str:
    return "0x" + value.hex()


def parse_bytes(value: Any, length: int | None, field: str) -> bytes:
    """0x-prefixed hex of exactly `length` bytes (any length when None); upper-case digits are accepted."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ProtocolError("malformed_hex", f"{field}: expected 0x-prefixed hex, got {value!r:.80}")
    digits = value[2:]
    if len(digits) % 2 or not _HEX.fullmatch(digits):
        raise ProtocolError("malformed_hex", f"{field}: not hex: {value!r:.80}")
    raw = bytes.fromhex(digits)
    if length is not None and len(raw) != length:
        raise ProtocolError("wrong_length", f"{field}: expected {length} bytes, got {len(raw)}")
    return raw


def parse_uint(value: Any, bits: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("malformed_integer", f"{field}: expected an integer, got {value!r:.80}")
    if not 0 <= value < (1 << bits):
        raise ProtocolError("integer_out_of_range", f"{field}: {value} is not a uint{bits}")
    return value


def parse_address(value: Any, field: str) -> bytes:
    return parse_bytes(value, 20, field)


def checksum(address: bytes) -> str:
    """EIP-55 mixed-case address."""
    hex_addr = address.hex()
    digest = keccak(hex_addr.encode()).hex()
    return "0x" + "".join(c.upper() if int(digest[i], 16) >= 8 else c for i, c in enumerate(hex_addr))


def _encode_field(kind: str, value: Any, field: str) -> bytes:
    if kind == "string":
        if not isinstance(value, str):
            raise ProtocolError("malformed_message", f"{field}: expected a string")
        return keccak(value.encode("utf-8"))
    if kind == "bytes32":
        raw = value if isinstance(value, bytes) else parse_bytes(value, 32, field)
        if len(raw) != 32:
            raise ProtocolError("wrong_length", f"{field}: expected 32 bytes, got {len(raw)}")
        return raw
    if kind == "address":
        raw = value if isinstance(value, bytes) else parse_address(value, field)
        if len(raw) != 20:
            raise ProtocolError("wrong_length", f"{field}: expected 20 bytes, got {len(raw)}")
        return b"\x00" * 12 + raw
    if kind.startswith("uint"):
        return parse_uint(value, int(kind[4:]), field).to_bytes(32, "big")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ProtocolError("malformed_message", f"{field}: expected true or false, got {value!r:.80}")
        return int(value).to_bytes(32, "big")
    raise ProtocolError("unknown_type", f"{field}: unsupported type {kind}")


def parse_message(name: str, message: Any) -> dict[str, Any]:
    """Validates a JSON message of struct `name`: exactly its fields, each of its type. Bytes stay hex."""
    if name not in TYPES:
        raise ProtocolError("unknown_type", f"unknown struct type {name!r:.80}")
    if not isinstance(message, dict):
        raise ProtocolError("malformed_message", f"{name}: expected an object")
    fields = TYPES[name]
    missing = [n for n, _ in fields if n not in message]
    extra = [k for k in message if k not in {n for n, _ in fields}]
    if missing or extra:
        raise ProtocolError("malformed_message", f"{name}: missing {missing}, unexpected {extra}")
    out: dict[str, Any] = {}
    for field, kind in fields:
        value = message[field]
        _encode_field(kind, value, f"{name}.{field}")
        out[field] = value.lower() if isinstance(value, str) and kind != "string" else value
    return out


# ----- EIP-712 ------------------------------------------------------------------------------------


def domain(chain_id: int, verifying_contract: str) -> dict[str, Any]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": verifying_contract,
    }


def domain_separator(chain_id: int, verifying_contract: bytes | str) -> bytes:
    contract = verifying_contract if isinstance(verifying_contract, bytes) else parse_address(verifying_contract, "verifyingContract")
    return keccak(
        keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
        + keccak(DOMAIN_NAME.encode())
        + keccak(DOMAIN_VERSION.encode())
        + chain_id.to_bytes(32, "big")
        + b"\x00" * 12
        + contract
    )


def parse_domain(value: Any) -> tuple[int, bytes]:
    """(chainId, verifyingContract) of a JSON domain that must name this protocol."""
    if not isinstance(value, dict):
        raise ProtocolError("malformed_domain", "domain: expected an object")
    if value.get("name") != DOMAIN_NAME or value.get("version") != DOMAIN_VERSION:
        raise ProtocolError("wrong_domain", f"domain: expected {DOMAIN_NAME} version {DOMAIN_VERSION}")
    return parse_uint(value.get("chainId"), 256, "domain.chainId"), parse_address(
        value.get("verifyingContract"), "domain.verifyingContract"
    )


def hash_struct(name: str, message: dict[str, Any]) -> bytes:
    return keccak(
        TYPE_HASHES[name] + b"".join(_encode_field(kind, message[f], f"{name}.{f}") for f, kind in ALL_TYPES[name])
    )


def typed_digest(separator: bytes, name: str, message: dict[str, Any]) -> bytes:
    """The EIP-712 digest `keccak256("\\x19\\x01" ‖ domainSeparator ‖ hashStruct(message))`."""
    return keccak(b"\x19\x01" + separator + hash_struct(name, message))


def typed_data(chain_id: int, verifying_contract: str) -> dict[str, Any]:
    """Domain and types in the shape `eth_signTypedData_v4` and ethers' `signTypedData` take."""
    return {
        "domain": domain(chain_id, verifying_contract),
        "types": {
            "EIP712Domain": [{"name": n, "type": t} for n, t in DOMAIN_TYPE],
            **{name: [{"name": n, "type": t} for n, t in fields] for name, fields in ALL_TYPES.items()},
        },
    }


def typed_message(name: str, chain_id: int, verifying_contract: str, message: dict[str, Any]) -> dict[str, Any]:
    """One message as `eth_signTypedData_v4` takes it (only its own struct type, so the primary type is
    unambiguous)."""
    return {
        "types": {
            "EIP712Domain": [{"name": n, "type": t} for n, t in DOMAIN_TYPE],
            name: [{"name": n, "type": t} for n, t in ALL_TYPES[name]],
        },
        "domain": domain(chain_id, verifying_contract),
        "primaryType": name,
        "message": message,
    }


class ServiceOrder(NamedTuple):
    """A ServiceOrder with bytes values (PROTOCOL.md section 3)."""

    orderId: bytes
    district: int
    volunteer: bytes
    payer: bytes
    recipient: bytes
    serviceType: int
    startTime: int
    endTime: int
    minutes: int
    detailsHash: bytes

    @classmethod
    def from_json(cls, value: Any) -> "ServiceOrder":
        if not isinstance(value, dict):
            raise ProtocolError("malformed_order", "order: expected an object")
        fields = TYPES["ServiceOrder"]
        missing = [n for n, _ in fields if n not in value]
        if missing:
            raise ProtocolError("malformed_order", f"order: missing fields {missing}")
        extra = [k for k in value if k not in cls._fields]
        if extra:
            raise ProtocolError("malformed_order", f"order: unexpected fields {extra[:5]}")
        out = []
        for field, kind in fields:
            v = value[field]
            if kind == "bytes32":
                out.append(parse_bytes(v, 32, f"order.{field}"))
            else:
                out.append(parse_uint(v, int(kind[4:]), f"order.{field}"))
        return cls(*out)

    def to_json(self) -> dict[str, Any]:
        return {f: (to_hex(v) if isinstance(v, bytes) else v) for f, v in zip(self._fields, self)}

    def struct_hash(self) -> bytes:
        return keccak(
            TYPE_HASHES["ServiceOrder"]
            + self.orderId
            + self.district.to_bytes(32, "big")
            + self.volunteer
            + self.payer
            + self.recipient
            + self.serviceType.to_bytes(32, "big")
            + self.startTime.to_bytes(32, "big")
            + self.endTime.to_bytes(32, "big")
            + self.minutes.to_bytes(32, "big")
            + self.detailsHash
        )

    def digest(self, separator: bytes) -> bytes:
        return keccak(b"\x19\x01" + separator + self.struct_hash())

    def as_tuple(self) -> tuple:
        """The order as the contract's ABI tuple."""
        return tuple(self)


# ----- signatures ---------------------------------------------------------------------------------


def recover(digest: bytes, signature: bytes) -> bytes:
    """The 20-byte address that signed `digest`. Accepts exactly what OpenZeppelin's ECDSA (5.x) and the
    EVM's ecrecover accept: 65 bytes `r ‖ s ‖ v` with `v` 27 or 28 (0 and 1 are refused: ecrecover answers
    no address for them), `0 < r < n`, `0 < s <= n/2` (no high-s)."""
    if len(signature) != 65:
        raise ProtocolError("bad_signature", f"signature: expected 65 bytes, got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise ProtocolError("bad_signature", f"signature: v must be 27 or 28, got {signature[64]}")
    v -= 27
    if not (0 < r < _SECP256K1_N and 0 < s <= _SECP256K1_N // 2):
        raise ProtocolError("bad_signature", "signature: r or s out of range (high-s signatures are refused)")
    try:
        public = coincurve.PublicKey.from_signature_and_message(signature[:64] + bytes([v]), digest, hasher=None)
    except Exception:  # coincurve raises plain Exception for unrecoverable signatures
        raise ProtocolError("bad_signature", "signature: no public key recovers from it") from None
    return keccak(public.format(compressed=False)[1:])[12:]


def sign(digest: bytes, private_key: bytes) -> bytes:
    """65-byte `r ‖ s ‖ v` (v 27 or 28) signature of a digest; for tests and the admin tools."""
    sig = coincurve.PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


def address_of(private_key: bytes) -> bytes:
    return keccak(coincurve.PrivateKey(private_key).public_key.format(compressed=False)[1:])[12:]


# ----- details, accounts --------------------------------------------------------------------------


_SAFE_INTEGER = 2**53 - 1


def _plain(value: Any) -> bool:
    """Whether the standard library's `json.dumps` (sorted keys, no spaces, UTF-8) writes `value` byte for
    byte as RFC 8785 does: ASCII keys (their order is the same in UTF-16 code units), strings without lone
    surrogates (both escape the same characters, the same way), integers within 2^53, and floats that
    are not whole numbers between 1e-4 and 1e16 (where Python's shortest repr and ECMAScript's agree,
    without an exponent). Anything else goes to the rfc8785 library."""
    kind = type(value)
    if kind is str:
        if value.isascii():
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if kind is dict:
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    if kind is int:
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER
    if kind is float:
        return 1e-4 <= abs(value) < 1e16 and not value.is_integer()
    return value is None or kind is bool


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of `value`: the library's (`rfc8785`), or for the plain values orders carry
    the standard library's C encoder, which writes the same bytes (`_plain`; tests/test_canonical.py
    checks the two agree) in a tenth of the time."""
    try:
        plain = _plain(value)
    except RecursionError:  # nested deeper than Python walks: the library refuses it as it would
        plain = False
    if plain:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return rfc8785.dumps(value)


def details_hash(details: Any) -> bytes:
    """keccak256 of the RFC 8785 canonical JSON of the details object (PROTOCOL.md section 3)."""
    try:
        return keccak(canonical_json(details))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise ProtocolError("malformed_details", f"details: cannot be canonicalised: {exc}") from None


def account_id(card_number: str) -> bytes:
    """keccak256(utf8(cardNumber)) (PROTOCOL.md section 1)."""
    return keccak(card_number.encode("utf-8"))


# ----- a batch's per-account amounts (the canonical `deltas` of the contract's anchorBatch) ------------

DELTA_SIZE = 16  # index uint32 ‖ earned uint32 ‖ received uint32 ‖ spent uint32 (PROTOCOL.md section 9)
UINT32_MAX = (1 << 32) - 1
Amounts = dict[bytes, tuple[int, int, int]]  # account -> (earned, received, spent)
IndexedAmounts = dict[int, tuple[int, int, int]]  # account index -> (earned, received, spent)


def amounts(orders: Iterable[tuple[bytes, bytes, int, int]]) -> Amounts:
    """The minutes a batch of orders `(volunteer, payer, serviceType, minutes)` moves, per account, in the
    order accounts first appear: the volunteer is credited `earned` (`received` for a transfer, service
    type 100, which earns nothing), the payer debited `spent`."""
    totals: dict[bytes, list[int]] = {}
    for volunteer, payer, service_type, minutes in orders:
        credit = totals.setdefault(volunteer, [0, 0, 0])
        credit[1 if service_type == TRANSFER_SERVICE_TYPE else 0] += minutes
        totals.setdefault(payer, [0, 0, 0])[2] += minutes
    return {account: (e, r, s) for account, (e, r, s) in totals.items()}


def pack_deltas(indexed: IndexedAmounts) -> bytes:
    """Canonical deltas (PROTOCOL.md section 9): 16 bytes per account whose amounts are not all zero,
    `index ‖ earned ‖ received ‖ spent` (uint32 each), in ascending order of index."""
    out = []
    for index in sorted(indexed):
        e, r, s = indexed[index]
        if not e and not r and not s:
            continue
        if not 0 < index <= UINT32_MAX or max(e, r, s) > UINT32_MAX:
            raise ProtocolError("malformed_deltas", f"deltas: account index {index} or its amounts do not fit uint32")
        out.append(index.to_bytes(4, "big") + e.to_bytes(4, "big") + r.to_bytes(4, "big") + s.to_bytes(4, "big"))
    return b"".join(out)


def canonical_deltas(amounts: Amounts, index_of: Any) -> bytes:
    """Canonical deltas of per-account amounts; `index_of(account)` (or a mapping) gives each account's
    index, 0 or None when it has none (refused: such an account cannot be anchored)."""
    lookup = index_of.get if hasattr(index_of, "get") else index_of
    indexed: IndexedAmounts = {}
    for account, value in amounts.items():
        index = lookup(account)
        if not index:
            raise ProtocolError("unknown_account", f"account {to_hex(account)} has no account index")
        indexed[index] = value
    return pack_deltas(indexed)


def unpack_deltas(deltas: bytes) -> IndexedAmounts:
    """{index: (earned, received, spent)} of canonical deltas; refuses what the contract refuses: a length
    that is not a multiple of 16, an index 0 or not above the previous one, an all-zero entry."""
    if len(deltas) % DELTA_SIZE:
        raise ProtocolError("malformed_deltas", f"deltas: {len(deltas)} bytes is not a multiple of {DELTA_SIZE}")
    out: IndexedAmounts = {}
    previous = 0
    for offset in range(0, len(deltas), DELTA_SIZE):
        index, e, r, s = (int.from_bytes(deltas[offset + k : offset + k + 4], "big") for k in range(0, 16, 4))
        if index <= previous or not (e or r or s):
            raise ProtocolError(
                "non_canonical_deltas", f"deltas: entry {offset // DELTA_SIZE} (index {index}) is not canonical"
            )
        previous = index
        out[index] = (e, r, s)
    return out


# ----- Merkle trees (OpenZeppelin StandardMerkleTree, PROTOCOL.md section 5) ----------------------


def leaf(digest: bytes, station: bytes) -> bytes:
    """keccak256(bytes.concat(keccak256(abi.encode(digest, station))))."""
    return keccak(keccak(digest + b"\x00" * 12 + station))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def fold(leaf_hash: bytes, proof: Iterable[bytes]) -> bytes:
    """The root that `proof` leads to from `leaf_hash` (sorted pairs, as MerkleProof.processProof)."""
    node = leaf_hash
    for sibling in proof:
        if len(sibling) != 32:
            raise ProtocolError("wrong_length", f"proof element: expected 32 bytes, got {len(sibling)}")
        node = hash_pair(node, sibling)
    return node


class MerkleTree:
    """OpenZeppelin's StandardMerkleTree over precomputed leaf hashes: leaves sorted, the tree laid out
    as a flat array whose last slots hold the leaves, node i = hash_pair(2i+1, 2i+2)."""

    def __init__(self, leaves: Sequence[bytes]):
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        n = len(leaves)
        order = sorted(range(n), key=lambda i: leaves[i])
        tree: list[bytes] = [b""] * (2 * n - 1)
        self.tree_index = [0] * n  # input position -> index in `tree`
        for rank, i in enumerate(order):
            self.tree_index[i] = len(tree) - 1 - rank
            tree[len(tree) - 1 - rank] = leaves[i]
        for i in range(n - 2, -1, -1):
            tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
        self.tree = tree

    @property
    def root(self) -> bytes:
        return self.tree[0]

    def proof(self, position: int) -> list[bytes]:
        """The proof of the leaf given at `position` of the constructor's sequence."""
        return [self.tree[i] for i in sibling_indices(self.tree_index[position])]


def sibling_indices(index: int) -> list[int]:
    """The slots of a proof in `MerkleTree`'s flat layout: the siblings of slot `index` and of each of its
    ancestors, up to the root (node i = hash_pair(2i+1, 2i+2))."""
    path = []
    while index > 0:
        path.append(index + 1 if index % 2 == 1 else index - 1)
        index = (index - 1) // 2
    return path
