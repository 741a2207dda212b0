/**
 * The time bank's wire protocol (PROTOCOL.md v1.1) in TypeScript: identifiers, the EIP-712 domain and
 * types, order and command signing, the RFC 8785 details hash, signed-request headers, Merkle leaves.
 * Pure functions on `ethers` 6; nothing here talks to a network.
 */
import canonicalize from 'canonicalize'
import {
  AbstractSigner,
  getAddress,
  hexlify,
  keccak256,
  randomBytes,
  recoverAddress,
  Signature,
  toUtf8Bytes,
  TypedDataEncoder,
  type TypedDataField,
} from 'ethers'
import { StandardMerkleTree } from '@openzeppelin/merkle-tree'

export type Hex = `0x${string}`

export interface Domain {
  name: string
  version: string
  chainId: number
  verifyingContract: string
}

export type Types = Record<string, TypedDataField[]>

/** PROTOCOL.md section 1: account kinds, account status, service types. */
export const ACCOUNT_KINDS = { volunteer: 1, recipient: 2, group: 3, pool: 4 } as const
export const ACCOUNT_STATUS = { active: 1, frozen: 2, cancelled: 3 } as const
export const TRANSFER = 100
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
export const SERVICE_TYPES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 100] as const
export const PROFESSIONAL_SERVICE_TYPE = 9

/** PROTOCOL.md sections 3 and 4 (v1.1) and the README's SignedRequest. The service's `GET /v1/domain`
 * is the authority: `typesFrom` prefers what it answers, so a newer service's types are followed. */
export const TYPES: Types = {
  ServiceOrder: [
    { name: 'orderId', type: 'bytes32' },
    { name: 'district', type: 'uint32' },
    { name: 'volunteer', type: 'bytes32' },
    { name: 'payer', type: 'bytes32' },
    { name: 'recipient', type: 'bytes32' },
    { name: 'serviceType', type: 'uint16' },
    { name: 'startTime', type: 'uint64' },
    { name: 'endTime', type: 'uint64' },
    { name: 'minutes', type: 'uint32' },
    { name: 'detailsHash', type: 'bytes32' },
  ],
  RegisterDistrict: [
    { name: 'district', type: 'uint32' },
    { name: 'admin', type: 'address' },
    { name: 'nonce', type: 'uint64' },
  ],
  RegisterStation: [
    { name: 'station', type: 'address' },
    { name: 'district', type: 'uint32' },
    { name: 'nonce', type: 'uint64' },
  ],
  RemoveStation: [
    { name: 'station', type: 'address' },
    { name: 'nonce', type: 'uint64' },
  ],
  RegisterAccount: [
    { name: 'account', type: 'bytes32' },
    { name: 'district', type: 'uint32' },
    { name: 'kind', type: 'uint8' },
    { name: 'nonce', type: 'uint64' },
  ],
  SetAccountStatus: [
    { name: 'account', type: 'bytes32' },
    { name: 'status', type: 'uint8' },
    { name: 'reason', type: 'uint16' },
    { name: 'nonce', type: 'uint64' },
  ],
  Grant: [
    { name: 'account', type: 'bytes32' },
    { name: 'minutes', type: 'uint32' },
    { name: 'reason', type: 'uint16' },
    { name: 'nonce', type: 'uint64' },
  ],
  RevokeOrder: [
    { name: 'orderId', type: 'bytes32' },
    { name: 'digest', type: 'bytes32' },
    { name: 'reason', type: 'uint16' },
    { name: 'nonce', type: 'uint64' },
  ],
  RegisterAuditor: [
    { name: 'auditor', type: 'address' },
    { name: 'district', type: 'uint32' },
    { name: 'nonce', type: 'uint64' },
  ],
  LinkAccounts: [
    { name: 'payer', type: 'bytes32' },
    { name: 'beneficiary', type: 'bytes32' },
    { name: 'linked', type: 'bool' },
    { name: 'nonce', type: 'uint64' },
  ],
  // issue 10: the service's host and a one-time nonce are signed too (a service without them answers
  // its own SignedRequest type in GET /v1/domain, which `typesFrom` prefers)
  SignedRequest: [
    { name: 'method', type: 'string' },
    { name: 'host', type: 'string' },
    { name: 'path', type: 'string' },
    { name: 'bodyHash', type: 'bytes32' },
    { name: 'timestamp', type: 'uint64' },
    { name: 'nonce', type: 'bytes32' },
  ],
}

/** The types to sign with: the service's (from `GET /v1/domain`) over the built-in ones. */
export function typesFrom(served?: Types | null): Types {
  const out: Types = { ...TYPES }
  for (const [name, fields] of Object.entries(served ?? {})) if (name !== 'EIP712Domain') out[name] = fields
  return out
}

export interface ServiceOrder {
  orderId: Hex
  district: number
  volunteer: Hex
  payer: Hex
  recipient: Hex
  serviceType: number
  startTime: number
  endTime: number
  minutes: number
  detailsHash: Hex
}

export const ORDER_FIELDS = TYPES.ServiceOrder.map((f) => f.name) as (keyof ServiceOrder)[]

export interface Point {
  lat: number
  lon: number
  time: number
}

export interface Details {
  checkIn?: Point
  checkOut?: Point
  trail?: [number, number, number][]
  confirmation: {
    method: 'voice' | 'card' | 'signature'
    time: number
    /** voice: the recording's keccak256, MIME type and size (web/API-NEEDS.md section 2) */
    recording?: { keccak256: Hex; mimeType: string; bytes: number }
    /** signature: keccak256 of the handwritten signature's PNG */
    image?: { keccak256: Hex; mimeType: string; bytes: number }
  }
  rating?: { byRecipient: number; byVolunteer: number }
  notes?: string
  [extra: string]: unknown
}

export class ProtocolError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message)
    this.name = 'ProtocolError'
  }
}

// ----- identifiers -------------------------------------------------------------------------------

/** keccak256(utf8(cardNumber)) (section 1). */
export function accountId(cardNumber: string): Hex {
  return keccak256(toUtf8Bytes(cardNumber)) as Hex
}

/** 32 random bytes: a new order id (section 1). */
export function newOrderId(): Hex {
  return hexlify(randomBytes(32)) as Hex
}

/** A random unused command nonce (section 4): 48 bits, exact as a JSON number. */
export function newNonce(): number {
  const b = randomBytes(6)
  return b.reduce((n, x) => n * 256 + x, 0)
}

/** The district code a card number carries (`NJ-320102-000123` → 320102), or null. */
export function districtOfCard(cardNumber: string): number | null {
  const m = /-(\d{6})-/.exec(cardNumber)
  return m ? Number(m[1]) : null
}

// ----- hashing and signing -----------------------------------------------------------------------

/** keccak256 of the RFC 8785 canonical JSON of `details`, UTF-8 (section 3). */
export function detailsHash(details: unknown): Hex {
  const text = canonicalize(details)
  if (text === undefined) throw new ProtocolError('malformed_details', 'details: cannot be canonicalised')
  return keccak256(toUtf8Bytes(text)) as Hex
}

/** keccak256 of raw bytes (a voice recording, a signature image, a request body). */
export function keccakBytes(bytes: Uint8Array): Hex {
  return keccak256(bytes) as Hex
}

export function normaliseDomain(domain: Domain): Domain {
  return {
    name: domain.name,
    version: domain.version,
    chainId: Number(domain.chainId),
    verifyingContract: getAddress(domain.verifyingContract),
  }
}

/** The EIP-712 digest of a struct `name` under `domain`. */
export function typedDigest(domain: Domain, name: string, message: Record<string, unknown>, types: Types = TYPES): Hex {
  return TypedDataEncoder.hash(normaliseDomain(domain), { [name]: types[name] }, message) as Hex
}

export function orderDigest(domain: Domain, order: ServiceOrder): Hex {
  return typedDigest(domain, 'ServiceOrder', order as unknown as Record<string, unknown>)
}

/** The signer of a 65-byte signature over `digest`; refuses high-s and v other than 27/28, as the contract does. */
export function recoverSigner(digest: string, signature: string): string {
  if (!/^0x[0-9a-fA-F]{130}$/.test(signature)) throw new ProtocolError('wrong_length', 'signature: expected 65 bytes')
  const v = parseInt(signature.slice(130, 132), 16)
  if (v !== 27 && v !== 28) throw new ProtocolError('bad_signature', `signature: v is ${v}, the contract takes 27 or 28`)
  const s = BigInt('0x' + signature.slice(66, 130))
  if (s === 0n || s > SECP256K1_N / 2n) throw new ProtocolError('bad_signature', 'signature: s is zero or high')
  try {
    return recoverAddress(digest, Signature.from(signature))
  } catch (e) {
    throw new ProtocolError('bad_signature', `signature: ${(e as Error).message}`)
  }
}

export interface SignedOrder {
  order: ServiceOrder
  signature: Hex
  details: Details
  digest: Hex
  station: string
}

/** Sets `detailsHash` from `details`, signs the order as its station: the body of `POST /v1/orders`. */
export async function signOrder(
  signer: AbstractSigner,
  domain: Domain,
  order: Omit<ServiceOrder, 'detailsHash'>,
  details: Details,
): Promise<SignedOrder> {
  const full: ServiceOrder = { ...order, detailsHash: detailsHash(details) }
  const signature = (await signer.signTypedData(normaliseDomain(domain), { ServiceOrder: TYPES.ServiceOrder }, full)) as Hex
  return { order: full, signature, details, digest: orderDigest(domain, full), station: await signer.getAddress() }
}

export interface SignedCommand {
  type: string
  message: Record<string, unknown>
  signature: Hex
}

/** An administrative command (section 4), nonce filled when absent: the body of `POST /v1/admin/commands`. */
export async function signCommand(
  signer: AbstractSigner,
  domain: Domain,
  type: string,
  message: Record<string, unknown>,
  types: Types = TYPES,
): Promise<SignedCommand> {
  const fields = types[type]
  if (!fields || type === 'ServiceOrder' || type === 'SignedRequest') throw new ProtocolError('unknown_type', `unknown command ${type}`)
  const full: Record<string, unknown> = { ...message }
  if (full.nonce === undefined) full.nonce = newNonce()
  const missing = fields.filter((f) => full[f.name] === undefined).map((f) => f.name)
  if (missing.length) throw new ProtocolError('malformed_message', `${type}: missing ${missing.join(', ')}`)
  const exact = Object.fromEntries(fields.map((f) => [f.name, full[f.name]]))
  const signature = (await signer.signTypedData(normaliseDomain(domain), { [type]: fields }, exact)) as Hex
  return { type, message: exact, signature }
}

/**
 * The headers of a signed request (README "Signed requests"): EIP-712 `SignedRequest` under the
 * protocol's domain. The fields signed are those of the `SignedRequest` type in `types` (the service's,
 * from `GET /v1/domain`): `method, path, bodyHash, timestamp`, and also `host` and `nonce` when the
 * service's type has them (web/API-NEEDS.md section 5).
 */
export async function signRequest(
  signer: AbstractSigner,
  domain: Domain,
  req: { method: string; path: string; body?: Uint8Array | string; host?: string; timestamp?: number; nonce?: Hex },
  types: Types = TYPES,
): Promise<Record<string, string>> {
  const fields = types.SignedRequest
  const body = typeof req.body === 'string' ? toUtf8Bytes(req.body) : (req.body ?? new Uint8Array())
  const timestamp = req.timestamp ?? Math.floor(Date.now() / 1000)
  const values: Record<string, unknown> = {
    method: req.method.toUpperCase(),
    path: req.path,
    bodyHash: keccak256(body),
    timestamp,
    host: (req.host ?? '').toLowerCase(),
    nonce: req.nonce ?? hexlify(randomBytes(32)),
  }
  const message = Object.fromEntries(fields.map((f) => [f.name, values[f.name]]))
  const signature = await signer.signTypedData(normaliseDomain(domain), { SignedRequest: fields }, message)
  const headers: Record<string, string> = {
    'X-TimeBank-Signer': await signer.getAddress(),
    'X-TimeBank-Timestamp': String(timestamp),
    'X-TimeBank-Signature': signature,
  }
  if ('nonce' in message) headers['X-TimeBank-Nonce'] = String(message.nonce)
  return headers
}

// ----- Merkle leaves (section 5) -------------------------------------------------------------------

export const LEAF_TYPES = ['bytes32', 'address']

/** keccak256(bytes.concat(keccak256(abi.encode(digest, station)))). */
export function leafHash(digest: string, station: string): Hex {
  return StandardMerkleTree.of([[digest, station]], LEAF_TYPES).leafHash([digest, station]) as Hex
}

/** Folds `proof` from `leaf` (sorted pairs, as MerkleProof.processProof). */
export function foldProof(leaf: string, proof: string[]): Hex {
  let node = leaf.toLowerCase()
  for (const sibling of proof) {
    const s = sibling.toLowerCase()
    node = keccak256(node < s ? concatHex(node, s) : concatHex(s, node))
  }
  return node as Hex
}

function concatHex(a: string, b: string): string {
  return a + b.slice(2)
}

/** The root of the OpenZeppelin standard tree over `[digest, station]` leaves. */
export function batchRoot(leaves: [string, string][]): Hex {
  return StandardMerkleTree.of(leaves, LEAF_TYPES).root as Hex
}
