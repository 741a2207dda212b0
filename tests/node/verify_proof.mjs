// Checks a proof bundle (PROTOCOL.md section 7) with implementations independent of ours: ethers v6
// for the EIP-712 digest and the signer, @openzeppelin/merkle-tree for the Merkle proof.
//
//   node tests/node/verify_proof.mjs < bundle.json
//
// Prints {"merkleTree": bool, "digest": "0x...", "signer": "0x..."} where
//   merkleTree = StandardMerkleTree.verify(batch.root, ["bytes32","address"], [digest, station], proof)
//   digest     = TypedDataEncoder.hash(domain, {ServiceOrder}, order)
//   signer     = verifyTypedData(domain, {ServiceOrder}, order, signature)   (checksummed)
// `digest` and `station` in the Merkle check are the bundle's own. A value ethers or the Merkle library
// refuses is printed as null (merkleTree: false) and the reason goes to stderr.
import { TypedDataEncoder, verifyTypedData } from "ethers";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";

// PROTOCOL.md section 3, written here again on purpose (not read from the bundle or from Python).
const TYPES = {
  ServiceOrder: [
    { name: "orderId", type: "bytes32" },
    { name: "district", type: "uint32" },
    { name: "volunteer", type: "bytes32" },
    { name: "payer", type: "bytes32" },
    { name: "recipient", type: "bytes32" },
    { name: "serviceType", type: "uint16" },
    { name: "startTime", type: "uint64" },
    { name: "endTime", type: "uint64" },
    { name: "minutes", type: "uint32" },
    { name: "detailsHash", type: "bytes32" },
  ],
};

const bundle = JSON.parse(await readStdin());
const { domain, order, signature, digest, station, proof, batch } = bundle;

const result = {
  merkleTree: attempt("merkleTree", false, () =>
    StandardMerkleTree.verify(batch.root, ["bytes32", "address"], [digest, station], proof),
  ),
  digest: attempt("digest", null, () => TypedDataEncoder.hash(domain, TYPES, order)),
  signer: attempt("signer", null, () => verifyTypedData(domain, TYPES, order, signature)),
};
process.stdout.write(JSON.stringify(result) + "\n");

function attempt(name, fallback, fn) {
  try {
    return fn();
  } catch (err) {
    process.stderr.write(`${name}: ${err.shortMessage ?? err.message}\n`);
    return fallback;
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}
