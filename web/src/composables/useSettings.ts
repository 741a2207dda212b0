import { ref, watch, type Ref } from 'vue'

/** A value kept in localStorage (remembered across visits). */
export function useStored<T>(key: string, initial: T): Ref<T> {
  let start = initial
  try {
    const raw = localStorage.getItem(key)
    if (raw !== null) start = JSON.parse(raw)
  } catch {
    /* a bad stored value: start afresh */
  }
  const value = ref(start) as Ref<T>
  watch(value, (v) => localStorage.setItem(key, JSON.stringify(v)), { deep: true })
  return value
}

const fontSize = useStored<'normal' | 'large' | 'huge'>('timebank.fontSize', 'normal')

/** The reader's settings: text size (适老化). */
export function useSettings() {
  return { fontSize }
}
