// Roots of OpenZeppelin's StandardMerkleTree over `["bytes32", "address"]` values, built by
// @openzeppelin/merkle-tree itself: the reference the contract's on-chain build is checked against.
//
//   node tests/node/standard_roots.mjs < cases.json
//
// Reads a JSON array of cases, each an array of [digest, station] values; prints a JSON array of roots.
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const roots = JSON.parse(input).map((values) => StandardMerkleTree.of(values, ["bytes32", "address"]).root);
process.stdout.write(JSON.stringify(roots));
