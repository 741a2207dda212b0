"""Compile contracts/*.sol into build/<Contract>.json with the npm solc (via the shim).

    python -m scripts.compile [--force]

Source unit names are the project-relative paths Hardhat uses
(`contracts/TimeBank.sol`, `@openzeppelin/contracts/...`), and the settings are
the ones in hardhat.config.js, so both builds give byte-identical metadata and
bytecode (tests/test_build.py checks it). A build is skipped when the contract
sources, the files they import, the compiler version and the settings are all
unchanged.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import solcx
from eth_utils import keccak

ROOT = Path(__file__).resolve().parent.parent
SOLC_SHIM = ROOT / "scripts" / "solc-shim.cjs"

# Keep in step with hardhat.config.js (tests/test_build.py compares the two builds).
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "paris",
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]}
    },
}


def write_json(path: Path, data: dict) -> None:
    """Write atomically, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, 0o644)  # mkstemp makes it 0600
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@functools.cache
def compiler_version() -> str:
    """The shim's compiler version as solc reports it, e.g. `0.8.28+commit.7893614a`."""
    return solcx.wrapper.get_version_str_from_solc_binary(SOLC_SHIM)


def contract_sources(root: Path = ROOT) -> dict[str, str]:
    """`{source unit name: content}` of every .sol file under `root`/contracts/."""
    files = sorted((root / "contracts").rglob("*.sol"))
    return {f.relative_to(root).as_posix(): f.read_bytes().decode("utf-8") for f in files}


def source_hash(sources: dict[str, str], version: str) -> str:
    """sha256 over the contract sources, the compiler version and the settings."""
    blob = json.dumps({"sources": sources, "version": version, "settings": SETTINGS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _imports_unchanged(artifact: dict, root: Path) -> bool:
    """Whether every source the artifact was built from still has the same keccak256.

    Looks a source up where the shim does: node_modules first, then the project.
    """
    for unit_name, source in json.loads(artifact["metadata"])["sources"].items():
        path = next((p for p in (ROOT / "node_modules" / unit_name, root / unit_name) if p.is_file()), None)
        if path is None or "0x" + keccak(path.read_bytes()).hex() != source["keccak256"]:
            return False
    return True


def is_fresh(root: Path = ROOT) -> bool:
    """Whether build/ holds the artifacts of the current sources, imports, compiler and settings."""
    index = _read_json(root / "build" / ".contracts.json")
    if index is None or index.get("sourceHash") != source_hash(contract_sources(root), compiler_version()):
        return False
    for name in index["contracts"]:
        artifact = _read_json(root / "build" / f"{name}.json")
        if artifact is None or artifact.get("sourceHash") != index["sourceHash"]:
            return False
        if not _imports_unchanged(artifact, root):
            return False
    return True


def compile_contracts(force: bool = False, root: Path = ROOT) -> list[str]:
    """Compile every contract defined under `root`/contracts/ into `root`/build/.

    Returns the names of the contracts written, or an empty list when everything
    was up to date (and `force` is false). Artifacts of contracts that no longer
    exist are removed. Raises solcx.exceptions.SolcError on a compilation error.
    """
    if not force and is_fresh(root):
        return []
    sources = contract_sources(root)
    if not sources:
        raise FileNotFoundError(f"no .sol files under {root / 'contracts'}")
    output = solcx.compile_standard(
        {
            "language": "Solidity",
            "sources": {unit: {"content": text} for unit, text in sources.items()},
            "settings": SETTINGS,
        },
        solc_binary=SOLC_SHIM,
    )
    for error in output.get("errors", []):  # warnings only: compile_standard raises on errors
        print(error["formattedMessage"], file=sys.stderr)

    version = compiler_version()
    digest = source_hash(sources, version)
    settings = {k: v for k, v in SETTINGS.items() if k != "outputSelection"}
    build = root / "build"
    written = []
    for unit in sources:
        for name, out in output["contracts"].get(unit, {}).items():
            write_json(
                build / f"{name}.json",
                {
                    "contractName": name,
                    "sourceName": unit,
                    "abi": out["abi"],
                    "bytecode": "0x" + out["evm"]["bytecode"]["object"],
                    "deployedBytecode": "0x" + out["evm"]["deployedBytecode"]["object"],
                    "metadata": out["metadata"],
                    "compiler": {"version": version, "settings": settings},
                    "sourceHash": digest,
                },
            )
            written.append(name)
    old = _read_json(build / ".contracts.json") or {}
    for name in set(old.get("contracts", [])) - set(written):
        (build / f"{name}.json").unlink(missing_ok=True)
    write_json(build / ".contracts.json", {"sourceHash": digest, "contracts": written})
    return written


def load_artifact(name: str = "TimeBank", root: Path = ROOT) -> dict:
    """The build artifact of contract `name`, compiling first when missing or stale."""
    compile_contracts(root=root)
    if name not in _read_json(root / "build" / ".contracts.json")["contracts"]:
        raise LookupError(f"no contract named {name!r} under {root / 'contracts'}")
    return _read_json(root / "build" / f"{name}.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.compile", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="compile even when nothing changed")
    args = parser.parse_args(argv)
    try:
        written = compile_contracts(force=args.force)
    except solcx.exceptions.SolcError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    print(f"compiled {', '.join(written)} -> build/" if written else "contracts unchanged; nothing to compile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
