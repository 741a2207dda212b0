import { ref } from 'vue'
import { keccak256, toUtf8Bytes } from 'ethers'
import canonicalize from 'canonicalize'
import { verifyBatch, verifyBundle, verifyCertificate, type Result } from '../lib'
import { useStored } from './useSettings'

/** The auditor's trust settings (remembered) and the checks run in this browser against them. */
export function useVerifier() {
  const rpcUrl = useStored('timebank.verify.rpcUrl', (import.meta.env.VITE_TIMEBANK_RPC_URL as string) || 'http://127.0.0.1:8545')
  const contract = useStored('timebank.verify.contract', (import.meta.env.VITE_TIMEBANK_CONTRACT as string) || '')
  const chainId = useStored<string>('timebank.verify.chainId', '')
  const busy = ref(false)

  const pinned = () => ({ contract: contract.value.trim() || undefined, chainId: chainId.value ? Number(chainId.value) : undefined })

  async function bundle(value: unknown): Promise<Result> {
    busy.value = true
    try {
      return await verifyBundle(value, rpcUrl.value.trim(), pinned())
    } finally {
      busy.value = false
    }
  }

  async function certificate(value: any, digest?: string) {
    busy.value = true
    try {
      const result = await verifyCertificate(value, rpcUrl.value.trim(), pinned())
      const text = canonicalize(value)
      const got = text ? keccak256(toUtf8Bytes(text)) : ''
      return { ...result, digest: digest ? { got, want: digest.toLowerCase(), ok: got === digest.toLowerCase() } : undefined }
    } finally {
      busy.value = false
    }
  }

  async function batch(listing: unknown): Promise<Result> {
    busy.value = true
    try {
      return await verifyBatch(listing, rpcUrl.value.trim(), pinned())
    } finally {
      busy.value = false
    }
  }

  return { rpcUrl, contract, chainId, busy, bundle, certificate, batch }
}
