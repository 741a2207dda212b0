import { computed, ref, shallowRef } from 'vue'
import { Wallet, type HDNodeWallet } from 'ethers'

/**
 * A key kept in the browser as an encrypted JSON keystore (timebank-admin's, or any Ethereum V3 keystore),
 * imported once and unlocked with its PIN for this visit. The key never leaves the page: the keystore
 * stays in localStorage encrypted, the unlocked key only in memory.
 */
export function useKeystore(storageKey: string) {
  // one state per stored key: the page and its unlock form share it
  if (!instances.has(storageKey)) instances.set(storageKey, create(storageKey))
  return instances.get(storageKey)!
}

function create(storageKey: string) {
  const stored = ref<string | null>(localStorage.getItem(storageKey))
  const wallet = shallowRef<Wallet | HDNodeWallet | null>(null)
  const busy = ref(false)
  const storedAddress = computed(() => {
    try {
      const a = stored.value ? JSON.parse(stored.value).address : null
      return a ? (a.startsWith('0x') ? a : '0x' + a) : null
    } catch {
      return null
    }
  })

  async function unlock(pin: string, json?: string) {
    busy.value = true
    try {
      const text = json ?? stored.value
      if (!text) throw new Error('no keystore')
      const w = await Wallet.fromEncryptedJson(text, pin)
      if (json) {
        localStorage.setItem(storageKey, json)
        stored.value = json
      }
      wallet.value = w
      return w
    } finally {
      busy.value = false
    }
  }

  function lock() {
    wallet.value = null
  }

  function forget() {
    lock()
    localStorage.removeItem(storageKey)
    stored.value = null
  }

  return { stored, storedAddress, wallet, busy, unlock, lock, forget }
}

const instances = new Map<string, ReturnType<typeof create>>()
