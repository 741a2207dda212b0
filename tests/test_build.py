"""The build, chain and deployment tooling: scripts/{compile,chain,deploy}.py."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from eth_account import Account
from web3 import Web3

from scripts import compile as build
from scripts.chain import DEV_KEYS, free_port, rpc, snapshots, start_anvil, stop_anvil
from scripts.deploy import DeployError, DeploymentKeys, deploy, deployment_keys, ensure_deployed

ROOT = build.ROOT
PUSH0, PUSH1, PUSH32 = 0x5F, 0x60, 0x7F


def opcodes(code: bytes):
    """Yield (offset, opcode) of EVM code, skipping the data of PUSH1..PUSH32."""
    i = 0
    while i < len(code):
        op = code[i]
        yield i, op
        i += 1 + (op - PUSH1 + 1 if PUSH1 <= op <= PUSH32 else 0)


def strip_metadata(runtime: bytes) -> bytes:
    """Runtime code without solc's trailing CBOR metadata (its length is the last two bytes)."""
    length = int.from_bytes(runtime[-2:], "big")
    assert 0 < length < len(runtime) and runtime[-length - 2] in (0xA1, 0xA2, 0xA3), "no CBOR metadata"
    return runtime[: -length - 2]


def test_opcode_walk_skips_push_data():
    # PUSH2 0x5f5f, PUSH0, STOP: only the third instruction is a PUSH0.
    assert [op for _, op in opcodes(bytes.fromhex("615f5f5f00"))] == [0x61, PUSH0, 0x00]


@pytest.fixture(scope="module")
def hardhat_artifacts() -> dict[str, dict]:
    """`npx hardhat compile --force`, offline; its artifacts of the contracts under contracts/."""
    env = dict(os.environ, CI="true", HARDHAT_DISABLE_TELEMETRY_PROMPT="true")
    subprocess.run(
        ["npx", "--no-install", "hardhat", "compile", "--force"],
        cwd=ROOT, env=env, check=True, stdin=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip
    found = {}
    for unit in build.contract_sources():
        for path in (ROOT / "artifacts" / unit).glob("*.json"):
            if not path.name.endswith(".dbg.json"):
                found[path.stem] = json.loads(path.read_text())
    return found


def test_hardhat_and_py_solc_x_builds_are_identical(artifact, hardhat_artifacts):
    names = json.loads((ROOT / "build" / ".contracts.json").read_text())["contracts"]
    assert sorted(hardhat_artifacts) == sorted(names)
    for name in names:
        ours = build.load_artifact(name)
        theirs = hardhat_artifacts[name]
        assert theirs["sourceName"] == ours["sourceName"], name
        assert theirs["deployedBytecode"] == ours["deployedBytecode"], name
        assert theirs["bytecode"] == ours["bytecode"], name
        assert theirs["abi"] == ours["abi"], name
    assert len(artifact["deployedBytecode"]) > 2


def test_runtime_code_has_no_push0(artifact):
    runtime = strip_metadata(bytes.fromhex(artifact["deployedBytecode"][2:]))
    push0_at = [offset for offset, op in opcodes(runtime) if op == PUSH0]
    assert push0_at == [], f"PUSH0 (Shanghai) at offsets {push0_at}: the code must run on a paris/london chain"
    assert artifact["compiler"]["settings"]["evmVersion"] == "paris"


def test_shim_reports_the_npm_solc_version():
    node = subprocess.run(
        ["node", "-p", "require('solc').version()"], cwd=ROOT, capture_output=True, text=True, check=True
    )  # e.g. 0.8.28+commit.7893614a.Emscripten.clang
    assert build.compiler_version() == node.stdout.strip().removesuffix(".Emscripten.clang")


def test_compile_skips_unchanged_sources_and_notices_changes(tmp_path):
    contract = tmp_path / "contracts" / "Tiny.sol"
    contract.parent.mkdir()
    contract.write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity 0.8.28;\n"
        'import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";\n'
        "contract Tiny is Ownable { constructor() Ownable(msg.sender) {} }\n"
    )
    assert build.compile_contracts(root=tmp_path) == ["Tiny"]
    assert build.compile_contracts(root=tmp_path) == []
    tiny = build.load_artifact("Tiny", root=tmp_path)
    assert tiny["sourceName"] == "contracts/Tiny.sol"
    assert {"contracts/Tiny.sol", "@openzeppelin/contracts/access/Ownable.sol"} <= set(
        json.loads(tiny["metadata"])["sources"]
    )

    contract.write_text(contract.read_text().replace("Tiny", "Small"))
    assert build.compile_contracts(root=tmp_path) == ["Small"]
    assert not (tmp_path / "build" / "Tiny.json").exists()
    with pytest.raises(LookupError):
        build.load_artifact("Tiny", root=tmp_path)


def test_dev_keys_are_anvils_accounts(anvil):
    assert [Account.from_key(k).address for k in DEV_KEYS] == [
        Web3.to_checksum_address(a) for a in rpc(anvil.url, "eth_accounts")
    ]


def test_anvil_keeps_state_across_restarts(tmp_path, artifact, keys):
    handle = start_anvil(free_port(), tmp_path, block_time=0)
    try:
        w3 = Web3(Web3.HTTPProvider(handle.url))
        address, receipt = deploy(w3, artifact, keys.city_admin.key, keys.city_admin.address, keys.relayer.address)
        code, block = w3.eth.get_code(address), w3.eth.block_number
    finally:
        stop_anvil(handle)
    assert not (tmp_path / "anvil.pid").exists()
    assert len(snapshots(tmp_path)) == 1  # the last snapshot, written on the way out

    handle = start_anvil(free_port(), tmp_path, block_time=0)
    try:
        w3 = Web3(Web3.HTTPProvider(handle.url))
        assert w3.eth.get_code(address) == code
        assert w3.eth.block_number == block
        assert w3.eth.get_transaction_receipt(receipt["transactionHash"])["contractAddress"] == address
        assert handle.restored.snapshot == snapshots(tmp_path)[0] and handle.restored.block == block
    finally:
        stop_anvil(handle)


def test_ensure_deployed_keeps_redeploys_and_replaces(w3, artifact, keys, tmp_path, chain_snapshot):
    dev = DeploymentKeys(keys.city_admin.key.to_0x_hex(), keys.city_admin.address, keys.relayer.address)
    said = []
    before = w3.provider.make_request("evm_snapshot", [])["result"]

    first, action = ensure_deployed(w3, artifact, dev, records_dir=tmp_path, say=said.append)
    assert action == "deployed"
    record = json.loads((tmp_path / "31337.json").read_text())
    assert record == first
    assert set(record) >= {"chainId", "address", "blockNumber", "txHash", "codeHash", "cityAdmin", "relayer", "deployedAt"}
    assert (record["chainId"], record["cityAdmin"], record["relayer"]) == (31337, dev.city_admin, dev.relayer)
    assert record["codeHash"] == "0x" + Web3.keccak(w3.eth.get_code(record["address"])).hex()

    assert ensure_deployed(w3, artifact, dev, records_dir=tmp_path, say=said.append) == (first, "kept")
    assert said == []

    second, action = ensure_deployed(w3, artifact, dev, records_dir=tmp_path, force=True, say=said.append)
    assert action == "redeployed" and second["address"] != first["address"]

    w3.provider.make_request("evm_revert", [before])  # as if the chain had been reset
    third, action = ensure_deployed(w3, artifact, dev, records_dir=tmp_path, say=said.append)
    assert action == "replaced"
    assert second["address"] in said[0] and "gone" in said[0]
    assert w3.eth.get_code(third["address"]) != b""


def test_deployment_keys_default_only_on_the_dev_chain(monkeypatch, tmp_path):
    for name in ("KEY", "KEYSTORE", "PASSWORD"):
        monkeypatch.delenv(f"TIMEBANK_DEPLOYER_{name}", raising=False)
    monkeypatch.delenv("TIMEBANK_CITY_ADMIN", raising=False)
    monkeypatch.delenv("TIMEBANK_RELAYER", raising=False)

    dev = deployment_keys(31337)
    assert dev.deployer_key == DEV_KEYS[0]
    assert dev.city_admin == Account.from_key(DEV_KEYS[0]).address
    assert dev.relayer == Account.from_key(DEV_KEYS[1]).address

    with pytest.raises(DeployError, match="TIMEBANK_DEPLOYER_KEY or TIMEBANK_DEPLOYER_KEYSTORE"):
        deployment_keys(31338)

    deployer = Account.create()
    keystore = tmp_path / "deployer.json"
    keystore.write_text(json.dumps(Account.encrypt(deployer.key, "s3cret", kdf="pbkdf2", iterations=1000)))
    admin, relayer = Account.create().address, Account.create().address
    monkeypatch.setenv("TIMEBANK_DEPLOYER_KEYSTORE", str(keystore))
    monkeypatch.setenv("TIMEBANK_DEPLOYER_PASSWORD", "s3cret")
    monkeypatch.setenv("TIMEBANK_CITY_ADMIN", admin.lower())
    monkeypatch.setenv("TIMEBANK_RELAYER", relayer)
    assert deployment_keys(31338) == DeploymentKeys(deployer.key.to_0x_hex(), admin, relayer)

    monkeypatch.setenv("TIMEBANK_DEPLOYER_PASSWORD", "wrong")
    with pytest.raises(DeployError, match="cannot decrypt"):
        deployment_keys(31338)
    monkeypatch.setenv("TIMEBANK_DEPLOYER_PASSWORD", "s3cret")
    monkeypatch.setenv("TIMEBANK_RELAYER", "0x1234")
    with pytest.raises(DeployError, match="TIMEBANK_RELAYER"):
        deployment_keys(31338)

