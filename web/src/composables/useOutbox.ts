import { computed, ref } from 'vue'
import { ApiError, Unreachable } from '../lib'
import type { SignedOrder } from '../lib/protocol'
import { client } from './useApi'

/**
 * The terminal's outbox: every signed order is written to IndexedDB before anything is sent, then sent
 * (the same body, so a repeat is answered 200, never a second order) until the service answers, across
 * page reloads and outages; then its voice recording is uploaded and the order followed until anchored.
 */
export interface OutboxItem {
  orderId: string
  body: Pick<SignedOrder, 'order' | 'signature' | 'details'>
  recording?: { bytes: Uint8Array; mimeType: string; state: 'waiting' | 'uploaded' | 'failed'; error?: string }
  state: 'queued' | 'sent' | 'refused'
  status?: string // the service's: accepted, anchored, revoked, rejected
  httpStatus?: number
  error?: { code: string; message: string; messageZh?: string }
  attempts: number
  createdAt: number
  lastTry?: number
}

const DB = 'timebank-terminal'
const STORE = 'outbox'

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1)
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'orderId' })
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error)
  })
}

async function tx<T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open()
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode)
    const req = fn(t.objectStore(STORE))
    t.oncomplete = () => (db.close(), resolve(req.result))
    t.onerror = () => (db.close(), reject(t.error))
  })
}

const items = ref<OutboxItem[]>([])
const online = ref(true)
let timer: ReturnType<typeof setInterval> | undefined
let running = false

async function reload() {
  const all = await tx<OutboxItem[]>('readonly', (s) => s.getAll())
  items.value = all.sort((a, b) => b.createdAt - a.createdAt)
}

async function put(item: OutboxItem) {
  // plain data only (the form's values may be reactive proxies, which IndexedDB cannot clone)
  const { recording, ...rest } = item
  const plain: OutboxItem = JSON.parse(JSON.stringify(rest))
  if (recording) plain.recording = { ...recording, bytes: new Uint8Array(recording.bytes) }
  await tx('readwrite', (s) => s.put(plain))
}

/** Keeps a signed order (durably, before any network), then sends what waits. */
async function add(order: SignedOrder, recording?: { bytes: Uint8Array; mimeType: string }) {
  const item: OutboxItem = {
    orderId: order.order.orderId,
    body: { order: order.order, signature: order.signature, details: order.details },
    recording: recording && { ...recording, state: 'waiting' },
    state: 'queued',
    attempts: 0,
    createdAt: Date.now(),
  }
  await put(item)
  await reload()
  void flush()
}

/** An answer that says "try again" (429, 5xx: `writer_unavailable`, `mirror_rebuilding`, ...), not "no". */
function retryable(e: ApiError): boolean {
  return e.status === 429 || e.status >= 500
}

async function sendOne(item: OutboxItem) {
  item.attempts++
  item.lastTry = Date.now()
  try {
    const { status, body } = await client.submitOrder(item.body)
    item.state = 'sent'
    item.httpStatus = status
    item.error = undefined
    item.status = body.status
    online.value = true
  } catch (e) {
    if (e instanceof ApiError) {
      item.httpStatus = e.status
      item.error = { code: e.code, message: e.message, messageZh: e.messageZh }
      // "try again" (writer restarting, chain lost blocks, too many requests): it stays queued and is
      // sent again, the same body, next round; anything else is the service's "no"
      if (!retryable(e)) item.state = 'refused'
      online.value = !retryable(e)
    } else if (e instanceof Unreachable) {
      online.value = false
    } else throw e
  }
  await put(item)
}

async function uploadRecording(item: OutboxItem) {
  const rec = item.recording!
  try {
    await client.uploadRecording(item.orderId, rec.bytes, rec.mimeType)
    rec.state = 'uploaded'
  } catch (e) {
    if (e instanceof Unreachable) return
    rec.state = 'failed'
    rec.error = e instanceof ApiError ? `${e.code}: ${e.message}` : String(e)
  }
  await put(item)
}

async function follow(item: OutboxItem) {
  try {
    const o = await client.order(item.orderId)
    if (o.status !== item.status) {
      item.status = o.status
      await put(item)
    }
  } catch {
    /* followed again next round */
  }
}

/** One round: send what is queued (oldest first), upload recordings, follow sent orders not yet final. */
async function flush() {
  if (running) return
  running = true
  try {
    const all = await tx<OutboxItem[]>('readonly', (s) => s.getAll())
    for (const item of all.sort((a, b) => a.createdAt - b.createdAt)) {
      if (item.state === 'queued') {
        await sendOne(item)
        if (item.state === 'queued') break // unreachable: try again next round
      }
      if (item.state === 'sent' && item.recording?.state === 'waiting') await uploadRecording(item)
      if (item.state === 'sent' && !['anchored', 'revoked', 'rejected'].includes(item.status ?? '')) await follow(item)
    }
  } finally {
    running = false
    await reload()
  }
}

function start(intervalMs = 2000) {
  if (timer) return
  void reload().then(flush)
  timer = setInterval(() => void flush(), intervalMs)
  window.addEventListener('online', () => void flush())
}

export function useOutbox() {
  start()
  const waiting = computed(() => items.value.filter((i) => i.state === 'queued'))
  return { items, waiting, online, add, flush }
}
