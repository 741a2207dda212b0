/**
 * The auditor's checks of PROTOCOL.md section 7, in the browser (or Node): a proof bundle, or a whole
 * batch as the service lists it (`GET /v1/batches/{id}`), recomputed here and compared with the chain
 * behind the auditor's own RPC endpoint, the contract address pinned by the auditor. Nothing is taken on
 * the service's word. The same steps and exit numbers as `timebank-verify` (scripts/verify_proof.py).
 */
import { AbiCoder, getAddress, id as topicOf, Interface } from 'ethers'
import {
  batchRoot,
  foldProof,
  leafHash,
  ORDER_FIELDS,
  orderDigest,
  ProtocolError,
  recoverSigner,
  TRANSFER,
  type Domain,
  type ServiceOrder,
} from './protocol'

export const PROOF_FORMAT = 'timebank-proof/1'
export const BATCH_FORMAT = 'timebank-batch/1'

export const STEP_NAMES: Record<number, string> = {
  0: 'bundle and RPC',
  1: 'signature',
  2: 'Merkle inclusion',
  3: 'anchored on chain',
  4: 'station registered',
  5: 'not revoked',
}
export const BATCH_STEP_NAMES: Record<number, string> = {
  0: 'listing and RPC',
  1: 'signatures',
  2: 'Merkle root',
  3: 'anchored on chain',
  4: 'amounts moved',
}

/** One comparison: `got` is what was recomputed or read from the chain, `want` what the bundle says. */
export interface Check {
  step: number
  name: string
  ok: boolean
  got?: string
  want?: string
  message?: string
}

export interface Result {
  ok: boolean
  failedStep: number | null
  checks: Check[]
}

const ABI = new Interface([
  'function getBatch(uint64 batchId) view returns (bytes32 root, uint32 count, uint64 anchoredAtBlock)',
  'function getStation(address station) view returns (uint32 district, uint64 activeFromBlock, uint64 activeUntilBlock)',
  'function isRevoked(bytes32 orderId) view returns (bool)',
  'function accountAt(uint32 index) view returns (bytes32)',
  'function anchorBatch(bytes32 root, uint32 count, bytes deltas)',
  'event BatchAnchored(uint64 indexed batchId, bytes32 root, uint32 count)',
  'event OrderRevoked(bytes32 indexed orderId, uint64 indexed batchId, uint16 reason)',
])
const BATCH_ANCHORED = topicOf('BatchAnchored(uint64,bytes32,uint32)')
const ORDER_REVOKED = topicOf('OrderRevoked(bytes32,uint64,uint16)')
const ZERO32 = '0x' + '0'.repeat(64)

export class RpcError extends Error {}

/** The few JSON-RPC calls the verifier needs, over `fetch`. */
export class Rpc {
  private seq = 0
  constructor(
    readonly url: string,
    readonly timeoutMs = 10_000,
  ) {}

  async call(method: string, ...params: unknown[]): Promise<any> {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), this.timeoutMs)
    let reply: any
    try {
      const res = await fetch(this.url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: ++this.seq, method, params }),
        signal: controller.signal,
      })
      reply = await res.json()
    } catch (e) {
      throw new RpcError(`${method} at ${this.url}: ${(e as Error).message}`)
    } finally {
      clearTimeout(timer)
    }
    if (reply?.error) throw new RpcError(`${method}: ${reply.error.message ?? JSON.stringify(reply.error)}`)
    if (!reply || !('result' in reply)) throw new RpcError(`${method} at ${this.url}: not a JSON-RPC answer`)
    return reply.result
  }

  async view(contract: string, fn: string, args: unknown[]): Promise<any[]> {
    const data = ABI.encodeFunctionData(fn, args)
    const raw = await this.call('eth_call', { to: contract, data }, 'latest')
    try {
      return [...ABI.decodeFunctionResult(fn, raw)]
    } catch (e) {
      throw new RpcError(`${fn}: cannot decode ${String(raw).slice(0, 80)}: ${(e as Error).message}`)
    }
  }
}

class Report {
  checks: Check[] = []
  compare(step: number, name: string, got: unknown, want: unknown): boolean {
    const g = show(got)
    const w = show(want)
    const ok = g === w
    this.checks.push({ step, name, ok, got: g, want: w })
    return ok
  }
  fail(step: number, name: string, message: string, got?: unknown, want?: unknown) {
    this.checks.push({ step, name, ok: false, got: show(got), want: show(want), message })
  }
  pass(step: number, name: string, message: string, got?: unknown, want?: unknown) {
    this.checks.push({ step, name, ok: true, got: show(got), want: show(want), message })
  }
  result(): Result {
    const failed = this.checks.filter((c) => !c.ok).map((c) => c.step)
    return { ok: failed.length === 0, failedStep: failed.length ? failed[0] : null, checks: this.checks }
  }
}

function show(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string' && /^0x[0-9a-fA-F]*$/.test(v)) return v.length === 42 ? getAddress(v) : v.toLowerCase()
  return String(v)
}

// ----- parsing ------------------------------------------------------------------------------------

const HEX = (n: number) => new RegExp(`^0x[0-9a-fA-F]{${2 * n}}$`)

function bytesField(v: unknown, n: number, where: string): string {
  if (typeof v !== 'string' || !HEX(n).test(v)) throw new ProtocolError('malformed_bundle', `${where}: expected ${n} bytes as 0x hex`)
  return v.toLowerCase()
}

function uintField(v: unknown, bits: number, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || BigInt(v) >= 1n << BigInt(bits))
    throw new ProtocolError('malformed_bundle', `${where}: expected a uint${bits}`)
  return v
}

function parseDomain(v: any): Domain {
  if (!v || typeof v !== 'object') throw new ProtocolError('malformed_bundle', 'domain: expected an object')
  if (v.name !== 'TimeBank' || v.version !== '1') throw new ProtocolError('malformed_bundle', 'domain: expected TimeBank version 1')
  return { name: v.name, version: v.version, chainId: uintField(v.chainId, 64, 'domain.chainId'), verifyingContract: getAddress(bytesField(v.verifyingContract, 20, 'domain.verifyingContract')) }
}

function parseOrder(v: any, where = 'order'): ServiceOrder {
  if (!v || typeof v !== 'object') throw new ProtocolError('malformed_bundle', `${where}: expected an object`)
  const extra = Object.keys(v).filter((k) => !(ORDER_FIELDS as string[]).includes(k))
  const missing = ORDER_FIELDS.filter((k) => !(k in v))
  if (extra.length || missing.length) throw new ProtocolError('malformed_bundle', `${where}: exactly the ServiceOrder fields (missing ${missing}, extra ${extra})`)
  return {
    orderId: bytesField(v.orderId, 32, `${where}.orderId`) as any,
    district: uintField(v.district, 32, `${where}.district`),
    volunteer: bytesField(v.volunteer, 32, `${where}.volunteer`) as any,
    payer: bytesField(v.payer, 32, `${where}.payer`) as any,
    recipient: bytesField(v.recipient, 32, `${where}.recipient`) as any,
    serviceType: uintField(v.serviceType, 16, `${where}.serviceType`),
    startTime: uintField(v.startTime, 64, `${where}.startTime`),
    endTime: uintField(v.endTime, 64, `${where}.endTime`),
    minutes: uintField(v.minutes, 32, `${where}.minutes`),
    detailsHash: bytesField(v.detailsHash, 32, `${where}.detailsHash`) as any,
  }
}

interface BatchRef {
  id: number
  root: string
  count: number
  txHash: string
  blockNumber: number
  blockHash: string
}

function parseBatch(v: any): BatchRef {
  if (!v || typeof v !== 'object') throw new ProtocolError('malformed_bundle', 'batch: expected an object')
  return {
    id: uintField(v.id, 64, 'batch.id'),
    root: bytesField(v.root, 32, 'batch.root'),
    count: uintField(v.count, 32, 'batch.count'),
    txHash: bytesField(v.txHash, 32, 'batch.txHash'),
    blockNumber: uintField(v.blockNumber, 64, 'batch.blockNumber'),
    blockHash: bytesField(v.blockHash, 32, 'batch.blockHash'),
  }
}

export interface Bundle {
  domain: Domain
  order: ServiceOrder
  signature: string
  digest: string
  station: string
  leaf: string
  proof: string[]
  batch: BatchRef
}

export function parseBundle(v: any): Bundle {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ProtocolError('malformed_bundle', 'bundle: expected a JSON object')
  const missing = ['format', 'domain', 'order', 'signature', 'digest', 'station', 'leaf', 'proof', 'batch'].filter((f) => !(f in v))
  if (missing.length) throw new ProtocolError('malformed_bundle', `bundle: missing fields ${missing.join(', ')}`)
  if (v.format !== PROOF_FORMAT) throw new ProtocolError('malformed_bundle', `format: got ${JSON.stringify(v.format)}, want ${PROOF_FORMAT}`)
  if (!Array.isArray(v.proof)) throw new ProtocolError('malformed_bundle', 'proof: expected a list of 0x hex strings')
  return {
    domain: parseDomain(v.domain),
    order: parseOrder(v.order),
    signature: bytesField(v.signature, 65, 'signature'),
    digest: bytesField(v.digest, 32, 'digest'),
    station: bytesField(v.station, 20, 'station'),
    leaf: bytesField(v.leaf, 32, 'leaf'),
    proof: v.proof.map((p: unknown, i: number) => bytesField(p, 32, `proof[${i}]`)),
    batch: parseBatch(v.batch),
  }
}

// ----- the steps ----------------------------------------------------------------------------------

async function step0(r: Report, rpc: Rpc, domain: Domain, pinned: { chainId?: number; contract?: string }): Promise<boolean> {
  if (pinned.contract && !r.compare(0, 'domain.verifyingContract equals the pinned contract', domain.verifyingContract, pinned.contract)) return false
  if (pinned.chainId !== undefined && !r.compare(0, 'domain.chainId equals the pinned chain id', domain.chainId, pinned.chainId)) return false
  const chainId = Number(BigInt(await rpc.call('eth_chainId')))
  if (!r.compare(0, 'RPC chain id equals domain.chainId', chainId, domain.chainId)) return false
  const code: string = await rpc.call('eth_getCode', domain.verifyingContract, 'latest')
  if (!code || code === '0x') {
    r.fail(0, 'contract code', `no code at ${domain.verifyingContract}`)
    return false
  }
  r.pass(0, 'contract code', `${(code.length - 2) / 2} bytes of code at ${domain.verifyingContract}`)
  return true
}

function step1(r: Report, b: Bundle): string {
  const digest = orderDigest(b.domain, b.order)
  r.compare(1, 'digest recomputed from domain and order equals bundle.digest', digest, b.digest)
  const name = 'signer of the recomputed digest equals bundle.station'
  try {
    r.compare(1, name, recoverSigner(digest, b.signature), b.station)
  } catch (e) {
    r.fail(1, name, (e as Error).message, undefined, b.station)
  }
  return digest
}

function step2(r: Report, b: Bundle, digest: string) {
  const leaf = leafHash(digest, b.station)
  r.compare(2, 'leaf recomputed from digest and station equals bundle.leaf', leaf, b.leaf)
  r.compare(2, `proof (${b.proof.length} nodes) folds the leaf to batch.root`, foldProof(leaf, b.proof), b.batch.root)
}

function anchoredLog(log: any, contract: string): [number, string, number] | null {
  try {
    if (getAddress(log.address) !== getAddress(contract) || log.topics?.[0] !== BATCH_ANCHORED) return null
    const parsed = ABI.parseLog(log)!
    return [Number(parsed.args.batchId), String(parsed.args.root).toLowerCase(), Number(parsed.args.count)]
  } catch {
    return null
  }
}

async function anchorChecks(r: Report, rpc: Rpc, contract: string, batch: BatchRef, root: string, count: number) {
  const [chainRoot, chainCount, atBlock] = await rpc.view(contract, 'getBatch', [batch.id])
  if (String(chainRoot) === ZERO32) {
    r.fail(3, `getBatch(${batch.id}).root equals batch.root`, `no batch ${batch.id} on chain`, chainRoot, root)
  } else {
    r.compare(3, `getBatch(${batch.id}).root equals batch.root`, chainRoot, root)
    r.compare(3, `getBatch(${batch.id}).count equals batch.count`, Number(chainCount), count)
    r.compare(3, `getBatch(${batch.id}).anchoredAtBlock equals batch.blockNumber`, Number(atBlock), batch.blockNumber)
  }
  const receipt = await rpc.call('eth_getTransactionReceipt', batch.txHash)
  if (!receipt) {
    r.fail(3, 'receipt of batch.txHash', `no receipt for ${batch.txHash} on this chain`)
  } else {
    r.compare(3, 'receipt status', Number(BigInt(receipt.status)), 1)
    r.compare(3, 'receipt blockNumber equals batch.blockNumber', Number(BigInt(receipt.blockNumber)), batch.blockNumber)
    r.compare(3, 'receipt blockHash equals batch.blockHash', receipt.blockHash, batch.blockHash)
    const want = `BatchAnchored(${batch.id}, ${root}, ${count})`
    const logs = (receipt.logs ?? []).map((l: any) => anchoredLog(l, contract)).filter(Boolean) as [number, string, number][]
    const found = logs.map(([i, rt, c]) => `BatchAnchored(${i}, ${rt}, ${c})`)
    if (found.includes(want)) r.pass(3, 'BatchAnchored log in batch.txHash', want, want, want)
    else r.fail(3, 'BatchAnchored log in batch.txHash', `got ${found.join('; ') || 'no BatchAnchored log from the contract'}, want ${want}`, found.join('; ') || undefined, want)
  }
  const block = await rpc.call('eth_getBlockByNumber', '0x' + batch.blockNumber.toString(16), false)
  if (!block) r.fail(3, 'block batch.blockNumber is canonical', `no block ${batch.blockNumber} on this chain`, undefined, batch.blockHash)
  else r.compare(3, `hash of canonical block ${batch.blockNumber} equals batch.blockHash`, block.hash, batch.blockHash)
}

async function step4(r: Report, rpc: Rpc, b: Bundle) {
  const [district, from, until] = (await rpc.view(b.domain.verifyingContract, 'getStation', [getAddress(b.station)])).map(Number)
  if (district === 0) {
    r.fail(4, 'station registered for order.district', `${getAddress(b.station)} was never registered`, 0, b.order.district)
    return
  }
  r.compare(4, 'getStation(station).district equals order.district', district, b.order.district)
  const block = b.batch.blockNumber
  const window = `[${from}, ${until || '∞'})`
  if (from <= block && (until === 0 || block < until)) r.pass(4, 'station active at batch.blockNumber', `block ${block} in ${window}`, block, window)
  else r.fail(4, 'station active at batch.blockNumber', `got block ${block}, want a block in the station's active window ${window}`, block, window)
}

async function step5(r: Report, rpc: Rpc, b: Bundle) {
  const [revoked] = await rpc.view(b.domain.verifyingContract, 'isRevoked', [b.order.orderId])
  if (!revoked) {
    r.pass(5, 'order not revoked', `isRevoked(${b.order.orderId}) is false`, false, false)
    return
  }
  let where = ''
  try {
    const logs = await rpc.call('eth_getLogs', {
      address: b.domain.verifyingContract,
      fromBlock: '0x' + b.batch.blockNumber.toString(16),
      toBlock: 'latest',
      topics: [ORDER_REVOKED, b.order.orderId],
    })
    const log = ABI.parseLog(logs[logs.length - 1])!
    where = ` in block ${Number(BigInt(logs[logs.length - 1].blockNumber))} (batch ${log.args.batchId}, reason ${log.args.reason})`
  } catch {
    /* the flag is what counts; the log only adds detail */
  }
  r.fail(5, 'order not revoked', `order ${b.order.orderId} was revoked${where}`, true, false)
}

export interface Pinned {
  /** the TimeBank address the city publishes (never the bundle's own) */
  contract?: string
  chainId?: number
}

/** Section 7's five steps on a decoded bundle against `rpcUrl`, the contract pinned. */
export async function verifyBundle(bundle: unknown, rpcUrl: string, pinned: Pinned = {}): Promise<Result> {
  const r = new Report()
  let b: Bundle
  try {
    b = parseBundle(bundle)
  } catch (e) {
    r.fail(0, 'bundle well formed', (e as Error).message)
    return r.result()
  }
  r.pass(0, 'bundle well formed', `${PROOF_FORMAT}, order ${b.order.orderId}, batch ${b.batch.id}`)
  const rpc = new Rpc(rpcUrl)
  try {
    if (!(await step0(r, rpc, b.domain, pinned))) return r.result()
    const digest = step1(r, b)
    step2(r, b, digest)
    await anchorChecks(r, rpc, b.domain.verifyingContract, b.batch, b.batch.root, b.batch.count)
    await step4(r, rpc, b)
    await step5(r, rpc, b)
  } catch (e) {
    r.fail(0, 'RPC', (e as Error).message)
  }
  return r.result()
}

/** A certificate (`timebank-certificate/1`): every order's bundle verified; the minutes summed. */
export async function verifyCertificate(cert: any, rpcUrl: string, pinned: Pinned = {}) {
  if (!cert || cert.format !== 'timebank-certificate/1' || !Array.isArray(cert.orders))
    throw new ProtocolError('malformed_certificate', 'expected a timebank-certificate/1 with orders')
  const orders: { orderId: string; minutes: number; result: Result }[] = []
  for (const bundle of cert.orders) {
    const result = await verifyBundle(bundle, rpcUrl, pinned)
    orders.push({ orderId: bundle?.order?.orderId, minutes: Number(bundle?.order?.minutes ?? 0), result })
  }
  const verifiedMinutes = orders.filter((o) => o.result.ok).reduce((n, o) => n + o.minutes, 0)
  return { ok: orders.every((o) => o.result.ok) && verifiedMinutes === cert.totalMinutes, orders, verifiedMinutes, totalMinutes: cert.totalMinutes as number }
}

// ----- a whole batch ------------------------------------------------------------------------------

type Triple = [number, number, number]

/** What a batch's orders move per account: the volunteer `earned` (`received` for a transfer), the payer `spent`. */
export function amountsOfOrders(orders: ServiceOrder[]): Map<string, Triple> {
  const totals = new Map<string, Triple>()
  const at = (a: string) => totals.get(a) ?? (totals.set(a, [0, 0, 0]), totals.get(a)!)
  for (const o of orders) {
    at(o.volunteer.toLowerCase())[o.serviceType === TRANSFER ? 1 : 0] += o.minutes
    at(o.payer.toLowerCase())[2] += o.minutes
  }
  return totals
}

/** `anchorBatch`'s deltas per account: v1.1 16-byte entries `index ‖ earned ‖ received ‖ spent` (accounts
 * by `accountAt`), or v1's 44-byte `account ‖ earned ‖ received ‖ spent` when the contract has no index. */
export async function unpackDeltas(deltas: string, rpc: Rpc, contract: string): Promise<Map<string, Triple>> {
  const bytes = deltas.slice(2)
  let indexed = true
  try {
    await rpc.view(contract, 'accountAt', [1])
  } catch {
    indexed = false
  }
  const size = indexed ? 16 : 44
  if ((bytes.length / 2) % size) throw new ProtocolError('malformed_deltas', `deltas: ${bytes.length / 2} bytes is not a multiple of ${size}`)
  const out = new Map<string, Triple>()
  for (let off = 0; off < bytes.length; off += size * 2) {
    const entry = bytes.slice(off, off + size * 2)
    const head = indexed ? 8 : 64
    let account = '0x' + entry.slice(0, head)
    if (indexed) account = String((await rpc.view(contract, 'accountAt', [parseInt(entry.slice(0, 8), 16)]))[0]).toLowerCase()
    const t = out.get(account) ?? [0, 0, 0]
    for (let k = 0; k < 3; k++) t[k] += parseInt(entry.slice(head + 8 * k, head + 8 * k + 8), 16)
    out.set(account, t as Triple)
  }
  return out
}

function compareAmounts(r: Report, name: string, justified: Map<string, Triple>, moved: Map<string, Triple>) {
  let bad = 0
  for (const account of new Set([...justified.keys(), ...moved.keys()])) {
    const want = (justified.get(account) ?? [0, 0, 0]).join('/')
    const got = (moved.get(account) ?? [0, 0, 0]).join('/')
    if (want !== got) {
      bad++
      r.fail(4, name, `account ${account}: got ${got}, the orders justify ${want} (earned/received/spent)`, got, want)
    }
  }
  if (!bad) r.pass(4, name, `${justified.size} accounts, every one exactly what the orders justify`, moved.size, justified.size)
}

/** Recomputes a batch from its listing (signatures, leaves, root, amounts) and compares it with the chain. */
export async function verifyBatch(listing: any, rpcUrl: string, pinned: Pinned = {}): Promise<Result> {
  const r = new Report()
  let domain: Domain, batch: BatchRef, items: { order: ServiceOrder; signature: string; digest: string; station: string; leaf: string }[]
  try {
    if (!listing || listing.format !== BATCH_FORMAT) throw new ProtocolError('malformed_listing', `format: want ${BATCH_FORMAT}`)
    domain = parseDomain(listing.domain)
    batch = parseBatch({ id: listing.id ?? listing.batchId, root: listing.root, count: listing.count, txHash: listing.txHash, blockNumber: listing.blockNumber, blockHash: listing.blockHash })
    if (!Array.isArray(listing.orders) || !listing.orders.length) throw new ProtocolError('malformed_listing', 'orders: expected a non-empty list')
    items = listing.orders.map((o: any, i: number) => ({
      order: parseOrder(Object.fromEntries(ORDER_FIELDS.map((f) => [f, o.order?.[f] ?? o[f]])), `orders[${i}]`),
      signature: bytesField(o.signature, 65, `orders[${i}].signature`),
      digest: bytesField(o.digest, 32, `orders[${i}].digest`),
      station: bytesField(o.station, 20, `orders[${i}].station`),
      leaf: bytesField(o.leaf, 32, `orders[${i}].leaf`),
    }))
  } catch (e) {
    r.fail(0, 'listing well formed', (e as Error).message)
    return r.result()
  }
  r.pass(0, 'listing well formed', `${BATCH_FORMAT}, batch ${batch.id}, ${items.length} orders`)
  const rpc = new Rpc(rpcUrl)
  try {
    if (!(await step0(r, rpc, domain, pinned))) return r.result()
    let bad = 0
    const digests = items.map((it, i) => {
      const digest = orderDigest(domain, it.order)
      if (digest !== it.digest) (bad++, r.fail(1, `orders[${i}]: digest recomputed equals its digest`, '', digest, it.digest))
      try {
        const signer = recoverSigner(digest, it.signature)
        if (getAddress(signer) !== getAddress(it.station)) (bad++, r.fail(1, `orders[${i}]: signer equals its station`, '', signer, it.station))
      } catch (e) {
        bad++
        r.fail(1, `orders[${i}]: signer equals its station`, (e as Error).message)
      }
      return digest
    })
    if (!bad) r.pass(1, "every order's digest recomputed and its signature recovers its station", `${items.length} orders`)
    const leaves = items.map((it, i) => leafHash(digests[i], it.station))
    const badLeaves = leaves.filter((l, i) => l !== items[i].leaf).length
    if (badLeaves) r.fail(2, "every order's leaf recomputed equals its leaf", `${badLeaves} differ`)
    else r.pass(2, "every order's leaf recomputed equals its leaf", `${leaves.length} leaves`)
    const root = batchRoot(items.map((it, i) => [digests[i], it.station]))
    r.compare(2, 'root of the standard Merkle tree over the recomputed leaves equals the listed root', root, batch.root)
    r.compare(2, 'listed count equals the number of orders', batch.count, items.length)
    await anchorChecks(r, rpc, domain.verifyingContract, batch, root, items.length)
    const justified = amountsOfOrders(items.map((it) => it.order))
    if (Array.isArray(listing.amounts)) {
      const listed = new Map<string, Triple>(listing.amounts.map((a: any) => [String(a.account).toLowerCase(), [a.earned, a.received, a.spent] as Triple]))
      compareAmounts(r, "the listing's amounts equal the orders' amounts", justified, listed)
    }
    const tx = await rpc.call('eth_getTransactionByHash', batch.txHash)
    if (!tx) {
      r.fail(4, 'anchoring transaction', `no transaction ${batch.txHash} on this chain`)
    } else {
      r.compare(4, 'anchoring transaction is sent to the contract', tx.to, domain.verifyingContract)
      let call
      try {
        call = ABI.decodeFunctionData('anchorBatch', tx.input)
      } catch (e) {
        r.fail(4, 'calldata is anchorBatch(bytes32,uint32,bytes)', (e as Error).message)
      }
      if (call) {
        r.compare(4, 'calldata root equals the recomputed root', call[0], root)
        r.compare(4, 'calldata count equals the number of orders', Number(call[1]), items.length)
        compareAmounts(r, "amounts moved equal the orders' amounts", justified, await unpackDeltas(call[2], rpc, domain.verifyingContract))
      }
    }
  } catch (e) {
    r.fail(0, 'RPC', (e as Error).message)
  }
  return r.result()
}

export const abiCoder = AbiCoder.defaultAbiCoder()
