// The TypeScript client against the reference implementation (api/protocol.py, api/auth.py), run by
// the project's own Python: every hash and signature must be the same bytes on both sides.
import { execFileSync } from 'node:child_process'
import { resolve } from 'node:path'
import { Wallet } from 'ethers'
import { describe, expect, it } from 'vitest'
import {
  accountId,
  batchRoot,
  detailsHash,
  foldProof,
  leafHash,
  newNonce,
  newOrderId,
  orderDigest,
  ProtocolError,
  recoverSigner,
  signCommand,
  signOrder,
  signRequest,
  typedDigest,
  type Details,
} from './protocol'

const ROOT = resolve(__dirname, '../../..')
const PYTHON = resolve(ROOT, '.venv/bin/python')

/** Runs `code` with `api.protocol as p` and `inp` (the JSON on stdin); returns what it prints as JSON. */
function python(code: string, inp: unknown): any {
  const prog = `import json, sys\nfrom api import protocol as p\nfrom api import auth\ninp = json.load(sys.stdin)\n${code}`
  return JSON.parse(execFileSync(PYTHON, ['-c', prog], { cwd: ROOT, input: JSON.stringify(inp), env: { ...process.env, ETH_HASH_BACKEND: 'pysha3' } }).toString())
}

const station = new Wallet('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d')
const admin = new Wallet('0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80')
const domain = { name: 'TimeBank', version: '1', chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' }

const details: Details = {
  checkIn: { lat: 32.0603, lon: 118.7969, time: 1764460800 },
  checkOut: { lat: 32.0604, lon: 118.797, time: 1764464400 },
  confirmation: { method: 'voice', time: 1764464400, recording: { keccak256: `0x${'ab'.repeat(32)}`, mimeType: 'audio/webm', bytes: 1234 } },
  notes: '王奶奶 说谢谢 — “很好” 🙂',
  rating: { byRecipient: 5, byVolunteer: 4 },
  trail: [[32.06, 118.79, 1764462000]],
  weight: 1e21,
  small: 0.000001,
}

describe('identifiers', () => {
  it('account id is keccak256 of the card number, as the service computes it', () => {
    const card = 'NJ-320102-000123'
    expect(accountId(card)).toBe(python('print(json.dumps(p.to_hex(p.account_id(inp))))', card))
  })
  it('order ids are 32 random bytes and nonces fit a JSON number', () => {
    expect(newOrderId()).toMatch(/^0x[0-9a-f]{64}$/)
    expect(newOrderId()).not.toBe(newOrderId())
    const n = newNonce()
    expect(Number.isSafeInteger(n) && n >= 0).toBe(true)
  })
})

describe('details hash (RFC 8785)', () => {
  it('equals the service’s for Chinese text, emoji, large and small numbers', () => {
    expect(detailsHash(details)).toBe(python('print(json.dumps(p.to_hex(p.details_hash(inp))))', details))
  })
  it('does not depend on key order', () => {
    const shuffled = Object.fromEntries(Object.entries(details).reverse())
    expect(detailsHash(shuffled)).toBe(detailsHash(details))
  })
  it('changes with any value', () => {
    expect(detailsHash({ ...details, notes: 'x' })).not.toBe(detailsHash(details))
  })
})

describe('orders', () => {
  const order = {
    orderId: `0x${'11'.repeat(32)}` as const,
    district: 320102,
    volunteer: accountId('NJ-320102-V001'),
    payer: accountId('NJ-320102-E001'),
    recipient: accountId('NJ-320102-E001'),
    serviceType: 5,
    startTime: 1764460800,
    endTime: 1764464400,
    minutes: 60,
  }
  it('signs an order the service accepts: same digest, signer recovered as the station', async () => {
    const signed = await signOrder(station, domain, order, details)
    expect(signed.order.detailsHash).toBe(detailsHash(details))
    const py = python(
      `o = p.ServiceOrder.from_json(inp['order'])\nd = o.digest(p.domain_separator(inp['chainId'], inp['contract']))\nprint(json.dumps([p.to_hex(d), p.to_hex(p.recover(d, p.parse_bytes(inp['signature'], 65, 's')))]))`,
      { order: signed.order, signature: signed.signature, chainId: domain.chainId, contract: domain.verifyingContract },
    )
    expect(signed.digest).toBe(py[0])
    expect(py[1]).toBe(station.address.toLowerCase())
    expect(recoverSigner(signed.digest, signed.signature)).toBe(station.address)
  })
  it('a changed field changes the digest', async () => {
    const signed = await signOrder(station, domain, order, details)
    expect(orderDigest(domain, { ...signed.order, minutes: 61 })).not.toBe(signed.digest)
    expect(orderDigest({ ...domain, chainId: 1 }, signed.order)).not.toBe(signed.digest)
  })
  it('refuses signatures the contract refuses (v 0/1, high s, wrong length)', async () => {
    const signed = await signOrder(station, domain, order, details)
    const v0 = signed.signature.slice(0, 130) + '00'
    expect(() => recoverSigner(signed.digest, v0)).toThrow(ProtocolError)
    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
    const s = BigInt('0x' + signed.signature.slice(66, 130))
    const highS = signed.signature.slice(0, 66) + (n - s).toString(16).padStart(64, '0') + (signed.signature.endsWith('1b') ? '1c' : '1b')
    expect(() => recoverSigner(signed.digest, highS)).toThrow(/high/)
    expect(() => recoverSigner(signed.digest, signed.signature.slice(0, 128))).toThrow(ProtocolError)
  })
})

describe('administrative commands', () => {
  it('signs each command type as the service checks it', async () => {
    const cases: [string, Record<string, unknown>][] = [
      ['RegisterStation', { station: station.address, district: 320102 }],
      ['Grant', { account: accountId('NJ-320102-E001'), minutes: 600, reason: 1 }],
      ['SetAccountStatus', { account: accountId('NJ-320102-E001'), status: 2, reason: 3 }],
    ]
    for (const [type, message] of cases) {
      const cmd = await signCommand(admin, domain, type, message)
      expect(cmd.message.nonce).toBeTypeOf('number')
      const signer = python(
        `m = p.parse_message(inp['type'], inp['message'])\nd = p.typed_digest(p.domain_separator(inp['chainId'], inp['contract']), inp['type'], m)\nprint(json.dumps(p.to_hex(p.recover(d, p.parse_bytes(inp['signature'], 65, 's')))))`,
        { ...cmd, chainId: domain.chainId, contract: domain.verifyingContract },
      )
      expect(signer).toBe(admin.address.toLowerCase())
    }
  })
  it('refuses unknown types and missing fields', async () => {
    await expect(signCommand(admin, domain, 'Mint', {})).rejects.toThrow(ProtocolError)
    await expect(signCommand(admin, domain, 'Grant', { minutes: 1 })).rejects.toThrow(/missing account/)
  })
  it('v1.1 types: RevokeOrder carries the digest, LinkAccounts exists', async () => {
    const cmd = await signCommand(admin, domain, 'RevokeOrder', { orderId: `0x${'22'.repeat(32)}`, digest: `0x${'33'.repeat(32)}`, reason: 2, nonce: 7 })
    expect(Object.keys(cmd.message)).toEqual(['orderId', 'digest', 'reason', 'nonce'])
    const link = await signCommand(admin, domain, 'LinkAccounts', { payer: accountId('a'), beneficiary: accountId('b'), linked: true })
    expect(link.message.linked).toBe(true)
  })
})

describe('signed requests', () => {
  it('headers the service authenticates: the fields of its own SignedRequest type (api/protocol.py)', async () => {
    const fields = python("print(json.dumps([{'name': n, 'type': t} for n, t in p.ALL_TYPES['SignedRequest']]))", null)
    const body = JSON.stringify({ cardNumber: 'NJ-320102-000123', name: '王秀英' })
    const headers = await signRequest(admin, domain, { method: 'post', path: '/v1/people?x=1', body, host: '127.0.0.1:8000' }, { SignedRequest: fields })
    const recovered = python(
      `sep = p.domain_separator(inp['chainId'], inp['contract'])\nh = {k.lower(): v for k, v in inp['headers'].items()}\nvalues = {'method': 'POST', 'host': '127.0.0.1:8000', 'path': inp['path'], 'bodyHash': p.to_hex(p.keccak(inp['body'].encode())), 'timestamp': int(h['x-timebank-timestamp']), 'nonce': h.get('x-timebank-nonce')}\nm = {n: values[n] for n, _ in p.ALL_TYPES['SignedRequest']}\nprint(json.dumps(p.to_hex(p.recover(p.typed_digest(sep, 'SignedRequest', m), p.parse_bytes(h['x-timebank-signature'], 65, 's')))))`,
      { headers, path: '/v1/people?x=1', body, chainId: domain.chainId, contract: domain.verifyingContract },
    )
    expect(recovered).toBe(admin.address.toLowerCase())
    expect(headers['X-TimeBank-Signer']).toBe(admin.address)
  })
  it('signs host and a fresh one-time nonce by default; an older service’s type without them is followed', async () => {
    const a = await signRequest(admin, domain, { method: 'GET', path: '/v1/people/NJ-1', host: '127.0.0.1:8000', timestamp: 1764460800 })
    const b = await signRequest(admin, domain, { method: 'GET', path: '/v1/people/NJ-1', host: '127.0.0.1:8000', timestamp: 1764460800 })
    expect(a['X-TimeBank-Nonce']).toMatch(/^0x[0-9a-f]{64}$/)
    expect(a['X-TimeBank-Nonce']).not.toBe(b['X-TimeBank-Nonce'])
    const digest = typedDigest(domain, 'SignedRequest', { method: 'GET', host: '127.0.0.1:8000', path: '/v1/people/NJ-1', bodyHash: '0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470', timestamp: 1764460800, nonce: a['X-TimeBank-Nonce'] })
    expect(recoverSigner(digest, a['X-TimeBank-Signature'])).toBe(admin.address)
    const v1 = { SignedRequest: [
      { name: 'method', type: 'string' },
      { name: 'path', type: 'string' },
      { name: 'bodyHash', type: 'bytes32' },
      { name: 'timestamp', type: 'uint64' },
    ] }
    const old = await signRequest(admin, domain, { method: 'GET', path: '/v1/x', timestamp: 1764460800 }, v1)
    expect(old['X-TimeBank-Nonce']).toBeUndefined()
    const oldDigest = typedDigest(domain, 'SignedRequest', { method: 'GET', path: '/v1/x', bodyHash: '0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470', timestamp: 1764460800 }, v1)
    expect(recoverSigner(oldDigest, old['X-TimeBank-Signature'])).toBe(admin.address)
  })
})

describe('Merkle leaves and proofs', () => {
  it('leaf, tree root and folded proof are the service’s (OpenZeppelin standard tree)', () => {
    const values: [string, string][] = Array.from({ length: 5 }, (_, i) => [`0x${String(i + 1).repeat(64)}`, station.address])
    const py = python(
      `leaves = [p.leaf(p.parse_bytes(d, 32, 'd'), p.parse_address(s, 's')) for d, s in inp]\nt = p.MerkleTree(leaves)\nprint(json.dumps([p.to_hex(l) for l in leaves] + [p.to_hex(t.root)] + [[p.to_hex(x) for x in t.proof(i)] for i in range(len(leaves))]))`,
      values,
    )
    const leaves = values.map(([d, s]) => leafHash(d, s))
    expect(leaves).toEqual(py.slice(0, 5))
    expect(batchRoot(values)).toBe(py[5])
    leaves.forEach((l, i) => expect(foldProof(l, py[6 + i])).toBe(py[5]))
    expect(foldProof(leaves[0], py[7])).not.toBe(py[5])
  })
})
