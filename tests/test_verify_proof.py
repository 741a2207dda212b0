"""The standalone verifier (`scripts/verify_proof.py`, `timebank-verify`) against real bundles on a real
chain, the Node cross-checks (ethers, @openzeppelin/merkle-tree) and one case per mutation.

The scenario is built once for the module (and reverted at its end): districts D1 and D2, station A in
D1, station B in D2, a rogue key never registered, a volunteer and a recipient in D1; batch 1 anchors
four orders (good, signed by the rogue key, signed by B for D1, later revoked), batch 2 one more. The
proof bundles are assembled exactly as PROTOCOL.md section 7 shows (`make_bundle`, local to this file:
tests/utils has no bundle builder).
"""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from web3 import Web3

from api import protocol as P
from scripts.verify_proof import EXIT_MALFORMED, EXIT_USAGE, main, verify_bundle
from tests.utils import chain as C

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "node"


# ----- the scenario -------------------------------------------------------------------------------


def make_bundle(bank: C.Bank, batch: C.Batch, index: int, receipt: Any) -> dict[str, Any]:
    """The proof bundle of order `index` of an anchored `batch` (PROTOCOL.md section 7)."""
    return {
        "format": P.PROOF_FORMAT,
        "domain": P.domain(bank.w3.eth.chain_id, bank.contract.address.lower()),
        "order": batch.orders[index].to_json(),
        "signature": P.to_hex(batch.signatures[index]),
        "digest": P.to_hex(batch.digests[index]),
        "station": batch.stations[index].lower(),
        "leaf": P.to_hex(batch.leaves[index]),
        "proof": [P.to_hex(p) for p in batch.proof(index)],
        "batch": {
            "id": batch.batch_id,
            "root": P.to_hex(batch.root),
            "count": batch.count,
            "txHash": receipt["transactionHash"].to_0x_hex(),
            "blockNumber": receipt["blockNumber"],
            "blockHash": receipt["blockHash"].to_0x_hex(),
        },
    }


@dataclass
class Scenario:
    bank: C.Bank
    url: str
    station_key: bytes
    bundles: dict[str, dict[str, Any]]
    other_batch: dict[str, Any]  # batch 2's bundle["batch"]
    forged_tree: C.Batch  # holds the good order; never anchored


@pytest.fixture(scope="module")
def scenario(anvil, w3: Web3, timebank, keys) -> Iterator[Scenario]:
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    bank = C.Bank(w3, timebank, bytes(keys.city_admin.key), keys.relayer.address)
    d1, d2 = secrets.SystemRandom().sample(range(110000, 659999), 2)
    for district in (d1, d2):
        C.register_district(bank, district, C.address(C.new_key()))
    station_a, station_b, rogue = C.new_key(), C.new_key(), C.new_key()
    C.register_station(bank, C.address(station_a), d1)
    C.register_station(bank, C.address(station_b), d2)
    volunteer, recipient = C.new_account_id(), C.new_account_id()
    C.register_account(bank, volunteer, d1, C.KIND_VOLUNTEER)
    C.register_account(bank, recipient, d1, C.KIND_RECIPIENT)
    C.grant(bank, recipient, 600)

    def order(minutes: int) -> P.ServiceOrder:
        return C.make_order(district=d1, volunteer=volunteer, payer=recipient, minutes=minutes)

    names = ["good", "unregistered-station", "station-of-other-district", "revoked"]
    batch1 = C.build_batch(bank, [order(60), order(30), order(45), order(90)], [station_a, rogue, station_b, station_a])
    _, receipt1 = C.anchor(bank, batch1)
    batch2 = C.build_batch(bank, [order(20)], station_a)
    _, receipt2 = C.anchor(bank, batch2)
    C.revoke(bank, batch1, names.index("revoked"))

    bundles = {name: make_bundle(bank, batch1, i, receipt1) for i, name in enumerate(names)}
    forged = C.build_batch(bank, [batch1.orders[0], order(10), order(15)], station_a)
    yield Scenario(
        bank=bank,
        url=anvil.url,
        station_key=station_a,
        bundles=bundles,
        other_batch=make_bundle(bank, batch2, 0, receipt2)["batch"],
        forged_tree=forged,
    )
    assert w3.provider.make_request("evm_revert", [snapshot]).get("result") is True


def write_bundle(tmp_path: Path, bundle: dict[str, Any]) -> str:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    return str(path)


# ----- the good bundle ----------------------------------------------------------------------------


def test_good_bundle_verifies(scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main([write_bundle(tmp_path, scenario.bundles["good"]), "--rpc-url", scenario.url])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith(("✓", "✗"))]
    assert lines and all(line.startswith("✓") for line in lines), out
    assert {int(line.split("]")[0].split("[")[1]) for line in lines} == {0, 1, 2, 3, 4, 5}
    assert "verified" in out


def test_good_bundle_json_output(scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main([write_bundle(tmp_path, scenario.bundles["good"]), "--rpc-url", scenario.url, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["ok"] is True and result["failedStep"] is None
    assert all(c["ok"] for c in result["checks"])
    assert {c["step"] for c in result["checks"]} == {0, 1, 2, 3, 4, 5}


def test_pinned_contract(scenario: Scenario):
    bundle = scenario.bundles["good"]
    assert verify_bundle(bundle, scenario.url, contract="0x" + bundle["domain"]["verifyingContract"][2:].upper()).ok
    other = verify_bundle(bundle, scenario.url, contract="0x" + "11" * 20)
    assert other.failed_step == 0 and "--contract" in other.checks[-1].name


def test_installed_command_reads_stdin(scenario: Scenario):
    command = Path(sys.executable).with_name("timebank-verify")
    run = subprocess.run(
        [str(command), "-", "--rpc-url", scenario.url],
        input=json.dumps(scenario.bundles["good"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "✗" not in run.stdout and run.stdout.count("✓") >= 6


def test_unreachable_rpc_is_step_0(scenario: Scenario, tmp_path: Path):
    result = verify_bundle(scenario.bundles["good"], "http://127.0.0.1:9", timeout=2)  # discard port: closed
    assert (result.ok, result.failed_step, result.exit_code) == (False, 0, EXIT_MALFORMED)


def test_unreadable_bundle_is_step_0_and_bad_usage_is_not_a_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "bad.json").write_text("{not json")
    assert main([str(tmp_path / "bad.json"), "--rpc-url", "http://127.0.0.1:9"]) == EXIT_MALFORMED
    assert main([str(tmp_path / "missing.json"), "--rpc-url", "http://127.0.0.1:9"]) == EXIT_MALFORMED
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "bad.json")])  # no --rpc-url: argparse would exit 2, which reads as step 2
    assert exc.value.code == EXIT_USAGE
    capsys.readouterr()


def test_contract_verify_order_agrees(scenario: Scenario):
    """The contract's own `verifyOrder` view, a third implementation, finds what the verifier finds."""
    want = {
        "good": (True, True, True, False),
        "unregistered-station": (True, True, False, False),
        "station-of-other-district": (True, True, False, False),
        "revoked": (True, True, True, True),
    }
    for name, bundle in scenario.bundles.items():
        order = P.ServiceOrder.from_json(bundle["order"])
        got = C.verify_order(
            scenario.bank,
            order,
            P.parse_bytes(bundle["signature"], 65, "signature"),
            Web3.to_checksum_address(bundle["station"]),
            bundle["batch"]["id"],
            [P.parse_bytes(p, 32, "proof") for p in bundle["proof"]],
        )
        assert "0x" + got["digest"].hex() == bundle["digest"]
        assert (got["signedByStation"], got["included"], got["stationActive"], got["revoked"]) == want[name], name
        assert verify_bundle(bundle, scenario.url).ok is got["valid"]


# ----- independent implementations (Node: ethers v6, @openzeppelin/merkle-tree) -------------------


def node(script: str, payload: dict[str, Any]) -> str:
    run = subprocess.run(
        ["node", str(NODE_DIR / script)], input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_node_agrees_with_bundle(scenario: Scenario):
    bundle = scenario.bundles["good"]
    got = json.loads(node("verify_proof.mjs", bundle))
    assert got == {"merkleTree": True, "digest": bundle["digest"], "signer": Web3.to_checksum_address(bundle["station"])}


def test_ethers_signature_recovers_to_station_in_python(scenario: Scenario):
    bundle = scenario.bundles["good"]
    domain = bundle["domain"]
    typed = P.typed_message("ServiceOrder", domain["chainId"], domain["verifyingContract"], bundle["order"])
    signature = node("sign_typed.mjs", {**typed, "privateKey": P.to_hex(scenario.station_key)})
    raw = P.parse_bytes(signature, 65, "signature")
    assert P.recover(P.parse_bytes(bundle["digest"], 32, "digest"), raw) == P.parse_address(bundle["station"], "station")
    assert signature == bundle["signature"]  # both sign deterministically (RFC 6979, low s)


# ----- one case per mutation ----------------------------------------------------------------------


def _flip(hex_value: str) -> str:
    raw = bytearray(bytes.fromhex(hex_value[2:]))
    raw[0] ^= 0x01
    return "0x" + raw.hex()


def _set(path: str, value: Any) -> Callable[[dict, Scenario], None]:
    def mutate(bundle: dict, _: Scenario) -> None:
        *parents, last = path.split(".")
        target = bundle
        for key in parents:
            target = target[key]
        target[last] = value(target[last]) if callable(value) else value

    return mutate


def _other_signature(bundle: dict, s: Scenario) -> None:
    bundle["signature"] = s.bundles["revoked"]["signature"]


def _other_batch_root(bundle: dict, s: Scenario) -> None:
    bundle["batch"]["root"] = s.other_batch["root"]


def _other_batch_id(bundle: dict, s: Scenario) -> None:
    bundle["batch"]["id"] = s.other_batch["id"]


def _unanchored_tree(bundle: dict, s: Scenario) -> None:
    bundle["batch"]["root"] = P.to_hex(s.forged_tree.root)
    bundle["proof"] = [P.to_hex(p) for p in s.forged_tree.proof(0)]


@dataclass(frozen=True)
class Case:
    name: str
    bundle: str  # which of the scenario's bundles to start from
    mutate: Callable[[dict, Scenario], None] | None
    step: int  # the first step that must fail
    says: str  # in the first failed check's text
    why: str = ""


CASES = [
    Case("order-minutes-changed", "good", _set("order.minutes", lambda m: m + 1), 1, "bundle.digest"),
    Case("order-payer-changed", "good", _set("order.payer", _flip), 1, "bundle.digest"),
    Case("signature-of-other-order", "good", _other_signature, 1, "bundle.station",
         "the station's valid signature of another order recovers some other address"),
    Case("station-swapped", "good", _set("station", lambda s: _flip(s)), 1, "bundle.station"),
    Case("modified-proof[0]", "good", _set("proof", lambda p: [_flip(p[0]), *p[1:]]), 2, "batch.root"),
    Case("proof-truncated", "good", _set("proof", lambda p: p[:-1]), 2, "batch.root"),
    Case("leaf-changed", "good", _set("leaf", _flip), 2, "bundle.leaf"),
    Case("other-batch-root", "good", _other_batch_root, 2, "batch.root",
         "the proof folds the leaf to batch 1's root, so any other root fails offline, before the chain is asked"),
    Case("other-batch-id", "good", _other_batch_id, 3, "getBatch",
         "root and proof agree, but the chain holds another root under that id"),
    Case("root-never-anchored", "good", _unanchored_tree, 3, "getBatch",
         "a tree that holds the order, consistent with its proof, but never anchored"),
    Case("batch-count-changed", "good", _set("batch.count", lambda c: c + 1), 3, "count"),
    Case("wrong-blockHash", "good", _set("batch.blockHash", _flip), 3, "blockHash"),
    Case("wrong-blockNumber", "good", _set("batch.blockNumber", lambda n: n - 1), 3, "blockNumber"),
    Case("unknown-txHash", "good", _set("batch.txHash", _flip), 3, "no receipt"),
    Case("unregistered-station", "unregistered-station", None, 4, "never registered",
         "signed by a key never registered, with station set to that key: steps 1-3 pass"),
    Case("station-of-other-district", "station-of-other-district", None, 4, "order.district"),
    Case("revoked", "revoked", None, 5, "was revoked"),
    Case("other-chainId", "good", _set("domain.chainId", 1), 0, "chain id"),
    Case("other-verifyingContract", "good", _set("domain.verifyingContract", "0x" + "11" * 20), 0, "no code"),
    Case("wrong-format", "good", _set("format", "timebank-proof/2"), 0, "format"),
    Case("short-proof-element", "good", _set("proof", lambda p: [p[0][:-2], *p[1:]]), 0, "proof[0]"),
    Case("order-extra-field", "good", _set("order.notes", "x"), 0, "unexpected"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_mutation_fails_at_its_step(case: Case, scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bundle = copy.deepcopy(scenario.bundles[case.bundle])
    if case.mutate is not None:
        case.mutate(bundle, scenario)
    code = main([write_bundle(tmp_path, bundle), "--rpc-url", scenario.url, "--json"])
    result = json.loads(capsys.readouterr().out)
    report = json.dumps(result, indent=1)
    assert result["ok"] is False and result["failedStep"] == case.step, report
    assert code == (EXIT_MALFORMED if case.step == 0 else case.step)
    first = next(c for c in result["checks"] if not c["ok"])
    assert first["step"] == case.step
    text = " ".join(str(first[k]) for k in ("name", "message", "got", "want"))
    assert case.says in text, report
    if case.step != 0:  # every step ran: the earlier ones passed
        assert all(c["ok"] for c in result["checks"] if c["step"] < case.step), report
