// Signs EIP-712 typed data with ethers v6, independently of the Python protocol module.
//
//   echo '{"domain": {...}, "types": {...}, "primaryType": "ServiceOrder", "message": {...},
//          "privateKey": "0x..."}' | node tests/node/sign_typed.mjs
//
// Prints the 65-byte signature as 0x-hex. `types` may include EIP712Domain (as eth_signTypedData_v4
// takes it); it is dropped, because ethers derives the domain type from `domain` itself. Only the
// primary type and the types it references are kept, so ethers finds the primary type unambiguously.
import { Wallet } from "ethers";

const input = JSON.parse(await readStdin());
const { domain, types, primaryType, message, privateKey } = input;
const signature = await new Wallet(privateKey).signTypedData(domain, pick(types, primaryType), message);
process.stdout.write(signature + "\n");

/** `primaryType` and the struct types it references, without EIP712Domain. */
function pick(types, primary) {
  const out = {};
  const visit = (name) => {
    if (out[name] || !types[name] || name === "EIP712Domain") return;
    out[name] = types[name];
    for (const { type } of types[name]) visit(type.replace(/\[\d*\]$/, ""));
  };
  visit(primary ?? Object.keys(types).find((name) => name !== "EIP712Domain"));
  return out;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}
