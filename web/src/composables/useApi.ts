import { watchEffect } from 'vue'
import { useI18n } from 'vue-i18n'
import { ApiError, TimeBankClient, Unreachable } from '../lib'
import { ProtocolError } from '../lib/protocol'

/** The one client of the service the pages use: the page's own origin, the reader's language. */
export const client = new TimeBankClient()

export function useApi() {
  const { t, te, locale } = useI18n()
  watchEffect(() => (client.language = locale.value))

  /** A refusal as the reader's language says it: our Chinese text for the code, else the service's message. */
  function errorText(e: unknown): string {
    if (e instanceof ApiError) {
      const key = `errors.${e.code}`
      if (locale.value === 'zh-CN') {
        const zh = e.messageZh ?? (te(key) ? t(key) : '')
        if (zh) return `${zh}（${e.code}）`
      }
      return `${e.messageEn ?? e.message} (${e.code})`
    }
    if (e instanceof Unreachable) return t('errors.unreachable')
    if (e instanceof ProtocolError) return `${e.message} (${e.code})`
    return String((e as Error)?.message ?? e)
  }
  return { client, errorText }
}
