"""Deploy TimeBank(cityAdmin, relayer) once per chain, and remember where.

    python -m scripts.deploy [--rpc-url URL] [--force]

The deployment is recorded in node/deployments/<chainId>.json. While the code at
the recorded address is still the code that was deployed there, running this
again changes nothing ("kept"); `--force` deploys a new instance. When the
recorded code is gone (the chain was reset), it deploys anew and says so.

Keys. On the embedded development chain (chain id 31337) the deployer and city
admin are Anvil's first development account and the relayer its second, unless
the environment names others. On any other chain everything comes from the
environment:
  TIMEBANK_DEPLOYER_KEY                  the deployer's private key (0x...), or
  TIMEBANK_DEPLOYER_KEYSTORE             an encrypted JSON keystore file, with
  TIMEBANK_DEPLOYER_PASSWORD             its password (asked for on a terminal if unset)
  TIMEBANK_CITY_ADMIN, TIMEBANK_RELAYER  the two addresses the constructor takes
The node is --rpc-url, else $TIMEBANK_RPC_URL, else the embedded Anvil.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from eth_account import Account
from eth_utils import keccak
from web3 import Web3
from web3.types import TxReceipt

from scripts.chain import DEV_CHAIN_ID, DEV_KEYS, default_rpc_url
from scripts.compile import ROOT, load_artifact, write_json

DEPLOYMENTS_DIR = ROOT / "node" / "deployments"
RECEIPT_TIMEOUT = 120  # seconds


class DeployError(RuntimeError):
    """The deployment could not be made, or its inputs are missing or invalid."""


class DeploymentKeys(NamedTuple):
    deployer_key: str
    city_admin: str
    relayer: str


def deploy(
    w3: Web3, artifact: dict, deployer_key: str | bytes, city_admin: str, relayer: str
) -> tuple[str, TxReceipt]:
    """Send the TimeBank creation transaction; return (checksummed address, receipt).

    Pays the gas price the node asks for (0 on a free-gas network such as our Besu one).
    """
    deployer = Account.from_key(deployer_key)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    transaction = factory.constructor(
        Web3.to_checksum_address(city_admin), Web3.to_checksum_address(relayer)
    ).build_transaction(
        {
            "from": deployer.address,
            "nonce": w3.eth.get_transaction_count(deployer.address, "pending"),
            "gasPrice": w3.eth.gas_price,
            "chainId": w3.eth.chain_id,
        }
    )
    signed = deployer.sign_transaction(transaction)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise DeployError(f"creation transaction {tx_hash.to_0x_hex()} failed (status {receipt['status']})")
    return receipt["contractAddress"], receipt


def code_hash(w3: Web3, address: str) -> str:
    """keccak256 of the runtime code at `address` (of b"" when there is none)."""
    return "0x" + keccak(w3.eth.get_code(Web3.to_checksum_address(address))).hex()


def record_path(chain_id: int, records_dir: Path = DEPLOYMENTS_DIR) -> Path:
    return Path(records_dir) / f"{chain_id}.json"


def read_record(chain_id: int, records_dir: Path = DEPLOYMENTS_DIR) -> dict | None:
    try:
        return json.loads(record_path(chain_id, records_dir).read_text())
    except FileNotFoundError:
        return None


def ensure_deployed(
    w3: Web3,
    artifact: dict,
    keys: DeploymentKeys,
    records_dir: Path = DEPLOYMENTS_DIR,
    force: bool = False,
    say=print,
) -> tuple[dict, str]:
    """Deploy unless the recorded deployment is still in place; return (record, what was done).

    What was done is "kept", "deployed" (no record), "redeployed" (--force) or
    "replaced" (the recorded code was gone).
    """
    chain_id = w3.eth.chain_id
    record = read_record(chain_id, records_dir)
    if record is not None:
        current = code_hash(w3, record["address"])
        if current == record["codeHash"] and not force:
            _warn_if_outdated(record, artifact, keys, say)
            return record, "kept"
        if current != record["codeHash"]:
            what = "no code" if current == "0x" + keccak(b"").hex() else "other code"
            say(
                f"the recorded TimeBank at {record['address']} on chain {chain_id} is gone"
                f" ({what} there now: was the chain reset?); deploying a new one"
            )
            action = "replaced"
        else:
            action = "redeployed"
    else:
        action = "deployed"

    address, receipt = deploy(w3, artifact, keys.deployer_key, keys.city_admin, keys.relayer)
    record = {
        "chainId": chain_id,
        "address": address,
        "blockNumber": receipt["blockNumber"],
        "txHash": receipt["transactionHash"].to_0x_hex(),
        "codeHash": code_hash(w3, address),
        "cityAdmin": Web3.to_checksum_address(keys.city_admin),
        "relayer": Web3.to_checksum_address(keys.relayer),
        "deployedAt": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bytecodeHash": _bytecode_hash(artifact),
    }
    write_json(record_path(chain_id, records_dir), record)
    return record, action


def _bytecode_hash(artifact: dict) -> str:
    return "0x" + keccak(hexstr=artifact["bytecode"]).hex()


def _warn_if_outdated(record: dict, artifact: dict, keys: DeploymentKeys, say) -> None:
    if record.get("bytecodeHash") != _bytecode_hash(artifact):
        say("note: contracts/ has changed since this deployment; use --force to deploy the new code")
    for role, wanted in (("cityAdmin", keys.city_admin), ("relayer", keys.relayer)):
        if Web3.to_checksum_address(wanted) != record[role]:
            say(f"note: the deployment's {role} is {record[role]}, not the configured {wanted}")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _address(name: str, value: str) -> str:
    try:
        return Web3.to_checksum_address(value)
    except ValueError as exc:
        raise DeployError(f"{name}={value!r} is not an address") from exc


def deployer_key_from_env() -> str | None:
    """TIMEBANK_DEPLOYER_KEY, or the key in TIMEBANK_DEPLOYER_KEYSTORE, or None."""
    key = _env("TIMEBANK_DEPLOYER_KEY")
    keystore = _env("TIMEBANK_DEPLOYER_KEYSTORE")
    if key and keystore:
        raise DeployError("set TIMEBANK_DEPLOYER_KEY or TIMEBANK_DEPLOYER_KEYSTORE, not both")
    if key:
        return key
    if not keystore:
        return None
    password = os.environ.get("TIMEBANK_DEPLOYER_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise DeployError("TIMEBANK_DEPLOYER_KEYSTORE is set but TIMEBANK_DEPLOYER_PASSWORD is not")
        password = getpass.getpass(f"password of {keystore}: ")
    try:
        encrypted = json.loads(Path(keystore).read_text())
        return "0x" + Account.decrypt(encrypted, password).hex()
    except (OSError, ValueError) as exc:  # a wrong password is a ValueError ("MAC mismatch")
        raise DeployError(f"cannot decrypt keystore {keystore}: {exc}") from exc


def deployment_keys(chain_id: int) -> DeploymentKeys:
    """The deployer key and constructor addresses for `chain_id` (see the module docstring)."""
    key = deployer_key_from_env()
    city_admin = _env("TIMEBANK_CITY_ADMIN")
    relayer = _env("TIMEBANK_RELAYER")
    if chain_id == DEV_CHAIN_ID:
        key = key or DEV_KEYS[0]
        city_admin = city_admin or Account.from_key(DEV_KEYS[0]).address
        relayer = relayer or Account.from_key(DEV_KEYS[1]).address
    missing = [
        name
        for name, value in (
            ("TIMEBANK_DEPLOYER_KEY or TIMEBANK_DEPLOYER_KEYSTORE", key),
            ("TIMEBANK_CITY_ADMIN", city_admin),
            ("TIMEBANK_RELAYER", relayer),
        )
        if not value
    ]
    if missing:
        raise DeployError(f"chain {chain_id} is not the development chain; set {', '.join(missing)}")
    try:
        Account.from_key(key)
    except (ValueError, TypeError) as exc:
        raise DeployError("the deployer key is not a valid secp256k1 private key") from exc
    return DeploymentKeys(key, _address("TIMEBANK_CITY_ADMIN", city_admin), _address("TIMEBANK_RELAYER", relayer))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.deploy",
        description=__doc__.split("\n\n")[0].splitlines()[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rpc-url", default=default_rpc_url(), help="JSON-RPC endpoint (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="deploy a new instance even if one is in place")
    args = parser.parse_args(argv)

    w3 = Web3(Web3.HTTPProvider(args.rpc_url, request_kwargs={"timeout": 60}))
    if not w3.is_connected():
        raise DeployError(f"no node answers at {args.rpc_url} (for the embedded chain: make chain)")
    chain_id = w3.eth.chain_id
    keys = deployment_keys(chain_id)
    record, action = ensure_deployed(w3, load_artifact("TimeBank"), keys, force=args.force)
    where = record_path(chain_id).relative_to(ROOT)
    if action == "kept":
        print(f"kept TimeBank at {record['address']} on chain {chain_id} (block {record['blockNumber']}; {where})")
    else:
        print(
            f"{action} TimeBank at {record['address']} on chain {chain_id} in block {record['blockNumber']},"
            f" city admin {record['cityAdmin']}, relayer {record['relayer']} ({where})"
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DeployError as exc:
        sys.exit(f"error: {exc}")
