/**
 * The service's HTTP API (README "The API", PROTOCOL.md section 6) from a browser or Node 20: JSON in and
 * out, refusals as `ApiError` with the catalogue's code, signed requests for administrators and auditors.
 */
import type { AbstractSigner } from 'ethers'
import { signCommand, signRequest, typesFrom, type Domain, type SignedCommand, type SignedOrder, type Types } from './protocol'

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** the service's message in Chinese and in English, when it gives both */
    readonly messageZh?: string,
    readonly messageEn?: string,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

/** The service could not be reached (offline, stopped): the order stays queued. */
export class Unreachable extends Error {}

export interface ClientOptions {
  /** the service's base URL; '' for the page's own origin */
  baseUrl?: string
  /** Accept-Language: the service answers its messages in Chinese for zh (web/API-NEEDS.md section 3) */
  language?: string
  fetch?: typeof fetch
}

export class TimeBankClient {
  readonly baseUrl: string
  language: string
  private readonly fetchFn: typeof fetch
  private domainCache?: Promise<{ domain: Domain; types: Types }>

  constructor(opts: ClientOptions = {}) {
    this.baseUrl = (opts.baseUrl ?? '').replace(/\/$/, '')
    this.language = opts.language ?? 'zh-CN'
    this.fetchFn = opts.fetch ?? ((...a) => fetch(...a))
  }

  async request<T = any>(method: string, path: string, opts: { body?: unknown; raw?: Uint8Array | Blob; contentType?: string; headers?: Record<string, string>; signer?: AbstractSigner } = {}): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = { Accept: 'application/json', 'Accept-Language': this.language === 'en' ? 'en' : 'zh-CN,zh;q=0.9,en;q=0.8', ...opts.headers }
    let body: BodyInit | undefined
    let bytes: Uint8Array = new Uint8Array()
    if (opts.raw !== undefined) {
      bytes = opts.raw instanceof Blob ? new Uint8Array(await opts.raw.arrayBuffer()) : opts.raw
      body = bytes as BodyInit
      headers['Content-Type'] = opts.contentType ?? 'application/octet-stream'
    } else if (opts.body !== undefined) {
      const text = JSON.stringify(opts.body)
      bytes = new TextEncoder().encode(text)
      body = text
      headers['Content-Type'] = 'application/json'
    }
    if (opts.signer) {
      const { domain, types } = await this.domain()
      const host = (this.baseUrl ? new URL(this.baseUrl).host : globalThis.location?.host ?? '').toLowerCase()
      Object.assign(headers, await signRequest(opts.signer, domain, { method, path, body: bytes, host }, types))
    }
    let res: Response
    try {
      res = await this.fetchFn(this.baseUrl + path, { method, headers, body })
    } catch (e) {
      throw new Unreachable((e as Error).message)
    }
    const text = await res.text()
    let parsed: any = text
    if ((res.headers.get('content-type') ?? '').includes('json')) {
      try {
        parsed = JSON.parse(text)
      } catch {
        /* keep the text */
      }
    }
    if (res.status >= 500 && !parsed?.error) throw new Unreachable(`HTTP ${res.status}`)
    if (res.status >= 400) {
      const err = parsed?.error ?? {}
      throw new ApiError(res.status, err.code ?? 'http_' + res.status, err.message ?? String(text).slice(0, 200), err.messageZh, err.messageEn)
    }
    return { status: res.status, body: parsed as T }
  }

  async get<T = any>(path: string, signer?: AbstractSigner): Promise<T> {
    return (await this.request<T>('GET', path, { signer })).body
  }

  /** The EIP-712 domain and types (`GET /v1/domain`), fetched once. */
  domain(): Promise<{ domain: Domain; types: Types }> {
    this.domainCache ??= this.get('/v1/domain').then((d) => ({ domain: d.domain, types: typesFrom(d.types) }))
    this.domainCache.catch(() => (this.domainCache = undefined))
    return this.domainCache
  }

  health() {
    return this.get('/v1/health')
  }

  /** `POST /v1/orders`: 201 accepted, 200 the same again (idempotent: safe to re-send until answered). */
  async submitOrder(o: Pick<SignedOrder, 'order' | 'signature' | 'details'>) {
    return this.request<{ orderId: string; status: string; digest: string; station: string }>('POST', '/v1/orders', { body: { order: o.order, signature: o.signature, details: o.details } })
  }

  order(orderId: string) {
    return this.get(`/v1/orders/${orderId}`)
  }

  proof(orderId: string) {
    return this.get(`/v1/orders/${orderId}/proof`)
  }

  account(accountId: string) {
    return this.get(`/v1/accounts/${accountId}`)
  }

  history(accountId: string, limit = 100) {
    return this.get(`/v1/accounts/${accountId}/history?limit=${limit}`)
  }

  certificate(accountId: string) {
    return this.get(`/v1/accounts/${accountId}/certificate`)
  }

  batch(batchId: number) {
    return this.get(`/v1/batches/${batchId}`)
  }

  /** The family page's look-up by card number and check code (web/API-NEEDS.md section 1). */
  async lookup(cardNumber: string, checkCode: string) {
    return (await this.request('POST', '/v1/people/lookup', { body: { cardNumber, checkCode } })).body
  }

  /** A voice recording for an accepted order (web/API-NEEDS.md section 2). */
  async uploadRecording(orderId: string, bytes: Uint8Array, mimeType: string) {
    return (await this.request('PUT', `/v1/orders/${orderId}/recording`, { raw: bytes, contentType: mimeType })).body
  }

  /** Signs `type` with `signer` and relays it (`POST /v1/admin/commands`). */
  async command(signer: AbstractSigner, type: string, message: Record<string, unknown>) {
    const { domain, types } = await this.domain()
    const signed: SignedCommand = await signCommand(signer, domain, type, message, types)
    return (await this.request('POST', '/v1/admin/commands', { body: signed })).body
  }

  /** A signed request (README "Signed requests") with a JSON body or none. */
  async signed<T = any>(signer: AbstractSigner, method: string, path: string, body?: unknown, raw?: { bytes: Uint8Array; contentType: string }) {
    return (await this.request<T>(method, path, { signer, body, raw: raw?.bytes, contentType: raw?.contentType })).body
  }
}
